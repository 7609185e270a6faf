"""Runs that follow runs: deletions, removed metadata keys, refusals, saved failures, edits made
while a run is in flight, and a second run whose plan went stale while it waited for Stripe.

Each test is a regression test of issue 12 (items 3-7, 10 and 11): it failed before the fix.
The sandbox is real: embedded PostgreSQL, the project's Supabase gateway and Stripe emulator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stripe_migration.catalog.stripe_payloads import custom_product_id
from stripe_migration_tests.fixtures.migration import build_definitions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _insert(migration, rows: list[dict[str, Any]]) -> None:
    with psycopg.connect(migration.database_url, autocommit=True) as conn:
        for row in rows:
            conn.execute(
                "INSERT INTO products (id, name, description, price, currency, images, active,"
                " metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row["id"],
                    row["name"],
                    row.get("description"),
                    row["price"],
                    row["currency"],
                    json.dumps(row.get("images", [])),
                    row.get("active", True),
                    json.dumps(row.get("metadata", {})),
                ),
            )


def _catalogue(n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "name": f"Product {i}",
            "price": f"{10 + i}.50",
            "currency": "usd",
            "metadata": {"colour": "blue", "size": str(i)},
            **overrides,
        }
        for i in range(n)
    ]


def _products(migration) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in migration.emulator.control.objects("product")}


def _prices(migration) -> list[dict[str, Any]]:
    return migration.emulator.control.objects("price")


def _report(result) -> dict[str, Any]:
    metadata = result.asset_materializations_for_node("migration_report")[0].metadata
    return {k: v.value for k, v in metadata.items()}


def _plan(result) -> dict[str, Any]:
    metadata = result.asset_materializations_for_node("catalog_plan")[0].metadata
    return {k: v.value for k, v in metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _row(migration, cms_id: str) -> dict[str, Any]:
    return next(r for r in migration.rows() if str(r["id"]) == cms_id)


# -- 3: deletions ------------------------------------------------------------------------------


def test_a_deleted_row_is_listed_by_the_dry_run_and_archived_by_the_next_run(migration) -> None:
    rows = _catalogue(3)
    _insert(migration, rows)
    assert migration.run().success
    gone = rows[1]["id"]
    migration.execute("DELETE FROM products WHERE id = %s", (gone,))

    writes = migration.writes()
    dry = migration.run("plan_catalog")
    assert dry.success
    plan = _plan(dry)
    assert plan["plan_archive_deleted"] == 1
    assert gone in plan["changes"] and "deleted from the CMS" in plan["changes"]
    assert migration.writes() == writes, "a dry run writes nothing"

    result = migration.run()
    assert result.success
    assert _report(result)["archived_deleted"] == 1
    products = _products(migration)
    assert products[custom_product_id(gone)]["active"] is False
    assert products[custom_product_id(rows[0]["id"])]["active"] is True
    with psycopg.connect(migration.database_url) as conn:
        archived_at, run_id = conn.execute(
            "SELECT archived_at, archived_run_id FROM products_deleted WHERE id = %s", (gone,)
        ).fetchone()
    assert archived_at is not None and run_id == result.run_id

    writes = migration.writes()
    again = migration.run()
    assert again.success and _report(again)["archived_deleted"] == 0
    assert migration.writes() == writes


def test_a_forced_resync_archives_products_whose_row_left_no_tombstone(migration) -> None:
    rows = _catalogue(3)
    _insert(migration, rows)
    assert migration.run().success
    gone = rows[2]["id"]
    # deleted before deletions were tracked: no tombstone
    migration.execute("DELETE FROM products WHERE id = %s", (gone,))
    migration.execute("DELETE FROM products_deleted WHERE id = %s", (gone,))

    normal = migration.run()
    assert normal.success and _report(normal)["archived_deleted"] == 0
    assert _products(migration)[custom_product_id(gone)]["active"] is True

    forced = migration.run(force_resync=True)
    assert forced.success
    assert _report(forced)["archived_deleted"] == 1
    assert _products(migration)[custom_product_id(gone)]["active"] is False
    assert sum(p["active"] for p in _products(migration).values()) == 2


def test_a_row_inserted_again_under_a_deleted_id_is_a_product_again(migration) -> None:
    rows = _catalogue(2)
    _insert(migration, rows)
    assert migration.run().success
    migration.execute("DELETE FROM products WHERE id = %s", (rows[0]["id"],))
    _insert(migration, [rows[0]])
    result = migration.run()
    assert result.success
    assert _report(result)["archived_deleted"] == 0
    assert _products(migration)[custom_product_id(rows[0]["id"])]["active"] is True


# -- 4: a metadata key removed in the CMS ------------------------------------------------------


@pytest.mark.parametrize("recorded_keys", [True, False], ids=["keys-recorded", "synced-before-1.4"])
def test_a_metadata_key_removed_in_the_cms_is_removed_in_stripe(
    migration, recorded_keys: bool
) -> None:
    rows = _catalogue(2)
    _insert(migration, rows)
    assert migration.run().success
    target = rows[0]["id"]
    if not recorded_keys:
        migration.execute("UPDATE products SET synced_metadata_keys = NULL")
    migration.execute("UPDATE products SET metadata = metadata - 'colour' WHERE id = %s", (target,))
    result = migration.run()
    assert result.success, _checks(result)
    metadata = _products(migration)[custom_product_id(target)]["metadata"]
    assert "colour" not in metadata
    assert metadata["size"] == "0" and metadata["cms_id"] == target
    assert _row(migration, target)["synced_metadata_keys"] == ["cms_id", "size"]


# -- 5: valid rows that Stripe refuses ---------------------------------------------------------


def test_valid_rows_refused_by_stripe_fail_the_run_after_the_report(migration) -> None:
    rows = _catalogue(3)
    _insert(migration, rows)
    migration.emulator.control.fail_next(
        "POST",
        "/v1/products",
        phase="after_execution",
        status=400,
        count=2,
        code="parameter_invalid_string_blank",
        message="The catalogue refuses this product.",
    )
    result = migration.run()
    assert not result.success
    report = _report(result)
    assert report["refused_by_stripe"] == 2
    assert report["created"] == 1
    assert report["invalid"] == 0
    evaluation = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "stripe_accepted_every_valid_row"
    )
    assert not evaluation.passed
    assert evaluation.metadata["refused_by_stripe"].value == 2
    failed = [r for r in migration.rows() if r["sync_status"] == "failed"]
    assert len(failed) == 2
    assert all("The catalogue refuses this product." in r["sync_error"] for r in failed)

    # the next run retries them (new run, new keys) and succeeds
    again = migration.run()
    assert again.success
    assert _report(again)["created"] == 2


# -- 6: a failure Stripe saved for an idempotency key ------------------------------------------


@pytest.mark.parametrize("phase", ["after_execution", "after_commit"])
def test_a_saved_failure_of_a_new_price_does_not_block_the_next_runs(migration, phase) -> None:
    rows = _catalogue(2)
    _insert(migration, rows)
    assert migration.run().success
    target = rows[0]["id"]
    migration.execute("UPDATE products SET price = '99.00' WHERE id = %s", (target,))
    migration.emulator.control.fail_next("POST", "/v1/prices", phase=phase, status=500)

    result = migration.run()
    assert result.success, _checks(result)
    product_id = custom_product_id(target)
    ours = [p for p in _prices(migration) if p["product"] == product_id]
    active = [p for p in ours if p["active"]]
    assert [(p["unit_amount"], p["currency"]) for p in active] == [(9900, "usd")]
    assert _products(migration)[product_id]["default_price"] == active[0]["id"]
    # after_commit: the price the failed request made is adopted, not made a second time
    assert len([p for p in ours if p["unit_amount"] == 9900]) == 1
    generation = _row(migration, target)["price_key_generation"]
    assert generation == (1 if phase == "after_execution" else 0)

    # and the next runs are not blocked by the saved failure: a reprice back and forth works
    migration.execute("UPDATE products SET price = '10.50' WHERE id = %s", (target,))
    assert migration.run().success
    migration.execute("UPDATE products SET price = '99.00' WHERE id = %s", (target,))
    assert migration.run().success
    active = [p for p in _prices(migration) if p["product"] == product_id and p["active"]]
    assert [(p["unit_amount"], p["currency"]) for p in active] == [(9900, "usd")]


# -- 7: edits made while the run is in flight --------------------------------------------------


EDIT_AFTER_CHECKPOINT = """
CREATE FUNCTION test_edit_after_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() = 1 AND NEW.sync_status = 'synced'
       AND OLD.sync_status IS DISTINCT FROM 'synced' THEN
        UPDATE products SET name = name || ' (edited)', price = '77.00'
        WHERE id = NEW.id AND metadata ->> 'size' = '1';
        UPDATE products SET active = false
        WHERE id = NEW.id AND metadata ->> 'size' = '2';
        DELETE FROM products WHERE id = NEW.id AND metadata ->> 'size' = '3';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER test_edit_after_checkpoint AFTER UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION test_edit_after_checkpoint();
"""


def test_edits_made_while_a_run_is_in_flight_are_the_next_runs_work(migration) -> None:
    rows = _catalogue(4)
    _insert(migration, rows)
    # An editor renames, reprices, deactivates and deletes rows right after the run's checkpoint
    # recorded them: deterministic, at the worst moment for the verification.
    migration.execute(EDIT_AFTER_CHECKPOINT)
    try:
        result = migration.run()
    finally:
        migration.execute("DROP TRIGGER test_edit_after_checkpoint ON products")
        migration.execute("DROP FUNCTION test_edit_after_checkpoint()")
    assert result.success, _checks(result)
    verification = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "stripe_matches_cms"
    )
    assert verification.metadata["edited_during_run"].value == 2
    edited = {rows[1]["id"], rows[2]["id"]}
    assert {str(r["id"]) for r in migration.rows() if r["needs_sync"]} == edited

    again = migration.run()
    assert again.success, _checks(again)
    products = _products(migration)
    assert products[custom_product_id(rows[1]["id"])]["name"] == "Product 1 (edited)"
    assert products[custom_product_id(rows[2]["id"])]["active"] is False
    # The row deleted during the first run: its product, created by that run, archived by the next.
    assert rows[3]["id"] not in {str(r["id"]) for r in migration.rows()}
    assert products[custom_product_id(rows[3]["id"])]["active"] is False
    assert _report(again)["archived_deleted"] == 1
    assert not any(r["needs_sync"] for r in migration.rows())


def test_the_verification_compares_an_edited_row_with_what_the_run_sent() -> None:
    from datetime import UTC, datetime, timedelta

    from stripe_migration.catalog.actions import StripeProductState
    from stripe_migration.catalog.checks import edited_during_run, matches_recorded_sync
    from stripe_migration.catalog.hashing import content_hash

    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    sent = {"name": "A", "description": None, "images": [], "metadata": {"cms_id": "x"}}
    row = {
        "updated_at": (start + timedelta(seconds=5)).isoformat(),
        "synced_version": start.isoformat(),
        "sync_content_hash": content_hash({**sent, "active": True}),
        "synced_unit_amount": 1000,
        "synced_currency": "usd",
        "active": True,
    }
    assert edited_during_run(row, start)
    assert not edited_during_run({**row, "synced_version": row["updated_at"]}, start)
    assert not edited_during_run({**row, "updated_at": start.isoformat()}, start)
    state = StripeProductState("prod", "A", None, (), {"cms_id": "x"}, True, "price", 1000, "usd")
    assert matches_recorded_sync(row, state) is None
    # a dashboard edit is still caught
    renamed = StripeProductState("prod", "B", None, (), {"cms_id": "x"}, True, "price", 1000, "usd")
    assert "differs" in (matches_recorded_sync(row, renamed) or "")
    repriced = StripeProductState("prod", "A", None, (), {"cms_id": "x"}, True, "p2", 900, "usd")
    assert "price" in (matches_recorded_sync(row, repriced) or "")


# -- 10: a run whose plan went stale while it waited for the stripe_api pool -------------------


def test_a_stale_plan_is_replanned_after_the_wait_for_the_pool(
    migration, gateway, tmp_path: Path
) -> None:
    rows = _catalogue(5)
    _insert(migration, rows)
    # run A plans (and stops before applying, as if waiting for the pool slot)...
    planned = migration.run("plan_catalog")
    assert planned.success and _plan(planned)["plan_create"] == 5
    # ...while run B, another process with its own step storage, migrates everything
    other = build_definitions(migration.emulator, gateway, tmp_path / "other")
    b = other.get_job_def("migrate_catalog").execute_in_process(
        instance=migration.instance,
        tags={
            "dagster/asset_partition_range_start": "00",
            "dagster/asset_partition_range_end": "15",
        },
        raise_on_error=False,
    )
    assert b.success
    writes = migration.writes()
    # run A gets the slot and applies its plan: nothing is left to do
    a = migration.defs.get_job_def("migrate_catalog").execute_in_process(
        instance=migration.instance,
        tags={
            "dagster/asset_partition_range_start": "00",
            "dagster/asset_partition_range_end": "15",
        },
        asset_selection=[_key("stripe_products"), _key("stripe_prices"), _key("migration_report")],
        raise_on_error=False,
    )
    assert a.success, _checks(a)
    assert migration.writes() == writes, "the stale plan's creates were sent again"
    assert _report(a)["created"] == 0


def _key(name: str):
    import dagster as dg

    return dg.AssetKey(name)


# -- 11: what a reprice costs ------------------------------------------------------------------


def test_a_reprice_costs_three_writes_and_one_read(migration) -> None:
    rows = _catalogue(1)
    _insert(migration, rows)
    assert migration.run().success
    before = migration.emulator.control.stats()["by_endpoint"]
    migration.execute("UPDATE products SET price = '42.00'")
    assert migration.run().success
    after = migration.emulator.control.stats()["by_endpoint"]

    def calls(endpoint: str) -> int:
        return sum(after.get(endpoint, {}).values()) - sum(before.get(endpoint, {}).values())

    writes = {e: calls(e) for e in after if e.startswith("POST") and calls(e)}
    assert writes == {
        "POST /v1/prices": 1,
        "POST /v1/products/{id}": 1,
        "POST /v1/prices/{price}": 1,
    }
    assert calls("GET /v1/prices") == 1
    # README's "what each change costs" table says the same
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| price |")]
    assert row.startswith("| price | 4: 3 writes") and "1 read" in row, row


# -- found by the sequence test: inactive rows without a recorded product ----------------------


def test_an_inactive_row_without_a_recorded_product_is_checked_against_stripe(migration) -> None:
    """A rollback restores "no product recorded" for a product a run created (and archives it);
    the editor then renames the row and deactivates it. The normal run used to plan it
    "inactive and never synced": the row stayed pending forever and Stripe kept the old name."""
    rows = _catalogue(2)
    _insert(migration, rows)
    assert migration.run().success
    target = rows[0]["id"]
    migration.execute(
        "UPDATE products SET stripe_product_id = NULL, stripe_price_id = NULL,"
        " sync_status = 'pending', synced_version = NULL WHERE id = %s",
        (target,),
    )
    migration.execute(
        "UPDATE products SET name = 'Renamed while inactive', active = false WHERE id = %s",
        (target,),
    )
    result = migration.run()
    assert result.success, _checks(result)
    product = _products(migration)[custom_product_id(target)]
    assert (product["name"], product["active"]) == ("Renamed while inactive", False)
    row = _row(migration, target)
    assert row["stripe_product_id"] == custom_product_id(target)
    assert (row["sync_status"], row["needs_sync"]) == ("archived", False)


def test_an_inactive_row_never_in_stripe_leaves_the_scope_until_it_is_reactivated(
    migration,
) -> None:
    rows = _catalogue(2)
    rows[1]["active"] = False
    _insert(migration, rows)
    assert migration.run().success
    row = _row(migration, rows[1]["id"])
    assert (row["sync_status"], row["needs_sync"], row["stripe_product_id"]) == (
        "archived",
        False,
        None,
    )
    assert custom_product_id(rows[1]["id"]) not in _products(migration)
    migration.execute("UPDATE products SET active = true WHERE id = %s", (rows[1]["id"],))
    result = migration.run()
    assert result.success and _report(result)["created"] == 1
    assert _products(migration)[custom_product_id(rows[1]["id"])]["active"] is True


# -- found by the sequence test: a default price set in the dashboard -------------------------


def test_a_cms_reprice_replaces_a_default_price_set_in_the_dashboard(migration) -> None:
    [row] = _catalogue(1)
    _insert(migration, [row])
    assert migration.run().success
    product_id = custom_product_id(row["id"])
    stripe = migration.emulator.client()
    cms_price = _products(migration)[product_id]["default_price"]
    # In the dashboard: a new default price (no cms_id metadata), the CMS's one archived.
    dashboard = stripe.v1.prices.create(
        params={"product": product_id, "unit_amount": 999, "currency": "usd"}
    )
    stripe.v1.products.update(product_id, params={"default_price": dashboard.id})
    stripe.v1.prices.update(cms_price, params={"active": False})

    migration.execute("UPDATE products SET price = '42.00'")
    assert migration.run().success

    product = _products(migration)[product_id]
    active = [p for p in _prices(migration) if p["product"] == product_id and p["active"]]
    assert [p["id"] for p in active] == [product["default_price"]]
    assert active[0]["unit_amount"] == 4200 and active[0]["id"] != dashboard.id
