"""Sample catalogue: deterministic, realistic, bad in known ways, and loadable into products."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from stripe_migration.catalog.schema import validate_products
from stripe_migration.sandbox.sample_data import (
    DEFECT_KINDS,
    generate_catalog,
    generate_products,
    insert_products,
)

# The field each defect kind must be refused for.
_FIELD_OF_DEFECT = {
    "price_unparseable": "price:",
    "price_negative": "price:",
    "price_below_minimum": "price:",
    "name_missing": "name:",
    "currency_unknown": "currency:",
    "too_many_images": "images:",
    "name_too_long": "name:",
    "description_too_long": "description:",
    "metadata_nested": "metadata[",
}


def test_same_seed_same_rows() -> None:
    assert generate_products(50, seed=3) == generate_products(50, seed=3)
    assert generate_products(50, seed=3) != generate_products(50, seed=4)


@pytest.mark.parametrize(("n", "fraction", "bad"), [(500, 0.04, 20), (100, 0.0, 0), (10, 0.5, 5)])
def test_bad_row_count(n: int, fraction: float, bad: int) -> None:
    catalog = generate_catalog(n, seed=1, bad_fraction=fraction)
    assert len(catalog.rows) == n
    assert len(catalog.defects) == bad
    assert len({row["id"] for row in catalog.rows}) == n


def test_every_defect_is_refused_for_its_field_and_only_those() -> None:
    catalog = generate_catalog(500, seed=7)
    assert set(catalog.defects.values()) == set(DEFECT_KINDS)
    result = validate_products(catalog.rows)
    assert set(result.invalid["id"]) == set(catalog.defects)
    for record in result.invalid.to_dict("records"):
        assert _FIELD_OF_DEFECT[catalog.defects[record["id"]]] in record["reason"], record


def test_valid_rows_use_what_editors_type() -> None:
    catalog = generate_catalog(1000, seed=2)
    prices = [r["price"] for r in catalog.rows if r["id"] not in catalog.defects]
    assert any("," in p and "." not in p for p in prices)  # decimal comma
    assert any(p.startswith(("€", "$")) or p.endswith(("EUR", "USD", "€")) for p in prices)
    assert any(p != p.strip() for p in prices)
    assert {r["currency"] for r in catalog.rows} >= {"usd", "eur", "jpy"}
    assert any(not isinstance(v, str) for r in catalog.rows for v in r["metadata"].values())


def test_inactive_fraction() -> None:
    catalog = generate_catalog(200, seed=5, inactive_fraction=0.1)
    inactive = [r for r in catalog.rows if not r["active"]]
    assert len(inactive) == 20
    assert not {r["id"] for r in inactive} & set(catalog.defects)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        generate_catalog(10, bad_fraction=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        generate_catalog(-1)


def test_insert_is_idempotent_and_rows_validate_the_same_from_the_database(
    migrated_db: str,
) -> None:
    catalog = generate_catalog(300, seed=11)
    assert insert_products(migrated_db, catalog.rows) == 300
    assert insert_products(migrated_db, catalog.rows) == 0  # safe to run twice
    with psycopg.connect(migrated_db, row_factory=dict_row) as conn:
        stored = conn.execute("SELECT * FROM products").fetchall()
    assert len(stored) == 300
    assert all(r["sync_status"] == "pending" for r in stored)
    by_id = {str(r["id"]): r for r in stored}
    some = catalog.rows[0]
    assert by_id[some["id"]]["images"] == some["images"]
    assert by_id[some["id"]]["metadata"] == some["metadata"]
    result = validate_products(stored)
    assert set(result.invalid["id"]) == set(catalog.defects)
    assert len(result.valid) == 300 - len(catalog.defects)
