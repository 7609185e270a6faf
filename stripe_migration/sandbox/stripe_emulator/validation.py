"""Check request parameters against Stripe's OpenAPI schemas, the way the API does.

The schemas come from ``data/stripe_api_subset.json`` (see ``data/extract.py``), loaded once.
:func:`check` walks a decoded parameter tree along its schema, converts form strings to the
types the schema names (integers, booleans, arrays) and raises :class:`ApiError` with Stripe's
``code``/``param``/``message`` for the first problem: an unknown parameter, a missing required
one, a wrong type, a string over ``maxLength``, a value outside an ``enum``, an empty string where
the parameter cannot be unset. Rules Stripe documents outside the schema (metadata limits,
currencies) are here too.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from .errors import ApiError, invalid

UNSET = ""
"""An empty string: Stripe's way of unsetting a field on update (where the schema allows it)."""

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500

# Currencies Stripe accepts for prices (ISO 4217, lower case). The OpenAPI description only says
# ``format: currency``, so the list is kept here.
CURRENCIES = frozenset(
    [
        "usd",
        "aed",
        "afn",
        "all",
        "amd",
        "ang",
        "aoa",
        "ars",
        "aud",
        "awg",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bhd",
        "bif",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "byn",
        "bzd",
        "cad",
        "cdf",
        "chf",
        "clp",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "djf",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "fkp",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gnf",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "isk",
        "jmd",
        "jod",
        "jpy",
        "kes",
        "kgs",
        "khr",
        "kmf",
        "krw",
        "kwd",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mga",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "omr",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "pyg",
        "qar",
        "ron",
        "rsd",
        "rub",
        "rwf",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "shp",
        "sle",
        "sos",
        "srd",
        "std",
        "szl",
        "thb",
        "tjs",
        "tnd",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "ugx",
        "uyu",
        "uzs",
        "vnd",
        "vuv",
        "wst",
        "xaf",
        "xcd",
        "xof",
        "xpf",
        "yer",
        "zar",
        "zmw",
    ]
)

_INTEGER = re.compile(r"-?\d{1,19}")
_DECIMAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


@cache
def api_subset() -> dict[str, Any]:
    """The extracted OpenAPI subset shipped with the package (parsed once)."""
    text = resources.files(__package__).joinpath("data/stripe_api_subset.json").read_text()
    return json.loads(text)


def _abbrev(value: str) -> str:
    return value if len(value) <= 23 else f"{value[:10]}...{value[-10:]}"


def _empty(name: str) -> ApiError:
    return invalid(
        f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from "
        "your request or supply a non-empty value.",
        param=name,
        code="parameter_invalid_empty",
    )


def _is_indexed(value: Any) -> bool:
    return isinstance(value, dict) and all(k.isascii() and k.isdigit() for k in value)


def _kind(value: Any) -> str:
    if isinstance(value, list) or (_is_indexed(value) and value):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "scalar"


def _enum_text(values: list[Any]) -> str:
    shown = [str(v) for v in values]
    if len(shown) <= 2:
        return " or ".join(shown)
    return ", ".join(shown[:-1]) + ", or " + shown[-1]


def check(value: Any, schema: dict[str, Any], name: str) -> Any:
    """Validate ``value`` (decoded form data) against ``schema``; return it converted."""
    if "anyOf" in schema:
        return _check_any_of(value, schema["anyOf"], name)
    kind = schema.get("type")
    if kind == "object":
        return _check_object(value, schema, name)
    if kind == "array":
        return _check_array(value, schema, name)
    if not isinstance(value, str):
        raise invalid(f"Invalid {name}: expected a single value, not a nested one.", param=name)
    if kind == "string":
        return _check_string(value, schema, name)
    if value == "":
        raise _empty(name)
    if kind == "integer":
        if not _INTEGER.fullmatch(value):
            raise invalid(
                f"Invalid integer: {_abbrev(value)}", param=name, code="parameter_invalid_integer"
            )
        return int(value)
    if kind == "number":
        if not _NUMBER.fullmatch(value):
            raise invalid(f"Invalid decimal: {_abbrev(value)}", param=name)
        return float(value)
    if kind == "boolean":
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {_abbrev(value)}", param=name)
        return value == "true"
    return value


def _check_string(value: str, schema: dict[str, Any], name: str) -> str:
    enum = schema.get("enum")
    if value == "" and not (enum and "" in enum):
        raise _empty(name)
    if enum is not None and value not in enum:
        raise invalid(f"Invalid {name}: must be one of {_enum_text(enum)}", param=name)
    max_length = schema.get("maxLength")
    if max_length is not None and len(value) > max_length:
        raise invalid(
            f"Invalid string: {_abbrev(value)}; must be at most {max_length} characters",
            param=name,
        )
    fmt = schema.get("format")
    if fmt == "currency":
        lowered = value.lower()
        if lowered not in CURRENCIES:
            raise invalid(
                f"Invalid currency: {_abbrev(value)}. Stripe currently supports these currencies: "
                + ", ".join(sorted(CURRENCIES)),
                param=name,
            )
        return lowered
    if fmt == "decimal" and not _DECIMAL.fullmatch(value):
        raise invalid(f"Invalid decimal: {_abbrev(value)}", param=name)
    return value


def _check_object(value: Any, schema: dict[str, Any], name: str) -> dict[str, Any]:
    if value == "":
        raise _empty(name)
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {name} must be an object (use {name}[key]=value).", name)
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, item in value.items():
        child = f"{name}[{key}]" if name else key
        sub = props.get(key)
        if sub is None:
            if isinstance(extra, dict):
                if item == "" and extra.get("type") == "string":
                    out[key] = item  # metadata[k]= unsets key k
                    continue
                sub = extra
            elif extra is False or props:
                raise invalid(
                    f"Received unknown parameter: {child}", param=child, code="parameter_unknown"
                )
            else:
                out[key] = item
                continue
        out[key] = check(item, sub, child)
    for key in schema.get("required", ()):
        if key not in value:
            child = f"{name}[{key}]" if name else key
            raise invalid(
                f"Missing required param: {child}.", param=child, code="parameter_missing"
            )
    return out


def _check_array(value: Any, schema: dict[str, Any], name: str) -> list[Any]:
    if value == "":
        raise _empty(name)
    if _is_indexed(value):
        items = [value[k] for k in sorted(value, key=int)]
    elif isinstance(value, list):
        items = value
    else:
        raise invalid(f"Invalid array: {name} must be a list (use {name}[0]=value).", name)
    item_schema = schema.get("items", {})
    return [check(item, item_schema, f"{name}[{i}]") for i, item in enumerate(items)]


def _check_any_of(value: Any, options: list[dict[str, Any]], name: str) -> Any:
    if value == "" and any("" in (o.get("enum") or ()) for o in options):
        return UNSET
    errors: list[tuple[dict[str, Any], ApiError]] = []
    for option in options:
        try:
            return check(value, option, name)
        except ApiError as exc:
            errors.append((option, exc))
    kind = _kind(value)
    for option, exc in errors:
        if option.get("type") == ("string" if kind == "scalar" else kind) or (
            kind == "scalar" and option.get("type") in ("integer", "number", "boolean")
        ):
            if option.get("enum") == [""]:
                continue
            raise exc
    raise errors[0][1]


class SpecValidator:
    """Per-operation request schemas from the OpenAPI subset, looked up by ``"METHOD /path"``."""

    def __init__(self, subset: dict[str, Any] | None = None) -> None:
        subset = subset or api_subset()
        self.operations: dict[str, dict[str, Any]] = {}
        for key, op in subset["operations"].items():
            schema = op["query"] if op["method"] == "GET" else op["body"]
            self.operations[key] = schema or {"type": "object", "properties": {}}

    def validate(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Check the decoded parameters of ``operation``; return them converted."""
        return _check_object(params, self.operations[operation], "")


def check_metadata(
    metadata: Any, existing: dict[str, str] | None = None, param: str = "metadata"
) -> dict[str, str]:
    """Apply a metadata update to ``existing`` and enforce Stripe's documented limits.

    An empty value unsets a key; an empty ``metadata`` unsets all keys. At most 50 keys, keys at
    most 40 characters without square brackets, values at most 500 characters.
    """
    if metadata == UNSET:
        return {}
    merged = dict(existing or {})
    for key, value in metadata.items():
        if "[" in key or "]" in key:
            raise invalid(
                f"Invalid metadata key '{key}': keys can't contain square brackets ([ or ]).",
                param=param,
            )
        if not key:
            raise invalid("Invalid metadata: keys must not be empty.", param=param)
        if len(key) > METADATA_KEY_MAX:
            raise invalid(
                f"Invalid metadata key: {_abbrev(key)} must be at most {METADATA_KEY_MAX} "
                "characters.",
                param=param,
            )
        if not isinstance(value, str):
            raise invalid(f"Invalid metadata value for '{key}': must be a string.", param=param)
        if len(value) > METADATA_VALUE_MAX:
            raise invalid(
                f"Invalid metadata value for '{key}': {_abbrev(value)} must be at most "
                f"{METADATA_VALUE_MAX} characters.",
                param=f"{param}[{key}]",
            )
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_MAX_KEYS:
        raise invalid(
            f"Invalid metadata: an object can have at most {METADATA_MAX_KEYS} metadata keys "
            f"(this request would leave {len(merged)}).",
            param=param,
        )
    return merged
