"""`stripe-migration webhook serve`: the Stripe webhook receiver.

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
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Worker processes sharing the listening socket (default: one per core).",
)
@click.option(
    "--max-queue-depth",
    default=None,
    type=click.IntRange(min=1),
    help="Requests a worker holds before it answers 503 with Retry-After (default: 64).",
)
@click.option(
    "--prepare",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Server-side prepared statements; auto: off when the URL looks like a pooler's "
    "(port 6543, a 'pooler' or 'pgbouncer' host).",
)
def webhook_serve(
    host: str,
    port: int,
    max_body_bytes: int | None,
    log_level: str,
    workers: int | None,
    max_queue_depth: int | None,
    prepare: str,
) -> None:
    """Serve the receiver with uvicorn until interrupted [env: STRIPE_WEBHOOK_SECRET, DATABASE_URL]."""
    from stripe_migration.webhook.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE_DEPTH
    from stripe_migration.webhook.server import SECRET_ENV, serve
    from stripe_migration.webhook.signature import parse_secrets
    from stripe_migration.webhook.workers import default_workers

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
        f"({count} endpoint secret{'s' if count > 1 else ''}, "
        f"{workers or default_workers()} workers)"
    )
    status = serve(
        host,
        port,
        url,
        secrets,
        max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        log_level=log_level,
        workers=workers,
        max_queue_depth=max_queue_depth or DEFAULT_MAX_QUEUE_DEPTH,
        prepare={"auto": None, "on": True, "off": False}[prepare],
    )
    if status:
        raise SystemExit(status)
