"""The catalogue sensor on the sandbox: what each tick launches, run by run, as the daemon would.

Each test ticks the sensor, executes the runs it asks for (with their tags), and ticks again:
new rows, an edit, a deletion and a dashboard drift recorded on a row reach Stripe; a tick with
nothing new launches nothing; the same work is never launched twice.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from stripe_migration.catalog.sensors import (
    BucketWork,
    catalog_sync_sensor,
    plan_runs,
    work_key,
)
from stripe_migration.db.dagster_runs import RUNNER_HOST_TAG, RUNNER_PID_TAG
from stripe_migration.resources.supabase.resource import SupabaseResource
from stripe_migration.sandbox.sample_data import generate_catalog, insert_products
from stripe_migration.settings import catalog_auto_sync

pytestmark = pytest.mark.timeout(240)


class Daemon:
    """Ticks the sensor with its cursor and runs what it requests, as the daemon would."""

    def __init__(self, migration: Any, gateway: Any) -> None:
        self.migration = migration
        self.supabase = SupabaseResource(url=gateway.url, service_role_key=gateway.key)
        self.cursor: str | None = None
        self.launched: list[dict[str, str]] = []

    def tick(self) -> list[dg.RunRequest]:
        """One evaluation; the runs it requests are executed before this returns."""
        with dg.build_sensor_context(
            instance=self.migration.instance,
            cursor=self.cursor,
            resources={"supabase": self.supabase},
        ) as context:
            result = catalog_sync_sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        self.cursor = result.cursor or self.cursor
        for request in result.run_requests or []:
            run = self.migration.run(tags=request.tags)
            assert run.success, request.tags
            self.launched.append(request.tags)
        return list(result.run_requests or [])


def _products(migration: Any) -> dict[str, dict[str, Any]]:
    return {
        p["metadata"]["cms_id"]: p
        for p in migration.emulator.control.objects("product")
        if p.get("metadata", {}).get("cms_id")
    }


@pytest.mark.slow  # six migration runs; the fast tier keeps the unit and in-flight tests
def test_ticks_launch_each_change_once_and_nothing_when_nothing_changed(migration, gateway) -> None:
    daemon = Daemon(migration, gateway)
    assert daemon.tick() == []  # an empty catalogue

    catalog = generate_catalog(40, seed=11, bad_fraction=0.1)
    insert_products(migration.database_url, catalog.rows)
    first = daemon.tick()
    assert len(first) == 1, "new rows in many buckets: one run"
    valid = {str(r["id"]) for r in catalog.rows} - set(catalog.defects)
    assert set(_products(migration)) == valid
    for request in first:
        assert request.run_key.startswith("catalog-")
        start = request.tags["dagster/asset_partition_range_start"]
        assert (
            start == request.tags["dagster/asset_partition_range_end"]
            or start < (request.tags["dagster/asset_partition_range_end"])
        )

    # Nothing new: the invalid rows stay failed without launching anything, tick after tick.
    assert daemon.tick() == [] and daemon.tick() == []
    writes = migration.writes()

    # An edit: one run, for the edited row's bucket only.
    [edited] = sorted(valid)[:1]
    migration.execute("UPDATE products SET name = 'Renamed by an editor' WHERE id = %s", (edited,))
    [run] = daemon.tick()
    bucket = next(r["sync_partition"] for r in migration.rows() if str(r["id"]) == edited)
    assert run.tags["dagster/asset_partition_range_start"] == f"{bucket:02d}"
    assert run.tags["dagster/asset_partition_range_end"] == f"{bucket:02d}"
    assert _products(migration)[edited]["name"] == "Renamed by an editor"
    assert migration.writes() == writes + 1
    assert daemon.tick() == []

    # A deletion: its product is archived.
    [deleted] = sorted(valid)[1:2]
    migration.execute("DELETE FROM products WHERE id = %s", (deleted,))
    assert len(daemon.tick()) == 1
    assert _products(migration)[deleted]["active"] is False
    assert daemon.tick() == []

    # A dashboard edit the webhook handlers recorded as drift on the row: repaired.
    [drifted] = sorted(valid)[2:3]
    product_id = _products(migration)[drifted]["id"]
    migration.emulator.client().v1.products.update(product_id, params={"name": "Dashboard"})
    migration.execute(
        "UPDATE products SET stripe_drift = %s, stripe_drift_at = now() WHERE id = %s",
        (json.dumps({"in_sync": False, "name": "Dashboard"}), drifted),
    )
    assert len(daemon.tick()) == 1
    assert _products(migration)[drifted]["name"] != "Dashboard"
    assert daemon.tick() == []

    # An invalid row fixed by its editor is work again.
    [fixed] = sorted(catalog.defects)[:1]
    migration.execute(
        "UPDATE products SET name = 'Fixed', price = '12.00', currency = 'usd', images = '[]',"
        " description = NULL, metadata = '{}' WHERE id = %s",
        (fixed,),
    )
    assert len(daemon.tick()) == 1
    assert fixed in _products(migration)


def test_a_migration_in_flight_makes_the_sensor_wait(migration, gateway) -> None:
    insert_products(migration.database_url, generate_catalog(5, seed=3, bad_fraction=0.0).rows)
    create_run_for_test(
        migration.instance, job_name="migrate_catalog", status=dg.DagsterRunStatus.STARTED
    )
    with dg.build_sensor_context(
        instance=migration.instance,
        resources={"supabase": SupabaseResource(url=gateway.url, service_role_key=gateway.key)},
    ) as context:
        result = catalog_sync_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "1 migration runs queued or running" in (result.skip_message or "")


def test_one_run_spans_the_buckets_with_work_and_its_key_follows_the_work() -> None:
    work = [
        BucketWork(3, 2, "2026-12-03T10:00:00+00:00", None, 0, None),
        BucketWork(4, 0, None, None, 1, "2026-12-03T10:01:00+00:00"),
        BucketWork(9, 1, "2026-12-03T10:02:00+00:00", None, 0, None),
        BucketWork(12, 0, None, None, 0, None),
    ]
    runs = plan_runs(work)
    assert [(s, e) for s, e, _ in runs] == [("03", "09")]
    assert [w.bucket for w in runs[0][2]] == [3, 4, 9]  # bucket 12 has no work
    edited = BucketWork(3, 2, "2026-12-03T10:05:00+00:00", None, 0, None)
    assert work_key(runs[0][2]) != work_key([edited, work[1], work[2]])
    assert work_key(runs[0][2]) == work_key(list(reversed(runs[0][2])))


@pytest.mark.parametrize(
    ("value", "on"), [(None, False), ("", False), ("true", True), ("1", True), ("off", False)]
)
def test_auto_sync_is_off_unless_asked_for(value: str | None, on: bool) -> None:
    environ = {} if value is None else {"STRIPE_CATALOG_AUTO_SYNC": value}
    assert catalog_auto_sync(environ) is on
    with pytest.raises(ValueError, match="STRIPE_CATALOG_AUTO_SYNC"):
        catalog_auto_sync({"STRIPE_CATALOG_AUTO_SYNC": "maybe"})


def test_a_killed_cli_migration_is_not_waited_for(migration, gateway) -> None:
    insert_products(migration.database_url, generate_catalog(5, seed=3, bad_fraction=0.0).rows)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a `stripe-migration migrate` process that no longer exists
    killed = create_run_for_test(
        migration.instance,
        job_name="migrate_catalog",
        status=dg.DagsterRunStatus.STARTED,
        tags={RUNNER_PID_TAG: str(gone.pid), RUNNER_HOST_TAG: socket.gethostname()},
    )
    with dg.build_sensor_context(
        instance=migration.instance,
        resources={"supabase": SupabaseResource(url=gateway.url, service_role_key=gateway.key)},
    ) as context:
        result = catalog_sync_sensor(context)
    assert migration.instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) >= 1
