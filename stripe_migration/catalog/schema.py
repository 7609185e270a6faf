"""Validation of CMS product rows into what Stripe accepts, with a reason for every refusal.

Two layers:

- :func:`validate_products` checks each row with plain Python validators and transforms it (price
  text → integer minor units, currency lower-cased, metadata values stringified, ``cms_id`` added to
  the metadata, content hash computed). A bad row never raises: it lands in the ``invalid`` frame with
  a reason naming the field and the value's problem (``price: "12.5.0" is not a number``), to be
  written back as ``sync_status = 'failed'``.
- :class:`ValidatedProduct`, a pandera ``DataFrameModel``, states what the *valid* frame must look
  like (types, lengths, ranges). Asset checks run it through :func:`pandera_failure_cases` and show
  the failure cases as a table; it guards the transformation itself, not the CMS data.

Limits come from Stripe's OpenAPI description (``stripe-openapi-spec3.json``, ``POST /v1/products``
and the ``product`` object) and from Stripe's documented metadata rules:

============================  =========  =======================================================
Field                         Limit      Source
============================  =========  =======================================================
name                          5,000      ``POST /v1/products`` ``name.maxLength``
description                   40,000     ``POST /v1/products`` ``description.maxLength``
images                        8 URLs     ``images`` description ("up to 8 URLs")
each image URL                5,000      ``product.images.items.maxLength``; absolute http(s) only,
                                         lower-case scheme, a dot in the host (Stripe's URL check)
metadata keys                 50         Stripe metadata docs (``cms_id`` counts as one)
metadata key length           40         Stripe metadata docs; no ``[`` or ``]``
metadata value length         500        ``product.metadata.additionalProperties.maxLength``
unit_amount (minor units)     50 ..      settings (``min_unit_amount_cents``/``max_unit_amount_cents``);
                              99999999   the default maximum is Stripe's eight digits (``amount``
                                         of ``POST /v1/payment_intents``)
currency                      list       :data:`~stripe_migration.catalog.prices.CURRENCIES`
============================  =========  =======================================================

Strings holding a NUL character or a lone UTF-16 surrogate are refused: PostgreSQL cannot store the
first, UTF-8 (and so Stripe's form encoding) cannot carry the second. Empty descriptions become
None; metadata values that are None or ``""`` are dropped (an empty value means "unset" to Stripe);
numbers and booleans in metadata become strings (``2`` → ``"2"``, ``true`` → ``"true"``), a number
as the JSON text the CMS holds (``12345678901234567890.5`` and ``1.10`` stay as written: the
Supabase read keeps that text, see :class:`~stripe_migration.resources.supabase_db.JsonFloat`);
nested objects and lists are refused.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from stripe_migration import settings
from stripe_migration.catalog.hashing import content_hash
from stripe_migration.catalog.prices import SUPPORTED_CURRENCIES, PriceError, parse_price_to_cents

MAX_NAME_CHARS = 5_000
MAX_DESCRIPTION_CHARS = 40_000
MAX_IMAGES = 8
MAX_IMAGE_URL_CHARS = 5_000
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 500
DEFAULT_MIN_UNIT_AMOUNT_CENTS = settings.MIN_UNIT_AMOUNT_CENTS
DEFAULT_MAX_UNIT_AMOUNT_CENTS = settings.MAX_UNIT_AMOUNT_CENTS

#: The metadata key carrying the CMS product id on every Stripe product and price we create.
CMS_ID_METADATA_KEY = "cms_id"

#: Sync-state columns of ``products`` carried through validation unchanged, for the plan.
SYNC_STATE_COLUMNS: tuple[str, ...] = (
    "stripe_product_id",
    "stripe_price_id",
    "sync_status",
    "sync_content_hash",
    "synced_unit_amount",
    "synced_currency",
)

#: CMS columns carried through unchanged for the write-back and the plan: the CMS version the sync
#: reflects (``updated_at`` → ``synced_version``), the drift recorded by the webhook handlers, and
#: the mark of a run killed while applying the row.
PASSTHROUGH_COLUMNS: tuple[str, ...] = (
    "updated_at",
    "synced_version",
    "stripe_drift",
    "sync_run_id",
    "synced_metadata_keys",
    "price_key_generation",
)

#: Columns of the valid frame, in order.
VALID_COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "description",
    "unit_amount",
    "currency",
    "images",
    "metadata",
    "active",
    "content_hash",
    *SYNC_STATE_COLUMNS,
    *PASSTHROUGH_COLUMNS,
)

#: Columns of the invalid frame.
INVALID_COLUMNS: tuple[str, ...] = ("id", "reason")

_VALID_DTYPES: dict[str, str] = {
    "id": "str",
    "name": "str",
    "description": "str",
    "unit_amount": "int64",
    "currency": "str",
    "images": "object",
    "metadata": "object",
    "active": "bool",
    "content_hash": "str",
    "stripe_product_id": "str",
    "stripe_price_id": "str",
    "sync_status": "str",
    "sync_content_hash": "str",
    "synced_unit_amount": "Int64",
    "synced_currency": "str",
    "updated_at": "object",
    "synced_version": "object",
    "stripe_drift": "object",
    "sync_run_id": "object",
    "synced_metadata_keys": "object",
    "price_key_generation": "object",
}

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_FINITE_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$", re.ASCII)


@dataclass(frozen=True)
class ValidationRules:
    """The tunable limits of validation; the rest are Stripe's and fixed."""

    min_unit_amount_cents: int = DEFAULT_MIN_UNIT_AMOUNT_CENTS
    max_unit_amount_cents: int = DEFAULT_MAX_UNIT_AMOUNT_CENTS
    supported_currencies: frozenset[str] = SUPPORTED_CURRENCIES

    @classmethod
    def from_settings(cls, source: object | None) -> ValidationRules:
        """Build rules from an object with the same attribute names, lower or upper case (a
        config object, or the :mod:`stripe_migration.settings` module); missing → default."""
        if source is None:
            return cls()
        if isinstance(source, ValidationRules):
            return source

        def read(name: str, default: Any) -> Any:
            value = getattr(source, name, None)
            return getattr(source, name.upper(), default) if value is None else value

        currencies = read("supported_currencies", None)
        return cls(
            min_unit_amount_cents=int(read("min_unit_amount_cents", cls.min_unit_amount_cents)),
            max_unit_amount_cents=int(read("max_unit_amount_cents", cls.max_unit_amount_cents)),
            supported_currencies=(
                frozenset(c.lower() for c in currencies) if currencies else SUPPORTED_CURRENCIES
            ),
        )


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :func:`validate_products`: transformed valid rows, and refused rows."""

    valid: pd.DataFrame
    invalid: pd.DataFrame
    rules: ValidationRules = field(default_factory=ValidationRules)

    @property
    def counts(self) -> dict[str, int]:
        """Row counts, for asset metadata."""
        return {"valid": len(self.valid), "invalid": len(self.invalid)}


class ValidatedProduct(pa.DataFrameModel):
    """The valid frame produced by :func:`validate_products`, as Stripe will receive it.

    The unit-amount bounds and currency list here are the defaults; use
    :func:`validated_products_schema` for the configured ones.
    """

    id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    name: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": MAX_NAME_CHARS})
    description: Series[str] = pa.Field(
        nullable=True, str_length={"min_value": 1, "max_value": MAX_DESCRIPTION_CHARS}
    )
    unit_amount: Series[int] = pa.Field(
        ge=DEFAULT_MIN_UNIT_AMOUNT_CENTS, le=DEFAULT_MAX_UNIT_AMOUNT_CENTS
    )
    currency: Series[str] = pa.Field(isin=sorted(SUPPORTED_CURRENCIES))
    images: Series[object]
    metadata: Series[object]
    active: Series[bool]
    content_hash: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{64}$")

    @pa.check("images", name="image_url_list")
    def _images_are_url_lists(cls, images: Series[object]) -> Series[bool]:
        return images.map(_is_image_list)

    @pa.check("metadata", name="stripe_metadata")
    def _metadata_is_stripe_metadata(cls, metadata: Series[object]) -> Series[bool]:
        return metadata.map(_is_stripe_metadata)

    class Config:
        """Extra columns (the sync state) are allowed; types are checked, not coerced."""

        strict = False
        coerce = False


def _is_image_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_IMAGES
        and all(isinstance(u, str) and _image_problem(u) is None for u in value)
    )


def _is_stripe_metadata(value: object) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_METADATA_KEYS
        and all(
            isinstance(k, str)
            and isinstance(v, str)
            and 0 < len(k) <= MAX_METADATA_KEY_CHARS
            and "[" not in k
            and "]" not in k
            and len(v) <= MAX_METADATA_VALUE_CHARS
            for k, v in value.items()
        )
    )


def validated_products_schema(rules: ValidationRules | None = None) -> pa.DataFrameSchema:
    """Return :class:`ValidatedProduct` as a schema with the configured amount range and currencies."""
    rules = rules or ValidationRules()
    return ValidatedProduct.to_schema().update_columns(
        {
            "unit_amount": {
                "checks": [
                    pa.Check.ge(rules.min_unit_amount_cents),
                    pa.Check.le(rules.max_unit_amount_cents),
                ]
            },
            "currency": {"checks": [pa.Check.isin(sorted(rules.supported_currencies))]},
        }
    )


def pandera_failure_cases(
    df: pd.DataFrame, rules: ValidationRules | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Run the pandera schema on a valid frame; return its failures as a table (empty if none).

    Columns: ``index`` (row label, None for frame-level failures), ``id`` (the product id when the
    row is known), ``column``, ``check`` and ``failure_case`` (as text, shortened).
    """
    columns = ["index", "id", "column", "check", "failure_case"]
    try:
        validated_products_schema(rules).validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    rows = []
    for case in cases.to_dict("records"):
        index = case.get("index")
        index = None if _is_missing(index) else index
        row_id = None
        if index is not None and "id" in df.columns and index in df.index:
            row_id = df.at[index, "id"]
            row_id = None if _is_missing(row_id) else str(row_id)
        rows.append(
            {
                "index": index,
                "id": row_id,
                "column": None if _is_missing(case.get("column")) else str(case.get("column")),
                "check": str(case.get("check")),
                "failure_case": _short(case.get("failure_case")),
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    return pd.DataFrame(rows, columns=columns, dtype="object")


def _short(value: object, max_chars: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _quote(value: object, max_chars: int = 40) -> str:
    text = str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return '"' + text.replace('"', '\\"') + '"'


def _type_name(value: object) -> str:
    """The type a reason names: a number read from JSON is a float, whichever class carries it."""
    return "float" if isinstance(value, float) else type(value).__name__


def _is_missing(value: object) -> bool:
    """True for None and pandas/numpy missing markers (NaN, NaT, pd.NA)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return False


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    if _LONE_SURROGATE.search(value):
        return "contains an invalid Unicode character (a lone surrogate)"
    return None


def _check_name(value: object, reasons: list[str]) -> str | None:
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        reasons.append("name: is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"name: must be text, got {_type_name(value)}")
        return None
    name = value.strip()
    if problem := _text_problem(name):
        reasons.append(f"name: {problem}")
        return None
    if len(name) > MAX_NAME_CHARS:
        reasons.append(f"name: is {len(name)} characters, at most {MAX_NAME_CHARS} allowed")
        return None
    return name


def _check_description(value: object, reasons: list[str]) -> str | None:
    if _is_missing(value):
        return None
    if not isinstance(value, str):
        reasons.append(f"description: must be text, got {_type_name(value)}")
        return None
    description = value.strip()
    if problem := _text_problem(description):
        reasons.append(f"description: {problem}")
        return None
    if len(description) > MAX_DESCRIPTION_CHARS:
        reasons.append(
            f"description: is {len(description)} characters, "
            f"at most {MAX_DESCRIPTION_CHARS} allowed"
        )
        return None
    return description or None


def _check_currency(value: object, rules: ValidationRules, reasons: list[str]) -> str | None:
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        reasons.append("currency: is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"currency: must be text, got {_type_name(value)}")
        return None
    code = value.strip().lower()
    if code not in rules.supported_currencies or code not in SUPPORTED_CURRENCIES:
        reasons.append(f"currency: {_quote(value)} is not a supported currency")
        return None
    return code


def _check_price(
    value: object, currency: str | None, rules: ValidationRules, reasons: list[str]
) -> int | None:
    if _is_missing(value):
        reasons.append("price: is missing")
        return None
    if currency is None:
        return None  # the currency's reason is enough; the price cannot be read without it
    try:
        units = parse_price_to_cents(value, currency)
    except PriceError as exc:
        reasons.append(f"price: {exc}")
        return None
    shown = _quote(value)
    if units < rules.min_unit_amount_cents:
        reasons.append(
            f"price: {shown} is {units} in {currency} minor units, "
            f"below the minimum of {rules.min_unit_amount_cents}"
        )
        return None
    if units > rules.max_unit_amount_cents:
        reasons.append(
            f"price: {shown} is {units} in {currency} minor units, "
            f"above the maximum of {rules.max_unit_amount_cents}"
        )
        return None
    return units


def _image_problem(url: str) -> str | None:
    if problem := _text_problem(url):
        return problem
    if len(url) > MAX_IMAGE_URL_CHARS:
        return f"is {len(url)} characters, at most {MAX_IMAGE_URL_CHARS} allowed"
    if _URL_FORBIDDEN.search(url):
        return f"{_quote(url)} contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{_quote(url)} is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or not parts.hostname:
        return f"{_quote(url)} is not an absolute http(s) URL"
    # Stripe refuses the rest as "Not a valid URL": an upper-case scheme (urlsplit lower-cases
    # it) or a host without a dot ("http://cdn/a.png", "http://[::1]/").
    if not url.startswith(("http://", "https://")) or "." not in parts.netloc[1:]:
        return f"{_quote(url)} is not a URL Stripe accepts (lower-case http(s), a dotted host)"
    return None


def _check_images(value: object, reasons: list[str]) -> list[str] | None:
    if _is_missing(value):
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        reasons.append(f"images: must be a list of URLs, got {_type_name(value)}")
        return None
    if len(value) > MAX_IMAGES:
        reasons.append(f"images: {len(value)} images, at most {MAX_IMAGES} allowed")
        return None
    images: list[str] = []
    ok = True
    for position, item in enumerate(value):
        if not isinstance(item, str):
            reasons.append(f"images[{position}]: must be a URL, got {_type_name(item)}")
            ok = False
            continue
        url = item.strip()
        if problem := _image_problem(url):
            reasons.append(f"images[{position}]: {problem}")
            ok = False
            continue
        images.append(url)
    return images if ok else None


def _metadata_value(key: str, value: object, reasons: list[str]) -> str | None:
    """Stringify one metadata value as Stripe stores it, or record why it cannot be."""
    label = f"metadata[{_quote(key)}]"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | np.bool_):
        text = "true" if value else "false"
    elif isinstance(value, int | np.integer):
        text = str(int(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            reasons.append(f"{label}: {value} is not a finite number")
            return None
        text = str(value)
    elif isinstance(value, float | np.floating):
        # A number the Supabase read decoded is a float whose str() is its exact JSON text
        # ("12345678901234567890.5", "1.10"); a plain float's str() is its shortest round trip.
        text = str(value) if isinstance(value, float) else repr(float(value))
        if not _FINITE_NUMBER.match(text):
            reasons.append(f"{label}: {value} is not a finite number")
            return None
    elif isinstance(value, Mapping | list | tuple):
        kind = "an object" if isinstance(value, Mapping) else "a list"
        reasons.append(f"{label}: value is {kind}; Stripe metadata values are strings")
        return None
    else:
        reasons.append(f"{label}: value has unsupported type {_type_name(value)}")
        return None
    if problem := _text_problem(text):
        reasons.append(f"{label}: value {problem}")
        return None
    if len(text) > MAX_METADATA_VALUE_CHARS:
        reasons.append(
            f"{label}: value is {len(text)} characters, at most {MAX_METADATA_VALUE_CHARS} allowed"
        )
        return None
    return text


def _check_metadata(value: object, cms_id: str | None, reasons: list[str]) -> dict[str, str] | None:
    if _is_missing(value):
        value = {}
    if not isinstance(value, Mapping):
        reasons.append(f"metadata: must be an object, got {_type_name(value)}")
        return None
    metadata: dict[str, str] = {}
    ok = True
    for key, raw in value.items():
        if not isinstance(key, str):
            reasons.append(f"metadata: key {key!r} is not text")
            ok = False
            continue
        label = f"metadata[{_quote(key)}]"
        if key == CMS_ID_METADATA_KEY:
            reasons.append(f"{label}: key is reserved for the CMS id, which the migration sets")
            ok = False
            continue
        if not key:
            reasons.append("metadata: has an empty key")
            ok = False
            continue
        if problem := _text_problem(key):
            reasons.append(f"{label}: key {problem}")
            ok = False
            continue
        if len(key) > MAX_METADATA_KEY_CHARS:
            reasons.append(
                f"{label}: key is {len(key)} characters, at most {MAX_METADATA_KEY_CHARS} allowed"
            )
            ok = False
            continue
        if "[" in key or "]" in key:
            reasons.append(f"{label}: key contains square brackets")
            ok = False
            continue
        if _is_missing(raw) or (isinstance(raw, str) and raw == ""):
            continue  # an empty value means "no such key" to Stripe
        text = _metadata_value(key, raw, reasons)
        if text is None:
            ok = False
            continue
        metadata[key] = text
    if ok and len(metadata) + 1 > MAX_METADATA_KEYS:
        reasons.append(
            f"metadata: {len(metadata)} keys plus {CMS_ID_METADATA_KEY} is "
            f"{len(metadata) + 1}, at most {MAX_METADATA_KEYS} allowed"
        )
        return None
    if not ok:
        return None
    if cms_id is not None:
        metadata[CMS_ID_METADATA_KEY] = cms_id
    return dict(sorted(metadata.items()))


def _check_active(value: object, reasons: list[str]) -> bool | None:
    if _is_missing(value):
        return True  # the column's default
    if isinstance(value, bool | np.bool_):
        return bool(value)
    reasons.append(f"active: must be true or false, got {_quote(value)}")
    return None


def _check_id(value: object, reasons: list[str]) -> str | None:
    if _is_missing(value):
        reasons.append("id: is missing")
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if problem := _text_problem(text):
            reasons.append(f"id: {problem}")
            return None
        return text
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    reasons.append(f"id: {_quote(value)} is not a valid id")
    return None


def _sync_value(column: str, value: object) -> Any:
    """A sync-state value as the plan expects it; anything unusable reads as "not recorded"."""
    if _is_missing(value) or isinstance(value, bool | np.bool_):
        return None
    if column != "synced_unit_amount":
        return value if isinstance(value, str) else None
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return None
        value = int(value)
    elif isinstance(value, float | np.floating):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if isinstance(value, int | np.integer) and -(2**63) <= int(value) < 2**63:
        return int(value)
    return None


def validate_row(
    row: Mapping[str, Any], rules: ValidationRules | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate and transform one CMS row: ``(product, [])`` or ``(None, reasons)``.

    Every problem found is reported (not only the first). Unknown keys are ignored.
    """
    rules = rules or ValidationRules()
    reasons: list[str] = []
    cms_id = _check_id(row.get("id"), reasons)
    name = _check_name(row.get("name"), reasons)
    description = _check_description(row.get("description"), reasons)
    currency = _check_currency(row.get("currency"), rules, reasons)
    unit_amount = _check_price(row.get("price"), currency, rules, reasons)
    images = _check_images(row.get("images"), reasons)
    metadata = _check_metadata(row.get("metadata"), cms_id, reasons)
    active = _check_active(row.get("active"), reasons)
    if reasons:
        return None, reasons
    product: dict[str, Any] = {
        "id": cms_id,
        "name": name,
        "description": description,
        "unit_amount": unit_amount,
        "currency": currency,
        "images": images,
        "metadata": metadata,
        "active": active,
    }
    product["content_hash"] = content_hash(product)
    for column in SYNC_STATE_COLUMNS:
        product[column] = _sync_value(column, row.get(column))
    for column in PASSTHROUGH_COLUMNS:
        value = row.get(column)
        product[column] = None if _is_missing(value) else value
    return product, []


def _records(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    return list(rows)


def _frame(
    records: list[dict[str, Any]], columns: tuple[str, ...], dtypes: dict[str, str]
) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=list(columns))
    return frame.astype({c: dtypes[c] for c in columns if c in dtypes})


def validate_products(
    df: pd.DataFrame | Iterable[Mapping[str, Any]], settings: object | None = None
) -> ValidationResult:
    """Validate CMS rows (a DataFrame or dicts) and split them into valid and invalid frames.

    ``settings`` is a :class:`ValidationRules` or any object with its attribute names (the project
    settings); None means the defaults. Never raises on bad rows: every refused row is in
    ``result.invalid`` with its ``reason`` (reasons joined by ``"; "``). A repeated id is refused
    after its first occurrence.
    """
    rules = ValidationRules.from_settings(settings)
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in _records(df):
        try:
            if not isinstance(row, Mapping):
                invalid.append({"id": None, "reason": "row: is not a mapping of column values"})
                continue
            product, reasons = validate_row(row, rules)
        except Exception as exc:  # one odd row must not stop the run
            product, reasons = None, [f"row: could not be validated ({type(exc).__name__})"]
        if product is not None and product["id"] in seen:
            product, reasons = None, ["id: appears more than once"]
        if product is None:
            raw_id = row.get("id") if isinstance(row, Mapping) else None
            invalid.append(
                {"id": None if _is_missing(raw_id) else str(raw_id), "reason": "; ".join(reasons)}
            )
            continue
        seen.add(product["id"])
        valid.append(product)
    return ValidationResult(
        valid=_frame(valid, VALID_COLUMNS, _VALID_DTYPES),
        invalid=_frame(invalid, INVALID_COLUMNS, {"id": "object", "reason": "str"}),
        rules=rules,
    )
