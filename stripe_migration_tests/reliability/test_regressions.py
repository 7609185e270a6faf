"""Bugs the crash suite found, each pinned down by a quick deterministic test.

The crash suite finds them by chance (a kill at the wrong moment, an edit in between); here the
same situations are built directly, with the state a killed run leaves made through the Stripe
API as that run would have made it.
"""

from __future__ import annotations

from typing import Any

import pytest

from stripe_migration.catalog.stripe_payloads import price_lookup_key
from stripe_migration.sandbox.sample_data import generate_products, insert_products

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _migrate(migration: Any, n: int = 6) -> list[dict[str, Any]]:
    """Seed ``n`` valid products, migrate them, and return the synced rows not priced in yen."""
    insert_products(migration.database_url, generate_products(n, seed=5, bad_fraction=0.0))
    assert migration.run().success
    return [r for r in migration.rows() if r["currency"] != "jpy"]


def _marked_by_a_killed_run(migration: Any, row: dict[str, Any]) -> None:
    """The mark a run sets on a batch's rows before their Stripe writes (its checkpoint would
    have cleared it)."""
    migration.execute("UPDATE products SET sync_run_id = 'killed-run' WHERE id = %s", (row["id"],))


def _left_behind_by_a_killed_reprice(migration: Any, row: dict[str, Any]) -> str:
    """The price a run killed right after its ``POST /v1/prices`` leaves: active, ours, holding
    the lookup key, never made the default. Return its id."""
    cms_id = str(row["id"])
    _marked_by_a_killed_run(migration, row)
    price = migration.emulator.client().v1.prices.create(
        {
            "product": row["stripe_product_id"],
            "currency": row["currency"],
            "unit_amount": 12_345,
            "lookup_key": price_lookup_key(cms_id),
            "transfer_lookup_key": True,
            "metadata": {"cms_id": cms_id},
        }
    )
    return price.id


def _prices_of(migration: Any, product_id: str) -> list[dict[str, Any]]:
    return [p for p in migration.emulator.control.objects("price") if p["product"] == product_id]


def test_edits_after_a_killed_reprice_and_with_a_deactivation_reach_stripe(
    migration: Any,
) -> None:
    """Two bugs, one migration:

    - renamed and deactivated in one CMS edit: the archive must carry the new name (it sent
      ``active=false`` alone while recording the new content as synced, so the name never
      reached Stripe and every later run failed its verification);
    - a run killed between a price create and the default switch, then the CMS price changed
      again before the resume (so the next price has another idempotency key): the price left
      behind must not stay active beside the new default (it did).
    """
    renamed, repriced = _migrate(migration)[:2]
    migration.execute(
        "UPDATE products SET name = name || ' (renamed)', active = false WHERE id = %s",
        (renamed["id"],),
    )
    orphan = _left_behind_by_a_killed_reprice(migration, repriced)
    migration.execute("UPDATE products SET price = '432.10' WHERE id = %s", (repriced["id"],))
    assert migration.run().success

    product = migration.emulator.client().v1.products.retrieve(renamed["stripe_product_id"])
    assert (product.name, product.active) == (f"{renamed['name']} (renamed)", False)

    [after] = [r for r in migration.rows() if r["id"] == repriced["id"]]
    prices = {p["id"]: p for p in _prices_of(migration, repriced["stripe_product_id"])}
    assert [p for p, v in prices.items() if v["active"]] == [after["stripe_price_id"]]
    assert prices[after["stripe_price_id"]]["unit_amount"] == 43_210
    assert prices[after["stripe_price_id"]]["lookup_key"] == price_lookup_key(str(repriced["id"]))
    assert prices[orphan]["active"] is False
    assert prices[repriced["stripe_price_id"]]["active"] is False


def test_a_price_left_by_a_killed_reprice_is_deactivated_when_the_edit_is_reverted(
    migration: Any,
) -> None:
    """A run killed between a price create and the default switch; the editor reverts the CMS
    price before the resume (the record then says unchanged). The price left behind is
    deactivated and the lookup key goes back to the default price."""
    row = _migrate(migration)[0]
    orphan = _left_behind_by_a_killed_reprice(migration, row)
    migration.execute("UPDATE products SET price = price || ' ' WHERE id = %s", (row["id"],))
    result = migration.run()
    assert result.success

    prices = {p["id"]: p for p in _prices_of(migration, row["stripe_product_id"])}
    assert prices[orphan]["active"] is False
    assert [p for p, v in prices.items() if v["active"]] == [row["stripe_price_id"]]
    report = result.asset_materializations_for_node("migration_report")[0].metadata
    assert report["products_with_strays_retired"].value == 1
    assert prices[row["stripe_price_id"]]["lookup_key"] == price_lookup_key(str(row["id"]))
    [after] = [r for r in migration.rows() if r["id"] == row["id"]]
    assert after["sync_run_id"] is None and after["stripe_price_id"] == row["stripe_price_id"]

    # the checkpoint cleared the mark: the next run has nothing to do
    writes = migration.writes()
    result = migration.run()
    assert result.success and migration.writes() == writes
    plan = result.asset_materializations_for_node("catalog_plan")[0].metadata
    assert plan["left_by_interrupted_runs"].value == 0


def test_an_update_a_killed_run_sent_is_undone_when_the_edit_is_reverted(migration: Any) -> None:
    """A run sent a rename to Stripe and was killed before its checkpoint; the editor reverted
    the name. The record says unchanged; Stripe still has the rename until the next run."""
    row = _migrate(migration)[0]
    _marked_by_a_killed_run(migration, row)
    migration.emulator.client().v1.products.update(
        row["stripe_product_id"], {"name": "A rename the editor took back"}
    )
    assert migration.run().success

    product = migration.emulator.client().v1.products.retrieve(row["stripe_product_id"])
    assert product.name == row["name"]
    [after] = [r for r in migration.rows() if r["id"] == row["id"]]
    assert after["sync_run_id"] is None
