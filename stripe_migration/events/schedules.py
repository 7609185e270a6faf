"""The events' schedules: archival once a day, gap filling every hour (times in UTC)."""

import dagster as dg

from stripe_migration.events.jobs import archive_stripe_events, fill_stripe_event_gaps
from stripe_migration.events.policy import EventPolicy
from stripe_migration.scheduling import SCHEDULE_DEFAULTS, running_schedule

#: 03:30 UTC, away from midnight when other daily jobs tend to start.
ARCHIVE_CRON = "30 3 * * *"
#: Minute 20 of every hour; the gap fill overlaps the previous hour (see gap_fill.py).
GAP_FILL_CRON = "20 * * * *"


@dg.schedule(job=archive_stripe_events, cron_schedule=ARCHIVE_CRON, **SCHEDULE_DEFAULTS)
def stripe_events_archive_daily(
    context: dg.ScheduleEvaluationContext, event_policy: EventPolicy
) -> dg.RunRequest | dg.SkipReason:
    """Materialize stripe_events_archive once a day, unless archive_enabled is off."""
    if not event_policy.archive_enabled:
        return dg.SkipReason("archival is switched off (STRIPE_EVENTS_ARCHIVE_ENABLED=false)")
    return dg.RunRequest()


stripe_event_gaps_hourly = running_schedule(
    "stripe_event_gaps_hourly",
    fill_stripe_event_gaps,
    GAP_FILL_CRON,
    "Store events Stripe has that the receiver missed, every hour.",
)
