"""Run the gateway under uvicorn: in the foreground (:func:`main`) or as a subprocess.

Secrets travel by environment variable, never by argv, so they do not show in ``ps``:
``SUPABASE_SERVICE_ROLE_KEY`` carries the key and ``SUPABASE_GATEWAY_DATABASE_URL`` (or
``DATABASE_URL``) the database URL when ``--database-url`` is not given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from stripe_migration.db.urls import redact

KEY_ENV = "SUPABASE_SERVICE_ROLE_KEY"
DATABASE_URL_ENV = "SUPABASE_GATEWAY_DATABASE_URL"


@dataclass
class GatewayProcess:
    """A gateway running in its own process group; stop it with :meth:`stop`."""

    url: str
    pid: int
    log_path: Path
    _process: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout_s``)."""
        if self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=timeout_s)

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return redact(path.read_text(errors="replace")[-limit:])
    except OSError:
        return ""


def start_gateway(
    database_url: str,
    service_role_key: str,
    host: str = "127.0.0.1",
    port: int = 0,
    max_rows: int | None = 1000,
    log_path: Path | str | None = None,
    startup_timeout_s: float = 30.0,
) -> GatewayProcess:
    """Start the gateway in a subprocess (own session) and return once it answers HTTP.

    ``port=0`` picks a free port; the returned :class:`GatewayProcess` has the Supabase URL
    (``http://host:port``; clients append ``/rest/v1``). The process outlives the caller unless
    stopped, so ``sandbox down`` can stop it later by pid.
    """
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="supabase_gateway_", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    log_path = Path(log_path)
    ready_dir = Path(tempfile.mkdtemp(prefix="supabase_gateway_ready_"))
    ready_file = ready_dir / "port"
    env = {**os.environ, KEY_ENV: service_role_key, DATABASE_URL_ENV: database_url}
    command = [
        sys.executable,
        "-m",
        "stripe_migration.sandbox.supabase_gateway",
        "--host",
        host,
        "--port",
        str(port),
        "--max-rows",
        str(max_rows or 0),
        "--ready-file",
        str(ready_file),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + startup_timeout_s
    try:
        bound_port = _wait_for_port(process, ready_file, log_path, deadline)
        url_host = f"[{host}]" if ":" in host else host
        gateway = GatewayProcess(f"http://{url_host}:{bound_port}", process.pid, log_path, process)
        _wait_for_health(gateway, deadline)
    except BaseException:
        GatewayProcess("", process.pid, log_path, process).stop()
        raise
    finally:
        with contextlib.suppress(OSError):
            ready_file.unlink()
        with contextlib.suppress(OSError):
            ready_dir.rmdir()
    return gateway


def _wait_for_port(
    process: subprocess.Popen[bytes], ready_file: Path, log_path: Path, deadline: float
) -> int:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"supabase gateway exited with status {process.returncode} while starting; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        with contextlib.suppress(OSError, ValueError):
            return int(ready_file.read_text().strip())
        time.sleep(0.02)
    raise TimeoutError(f"supabase gateway did not start in time; log {log_path}")


def _wait_for_health(gateway: GatewayProcess, deadline: float) -> None:
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not gateway.alive():
                raise RuntimeError(f"supabase gateway exited; log {gateway.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{gateway.url}/health").status_code == 200:
                    return
            time.sleep(0.02)
    raise TimeoutError(f"supabase gateway did not answer in time; log {gateway.log_path}")


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that writes its port to a file once it accepts requests."""

    def __init__(self, config: uvicorn.Config, ready_file: Path | None, port: int) -> None:
        super().__init__(config)
        self._ready_file = ready_file
        self._port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._ready_file is not None:
            partial = self._ready_file.with_suffix(".tmp")
            partial.write_text(str(self._port))
            partial.replace(self._ready_file)  # atomic: the reader never sees half a number


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
    parser.add_argument("--ready-file", type=Path, help="write the bound port here once serving")
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

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    app = create_app(database_url, key, max_rows=args.max_rows or None)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        backlog=2048,
    )
    server = _AnnouncingServer(config, args.ready_file, port)
    if args.ready_file is None:
        print(f"supabase gateway listening on http://{args.host}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0 if server.started else 1
