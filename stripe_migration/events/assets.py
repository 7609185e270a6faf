"""The webhook events as assets: ``stripe_events`` (processed batch by batch) and its archive.

``stripe_events`` is the table the receiver fills; one materialization is one processing run: it
claims a batch of pending events and runs their handlers, every attempt recorded (see
``processing.py``). Its metadata is the batch and the state of the queue after it, so the UI plots
the queue over time. ``stripe_events_archive`` moves events past the retention, batch by batch.

A batch whose handlers failed is not a clean run: each failed event is a WARNING line in the run's
log, and the ``batch_processed_cleanly`` check (``checks.py``), which runs after the asset in every
processing run, fails with it: WARN when some events failed (the run still succeeds), ERROR when
the batch failed whole (events failed, none processed), which, the check being blocking, fails the
run. The asset step itself succeeds whenever the attempts were recorded: the table did change.
"""

import dagster as dg
from pydantic import Field

from stripe_migration.events.policy import EventPolicy
from stripe_migration.events.processing import BatchResult, archive_events, process_batch
from stripe_migration.events.queries import PendingCounts, claim_batch, pending_counts
from stripe_migration.resources.events_db import EventsDatabaseResource
from stripe_migration.settings import EVENTS_ARCHIVE_BATCH_SIZE

GROUP = "events"
#: Failed events listed in a batch's metadata.
MAX_ERRORS_SHOWN = 50


class ProcessEventsConfig(dg.Config):
    """One processing run (the sensor sets the batch size); empty fields use the event policy."""

    batch_size: int | None = Field(
        default=None, ge=1, description="Events to claim; empty: event_policy's batch_size."
    )
    max_attempts: int | None = Field(
        default=None, ge=1, description="Attempts before an event is dead; empty: event_policy's."
    )
    retry_delay_s: int | None = Field(
        default=None,
        ge=0,
        description="Seconds before a failed event may be tried again; empty: event_policy's.",
    )


class ArchiveConfig(dg.Config):
    """How archival moves its rows."""

    batch_size: int = Field(
        default=EVENTS_ARCHIVE_BATCH_SIZE,
        ge=1,
        description="Events moved per transaction (per call of archive_old_events).",
    )
    retention_days: int | None = Field(
        default=None, ge=1, description="Archive events older than this; empty: event_policy's."
    )


def _queue_metadata(counts: PendingCounts) -> dict[str, float | int]:
    metadata: dict[str, float | int] = {
        "pending_new": counts.new,
        "pending_retrying": counts.retrying,
        "pending_ready": counts.ready,
        "dead": counts.dead,
    }
    if counts.oldest_pending_age_s is not None:
        metadata["oldest_pending_age_s"] = round(counts.oldest_pending_age_s, 1)
    return metadata


def _batch_metadata(result: BatchResult | None) -> dict[str, object]:
    if result is None:
        return {"batch_id": "", "event_count": 0, "processed": 0, "failed": 0}
    metadata: dict[str, object] = {
        "batch_id": result.batch_id,
        "batch_status": result.status,
        "event_count": result.event_count,
        "processed": result.processed,
        "succeeded": result.succeeded,
        "ignored": result.ignored,
        "failed": result.failed,
        "skipped": result.skipped,
        "duration_s": round(result.duration_s, 3),
        "events_per_s": round(result.event_count / result.duration_s, 1)
        if result.duration_s > 0
        else 0.0,
    }
    if result.errors:
        metadata["errors"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {"event_id": e.event_id, "attempt": e.attempt_number, "error": e.error}
                )
                for e in result.errors[:MAX_ERRORS_SHOWN]
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("event_id", "string"),
                    dg.TableColumn("attempt", "int"),
                    dg.TableColumn("error", "string"),
                ]
            ),
        )
    return metadata


@dg.asset(group_name=GROUP, kinds={"postgres", "stripe"})
def stripe_events(
    context: dg.AssetExecutionContext,
    config: ProcessEventsConfig,
    events_db: EventsDatabaseResource,
    event_policy: EventPolicy,
) -> dg.MaterializeResult:
    """The Stripe webhook events the receiver stored, processed: each run claims one batch of
    pending events (not processed, attempts left, last attempt older than the retry delay), runs
    their handlers and records every attempt, its batch and its outcome."""
    batch_size = config.batch_size or event_policy.batch_size
    max_attempts = config.max_attempts or event_policy.max_attempts
    retry_delay_s = (
        event_policy.retry_delay_s if config.retry_delay_s is None else config.retry_delay_s
    )
    result = None
    with events_db.connect() as conn:
        claim = claim_batch(conn, batch_size, max_attempts, retry_delay_s)
        if claim.batch_id is None:
            context.log.info("no pending event to process")
        else:
            result = process_batch(conn, claim.batch_id, claim.events)
            log = context.log.warning if result.failed else context.log.info
            log(
                f"batch {result.batch_id} ({result.status}): {result.event_count} events, "
                f"{result.processed} processed, {result.failed} failed, {result.skipped} skipped "
                f"in {result.duration_s:.2f} s"
            )
            for failed in result.errors[:MAX_ERRORS_SHOWN]:
                context.log.warning(
                    f"{failed.event_id} (attempt {failed.attempt_number} of {max_attempts}): "
                    f"{failed.error}"
                )
        counts = pending_counts(conn, max_attempts, retry_delay_s)
    return dg.MaterializeResult(
        metadata={
            **_batch_metadata(result),
            **_queue_metadata(counts),
            "max_attempts": max_attempts,
            "retry_delay_s": retry_delay_s,
        }
    )


@dg.asset(group_name=GROUP, kinds={"postgres"}, deps=[stripe_events])
def stripe_events_archive(
    context: dg.AssetExecutionContext,
    config: ArchiveConfig,
    events_db: EventsDatabaseResource,
    event_policy: EventPolicy,
) -> dg.MaterializeResult:
    """Events older than the retention, moved out of ``stripe_events`` with their attempt history
    (``processing_history``), oldest first, one transaction per batch until none is left."""
    retention_days = config.retention_days or event_policy.retention_days
    if not event_policy.archive_enabled:
        context.log.info("archival is switched off (archive_enabled=false): nothing moved")
        return dg.MaterializeResult(
            metadata={"skipped": True, "archived": 0, "retention_days": retention_days}
        )
    with events_db.connect() as conn:
        result = archive_events(conn, retention_days, batch_size=config.batch_size)
    context.log.info(
        f"archived {result.archived} events older than {retention_days} days in "
        f"{result.batches} batches ({result.duration_s:.2f} s); {result.remaining} remain"
    )
    metadata: dict[str, object] = {
        "skipped": False,
        "archived": result.archived,
        "batches": result.batches,
        "remaining": result.remaining,
        "retention_days": retention_days,
        "duration_s": round(result.duration_s, 3),
        "longest_batch_s": round(result.longest_batch_s, 3),
    }
    if result.oldest_age_s is not None:
        metadata["oldest_event_age_days"] = round(result.oldest_age_s / 86400, 2)
    return dg.MaterializeResult(metadata=metadata)
