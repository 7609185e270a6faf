"""Row validation and transformation, and the pandera model of the valid frame."""

from __future__ import annotations

import json
import math
import pickle
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_migration.catalog.fields import ValidationRules
from stripe_migration.catalog.hashing import content_hash
from stripe_migration.catalog.schema import (
    INVALID_COLUMNS,
    VALID_COLUMNS,
    pandera_failure_cases,
    validate_products,
    validate_row,
)
from stripe_migration.resources.supabase.exact_json import JsonFloat

ID = "0b6f3a52-5a53-4c4e-9d0e-2b8c6c3d9f10"


def row(**overrides: Any) -> dict[str, Any]:
    """A valid CMS row, with some fields replaced."""
    base: dict[str, Any] = {
        "id": ID,
        "name": "Organic Cotton T-Shirt",
        "description": "Soft and durable.",
        "price": "19.99",
        "currency": "usd",
        "images": ["https://images.example.com/tshirt.jpg"],
        "active": True,
        "metadata": {"sku": "SKU-1"},
    }
    base.update(overrides)
    return base


def reason_of(**overrides: Any) -> str:
    result = validate_products([row(**overrides)])
    assert result.valid.empty, f"row was accepted: {overrides}"
    return result.invalid.loc[0, "reason"]


def test_valid_row_is_transformed() -> None:
    result = validate_products(
        [
            row(
                name="  Mug ",
                description="",
                price=" 12,50 ",
                currency="EUR",
                images=[" https://x.example.com/a.png "],
                metadata={
                    "sku": "M1",
                    "weight_g": 250,
                    "featured": True,
                    "ratio": 0.5,
                    "gone": None,
                },
                id=uuid.UUID(ID),
            )
        ]
    )
    assert result.invalid.empty
    assert list(result.valid.columns) == list(VALID_COLUMNS)
    product = result.valid.to_dict("records")[0]
    assert product["id"] == ID
    assert product["name"] == "Mug"
    assert isinstance(product["description"], float) and math.isnan(product["description"])
    assert product["unit_amount"] == 1250
    assert product["currency"] == "eur"
    assert product["images"] == ["https://x.example.com/a.png"]
    assert product["metadata"] == {
        "cms_id": ID,
        "featured": "true",
        "ratio": "0.5",
        "sku": "M1",
        "weight_g": "250",
    }
    assert product["active"] is True
    assert product["content_hash"] == content_hash(product)
    assert len(product["content_hash"]) == 64


def test_valid_frame_dtypes_and_pandera_pass() -> None:
    result = validate_products(pd.DataFrame([row(), row(id="b", price="5", currency="jpy")]))
    dtypes = result.valid.dtypes
    assert dtypes["unit_amount"] == "int64"
    assert dtypes["active"] == "bool"
    assert dtypes["synced_unit_amount"] == "Int64"
    assert str(dtypes["name"]) == "str"
    failures = pandera_failure_cases(result.valid)
    assert failures.empty
    assert list(failures.columns) == ["index", "id", "column", "check", "failure_case"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"name": None}, "name: is missing"),
        ({"name": "   "}, "name: is missing"),
        ({"name": float("nan")}, "name: is missing"),
        ({"name": 42}, "name: must be text, got int"),
        ({"name": "x" * 5001}, "name: is 5001 characters, at most 5000 allowed"),
        ({"name": "Mug\x00"}, "name: contains a NUL character"),
        ({"description": "d" * 40_001}, "description: is 40001 characters, at most 40000 allowed"),
        ({"description": "bad \ud800 text"}, "description: contains an invalid Unicode character"),
        ({"price": "12.5.0"}, 'price: "12.5.0" is not a number'),
        ({"price": None}, "price: is missing"),
        ({"price": "-1"}, 'price: "-1" is negative'),
        ({"price": "0.49"}, 'price: "0.49" is 49 in usd minor units, below the minimum of 50'),
        (
            {"price": "1000000.00"},
            'price: "1000000.00" is 100000000 in usd minor units, above the maximum of 99999999',
        ),
        ({"price": "1.000"}, 'price: "1.000" is ambiguous: the dot may be a thousands separator'),
        ({"price": "1e8"}, 'price: "1e8" is in scientific notation'),
        ({"price": "€ 12.50"}, "price: \"€ 12.50\" is marked '€'"),
        ({"currency": "xyz"}, 'currency: "xyz" is not a supported currency'),
        ({"currency": None}, "currency: is missing"),
        ({"images": ["https://x.example.com/i.jpg"] * 9}, "images: 9 images, at most 8 allowed"),
        (
            {"images": ["ftp://x.example.com/a.jpg"]},
            'images[0]: "ftp://x.example.com/a.jpg" is not',
        ),
        ({"images": ["/relative/a.jpg"]}, "is not an absolute http(s) URL"),
        ({"images": ["https://"]}, "is not an absolute http(s) URL"),
        ({"images": ["https://x.example.com/a b.jpg"]}, "contains whitespace"),
        ({"images": ["https://x.example.com/" + "a" * 5000]}, "at most 5000 allowed"),
        ({"images": "https://x.example.com/a.jpg"}, "images: must be a list of URLs, got str"),
        ({"images": [None]}, "images[0]: must be a URL, got NoneType"),
        ({"metadata": {f"k{i}": "v" for i in range(50)}}, "50 keys plus cms_id is 51, at most 50"),
        ({"metadata": {"k" * 41: "v"}}, "key is 41 characters, at most 40 allowed"),
        ({"metadata": {"a[b]": "v"}}, 'metadata["a[b]"]: key contains square brackets'),
        ({"metadata": {"k": "v" * 501}}, "value is 501 characters, at most 500 allowed"),
        ({"metadata": {"dims": {"w": 1}}}, 'metadata["dims"]: value is an object'),
        ({"metadata": {"tags": ["a"]}}, 'metadata["tags"]: value is a list'),
        ({"metadata": {"k": float("inf")}}, "is not a finite number"),
        ({"metadata": {"cms_id": "other"}}, "key is reserved for the CMS id"),
        ({"metadata": {"": "v"}}, "metadata: has an empty key"),
        ({"metadata": {"k": "v\x00"}}, "value contains a NUL character"),
        ({"metadata": "sku=1"}, "metadata: must be an object, got str"),
        ({"active": "yes"}, 'active: must be true or false, got "yes"'),
        ({"id": None}, "id: is missing"),
    ],
)
def test_invalid_rows_name_field_and_problem(overrides: dict[str, Any], expected: str) -> None:
    assert expected in reason_of(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "x" * 5000},
        {"description": "d" * 40_000},
        {"price": "0.50"},
        {"price": "999999.99"},
        {"images": ["https://x.example.com/i.jpg"] * 8},
        {"images": ["http://x.example.com/" + "a" * (5000 - 21)]},
        {"metadata": {f"k{i}": "v" for i in range(49)}},
        {"metadata": {"k" * 40: "v" * 500}},
        {"description": None, "images": None, "metadata": None, "active": None},
    ],
)
def test_limits_are_inclusive(overrides: dict[str, Any]) -> None:
    result = validate_products([row(**overrides)])
    assert result.invalid.empty, result.invalid.to_dict("records")


def test_every_problem_of_a_row_is_reported() -> None:
    reason = reason_of(name="", price="abc", images=["ftp://x"], metadata={"a]": "v"})
    parts = reason.split("; ")
    assert [p.split(":")[0].split("[")[0] for p in parts] == ["name", "price", "images", "metadata"]


def test_settings_change_the_amount_range() -> None:
    rules = SimpleNamespace(min_unit_amount_cents=2000, max_unit_amount_cents=3000)
    result = validate_products([row(price="19.99"), row(id="b", price="25")], rules)
    assert result.valid["id"].tolist() == ["b"]
    assert "below the minimum of 2000" in result.invalid.loc[0, "reason"]
    assert ValidationRules.from_settings(rules).max_unit_amount_cents == 3000
    # The pandera schema follows the configured range as well.
    failures = pandera_failure_cases(
        validate_products([row(price="25")]).valid, ValidationRules.from_settings(rules)
    )
    assert failures.empty


def test_rules_read_the_settings_module() -> None:
    from stripe_migration import settings as project_settings

    rules = ValidationRules.from_settings(project_settings)
    assert rules.min_unit_amount_cents == project_settings.MIN_UNIT_AMOUNT_CENTS
    assert rules.max_unit_amount_cents == project_settings.MAX_UNIT_AMOUNT_CENTS
    assert (
        ValidationRules.from_settings(
            SimpleNamespace(MIN_UNIT_AMOUNT_CENTS=7)
        ).min_unit_amount_cents
        == 7
    )


@pytest.mark.parametrize(
    ("price", "currency"),
    [("1000000.00", "usd"), ("1,000,000", "eur"), ("100000000", "jpy"), ("100000.000", "kwd")],
)
def test_the_default_maximum_is_stripes_eight_digits(price: str, currency: str) -> None:
    # Stripe: "The amount value supports up to eight digits (e.g., a value of 99999999 for a USD
    # charge of $999,999.99)"; one more minor unit would be sent and refused.
    assert ValidationRules().max_unit_amount_cents == 99_999_999
    assert "above the maximum of 99999999" in reason_of(price=price, currency=currency)
    largest = validate_products(
        [row(price="999999.99"), row(id="b", price="99999999", currency="jpy")]
    )
    assert largest.valid["unit_amount"].tolist() == [99_999_999, 99_999_999]
    # The pandera model of the valid frame holds the same bound.
    over = largest.valid.assign(unit_amount=100_000_000)
    failures = pandera_failure_cases(over)
    assert set(failures["column"]) == {"unit_amount"}
    assert "less_than_or_equal_to(99999999)" in set(failures["check"])


EXACT_METADATA_JSON = (
    '{"big": 12345678901234567890.5, "ratio": 1.10, "tiny": 0.0000001, "e": 1E+2,'
    ' "neg": -0.50, "int": 123456789012345678901234567890}'
)


def test_metadata_numbers_read_from_json_keep_their_exact_text() -> None:
    # What the Supabase read gives validation (JsonFloat: a float whose str() is its JSON text),
    # through a DataFrame and a pickle, as between the supabase_products and validated_products
    # assets.
    metadata = json.loads(EXACT_METADATA_JSON, parse_float=JsonFloat)
    frame = pickle.loads(pickle.dumps(pd.DataFrame([row(metadata=metadata)], dtype=object)))
    result = validate_products(frame)
    assert result.invalid.empty, result.invalid.to_dict("records")
    assert result.valid.loc[0, "metadata"] == {
        "big": "12345678901234567890.5",
        "cms_id": ID,
        "e": "1E+2",
        "int": "123456789012345678901234567890",
        "neg": "-0.50",
        "ratio": "1.10",
        "tiny": "0.0000001",
    }


def test_a_number_read_from_json_where_text_belongs_is_named_a_float() -> None:
    images, metadata = json.loads("[[1.5], 2.5]", parse_float=JsonFloat)
    assert reason_of(images=images) == "images[0]: must be a URL, got float"
    assert reason_of(metadata=metadata) == "metadata: must be an object, got float"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e16, "1e+16"),
        (np.float64(2.5), "2.5"),
        (np.float32(1.1), "1.100000023841858"),
        (Decimal("1.10"), "1.10"),
    ],
)
def test_other_metadata_numbers_keep_their_text(value: object, text: str) -> None:
    result = validate_products([row(metadata={"n": value})])
    assert result.valid.loc[0, "metadata"]["n"] == text


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), np.float64("inf"), Decimal("NaN")])
def test_metadata_numbers_that_are_not_finite_are_refused(value: object) -> None:
    assert 'metadata["n"]: ' in reason_of(metadata={"n": value})
    assert "is not a finite number" in reason_of(metadata={"n": value})


def test_settings_can_narrow_currencies() -> None:
    rules = ValidationRules(supported_currencies=frozenset({"eur"}))
    result = validate_products([row(currency="usd")], rules)
    assert 'currency: "usd" is not a supported currency' in result.invalid.loc[0, "reason"]


def test_duplicate_ids_keep_the_first() -> None:
    result = validate_products([row(name="first"), row(name="second")])
    assert result.valid["name"].tolist() == ["first"]
    assert result.invalid.to_dict("records") == [
        {"id": ID, "reason": "id: appears more than once", "updated_at": None}
    ]


def test_a_refused_row_keeps_the_cms_version_it_was_refused_at() -> None:
    # Recorded as its synced_version: only an edit makes the row work for the sensor again.
    version = "2026-12-03T09:00:00.123456+00:00"
    result = validate_products([row(price="abc", updated_at=version)])
    assert result.invalid.to_dict("records")[0]["updated_at"] == version


def test_sync_state_is_carried_through() -> None:
    frame = pd.DataFrame(
        [
            row(
                stripe_product_id="prod_1",
                synced_unit_amount=1999.0,
                synced_currency="usd",
                updated_at="2026-01-02T03:04:05+00:00",
                stripe_drift={"in_sync": False},
            ),
            row(id="b", stripe_product_id=None, synced_unit_amount=float("nan")),
        ]
    )
    valid = validate_products(frame).valid
    assert valid.loc[0, "stripe_product_id"] == "prod_1"
    assert valid.loc[0, "synced_unit_amount"] == 1999
    assert valid.loc[1, "synced_unit_amount"] is pd.NA
    assert valid.loc[0, "updated_at"] == "2026-01-02T03:04:05+00:00"
    assert valid.loc[0, "stripe_drift"] == {"in_sync": False}
    assert valid.loc[1, "stripe_drift"] is None


def test_empty_input_gives_typed_empty_frames() -> None:
    result = validate_products(pd.DataFrame())
    assert result.valid.empty and result.invalid.empty
    assert list(result.valid.columns) == list(VALID_COLUMNS)
    assert list(result.invalid.columns) == list(INVALID_COLUMNS)
    assert result.counts == {"valid": 0, "invalid": 0}


def test_validate_row_returns_reasons_list() -> None:
    product, reasons = validate_row(row(price="abc", currency="jpy"))
    assert product is None
    assert reasons == ['price: "abc" is not a number']


def test_pandera_reports_failure_cases_of_a_corrupted_frame() -> None:
    valid = validate_products([row(), row(id="b")]).valid
    valid.loc[0, "unit_amount"] = 10
    valid.loc[1, "currency"] = "USD"
    valid.at[1, "images"] = ["not a url"]
    failures = pandera_failure_cases(valid)
    seen = {(r["id"], r["column"]) for r in failures.to_dict("records")}
    assert seen == {(ID, "unit_amount"), ("b", "currency"), ("b", "images")}
    assert set(failures["failure_case"]) >= {"10", "USD"}


def test_pandera_reports_a_missing_column() -> None:
    valid = validate_products([row()]).valid.drop(columns=["content_hash"])
    failures = pandera_failure_cases(valid)
    assert failures.loc[0, "index"] is None
    assert "content_hash" in failures.loc[0, "failure_case"]


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.decimals(allow_nan=True),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
_columns = st.sampled_from(
    ["id", "name", "description", "price", "currency", "images", "metadata", "active",
     "stripe_product_id", "synced_unit_amount", "sync_content_hash", "other"]
)  # fmt: skip
# Arbitrary rows, some starting from a valid row with a few fields replaced by arbitrary values.
_rows = st.lists(
    st.builds(
        lambda base, extra: {**base, **extra},
        st.sampled_from([{}, row(), row(id="other", currency="jpy", price="1500")]),
        st.dictionaries(_columns, _json, max_size=6),
    ),
    max_size=5,
)


@pytest.mark.slow  # 150 generated catalogues; the fast tier keeps the model's property test
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows)
def test_validation_never_raises(rows: list[dict[str, Any]]) -> None:
    result = validate_products(rows)
    assert len(result.valid) + len(result.invalid) == len(rows)
    assert result.invalid["reason"].map(lambda r: isinstance(r, str) and len(r) > 0).all()
    if not result.valid.empty:
        assert pandera_failure_cases(result.valid).empty


@settings(max_examples=100, deadline=None)
@given(
    name=st.text(min_size=1, max_size=30),
    price=st.decimals(min_value=0, max_value=10**6, places=2),
    currency=st.sampled_from(["usd", "eur", "GBP", "Jpy"]),
)
def test_valid_rows_always_satisfy_the_model(name: str, price: Any, currency: str) -> None:
    result = validate_products([row(name=name, price=str(price), currency=currency)])
    assert pandera_failure_cases(result.valid).empty
