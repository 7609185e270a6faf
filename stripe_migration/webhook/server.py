"""Running the receiver with uvicorn: :func:`serve` (``stripe-migration webhook serve``), and
:func:`main`, the entry point of a child process serving on a socket it was handed (``--fd``).

Both run ``workers`` processes (default: one per core) on one listening socket
(:mod:`stripe_migration.webhook.workers`); with one worker, uvicorn runs in this process.

Secrets travel through the environment (``STRIPE_WEBHOOK_SECRET``, comma-separated to rotate) and
the database URL through ``DATABASE_URL``, never through the command line, where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import uvicorn

from stripe_migration.webhook.app import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_QUEUE_DEPTH,
    create_app,
)
from stripe_migration.webhook.group_commit import DEFAULT_WINDOW_S
from stripe_migration.webhook.workers import bind_socket, default_workers, run_workers

SECRET_ENV = "STRIPE_WEBHOOK_SECRET"
DATABASE_URL_ENV = "DATABASE_URL"


def _server(
    database_url: str,
    secrets: str | Iterable[str],
    host: str,
    port: int,
    log_level: str,
    access_log: bool,
    app_options: Mapping[str, Any],
) -> uvicorn.Server:
    app = create_app(database_url, secrets, **app_options)
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


def _run(
    sock: socket.socket | None,
    workers: int | None,
    make_server: Callable[[], uvicorn.Server],
    host: str,
    port: int,
) -> int:
    """Serve with ``workers`` processes (None: one per core) on ``sock`` (None: bind host:port)."""
    count = default_workers() if workers is None else workers
    if count < 1:
        raise ValueError(f"workers must be at least 1, got {count}")
    if count == 1:
        server = make_server()
        server.run(sockets=None if sock is None else [sock])
        return 0
    sock = sock if sock is not None else bind_socket(host, port)
    with sock:
        return run_workers(sock, count, lambda s: make_server().run(sockets=[s]))


def serve(
    host: str,
    port: int,
    database_url: str,
    secrets: str | Iterable[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
    access_log: bool = False,
    workers: int | None = None,
    max_queue_depth: int = DEFAULT_MAX_QUEUE_DEPTH,
    prepare: bool | None = None,
) -> int:
    """Serve the receiver on ``host:port`` with uvicorn until interrupted (SIGINT/SIGTERM); return
    an exit status.

    ``workers`` processes share the listening socket (None: one per core); each sheds past
    ``max_queue_depth`` requests waiting (see :func:`~stripe_migration.webhook.app.create_app`, as
    for ``prepare``). Access logs are off by default: at webhook rates they cost more than they
    tell; refusals and database errors are logged by the app.
    """
    options = {
        "max_body_bytes": max_body_bytes,
        "max_queue_depth": max_queue_depth,
        "prepare": prepare,
    }
    return _run(
        None,
        workers,
        lambda: _server(database_url, secrets, host, port, log_level, access_log, options),
        host,
        port,
    )


_PREPARE = {"auto": None, "on": True, "off": False}


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
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core)"
    )
    parser.add_argument("--max-queue-depth", type=int, default=DEFAULT_MAX_QUEUE_DEPTH)
    parser.add_argument("--group-commit-ms", type=float, default=DEFAULT_WINDOW_S * 1000)
    parser.add_argument(
        "--no-group-commit", action="store_true", help="one transaction per request"
    )
    parser.add_argument("--prepare", choices=sorted(_PREPARE), default="auto")
    args = parser.parse_args(argv)
    database_url = os.environ.get(DATABASE_URL_ENV)
    if not database_url:
        parser.error(f"{DATABASE_URL_ENV} is not set")
    secrets = os.environ.get(SECRET_ENV, "")
    if not secrets.strip():
        parser.error(f"{SECRET_ENV} is not set")
    options = {
        "max_body_bytes": args.max_body_bytes,
        "max_queue_depth": args.max_queue_depth,
        "group_commit_window_s": args.group_commit_ms / 1000,
        "group_commit": not args.no_group_commit,
        "prepare": _PREPARE[args.prepare],
    }
    sock = None if args.fd is None else socket.socket(fileno=args.fd)
    status = _run(
        sock,
        args.workers,
        lambda: _server(
            database_url, secrets, args.host, args.port, args.log_level, False, options
        ),
        args.host,
        args.port,
    )
    sys.exit(status)


if __name__ == "__main__":
    main()
