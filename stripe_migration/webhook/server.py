"""Running the receiver with uvicorn: :func:`serve` (``stripe-migration webhook serve``), and
:func:`main`, the entry point of a child process serving on a socket it was handed (``--fd``).

Secrets travel through the environment (``STRIPE_WEBHOOK_SECRET``, comma-separated to rotate) and
the database URL through ``DATABASE_URL``, never through the command line, where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Iterable

import uvicorn

from stripe_migration.webhook.app import DEFAULT_MAX_BODY_BYTES, create_app

SECRET_ENV = "STRIPE_WEBHOOK_SECRET"
DATABASE_URL_ENV = "DATABASE_URL"


def _server(
    database_url: str,
    secrets: str | Iterable[str],
    host: str,
    port: int,
    max_body_bytes: int,
    log_level: str,
    access_log: bool,
) -> uvicorn.Server:
    app = create_app(database_url, secrets, max_body_bytes=max_body_bytes)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    return uvicorn.Server(config)


def serve(
    host: str,
    port: int,
    database_url: str,
    secrets: str | Iterable[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the receiver on ``host:port`` with uvicorn until interrupted (SIGINT/SIGTERM).

    Access logs are off by default: at webhook rates they cost more than they tell; refusals and
    database errors are logged by the app.
    """
    _server(database_url, secrets, host, port, max_body_bytes, log_level, access_log).run()


def main(argv: list[str] | None = None) -> None:
    """Entry point of a child process (``python -m stripe_migration.webhook.server``)."""
    parser = argparse.ArgumentParser(
        description="Stripe webhook receiver (secrets from the environment)"
    )
    parser.add_argument("--fd", type=int, help="an already bound listening socket to serve on")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    database_url = os.environ.get(DATABASE_URL_ENV)
    if not database_url:
        parser.error(f"{DATABASE_URL_ENV} is not set")
    secrets = os.environ.get(SECRET_ENV, "")
    if not secrets.strip():
        parser.error(f"{SECRET_ENV} is not set")
    server = _server(
        database_url, secrets, args.host, args.port, args.max_body_bytes, args.log_level, False
    )
    if args.fd is None:
        server.run()
    else:
        server.run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
