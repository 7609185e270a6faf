"""`stripe-migration webhook ...` (the receiver) and `stripe-migration events ...` (the queue).

The endpoint secret comes from ``STRIPE_WEBHOOK_SECRET`` (comma-separated during a rotation) and
the database from ``DATABASE_URL``, never from options, which ``ps`` would show.
"""

from __future__ import annotations

import os

import click

from stripe_migration.cli import database_url as _database_url
from stripe_migration.cli import main
from stripe_migration.db.urls import redact


@main.group()
def webhook() -> None:
    """The Stripe webhook receiver (POST /webhooks/stripe, GET /health)."""


@webhook.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-body-bytes",
    default=None,
    type=click.IntRange(min=1),
    help="Largest body accepted (default: 1 MiB).",
)
@click.option("--log-level", default="info", show_default=True)
def webhook_serve(host: str, port: int, max_body_bytes: int | None, log_level: str) -> None:
    """Serve the receiver with uvicorn until interrupted [env: STRIPE_WEBHOOK_SECRET, DATABASE_URL]."""
    from stripe_migration.webhook.app import DEFAULT_MAX_BODY_BYTES
    from stripe_migration.webhook.server import SECRET_ENV, serve
    from stripe_migration.webhook.signature import parse_secrets

    url = _database_url(None)
    secrets = os.environ.get(SECRET_ENV, "")
    if not secrets.strip():
        raise click.UsageError(
            f"no endpoint secret: set {SECRET_ENV} to the webhook's signing secret (whsec_...); "
            "several, comma-separated, during a rotation"
        )
    try:
        count = len(parse_secrets(secrets))
    except ValueError as exc:
        raise click.UsageError(f"{SECRET_ENV}: {exc}") from None
    click.echo(
        f"receiving Stripe webhooks on http://{host}:{port}/webhooks/stripe into {redact(url)} "
        f"({count} endpoint secret{'s' if count > 1 else ''})"
    )
    serve(
        host,
        port,
        url,
        secrets,
        max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        log_level=log_level,
    )


@main.group()
def events() -> None:
    """The stored Stripe events: the processing queue and dead events
    [env: DATABASE_URL, STRIPE_EVENTS_MAX_ATTEMPTS, STRIPE_EVENTS_RETRY_DELAY_S]."""


def _connect(url: str):
    import psycopg

    from stripe_migration.db.urls import libpq_url

    try:
        return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to {redact(url)}: {redact(str(exc))}") from None


def _settings():
    from stripe_migration.events.policy import event_policy_from_env

    try:
        return event_policy_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@events.command("status")
def events_status() -> None:
    """Count pending, retrying and dead events, and list the dead ones with their last error."""
    from stripe_migration.events.queries import dead_events, pending_counts

    settings, url = _settings(), _database_url(None)
    with _connect(url) as conn:
        counts = pending_counts(conn, settings.max_attempts, settings.retry_delay_s)
        dead = dead_events(conn, settings.max_attempts, settings.retry_delay_s)
    age = "-" if counts.oldest_pending_age_s is None else f"{counts.oldest_pending_age_s:.0f} s"
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
    """Give dead events new attempts: stripe_events_sensor picks them up on its next tick.

    Their earlier attempts move to the event's metadata ("reprocessed"), kept with it.
    """
    from stripe_migration.events.queries import reprocess_dead_events

    settings, url = _settings(), _database_url(None)
    with _connect(url) as conn:
        reset = reprocess_dead_events(
            conn, settings.max_attempts, settings.retry_delay_s, list(event_ids) or None
        )
    for event_id in reset:
        click.echo(f"reprocessing {event_id}")
    missing = [e for e in event_ids if e not in reset]
    for event_id in missing:
        click.echo(f"not dead, left alone: {event_id}", err=True)
    click.echo(f"{len(reset)} dead events will be processed again")
    if missing:
        raise SystemExit(1)
