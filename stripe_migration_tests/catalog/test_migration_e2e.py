"""The catalogue migration end to end: Dagster jobs, the Supabase gateway, the Stripe emulator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from stripe_migration.catalog.checks import duplicates_created_since
from stripe_migration.catalog.stripe_payloads import custom_product_id
from stripe_migration.resources.supabase.resource import SupabaseResource
from stripe_migration.sandbox.sample_data import generate_products, insert_products
from stripe_migration.settings import CATALOG_PARTITION_COUNT, VERIFY_TAG
from stripe_migration_tests.fixtures.migration import stripe_resource_for

pytestmark = pytest.mark.timeout(240)


def _seed(migration, n: int = 500, bad_fraction: float = 0.05) -> list[dict]:
    rows = generate_products(n, seed=11, bad_fraction=bad_fraction)
    insert_products(migration.database_url, rows)
    return rows


def _stripe_products(migration) -> list[dict]:
    return migration.emulator.control.objects("product")


def _prices(migration) -> dict[str, dict]:
    return {p["id"]: p for p in migration.emulator.control.objects("price")}


def test_first_run_creates_one_product_and_price_per_valid_row(migration) -> None:
    _seed(migration, 200)
    result = migration.run()
    assert result.success, result.all_events

    rows = migration.rows()
    failed = [r for r in rows if r["sync_status"] == "failed"]
    synced = [r for r in rows if r["sync_status"] == "synced"]
    assert failed, "the seed has bad rows"
    assert all(r["sync_error"] and ":" in r["sync_error"] for r in failed)
    assert all(r["stripe_product_id"] is None for r in failed)

    products = _stripe_products(migration)
    owners = Counter(p["metadata"]["cms_id"] for p in products)
    assert set(owners) == {str(r["id"]) for r in synced}
    assert max(owners.values()) == 1
    prices = _prices(migration)
    assert len(prices) == len(products)
    for row in synced:
        assert row["stripe_product_id"] == custom_product_id(str(row["id"]))
        price = prices[row["stripe_price_id"]]
        assert (price["unit_amount"], price["currency"]) == (
            row["synced_unit_amount"],
            row["synced_currency"],
        )
        assert price["product"] == row["stripe_product_id"]
    # One write per new product: the product and its price in one call.
    assert migration.writes() == len(synced)

    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["every_valid_product_has_stripe_ids"]
    assert checks["stripe_matches_cms"]
    assert checks["one_stripe_product_per_cms_id"]

    report = result.asset_materializations_for_node("migration_report")[0].metadata
    assert report["created"].value == len(synced)
    assert report["failed"].value == len(failed)


@pytest.mark.slow  # several runs; the fast tier keeps the first run and the dry run
def test_second_run_makes_no_write(migration) -> None:
    _seed(migration, 200)
    assert migration.run().success
    writes = migration.writes()
    again = migration.run()
    assert again.success
    assert migration.writes() == writes
    plan = again.asset_materializations_for_node("catalog_plan")[0].metadata
    assert plan["planned_writes"].value == 0


@pytest.mark.slow  # several runs; the fast tier keeps the first run and the dry run
def test_changes_make_exactly_those_updates_and_deactivate_old_prices(migration) -> None:
    _seed(migration, 200, bad_fraction=0.0)
    assert migration.run().success
    before = {str(r["id"]): r for r in migration.rows()}
    ids = sorted(before)
    renamed, repriced = ids[:10], ids[10:20]
    migration.execute(
        "UPDATE products SET name = name || ' (2027)' WHERE id = ANY(%s::uuid[])", (renamed,)
    )
    migration.execute(
        "UPDATE products SET price = '4321.00' WHERE id = ANY(%s::uuid[])", (repriced,)
    )
    writes = migration.writes()

    result = migration.run()
    assert result.success
    after = {str(r["id"]): r for r in migration.rows()}
    products = {p["id"]: p for p in _stripe_products(migration)}
    prices = _prices(migration)
    for cms_id in renamed:
        assert products[after[cms_id]["stripe_product_id"]]["name"].endswith(" (2027)")
        assert after[cms_id]["stripe_price_id"] == before[cms_id]["stripe_price_id"]
    for cms_id in repriced:
        new_price = prices[after[cms_id]["stripe_price_id"]]
        assert new_price["unit_amount"] == 432100 or new_price["currency"] in ("jpy", "krw")
        assert new_price["active"] is True
        assert products[after[cms_id]["stripe_product_id"]]["default_price"] == new_price["id"]
        old = prices[before[cms_id]["stripe_price_id"]]
        assert old["active"] is False
    # 10 product updates, and per reprice: new price, default switch, old price deactivated.
    assert migration.writes() - writes == 10 + 10 * 3
    assert len(_stripe_products(migration)) == 200


def test_dry_run_writes_nothing_and_shows_the_plan(migration) -> None:
    _seed(migration, 100)
    result = migration.run("plan_catalog")
    assert result.success
    assert migration.writes() == 0
    assert all(r["sync_status"] == "pending" for r in migration.rows())
    plan = result.asset_materializations_for_node("catalog_plan")[0].metadata
    assert plan["plan_create"].value + plan["plan_invalid"].value == 100
    assert "create" in plan["changes"].value


@pytest.mark.slow  # several runs; the fast tier keeps the first run and the dry run
def test_forced_resync_repairs_a_product_edited_in_stripe(migration) -> None:
    _seed(migration, 50, bad_fraction=0.0)
    assert migration.run().success
    row = migration.rows()[0]
    client = migration.emulator.client()
    client.v1.products.update(
        row["stripe_product_id"], {"name": "edited in the dashboard", "metadata": {"x": "y"}}
    )
    # An ordinary run trusts the recorded sync state: the product is not its work (without a
    # webhook receiver nothing recorded the drift), so it writes nothing and verifies nothing.
    writes = migration.writes()
    ordinary = migration.run()
    assert ordinary.success
    assert migration.writes() == writes
    # The audit reads the whole catalogue, sees the edit and fails, naming the product.
    audit = migration.run("audit_catalog")
    assert not audit.success
    checks = {e.check_name: e for e in audit.get_asset_check_evaluations()}
    assert not checks["stripe_matches_cms"].passed
    assert checks["stripe_matches_cms"].metadata["mismatches"].value == 1
    assert str(row["id"]) in str(checks["stripe_matches_cms"].metadata["rows"].value)
    assert migration.writes() == writes
    assert client.v1.products.retrieve(row["stripe_product_id"]).name == "edited in the dashboard"

    result = migration.run(force_resync=True)
    assert result.success
    repaired = client.v1.products.retrieve(row["stripe_product_id"])
    assert repaired.name == row["name"]
    assert "x" not in repaired.metadata
    assert migration.run("audit_catalog").success
    assert migration.writes() - writes == 1


@pytest.mark.slow  # several runs; the fast tier keeps the first run and the dry run
def test_rollback_restores_supabase_and_archives_in_stripe(migration) -> None:
    _seed(migration, 60)
    before = {str(r["id"]): r for r in migration.rows()}
    result = migration.run()
    assert result.success

    rollback = migration.run(
        "rollback_catalog",
        run_config={"ops": {"rollback_migrations": {"config": {"run_id": result.run_id}}}},
    )
    assert rollback.success
    after = {str(r["id"]): r for r in migration.rows()}
    for cms_id, row in before.items():
        for column in ("stripe_product_id", "stripe_price_id", "sync_status", "sync_error", "name"):
            assert after[cms_id][column] == row[column], (cms_id, column)
    products = _stripe_products(migration)
    assert products and all(p["active"] is False for p in products)

    # The next run brings everything back, reactivating the archived products (no duplicate).
    again = migration.run()
    assert again.success
    products = _stripe_products(migration)
    assert len(products) == len({p["metadata"]["cms_id"] for p in products})
    synced = [r for r in migration.rows() if r["sync_status"] == "synced"]
    active = {p["id"] for p in products if p["active"]}
    assert {r["stripe_product_id"] for r in synced} <= active


@pytest.mark.slow  # several runs; the fast tier keeps the first run and the dry run
def test_rollback_of_a_later_run_restores_its_integer_sync_columns(migration) -> None:
    _seed(migration, 20, bad_fraction=0.0)
    assert migration.run().success
    synced = {str(r["id"]): r for r in migration.rows()}
    first = sorted(synced)[0]
    migration.execute("UPDATE products SET price = '77.00' WHERE id = %s", (first,))
    second = migration.run()
    assert second.success

    rollback = migration.run(
        "rollback_catalog",
        run_config={"ops": {"rollback_migrations": {"config": {"run_id": second.run_id}}}},
    )
    assert rollback.success
    restored = {str(r["id"]): r for r in migration.rows()}
    # The backup of the second run held integer amounts (and ids): they come back exactly.
    assert restored[first]["synced_unit_amount"] == synced[first]["synced_unit_amount"]
    assert restored[first]["stripe_price_id"] == synced[first]["stripe_price_id"]
    assert restored[first]["price"] == "77.00"  # the editor's price stays
    # In Stripe the price the second run put in place is switched back: the old price is the
    # default again, active, with the lookup key; the second run's price is deactivated.
    old_price = synced[first]["stripe_price_id"]
    product = migration.emulator.client().v1.products.retrieve(synced[first]["stripe_product_id"])
    assert product.default_price == old_price
    prices = _prices(migration)
    assert prices[old_price]["active"] is True
    assert prices[old_price]["lookup_key"] == f"cms_{first}"
    assert [
        p["active"] for i, p in prices.items() if p["product"] == product.id and i != old_price
    ] == [False]

    # The row is in scope again, and the next run reprices it to the CMS's price once more.
    assert migration.run().success
    repriced = {str(r["id"]): r for r in migration.rows()}[first]
    assert repriced["synced_unit_amount"] == 7700
    assert _prices(migration)[repriced["stripe_price_id"]]["active"] is True


@pytest.mark.slow  # three runs; the fast tier keeps the first run and the dry run
def test_a_small_edit_costs_its_writes_and_reading_back_what_it_wrote(migration) -> None:
    """Issue 14: a run's verification reads back what the run wrote (by id, and the products
    created since it started), not the whole catalogue; ``verify=full`` reads everything."""
    _seed(migration, 250, bad_fraction=0.0)
    assert migration.run().success
    edited = [str(r["id"]) for r in migration.rows()[:5]]
    migration.execute(
        "UPDATE products SET name = name || ' (new)' WHERE id = ANY(%s::uuid[])", (edited,)
    )
    writes, reads = migration.writes(), migration.requests("GET")
    result = migration.run()
    assert result.success
    assert migration.writes() - writes == 5
    # One list call by ids for the five products, one for the products created since the start.
    assert migration.requests("GET") - reads == 2
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["stripe_matches_cms"].metadata["products_compared"].value == 5
    assert all(e.passed for e in checks.values())
    named = {p["metadata"]["cms_id"]: p["name"] for p in _stripe_products(migration)}
    assert all(named[i].endswith(" (new)") for i in edited)

    # Nothing changed since: the run writes nothing, so its verification reads nothing.
    calls = migration.requests()
    assert migration.run().success
    assert migration.requests() == calls

    reads = migration.requests("GET")
    full = migration.run(tags={VERIFY_TAG: "full"})
    assert full.success
    checks = {e.check_name: e for e in full.get_asset_check_evaluations()}
    assert checks["stripe_matches_cms"].metadata["products_compared"].value == 250
    # Three list calls by ids (100 each) and three pages of every product.
    assert migration.requests("GET") - reads == 6


@pytest.mark.slow  # two runs and an audit; the fast tier keeps the first run and the dry run
def test_a_second_product_for_a_row_is_named_by_its_window_and_by_the_audit(
    migration, gateway
) -> None:
    """A product made for a CMS row that already has one (by hand here, as a duplicate would
    be) is named by the check of the products created in a run's window, and by the audit."""
    _seed(migration, 20, bad_fraction=0.0)
    assert migration.run().success
    row = migration.rows()[0]
    before = datetime.now(UTC) - timedelta(seconds=1)
    made = migration.emulator.client().v1.products.create(
        {
            "name": "a second one",
            "metadata": {"cms_id": str(row["id"])},
            # complete, so that it is named as a second product only (not also as half-made)
            "default_price_data": {"currency": "usd", "unit_amount": 100},
        }
    )
    api = stripe_resource_for(migration.emulator).get_client()
    db = SupabaseResource(url=gateway.url, service_role_key=gateway.key).get_client()
    buckets = list(range(CATALOG_PARTITION_COUNT))
    counted, duplicates = duplicates_created_since(api, db, before, buckets)
    assert counted >= 1  # the one made by hand (and the run's, when made in the same second)
    assert [d["cms_id"] for d in duplicates] == [str(row["id"])]
    assert made.id in duplicates[0]["problem"]
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert duplicates_created_since(api, db, later, buckets) == (0, [])

    audit = migration.run("audit_catalog")
    checks = {e.check_name: e for e in audit.get_asset_check_evaluations()}
    assert not audit.success and not checks["one_stripe_product_per_cms_id"].passed
    assert str(row["id"]) in str(checks["one_stripe_product_per_cms_id"].metadata["rows"].value)
