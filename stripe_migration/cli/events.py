"""`stripe-migration events ...`: the stored Stripe events' queue, and its jobs run by hand.

``status`` and ``reprocess-dead`` read and write ``stripe_events`` directly. ``process``,
``archive`` and ``fill-gaps`` run the jobs the sensor and schedules launch
(``process_stripe_events``, ``archive_stripe_events``, ``fill_stripe_event_gaps``) on the Dagster
instance, like ``migrate``: without the daemon they are how events get processed.
"""

from __future__ import annotations

from typing import Any

import click

from stripe_migration.cli import database_url as _database_url
from stripe_migration.cli import main
from stripe_migration.cli.console import RunConsole
from stripe_migration.cli.errors import EXIT_INTERRUPTED, EXIT_RUN_FAILED, CommandFailed
from stripe_migration.db.urls import redact
from stripe_migration.settings import (
    EVENTS_ARCHIVE_BATCH_SIZE,
    EVENTS_BATCH_SIZE,
    EVENTS_RETENTION_DAYS,
)


@main.group()
def events() -> None:
    """The stored Stripe events: the processing queue, dead events, and the events' jobs
    [env: DATABASE_URL, STRIPE_EVENTS_MAX_ATTEMPTS, STRIPE_EVENTS_RETRY_DELAY_S]."""


def human_duration(seconds: float) -> str:
    """``seconds`` the way people say it: ``42 s``, ``7 min``, ``3 h 5 min``, ``45 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = int(minutes // 60)
    if hours < 48:
        rest = int(minutes - hours * 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{seconds / 86400:.0f} days"


def _connect(url: str):
    import psycopg

    from stripe_migration.db.urls import libpq_url

    try:
        return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to {redact(url)}: {redact(str(exc))}") from None


def _policy():
    from stripe_migration.events.policy import event_policy_from_env

    try:
        return event_policy_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@events.command("status")
def events_status() -> None:
    """Count pending, retrying and dead events, and list the dead ones with their last error."""
    from stripe_migration.events.queries import dead_events, pending_counts

    policy, url = _policy(), _database_url(None)
    with _connect(url) as conn:
        counts = pending_counts(conn, policy.max_attempts, policy.retry_delay_s)
        dead = dead_events(conn, policy.max_attempts, policy.retry_delay_s)
    age = (
        "-" if counts.oldest_pending_age_s is None else human_duration(counts.oldest_pending_age_s)
    )
    click.echo(
        f"new {counts.new}, retrying {counts.retrying} (ready now {counts.ready}), "
        f"dead {counts.dead}; oldest pending {age}"
    )
    for event in dead:
        click.echo(
            f"dead {event.event_id} {event.type} ({event.attempts} attempts): {event.last_error}"
        )


@events.command("reprocess-dead")
@click.option(
    "--event-id",
    "event_ids",
    multiple=True,
    help="A dead event to reprocess (repeat the option); none: every dead event.",
)
def events_reprocess_dead(event_ids: tuple[str, ...]) -> None:
    """Give dead events new attempts, for `events process` or the sensor (with the daemon).

    Their earlier attempts move to the event's metadata ("reprocessed"), kept with it.
    """
    from stripe_migration.events.queries import reprocess_dead_events

    policy, url = _policy(), _database_url(None)
    with _connect(url) as conn:
        reset = reprocess_dead_events(
            conn, policy.max_attempts, policy.retry_delay_s, list(event_ids) or None
        )
    for event_id in reset:
        click.echo(f"reprocessing {event_id}")
    missing = [e for e in event_ids if e not in reset]
    for event_id in missing:
        click.echo(f"not dead, left alone: {event_id}", err=True)
    click.echo(
        f"{len(reset)} dead events will be processed again: by `stripe-migration events "
        "process`, or by stripe_events_sensor when the Dagster daemon runs"
    )
    if missing:
        raise SystemExit(1)


def _optional_int(name: str, minimum: int, help_text: str):
    """An optional whole-number option of at least ``minimum``; absent, the setting decides."""
    return click.option(name, default=None, type=click.IntRange(min=minimum), help=help_text)


#: The check that fails a processing run whose batch failed whole (events/checks.py).
_BATCH_FAILED = "blocking check failed: batch_processed_cleanly "


def _run(job_name: str, run_config: dict[str, Any] | None = None, *, failed_batch_ok: bool = False):
    """Run one of the events' jobs on the instance; a failed run stops the command, except,
    with ``failed_batch_ok``, a processing run that failed only because its batch failed whole
    (the attempts are recorded and the events retried: the command counts them and goes on)."""
    from stripe_migration.cli.runner import (
        dagster_instance,
        load_definitions,
        require_settings,
        run_job,
    )

    require_settings()
    load_definitions()  # a bad setting fails here, naming itself
    with dagster_instance() as instance, RunConsole("WARNING") as console:
        outcome = run_job(instance, job_name, run_config=run_config, console=console)
    batch_failed = not outcome.interrupted and (outcome.reason or "").startswith(_BATCH_FAILED)
    if not outcome.success and not (failed_batch_ok and batch_failed):
        code = EXIT_INTERRUPTED if outcome.interrupted else EXIT_RUN_FAILED
        raise CommandFailed(f"{job_name} failed: {outcome.reason} (run {outcome.run_id})", code)
    return outcome


@events.command("process")
@click.option(
    "--max-batches",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Stop after this many batches (runs) even if events are still ready.",
)
@_optional_int(
    "--batch-size",
    1,
    f"Events per batch [default: STRIPE_EVENTS_BATCH_SIZE or {EVENTS_BATCH_SIZE}].",
)
def events_process(max_batches: int, batch_size: int | None) -> None:
    """Process the events ready now, one process_stripe_events run per batch, until none is
    ready. Exits 1 when an event failed (it is retried later, up to the maximum of attempts)."""
    config = {"ops": {"stripe_events": {"config": {"batch_size": batch_size}}}}
    handled = processed = failed = batches = 0
    for _ in range(max_batches):
        outcome = _run(
            "process_stripe_events", config if batch_size else None, failed_batch_ok=True
        )
        batch = outcome.metadata.get("stripe_events", {})
        if not batch.get("event_count"):
            break
        batches += 1
        handled += int(batch["event_count"])
        processed += int(batch.get("processed", 0))
        failed += int(batch.get("failed", 0))
        click.echo(
            f"{batch.get('batch_id')}: {batch.get('event_count')} events, "
            f"{batch.get('succeeded', 0)} succeeded, {batch.get('ignored', 0)} ignored, "
            f"{batch.get('failed', 0)} failed (run {outcome.run_id})"
        )
        if not batch.get("pending_ready"):
            break
    click.echo(f"{batches} batches, {handled} events: {processed} processed, {failed} failed")
    if failed:
        raise CommandFailed(
            f"{failed} events failed: they are retried after the retry delay; "
            "`stripe-migration events status` lists the dead ones",
            EXIT_RUN_FAILED,
        )


@events.command("archive")
@_optional_int(
    "--retention-days",
    1,
    f"Archive events older than this [default: STRIPE_EVENTS_RETENTION_DAYS or "
    f"{EVENTS_RETENTION_DAYS}].",
)
@_optional_int(
    "--batch-size", 1, f"Events moved per transaction [default: {EVENTS_ARCHIVE_BATCH_SIZE}]."
)
def events_archive(retention_days: int | None, batch_size: int | None) -> None:
    """Move events older than the retention to stripe_events_archive (archive_stripe_events)."""
    config = {
        k: v for k, v in (("retention_days", retention_days), ("batch_size", batch_size)) if v
    }
    outcome = _run(
        "archive_stripe_events",
        {"ops": {"stripe_events_archive": {"config": config}}} if config else None,
    )
    found = outcome.metadata.get("stripe_events_archive", {})
    if found.get("skipped"):
        click.echo("archival is switched off (STRIPE_EVENTS_ARCHIVE_ENABLED=false): nothing moved")
        return
    click.echo(
        f"archived {found.get('archived', 0)} events older than "
        f"{found.get('retention_days')} days; {found.get('remaining', 0)} remain "
        f"(run {outcome.run_id})"
    )


@events.command("fill-gaps")
@_optional_int(
    "--since",
    0,
    "Unix time to list Stripe's events from [default: the newest stored event minus the overlap].",
)
def events_fill_gaps(since: int | None) -> None:
    """Store the events Stripe has and the table lacks (fill_stripe_event_gaps): what the
    receiver missed while it was down. Needs the Stripe key [env: STRIPE_SECRET_KEY]."""
    config = (
        {"ops": {"fill_event_gaps": {"config": {"since": since}}}} if since is not None else None
    )
    outcome = _run("fill_stripe_event_gaps", config)
    stored = outcome.metadata.get("fill_event_gaps", {}).get("stored", 0)
    click.echo(f"stored {stored} events the receiver had missed (run {outcome.run_id})")
