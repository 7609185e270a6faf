"""Rollbacks after what happens in real life: editors edit between runs, later runs sync again,
runs come from the asset graph. Real PostgreSQL, the Supabase gateway and the Stripe emulator.

What a rollback must hold to: it undoes what the run did in Stripe and to the sync bookkeeping,
and nothing else. Editors' columns are never written, deleted rows stay deleted, a product a later
run synced again is kept (and said so), and the next migration leaves Stripe equal to the CMS's
current content.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import pytest

from stripe_migration.catalog import rollback as rb
from stripe_migration.catalog.hashing import product_content
from stripe_migration.catalog.schema import validate_products
from stripe_migration.sandbox.sample_data import generate_products, insert_products
from stripe_migration_tests.fixtures.migration import ALL_PARTITIONS

pytestmark = pytest.mark.timeout(300)

#: The columns editors own: a rollback never writes them (updated_at moves with any of them).
EDITOR_COLUMNS = (
    "name",
    "description",
    "price",
    "currency",
    "images",
    "active",
    "metadata",
    "updated_at",
)


def _seed(migration, n: int = 14) -> list[str]:
    insert_products(migration.database_url, generate_products(n, seed=23, bad_fraction=0.0))
    return [str(r["id"]) for r in migration.rows()]


def _rollback(migration, **config: Any) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"rollback_migrations": {"config": config}}} if config else None
    return migration.run("rollback_catalog", run_config=run_config)


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The rollback op's output metadata, as plain values."""
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == "rollback_migrations":
            return {k: getattr(v, "value", v) for k, v in event.step_output_data.metadata.items()}
    raise AssertionError("the rollback op had no output")


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return data.error.message if data.error else ""
    raise AssertionError("the rollback did not fail")


def _editor_view(migration) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): {c: r[c] for c in EDITOR_COLUMNS} for r in migration.rows()}


def _products(migration) -> dict[str, dict]:
    return {p["id"]: p for p in migration.emulator.control.objects("product")}


def _edit(migration, ids: list[str]) -> dict[str, str]:
    """Editors rename, reprice, deactivate and delete one row each."""
    renamed, repriced, deactivated, deleted = ids[:4]
    migration.execute("UPDATE products SET name = 'Renamed by an editor' WHERE id = %s", [renamed])
    migration.execute("UPDATE products SET price = '77.00' WHERE id = %s", [repriced])
    migration.execute("UPDATE products SET active = false WHERE id = %s", [deactivated])
    migration.execute("DELETE FROM products WHERE id = %s", [deleted])
    return {
        "renamed": renamed,
        "repriced": repriced,
        "deactivated": deactivated,
        "deleted": deleted,
    }


def _assert_stripe_matches_cms(migration, deleted: list[str]) -> None:
    """Every active CMS row's Stripe product has the CMS's current content and price; inactive
    rows' products (if any) are archived, and so are deleted rows'; no CMS id has two products."""
    rows = [{**r, "id": str(r["id"])} for r in migration.rows()]
    products = _products(migration)
    prices = {p["id"]: p for p in migration.emulator.control.objects("price")}
    owners = Counter(p["metadata"].get("cms_id") for p in products.values())
    assert max(owners.values()) == 1
    valid = validate_products(rows).valid.to_dict("records")
    assert len(valid) == len(rows)
    by_id = {r["id"]: r for r in rows}
    for product in valid:
        row = by_id[str(product["id"])]
        if not product["active"]:
            # an inactive row: archived in Stripe, or never there ("unchanged" when never synced)
            assert not any(
                p["active"] for p in products.values() if p["metadata"]["cms_id"] == row["id"]
            )
            assert row["stripe_product_id"] is None or row["sync_status"] == "archived", row
            continue
        assert row["sync_status"] == "synced", row
        stripe_product = products[row["stripe_product_id"]]
        assert product_content(stripe_product) == product_content(product), row["id"]
        price = prices[stripe_product["default_price"]]
        assert price["active"]
        assert (price["unit_amount"], price["currency"]) == (
            product["unit_amount"],
            product["currency"],
        ), row["id"]
    for cms_id in deleted:
        assert not any(
            p["active"] for p in products.values() if p["metadata"].get("cms_id") == cms_id
        )


@pytest.mark.slow
def test_rollback_of_an_earlier_run_keeps_editors_work_and_later_runs(migration) -> None:
    ids = _seed(migration)
    first = migration.run()
    assert first.success
    created = {str(r["id"]): r["stripe_product_id"] for r in migration.rows()}
    edits = _edit(migration, ids)
    second = migration.run()
    assert second.success
    # an edit after the second run, to a row only the first run synced
    late = ids[4]
    migration.execute("UPDATE products SET name = 'Renamed after run 2' WHERE id = %s", [late])
    untouched = ids[5:]
    editors = _editor_view(migration)
    by_second = {k: edits[k] for k in ("renamed", "repriced", "deactivated")}
    second_state = {str(r["id"]): r for r in migration.rows()}

    rollback = _rollback(migration, run_id=first.run_id)
    assert rollback.success, _failure(rollback)

    # Nothing editors own was written; the deleted row stays deleted.
    assert _editor_view(migration) == editors
    rows = {str(r["id"]): r for r in migration.rows()}
    assert edits["deleted"] not in rows
    products = _products(migration)
    # Products the second run synced again stay as it left them, and are reported as kept.
    metadata = _metadata(rollback)
    for cms_id in by_second.values():
        assert rows[cms_id]["stripe_product_id"] == created[cms_id]
        assert rows[cms_id]["sync_status"] == second_state[cms_id]["sync_status"]
        assert rows[cms_id]["stripe_price_id"] == second_state[cms_id]["stripe_price_id"]
        assert products[created[cms_id]]["active"] is (cms_id != edits["deactivated"])
        assert (
            f"{cms_id}: product {created[cms_id]} was synced again by run {second.run_id}"
            in metadata["kept"]
        )
    # What only the first run wrote is undone: its products archived, the rows' sync state back
    # to before it (never synced), so they are in scope again.
    for cms_id in [late, *untouched]:
        assert products[created[cms_id]]["active"] is False
        assert rows[cms_id]["stripe_product_id"] is None
        assert rows[cms_id]["sync_status"] == "pending"
        assert rows[cms_id]["needs_sync"] is True
    assert metadata["rows_restored"] == 1 + len(untouched)
    assert metadata["products_archived"] >= 1 + len(untouched)
    assert metadata["rows_kept"] == 4  # three synced again by the second run, one deleted

    # The next migration sends the CMS's current content: Stripe equals the CMS.
    again = migration.run()
    assert again.success
    _assert_stripe_matches_cms(migration, [edits["deleted"]])
    assert _editor_view(migration) == editors


@pytest.mark.slow
def test_rollback_of_every_run_newest_first_keeps_editors_work(migration) -> None:
    ids = _seed(migration)
    assert migration.run().success
    edits = _edit(migration, ids)
    assert migration.run().success
    editors = _editor_view(migration)

    rollback = _rollback(migration)  # no run id: every migration run, newest first
    assert rollback.success, _failure(rollback)
    assert _editor_view(migration) == editors
    rows = migration.rows()
    assert edits["deleted"] not in {str(r["id"]) for r in rows}
    # Both runs undone: no row keeps a Stripe id, no product stays active.
    assert all(r["stripe_product_id"] is None and r["sync_status"] == "pending" for r in rows)
    assert not any(p["active"] for p in _products(migration).values())
    metadata = _metadata(rollback)
    assert metadata["runs"] == 2
    assert metadata["prices_restored"] == 1  # the second run's reprice, switched back

    again = migration.run()
    assert again.success
    _assert_stripe_matches_cms(migration, [edits["deleted"]])
    assert _editor_view(migration) == editors


@pytest.mark.slow
def test_rollback_of_a_run_materialized_from_the_asset_graph(migration) -> None:
    _seed(migration, 8)
    job = migration.defs.resolve_implicit_global_asset_job_def()
    catalog = dg.AssetSelection.groups("catalog").resolve(migration.defs.resolve_asset_graph())
    run = job.execute_in_process(
        instance=migration.instance,
        tags=dict(ALL_PARTITIONS),
        asset_selection=sorted(catalog),
        raise_on_error=False,
    )
    assert run.success
    assert migration.instance.get_run_by_id(run.run_id).job_name == "__ASSET_JOB"
    synced = migration.rows()
    assert all(r["stripe_product_id"] for r in synced)

    # The 8 characters the UI shows name the run (as the Launchpad config).
    rollback = _rollback(migration, run_id=run.run_id[:8])
    assert rollback.success, _failure(rollback)
    assert all(r["stripe_product_id"] is None for r in migration.rows())
    assert not any(p["active"] for p in _products(migration).values())
    metadata = _metadata(rollback)
    assert metadata["run_ids"] == run.run_id
    assert metadata["rows_restored"] == len(synced)
    assert metadata["products_archived"] == len(synced)

    # By its full id too; rolled back already, there is nothing left to undo.
    again = _rollback(migration, run_id=run.run_id)
    assert again.success, _failure(again)
    assert _metadata(again)["rows_restored"] == 0
    # And rolling back everything does not skip it.
    every = _rollback(migration)
    assert every.success, _failure(every)
    assert run.run_id in _metadata(every)["run_ids"].split(",")


@pytest.mark.slow
def test_an_ambiguous_or_unknown_run_id_is_a_clear_error(migration) -> None:
    ids = _seed(migration, 6)
    # Two migration runs whose ids share the 8 characters the UI shows.
    first_id = "abcdef01-0000-4000-8000-000000000001"
    second_id = "abcdef01-0000-4000-8000-000000000002"
    assert migration.run(run_id=first_id).success
    migration.execute("UPDATE products SET name = 'Edited' WHERE id = %s", [ids[0]])
    assert migration.run(run_id=second_id).success
    state = migration.rows()

    ambiguous = _rollback(migration, run_id="abcdef01")
    assert not ambiguous.success
    message = _failure(ambiguous)
    assert "ambiguous" in message
    assert first_id[:8] in message and "migrate_catalog" in message
    assert message.count("rows backed up") == 2

    unknown = _rollback(migration, run_id="ffffffff")
    assert not unknown.success
    assert "no migration run ffffffff" in _failure(unknown)

    dry_run = migration.run("plan_catalog")
    assert dry_run.success
    not_a_migration = _rollback(migration, run_id=dry_run.run_id)
    assert not not_a_migration.success
    assert "plan_catalog run, not a migration run" in _failure(not_a_migration)
    assert migration.rows() == state  # nothing was rolled back

    # The full id is not.
    rollback = _rollback(migration, run_ids=[second_id])
    assert rollback.success, _failure(rollback)
    assert _metadata(rollback)["run_ids"] == second_id


@pytest.mark.slow
def test_a_stripe_failure_leaves_that_row_as_the_run_left_it_and_rolling_back_again_ends_it(
    migration,
) -> None:
    ids = _seed(migration, 5)
    run = migration.run()
    assert run.success
    refused = ids[0]
    product_id = {str(r["id"]): r["stripe_product_id"] for r in migration.rows()}[refused]
    # A 500 saved for the archive's idempotency key: Stripe replays it for that key for 24 hours.
    migration.emulator.control.fail_next(
        "POST", f"/v1/products/{product_id}", phase="after_execution", status=500
    )

    rollback = _rollback(migration, run_id=run.run_id)
    assert not rollback.success
    message = _failure(rollback)
    assert f"{refused}: archiving {product_id} failed" in message
    rows = {str(r["id"]): r for r in migration.rows()}
    # The other rows are rolled back; the refused one is as the run left it, in both systems.
    assert rows[refused]["stripe_product_id"] == product_id
    assert rows[refused]["synced_run_id"] == run.run_id
    assert _products(migration)[product_id]["active"] is True
    assert all(rows[i]["stripe_product_id"] is None for i in ids[1:])

    # Rolling back again uses new keys (not the saved failure) and finishes the row.
    again = _rollback(migration, run_id=run.run_id)
    assert again.success, _failure(again)
    assert _metadata(again)["rows_restored"] == 1
    assert all(r["stripe_product_id"] is None for r in migration.rows())
    assert _products(migration)[product_id]["active"] is False


# ---------------------------------------------------------------------------------------------
# The decision for one backed-up row (pure)

RUN = "run-r"
LATER = "run-x"
CMS_ID = "0b6f5d0e-2f7e-4a4f-9d57-2b1a1f0c0d11"


def _backup(**sync: Any) -> dict[str, Any]:
    row = {
        "id": CMS_ID,
        "name": "Mug",
        "description": "Blue",
        "price": "10.00",
        "currency": "usd",
        "images": [],
        "active": True,
        "metadata": {},
        "synced_run_id": None,
    }
    row.update(sync)
    return row


def _validated(row: dict[str, Any]) -> dict[str, Any]:
    return validate_products([row]).valid.to_dict("records")[0]


def test_a_row_deleted_since_is_never_reinserted_and_its_new_product_archived() -> None:
    tombstone = {"stripe_product_id": "prod_1", "row_data": {"synced_run_id": RUN}}
    undo = rb.plan_row_undo(RUN, _backup(), None, tombstone, _validated(_backup()))
    assert undo.restore is None
    assert undo.archive == "prod_1"
    assert undo.kept.startswith(f"{CMS_ID}: deleted since the run: not re-inserted")

    synced_later = {"stripe_product_id": "prod_1", "row_data": {"synced_run_id": LATER}}
    undo = rb.plan_row_undo(RUN, _backup(), None, synced_later, None)
    assert (undo.restore, undo.archive) == (None, None)
    assert f"product prod_1 was synced again by run {LATER}" in undo.kept

    archived = {**tombstone, "archived_at": "2025-01-01T00:00:00Z", "archived_run_id": LATER}
    undo = rb.plan_row_undo(RUN, _backup(), None, archived, None)
    assert (undo.restore, undo.archive) == (None, None)
    assert f"already archived by run {LATER}" in undo.kept


@pytest.mark.parametrize(
    ("writer", "backup_writer", "kept"),
    [
        (LATER, None, f"{CMS_ID}: product prod_1 was synced again by run {LATER}"),
        (None, "old", f"{CMS_ID}: last synced before schema 1.4.0 (no run recorded): left"),
        ("old", "old", f"{CMS_ID}: not written by this run (or already rolled back)"),
    ],
)
def test_a_row_this_run_did_not_write_last_is_kept(writer, backup_writer, kept) -> None:
    backup = _backup(synced_run_id=backup_writer)
    current = {"stripe_product_id": "prod_1", "stripe_price_id": "price_1", "synced_run_id": writer}
    undo = rb.plan_row_undo(RUN, backup, current, None, _validated(backup))
    assert undo.kept == kept
    assert not undo.stripe_writes and undo.restore is None


def test_a_product_the_run_created_is_archived_and_only_sync_columns_restored() -> None:
    backup = _backup(sync_status="pending")
    current = {"stripe_product_id": "prod_1", "stripe_price_id": "price_1", "synced_run_id": RUN}
    undo = rb.plan_row_undo(RUN, backup, current, None, _validated(backup))
    assert undo.archive == "prod_1" and undo.price is None and undo.content is None
    assert set(undo.restore) == {"id", *rb.RESTORED_COLUMNS}
    assert not set(undo.restore) & set(EDITOR_COLUMNS)
    assert undo.restore["stripe_product_id"] is None


def test_a_price_the_run_put_in_place_is_switched_back() -> None:
    synced = _validated(_backup())["content_hash"]
    backup = _backup(
        stripe_product_id="prod_1", stripe_price_id="price_0", sync_content_hash=synced
    )
    current = {
        "stripe_product_id": "prod_1",
        "stripe_price_id": "price_1",
        "sync_content_hash": synced,
        "synced_run_id": RUN,
        "price_key_generation": 2,
    }
    undo = rb.plan_row_undo(RUN, backup, current, None, _validated(backup))
    assert undo.price == ("prod_1", "price_0", "price_1")
    assert undo.price_key_generation == 2
    assert undo.archive is None and undo.content is None and undo.content_left is None


def test_content_goes_back_only_when_the_backup_row_was_in_sync() -> None:
    in_sync = _backup(stripe_product_id="prod_1", stripe_price_id="price_0")
    in_sync["sync_content_hash"] = _validated(in_sync)["content_hash"]
    current = {
        "stripe_product_id": "prod_1",
        "stripe_price_id": "price_0",
        "sync_content_hash": "what-the-run-sent",
        "synced_run_id": RUN,
        "synced_metadata_keys": ["cms_id", "colour"],
    }
    undo = rb.plan_row_undo(RUN, in_sync, current, None, _validated(in_sync))
    assert undo.content is not None and undo.content[0] == "prod_1"
    assert undo.sent_metadata_keys == ["cms_id", "colour"]
    assert undo.content_left is None

    edited = {**in_sync, "name": "Renamed before the run"}  # its hash no longer matches
    undo = rb.plan_row_undo(RUN, edited, current, None, _validated(edited))
    assert undo.content is None
    assert undo.content_left.startswith(f"{CMS_ID}: content the run sent to prod_1 left")
    assert undo.restore is not None
