"""Run the gateway under uvicorn: in the foreground (:func:`main`) or as a subprocess.

The subprocess is started, checked and stopped by :mod:`stripe_migration.sandbox._process`.

Secrets travel by environment variable, never by argv, so they do not show in ``ps``:
``SUPABASE_SERVICE_ROLE_KEY`` carries the key and ``SUPABASE_GATEWAY_DATABASE_URL`` (or
``DATABASE_URL``) the database URL when ``--database-url`` is not given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from stripe_migration.sandbox._process import ServerProcess, listening_socket, start_server

KEY_ENV = "SUPABASE_SERVICE_ROLE_KEY"
DATABASE_URL_ENV = "SUPABASE_GATEWAY_DATABASE_URL"


def start_gateway(
    database_url: str,
    service_role_key: str,
    host: str = "127.0.0.1",
    port: int = 0,
    max_rows: int | None = 1000,
    log_path: Path | str | None = None,
    startup_timeout_s: float = 30.0,
) -> ServerProcess:
    """Start the gateway in a subprocess (own session) and return once it answers HTTP.

    ``port=0`` picks a free port; the returned process has the Supabase URL (``http://host:port``;
    clients append ``/rest/v1``). The process outlives the caller unless stopped, so
    ``sandbox down`` can stop it later by pid.
    """
    return start_server(
        "the Supabase gateway",
        "stripe_migration.sandbox.supabase_gateway",
        args=["--max-rows", str(max_rows or 0)],
        env={KEY_ENV: service_role_key, DATABASE_URL_ENV: database_url},
        host=host,
        port=port,
        health_path="/health",
        log_path=log_path,
        startup_timeout_s=startup_timeout_s,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m stripe_migration.sandbox.supabase_gateway",
        description="Local Supabase gateway (PostgREST API) over PostgreSQL. The service role "
        f"key is read from ${KEY_ENV}.",
    )
    parser.add_argument(
        "--database-url",
        help=f"PostgreSQL URL (default: ${DATABASE_URL_ENV} or $DATABASE_URL)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-rows", type=int, default=1000, help="rows per response; 0: no cap")
    parser.add_argument("--fd", type=int, help="an already bound listening socket to serve on")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    key = os.environ.get(KEY_ENV)
    database_url = (
        args.database_url or os.environ.get(DATABASE_URL_ENV) or os.environ.get("DATABASE_URL")
    )
    if not key:
        parser.error(f"set ${KEY_ENV} to the service role key clients must send")
    if not database_url:
        parser.error(f"give --database-url or set ${DATABASE_URL_ENV}")

    from stripe_migration.sandbox.supabase_gateway.app import create_app

    sock = listening_socket(args.fd, args.host, args.port)
    port = sock.getsockname()[1]
    app = create_app(database_url, key, max_rows=args.max_rows or None)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        backlog=2048,
    )
    server = uvicorn.Server(config)
    print(f"supabase gateway listening on http://{args.host}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0 if server.started else 1
