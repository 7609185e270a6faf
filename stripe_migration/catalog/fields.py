"""How each CMS field is checked and turned into what Stripe accepts, with a reason naming it.

One function per field (``check_name``, ``check_price``...): each returns the transformed value,
or None after appending a reason such as ``price: "12.5.0" is not a number``. The limits are
Stripe's (see :mod:`stripe_migration.catalog.schema` for their sources) except the price range
and currencies, which :class:`ValidationRules` makes tunable.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from stripe_migration import settings
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


def short(value: object, max_chars: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def quote(value: object, max_chars: int = 40) -> str:
    text = str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return '"' + text.replace('"', '\\"') + '"'


def type_name(value: object) -> str:
    """The type a reason names: a number read from JSON is a float, whichever class carries it."""
    return "float" if isinstance(value, float) else type(value).__name__


def is_missing(value: object) -> bool:
    """True for None and pandas/numpy missing markers (NaN, NaT, pd.NA)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return False


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    if _LONE_SURROGATE.search(value):
        return "contains an invalid Unicode character (a lone surrogate)"
    return None


def check_text(field: str, value: object, max_chars: int, reasons: list[str]) -> str | None:
    """``value`` stripped, or None after a reason naming ``field``: not text, a character Stripe
    refuses, or longer than ``max_chars``."""
    if not isinstance(value, str):
        reasons.append(f"{field}: must be text, got {type_name(value)}")
        return None
    text = value.strip()
    if problem := text_problem(text):
        reasons.append(f"{field}: {problem}")
        return None
    if len(text) > max_chars:
        reasons.append(f"{field}: is {len(text)} characters, at most {max_chars} allowed")
        return None
    return text


def check_name(value: object, reasons: list[str]) -> str | None:
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        reasons.append("name: is missing")
        return None
    return check_text("name", value, MAX_NAME_CHARS, reasons)


def check_description(value: object, reasons: list[str]) -> str | None:
    if is_missing(value):
        return None
    return check_text("description", value, MAX_DESCRIPTION_CHARS, reasons) or None


def check_currency(value: object, rules: ValidationRules, reasons: list[str]) -> str | None:
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        reasons.append("currency: is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"currency: must be text, got {type_name(value)}")
        return None
    code = value.strip().lower()
    if code not in rules.supported_currencies or code not in SUPPORTED_CURRENCIES:
        reasons.append(f"currency: {quote(value)} is not a supported currency")
        return None
    return code


def check_price(
    value: object, currency: str | None, rules: ValidationRules, reasons: list[str]
) -> int | None:
    if is_missing(value):
        reasons.append("price: is missing")
        return None
    if currency is None:
        return None  # the currency's reason is enough; the price cannot be read without it
    try:
        units = parse_price_to_cents(value, currency)
    except PriceError as exc:
        reasons.append(f"price: {exc}")
        return None
    shown = quote(value)
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


def image_problem(url: str) -> str | None:
    if problem := text_problem(url):
        return problem
    if len(url) > MAX_IMAGE_URL_CHARS:
        return f"is {len(url)} characters, at most {MAX_IMAGE_URL_CHARS} allowed"
    if _URL_FORBIDDEN.search(url):
        return f"{quote(url)} contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{quote(url)} is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or not parts.hostname:
        return f"{quote(url)} is not an absolute http(s) URL"
    # Stripe refuses the rest as "Not a valid URL": an upper-case scheme (urlsplit lower-cases
    # it) or a host without a dot ("http://cdn/a.png", "http://[::1]/").
    if not url.startswith(("http://", "https://")) or "." not in parts.netloc[1:]:
        return f"{quote(url)} is not a URL Stripe accepts (lower-case http(s), a dotted host)"
    return None


def check_images(value: object, reasons: list[str]) -> list[str] | None:
    if is_missing(value):
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        reasons.append(f"images: must be a list of URLs, got {type_name(value)}")
        return None
    if len(value) > MAX_IMAGES:
        reasons.append(f"images: {len(value)} images, at most {MAX_IMAGES} allowed")
        return None
    images: list[str] = []
    ok = True
    for position, item in enumerate(value):
        if not isinstance(item, str):
            reasons.append(f"images[{position}]: must be a URL, got {type_name(item)}")
            ok = False
            continue
        url = item.strip()
        if problem := image_problem(url):
            reasons.append(f"images[{position}]: {problem}")
            ok = False
            continue
        images.append(url)
    return images if ok else None


def metadata_value(key: str, value: object, reasons: list[str]) -> str | None:
    """Stringify one metadata value as Stripe stores it, or record why it cannot be."""
    label = f"metadata[{quote(key)}]"
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
        reasons.append(f"{label}: value has unsupported type {type_name(value)}")
        return None
    if problem := text_problem(text):
        reasons.append(f"{label}: value {problem}")
        return None
    if len(text) > MAX_METADATA_VALUE_CHARS:
        reasons.append(
            f"{label}: value is {len(text)} characters, at most {MAX_METADATA_VALUE_CHARS} allowed"
        )
        return None
    return text


def check_metadata(value: object, cms_id: str | None, reasons: list[str]) -> dict[str, str] | None:
    if is_missing(value):
        value = {}
    if not isinstance(value, Mapping):
        reasons.append(f"metadata: must be an object, got {type_name(value)}")
        return None
    metadata: dict[str, str] = {}
    ok = True
    for key, raw in value.items():
        if not isinstance(key, str):
            reasons.append(f"metadata: key {key!r} is not text")
            ok = False
            continue
        label = f"metadata[{quote(key)}]"
        if key == CMS_ID_METADATA_KEY:
            reasons.append(f"{label}: key is reserved for the CMS id, which the migration sets")
            ok = False
            continue
        if not key:
            reasons.append("metadata: has an empty key")
            ok = False
            continue
        if problem := text_problem(key):
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
        if is_missing(raw) or (isinstance(raw, str) and raw == ""):
            continue  # an empty value means "no such key" to Stripe
        text = metadata_value(key, raw, reasons)
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


def check_active(value: object, reasons: list[str]) -> bool | None:
    if is_missing(value):
        return True  # the column's default
    if isinstance(value, bool | np.bool_):
        return bool(value)
    reasons.append(f"active: must be true or false, got {quote(value)}")
    return None


def check_id(value: object, reasons: list[str]) -> str | None:
    if is_missing(value):
        reasons.append("id: is missing")
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if problem := text_problem(text):
            reasons.append(f"id: {problem}")
            return None
        return text
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    reasons.append(f"id: {quote(value)} is not a valid id")
    return None
