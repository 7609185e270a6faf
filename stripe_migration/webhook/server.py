"""Running the receiver: in this process with :func:`serve`, or in a child process with
:func:`start_receiver` (tests and the demo).

Secrets travel through the environment (``STRIPE_WEBHOOK_SECRET``, comma-separated to rotate) and
the database URL through ``DATABASE_URL``, never through the command line, where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

import stripe_migration
from stripe_migration.webhook.app import DEFAULT_MAX_BODY_BYTES, HEALTH_PATH, create_app
from stripe_migration.webhook.signature import parse_secrets

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


@dataclass
class ReceiverProcess:
    """A receiver running in a child process (its own session); stop it with :meth:`stop`."""

    url: str
    pid: int
    log_path: Path
    _process: subprocess.Popen = field(repr=False)

    @property
    def webhook_url(self) -> str:
        """The URL to post Stripe events to."""
        return f"{self.url}/webhooks/stripe"

    def running(self) -> bool:
        """Whether the child process is still alive."""
        return self._process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the receiver (SIGTERM to its process group, SIGKILL after ``timeout_s``).

        Return its exit code. Safe to call twice.
        """
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._process.wait(timeout=timeout_s)
        return self._process.returncode

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's log (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_receiver(
    database_url: str,
    secrets: str | Iterable[str],
    host: str = "127.0.0.1",
    port: int = 0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_path: Path | str | None = None,
    startup_timeout_s: float = 30.0,
) -> ReceiverProcess:
    """Start the receiver in a child process and return once ``/health`` answers 200.

    The listening socket is bound here and handed to the child, so ``port=0`` picks a free port
    without a race. Raise :class:`RuntimeError` (with the child's log) if it does not become healthy
    within ``startup_timeout_s``.
    """
    secret_value = ",".join(parse_secrets(secrets))
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="stripe-webhook-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(1024)
        bound_port = sock.getsockname()[1]
        package_root = str(Path(stripe_migration.__file__).resolve().parents[1])
        env = dict(os.environ)
        env[SECRET_ENV] = secret_value
        env[DATABASE_URL_ENV] = database_url
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        argv = [
            sys.executable,
            "-m",
            "stripe_migration.webhook.server",
            "--fd",
            str(sock.fileno()),
            "--max-body-bytes",
            str(max_body_bytes),
            "--log-level",
            "warning",
        ]
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
    finally:
        sock.close()
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    receiver = ReceiverProcess(
        url=f"http://{url_host}:{bound_port}", pid=process.pid, log_path=log_path, _process=process
    )
    atexit.register(receiver.stop)
    deadline = time.monotonic() + startup_timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not receiver.running():
                raise RuntimeError(
                    f"webhook receiver exited with code {process.returncode} while starting; "
                    f"log:\n{receiver.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(receiver.url + HEALTH_PATH).status_code == 200:
                    return receiver
            if time.monotonic() > deadline:
                receiver.stop()
                raise RuntimeError(
                    f"webhook receiver not healthy after {startup_timeout_s} s; "
                    f"log:\n{receiver.log_tail()}"
                )
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process started by :func:`start_receiver`."""
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
