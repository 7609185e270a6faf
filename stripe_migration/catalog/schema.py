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
Supabase read keeps that text, see :class:`~stripe_migration.resources.supabase.exact_json.JsonFloat`);
nested objects and lists are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from stripe_migration.catalog.columns import PASSTHROUGH_COLUMNS, SYNC_STATE_COLUMNS
from stripe_migration.catalog.fields import (
    DEFAULT_MAX_UNIT_AMOUNT_CENTS,
    DEFAULT_MIN_UNIT_AMOUNT_CENTS,
    MAX_DESCRIPTION_CHARS,
    MAX_IMAGES,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_NAME_CHARS,
    ValidationRules,
    check_active,
    check_currency,
    check_description,
    check_id,
    check_images,
    check_metadata,
    check_name,
    check_price,
    image_problem,
    is_missing,
    short,
)
from stripe_migration.catalog.hashing import content_hash
from stripe_migration.catalog.prices import SUPPORTED_CURRENCIES

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

#: Columns of the invalid frame: the row's id, why it was refused, and the CMS version refused
#: (its ``updated_at``, recorded as the row's ``synced_version``: an edit makes the row new work).
INVALID_COLUMNS: tuple[str, ...] = ("id", "reason", "updated_at")

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
        and all(isinstance(u, str) and image_problem(u) is None for u in value)
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
        index = None if is_missing(index) else index
        row_id = None
        if index is not None and "id" in df.columns and index in df.index:
            row_id = df.at[index, "id"]
            row_id = None if is_missing(row_id) else str(row_id)
        rows.append(
            {
                "index": index,
                "id": row_id,
                "column": None if is_missing(case.get("column")) else str(case.get("column")),
                "check": str(case.get("check")),
                "failure_case": short(case.get("failure_case")),
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    return pd.DataFrame(rows, columns=columns, dtype="object")


def _sync_value(column: str, value: object) -> Any:
    """A sync-state value as the plan expects it; anything unusable reads as "not recorded"."""
    if is_missing(value) or isinstance(value, bool | np.bool_):
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
    cms_id = check_id(row.get("id"), reasons)
    name = check_name(row.get("name"), reasons)
    description = check_description(row.get("description"), reasons)
    currency = check_currency(row.get("currency"), rules, reasons)
    unit_amount = check_price(row.get("price"), currency, rules, reasons)
    images = check_images(row.get("images"), reasons)
    metadata = check_metadata(row.get("metadata"), cms_id, reasons)
    active = check_active(row.get("active"), reasons)
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
        product[column] = None if is_missing(value) else value
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
                invalid.append(
                    {
                        "id": None,
                        "reason": "row: is not a mapping of column values",
                        "updated_at": None,
                    }
                )
                continue
            product, reasons = validate_row(row, rules)
        except Exception as exc:  # one odd row must not stop the run
            product, reasons = None, [f"row: could not be validated ({type(exc).__name__})"]
        if product is not None and product["id"] in seen:
            product, reasons = None, ["id: appears more than once"]
        if product is None:
            raw_id = row.get("id") if isinstance(row, Mapping) else None
            version = row.get("updated_at") if isinstance(row, Mapping) else None
            invalid.append(
                {
                    "id": None if is_missing(raw_id) else str(raw_id),
                    "reason": "; ".join(reasons),
                    "updated_at": None if is_missing(version) else version,
                }
            )
            continue
        seen.add(product["id"])
        valid.append(product)
    return ValidationResult(
        valid=_frame(valid, VALID_COLUMNS, _VALID_DTYPES),
        invalid=_frame(
            invalid, INVALID_COLUMNS, {"id": "object", "reason": "str", "updated_at": "object"}
        ),
        rules=rules,
    )
