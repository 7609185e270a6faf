"""Run a local server in a child process: bind its socket, start it, wait until it answers, stop it.

The Stripe emulator, the Supabase gateway and (in the tests) the webhook receiver all start the
same way. The parent binds the listening socket (``port=0`` picks a free port, with no race) and
hands it to the child as ``--fd N``; the child runs in its own session, so stopping its process
group stops everything it started; secrets travel in the child's environment, never on its
command line. The server is ready when ``GET <url><health_path>`` answers 200. A child that exits
or does not answer in time raises :class:`ServerStartError` with the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from stripe_migration.db.urls import redact
from stripe_migration.processes import process_exists


class ServerStartError(RuntimeError):
    """A server exited, or did not answer its health check, while starting."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    # A child of ours that exited stays a zombie (and answers kill 0) until it is reaped.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return process_exists(pid)


def stop_process_group(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL after ``timeout_s``; reap it if it
    is our child. Safe when it is already gone."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if not pid_alive(pid):
            break


@dataclass
class ServerProcess:
    """A server running in a child process (its own session); stop it with :meth:`stop`."""

    url: str
    pid: int
    log_path: Path
    _popen: subprocess.Popen[bytes] = field(repr=False)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout_s``) and return
        its exit status. Safe to call twice."""
        if self._popen.poll() is None:
            stop_process_group(self.pid, timeout_s)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=timeout_s)
        return self._popen.returncode

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (stdout and stderr), URL passwords redacted."""
        try:
            return redact(self.log_path.read_text(errors="replace")[-chars:])
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


P = TypeVar("P", bound=ServerProcess)


def listening_socket(fd: int | None, host: str, port: int) -> socket.socket:
    """In the child: the socket handed over as ``--fd``, or else a new one bound to ``host:port``."""
    if fd is not None:
        return socket.socket(fileno=fd)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def start_server(
    name: str,
    module: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    health_path: str,
    log_path: Path | str | None = None,
    startup_timeout_s: float = 30.0,
    process_type: type[P] = ServerProcess,  # type: ignore[assignment]
    **fields: Any,
) -> P:
    """Run ``python -m <module> --fd N <args>`` on a socket bound to ``host:port`` and return once
    ``health_path`` answers 200, as a ``process_type`` (with ``fields``, its own fields).

    ``env`` is added to this process's environment for the child. Its output goes to ``log_path``
    (a new temporary file if None). ``name`` names the server in errors.
    """
    if log_path is None:
        handle, temp_name = tempfile.mkstemp(prefix=f"{name.replace(' ', '-')}-", suffix=".log")
        os.close(handle)
        log_path = temp_name
    log_path = Path(log_path)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        bound_port = sock.getsockname()[1]
        command = [sys.executable, "-m", module, "--fd", str(sock.fileno()), *args]
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                command,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
    finally:
        sock.close()
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    server = process_type(f"http://{url_host}:{bound_port}", popen.pid, log_path, popen, **fields)
    try:
        _wait_until_healthy(name, server, health_path, time.monotonic() + startup_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_healthy(
    name: str, server: ServerProcess, health_path: str, deadline: float
) -> None:
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            if not server.alive():
                raise ServerStartError(
                    f"{name} exited with status {server._popen.returncode} while starting; "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.url + health_path).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{name} did not answer in time; log {server.log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.02)
