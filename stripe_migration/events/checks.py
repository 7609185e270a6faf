"""Checks on the webhook events: whether a run's batch was processed cleanly, and dead events.

``batch_processed_cleanly`` makes a processing run whose handlers failed visibly not clean: a
failed WARN check when some events of its batch failed, a failed run when all did. It is a
blocking check of its own, run after the asset, rather than a check inside the asset or an
exception in the asset step: a failing ``stripe_events`` step would skip ``no_dead_events`` in the
very run in which events use their last attempt, and the asset step did its job (every attempt is
recorded). It reads the batch from the run's materialization metadata, as Dagster's own
``build_metadata_bounds_checks`` do, but that run's, not the latest: batches run concurrently.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from stripe_migration.events.assets import stripe_events
from stripe_migration.events.policy import EventPolicy
from stripe_migration.events.queries import dead_events, pending_counts
from stripe_migration.resources.events_db import EventsDatabaseResource

#: Dead events listed in the check's table (the count covers all of them).
MAX_DEAD_SHOWN = 100
#: Newest ``stripe_events`` materializations searched for the checked run's own, in pages: runs
#: in flight at once are capped at ``max_concurrent_batches`` (5 by default).
MATERIALIZATIONS_SEARCHED = 100
MATERIALIZATIONS_PAGE = 10
#: Characters of the first error quoted in the check's description (the table has it whole).
FIRST_ERROR_CHARS = 300


def _batch_metadata(context: dg.AssetCheckExecutionContext) -> dict[str, Any] | None:
    """The metadata of the ``stripe_events`` materialization of the checked run (of the latest one
    when the run materialized none: the check was launched alone), as plain values."""
    instance = context.instance
    run_id = context.run.run_id
    cursor = None
    found = None
    for _ in range(MATERIALIZATIONS_SEARCHED // MATERIALIZATIONS_PAGE):
        page = instance.fetch_materializations(
            stripe_events.key, limit=MATERIALIZATIONS_PAGE, cursor=cursor
        )
        found = next((r.asset_materialization for r in page.records if r.run_id == run_id), None)
        if found is not None or not page.has_more:
            break
        cursor = page.cursor
    if found is None:
        latest = instance.get_latest_materialization_event(stripe_events.key)
        found = latest.asset_materialization if latest is not None else None
    if found is None:
        return None
    return {k: getattr(v, "value", v) for k, v in found.metadata.items()}


def batch_outcome(metadata: Mapping[str, Any] | None) -> dg.AssetCheckResult:
    """The check's verdict on a batch from its materialization's metadata (see
    :func:`batch_processed_cleanly`)."""
    if metadata is None:
        return dg.AssetCheckResult(passed=True, description="stripe_events has no batch yet")
    count = int(metadata.get("event_count") or 0)
    failed = int(metadata.get("failed") or 0)
    batch_id = metadata.get("batch_id") or ""
    summary: dict[str, Any] = {
        "batch_id": dg.MetadataValue.text(batch_id),
        "event_count": count,
        "processed": int(metadata.get("processed") or 0),
        "failed": failed,
    }
    if failed == 0:
        said = f"batch {batch_id}: no event failed" if count else "no event was pending"
        return dg.AssetCheckResult(passed=True, description=said, metadata=summary)
    whole = metadata.get("batch_status") == "failed"
    errors = metadata.get("errors")
    records = list(getattr(errors, "records", None) or [])
    first = ""
    if records:
        data = records[0].data
        error = str(data.get("error", ""))
        if len(error) > FIRST_ERROR_CHARS:
            error = error[: FIRST_ERROR_CHARS - 1] + "…"
        first = f"; first: {data.get('event_id')}: {error}"
    retry = (
        f"; failed events are retried after {metadata['retry_delay_s']} s, up to "
        f"{metadata['max_attempts']} attempts"
        if "retry_delay_s" in metadata and "max_attempts" in metadata
        else ""
    )
    if not whole:
        what = f"{failed} of {count} events of batch {batch_id} failed"
    elif failed == count:
        events = f"all {count} events" if count > 1 else "the one event"
        what = f"{events} of batch {batch_id} failed"
    else:
        what = f"{failed} of {count} events of batch {batch_id} failed, none processed"
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR if whole else dg.AssetCheckSeverity.WARN,
        description=f"{what}{first}{retry}",
        metadata={**summary, **({"failed_events": errors} if records else {})},
    )


@dg.asset_check(asset=stripe_events, blocking=True)
def batch_processed_cleanly(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Fails when handlers failed in the run's batch, listing the events and their errors: WARN
    when some failed (the run succeeds; they are retried after the retry delay), ERROR when the
    batch failed whole (events failed and none was processed), which fails the run. Judged on the
    run's own ``stripe_events`` materialization, after it: the asset step has recorded every
    attempt by then, and ``no_dead_events`` still runs beside this check."""
    return batch_outcome(_batch_metadata(context))


@dg.asset_check(asset=stripe_events, blocking=False)
def no_dead_events(
    events_db: EventsDatabaseResource, event_policy: EventPolicy
) -> dg.AssetCheckResult:
    """Warns when events used all their attempts without success; lists them with their last
    error. ``stripe-migration events reprocess-dead`` gives them new attempts."""
    settings = event_policy
    with events_db.connect() as conn:
        counts = pending_counts(conn, settings.max_attempts, settings.retry_delay_s)
        dead = dead_events(conn, settings.max_attempts, settings.retry_delay_s, MAX_DEAD_SHOWN)
    table = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "event_id": e.event_id,
                    "type": e.type,
                    "created_at": e.created_at.isoformat(timespec="seconds"),
                    "attempts": e.attempts,
                    "last_attempt_at": e.last_attempt_at.isoformat(timespec="seconds")
                    if e.last_attempt_at
                    else "",
                    "last_error": e.last_error or "",
                }
            )
            for e in dead
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("event_id", "string"),
                dg.TableColumn("type", "string"),
                dg.TableColumn("created_at", "string"),
                dg.TableColumn("attempts", "int"),
                dg.TableColumn("last_attempt_at", "string"),
                dg.TableColumn("last_error", "string"),
            ]
        ),
    )
    return dg.AssetCheckResult(
        passed=counts.dead == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if counts.dead == 0
        else f"{counts.dead} events gave up after {settings.max_attempts} attempts",
        metadata={
            "dead_events": counts.dead,
            "max_attempts": settings.max_attempts,
            "events": table,
        },
    )
