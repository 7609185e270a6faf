"""``stripe_events_sensor``: launches processing runs while events are pending.

Each tick reads the events a claim would take now (new ones, and failed ones whose retry delay has
passed; dead ones never), cuts them into batches of ``batch_size`` and launches one
``process_stripe_events`` run per batch, as long as fewer than ``max_concurrent_batches`` runs of
that job are queued or running. A batch's run key is a digest of its events and their attempt
counts plus the retry-delay window it was launched in: the same pending state is launched once per
window (Dagster skips a run key it has seen), and the cursor remembers the digests launched in
the last window so a window boundary does not launch it twice either. A run that claimed nothing
(another run was faster) is harmless; it records no batch. A run whose batch failed whole ends
``FAILURE`` (``batch_processed_cleanly``) after recording its attempts: it is no longer in flight,
and its events, their attempt counts changed, make a new digest once their retry delay has passed.
"""

import hashlib
import json
import time
from collections.abc import Sequence

import dagster as dg

from stripe_migration import settings
from stripe_migration.db.dagster_runs import runs_in_flight
from stripe_migration.events.jobs import process_stripe_events
from stripe_migration.events.policy import EventPolicy
from stripe_migration.events.queries import ready_events
from stripe_migration.resources.events_db import EventsDatabaseResource

#: Shortest window for run keys and the cursor, whatever the retry delay.
MIN_WINDOW_S = 60


def batch_digest(events: Sequence[tuple[str, int]]) -> str:
    """A digest of a batch's ``(event_id, attempts)`` pairs: changes when any event is retried."""
    text = "\n".join(f"{event_id}:{attempts}" for event_id, attempts in events)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _load_cursor(cursor: str | None) -> dict[str, float]:
    if not cursor:
        return {}
    try:
        launched = json.loads(cursor).get("launched", {})
    except (ValueError, AttributeError):
        return {}
    return {k: float(v) for k, v in launched.items() if isinstance(v, int | float)}


def in_flight_runs(instance: dg.DagsterInstance) -> int:
    """Processing runs queued or running now."""
    return runs_in_flight(instance, process_stripe_events.name)


@dg.sensor(
    job=process_stripe_events,
    minimum_interval_seconds=settings.sensor_interval_s(
        settings.EVENTS_SENSOR_INTERVAL_ENV, settings.EVENTS_SENSOR_INTERVAL_S
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def stripe_events_sensor(
    context: dg.SensorEvaluationContext,
    events_db: EventsDatabaseResource,
    event_policy: EventPolicy,
) -> dg.SensorResult | dg.SkipReason:
    """Launch a processing run per batch of pending events, at most max_concurrent_batches at once."""
    settings = event_policy
    now = time.time()
    window_s = max(settings.retry_delay_s, MIN_WINDOW_S)
    launched = {k: t for k, t in _load_cursor(context.cursor).items() if now - t < window_s}
    running = in_flight_runs(context.instance)
    slots = settings.max_concurrent_batches - running
    if slots <= 0:
        return dg.SkipReason(
            f"{running} processing runs in flight, the most allowed "
            f"(max_concurrent_batches={settings.max_concurrent_batches})"
        )
    with events_db.connect() as conn:
        ready = ready_events(
            conn,
            settings.max_attempts,
            settings.retry_delay_s,
            limit=settings.batch_size * settings.max_concurrent_batches,
        )
    if not ready:
        return dg.SkipReason("no pending event")
    window = int(now // window_s)
    requests = []
    for start in range(0, len(ready), settings.batch_size):
        if len(requests) == slots:
            break
        batch = ready[start : start + settings.batch_size]
        digest = batch_digest(batch)
        if digest in launched:
            continue
        launched[digest] = now
        requests.append(
            dg.RunRequest(
                run_key=f"{digest}-{window}",
                run_config={
                    "ops": {"stripe_events": {"config": {"batch_size": settings.batch_size}}}
                },
                tags={
                    "stripe_migration/first_event": batch[0][0],
                    "stripe_migration/event_count": str(len(batch)),
                },
            )
        )
    cursor = json.dumps({"launched": launched}, sort_keys=True)
    if not requests:
        return dg.SensorResult(
            skip_reason=f"{len(ready)} pending events, already launched in the last {window_s} s",
            cursor=cursor,
        )
    context.log.info(f"{len(ready)} pending events: launching {len(requests)} runs")
    return dg.SensorResult(run_requests=requests, cursor=cursor)
