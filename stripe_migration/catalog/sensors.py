"""``catalog_sync_sensor``: continuous sync, a migration run for the buckets whose rows changed.

Each tick asks the database one question, ``catalog_pending_work()`` (schema 1.5.0): per bucket,
the rows a run would look at (``products.needs_sync``: new, edited, failed, drifted in Stripe as
the webhook handlers record it, or left marked by a killed run) and the deleted rows whose Stripe
product is still active, with the newest edit, drift and deletion among them. No Stripe call.

The buckets with work become one ``migrate_catalog`` run over their span (first to last); it
shares the ``stripe_api`` pool with every other run. A run's key is a digest of its buckets' work
(counts and newest times), so the same work is launched once (Dagster skips a run key a sensor
has used, and the cursor remembers the keys launched, so a tick says so), and any new edit,
drift or deletion makes a new key. Rows that stay in scope without changing (a row invalid in the
CMS, a row Stripe refused) therefore launch nothing until someone edits them. While a migration
run is queued or running, the sensor waits: that run may take the work, and what it leaves is the
next tick's (a CLI run whose process was killed is marked failed first, so it is not waited for).

It runs only when turned on: in the UI (Automation), or by default when
``STRIPE_CATALOG_AUTO_SYNC=true`` (``sandbox up`` and the demo set it): every run it launches
writes to the Stripe account the key opens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from stripe_migration import settings
from stripe_migration.catalog.jobs import migrate_catalog
from stripe_migration.catalog.partitions import partition_tags
from stripe_migration.db.dagster_runs import fail_dead_runs, runs_in_flight
from stripe_migration.resources.supabase.resource import SupabaseResource

#: Run keys the cursor remembers (the newest), enough for every bucket several times over.
REMEMBERED_KEYS = 200
#: Run tag naming what a sensor run was launched for.
WORK_TAG = "stripe_migration/pending_work"


@dataclass(frozen=True)
class BucketWork:
    """The work one bucket holds: rows in scope and deleted rows to archive, with the newest
    edit, drift and deletion among them (ISO times, or None)."""

    bucket: int
    rows: int
    newest_edit: str | None
    newest_drift: str | None
    deletions: int
    newest_deletion: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BucketWork:
        """One row of ``catalog_pending_work()``."""
        return cls(
            bucket=int(row["sync_partition"]),
            rows=int(row["rows_pending"]),
            newest_edit=row.get("newest_edit"),
            newest_drift=row.get("newest_drift"),
            deletions=int(row["deletions_pending"]),
            newest_deletion=row.get("newest_deletion"),
        )

    def describe(self) -> str:
        """For people: ``03: 12 rows, 1 deletion``."""
        parts = [f"{self.rows} rows"] if self.rows else []
        parts += [f"{self.deletions} deletions"] if self.deletions else []
        return f"{self.bucket:02d}: {', '.join(parts)}"


def work_key(work: Sequence[BucketWork]) -> str:
    """The run key of a run over ``work``: changes whenever any of its buckets' work changes."""
    text = json.dumps([vars(w) for w in sorted(work, key=lambda w: w.bucket)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def plan_runs(work: Iterable[BucketWork]) -> list[tuple[str, str, list[BucketWork]]]:
    """The run that takes ``work``: one over the span from the first to the last bucket holding
    some, as (start, end, the buckets' work); none when no bucket has work.

    One run, not one per contiguous range: each run pays its fixed cost (a process, loading the
    definitions, ~8 s) and the runs take the ``stripe_api`` pool one after another, so five
    scattered edits would wait for five runs. A bucket of the span without work costs the run
    only its partition's events: the run reads the rows in scope, none there."""
    busy = sorted((w for w in work if w.rows or w.deletions), key=lambda w: w.bucket)
    if not busy:
        return []
    start, end = busy[0].bucket, busy[-1].bucket
    return [(f"{start:02d}", f"{end:02d}", busy)]


def _remembered(cursor: str | None) -> list[str]:
    try:
        keys = json.loads(cursor or "{}").get("launched", [])
    except (ValueError, AttributeError):
        return []
    return [k for k in keys if isinstance(k, str)]


@dg.sensor(
    job=migrate_catalog,
    minimum_interval_seconds=settings.sensor_interval_s(
        settings.CATALOG_SENSOR_INTERVAL_ENV, settings.CATALOG_SENSOR_INTERVAL_S
    ),
    default_status=dg.DefaultSensorStatus.RUNNING
    if settings.catalog_auto_sync()
    else dg.DefaultSensorStatus.STOPPED,
    description="Continuous sync: launch migrate_catalog for the buckets whose rows were edited, "
    "added, deleted or drifted in Stripe (one database query a tick, no Stripe call).",
)
def catalog_sync_sensor(
    context: dg.SensorEvaluationContext, supabase: SupabaseResource
) -> dg.SensorResult | dg.SkipReason:
    """Launch a migration run over the buckets with new work (see the module)."""
    # A `stripe-migration migrate` killed on this host stays STARTED (nothing monitors CLI runs):
    # mark it failed, as the next CLI run would, or the sensor would wait for it forever.
    for dead in fail_dead_runs(context.instance):
        context.log.info(f"marked run {dead} failed: its process is gone")
    running = runs_in_flight(context.instance, migrate_catalog.name)
    if running:
        return dg.SkipReason(f"{running} migration runs queued or running: waiting for them")
    rows = supabase.get_client().rpc("catalog_pending_work") or []
    runs = plan_runs(BucketWork.from_row(row) for row in rows)
    if not runs:
        return dg.SkipReason("nothing to sync")
    launched = _remembered(context.cursor)
    requests = []
    for start, end, work in runs:
        key = f"catalog-{start}-{end}-{work_key(work)}"
        if key in launched:
            continue
        launched.append(key)
        requests.append(
            dg.RunRequest(
                run_key=key,
                tags={
                    **partition_tags(start, end),
                    WORK_TAG: "; ".join(w.describe() for w in work)[:1000],
                },
            )
        )
    cursor = json.dumps({"launched": launched[-REMEMBERED_KEYS:]})
    if not requests:
        return dg.SensorResult(
            skip_reason=f"the pending work of buckets {', '.join(f'{s}..{e}' for s, e, _ in runs)}"
            " was launched already (unchanged since)",
            cursor=cursor,
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor)
