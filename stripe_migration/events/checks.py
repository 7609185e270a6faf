"""Checks on the webhook events: dead events (every attempt used, none succeeded) show up here."""

import dagster as dg

from stripe_migration.events.assets import stripe_events
from stripe_migration.events.policy import EventPolicy
from stripe_migration.events.queries import dead_events, pending_counts
from stripe_migration.resources.events_db import EventsDatabaseResource

#: Dead events listed in the check's table (the count covers all of them).
MAX_DEAD_SHOWN = 100


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
