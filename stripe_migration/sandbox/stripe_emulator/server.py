"""Run the emulator: in a subprocess (:func:`start_emulator`) or in the foreground (:func:`main`).

``python -m stripe_migration.sandbox.stripe_emulator --port 12111`` serves in the foreground.
Secrets never go on the command line (other users can read it): keys come from the environment
(``STRIPE_EMULATOR_SECRET_KEYS``, comma-separated, and ``STRIPE_EMULATOR_WEBHOOK_SECRET``), from a
JSON ``--config-file``, or from ``STRIPE_EMULATOR_CONFIG`` (JSON; used by :func:`start_emulator`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .config import EmulatorConfig

_CONFIG_ENV = "STRIPE_EMULATOR_CONFIG"


@dataclass
class EmulatorProcess:
    """A running emulator subprocess (in its own session, so it can be stopped as a group)."""

    url: str
    pid: int
    config: EmulatorConfig
    log_path: Path | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def secret_key(self) -> str:
        """The first configured secret key."""
        return self.config.secret_keys[0]

    def alive(self) -> bool:
        """Whether the process is still running."""
        if self._popen is not None:
            return self._popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the emulator (SIGTERM, then SIGKILL after ``timeout_s``) and reap it."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.05)
            if not self.alive():
                break
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1.0)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    startup_timeout_s: float = 30.0,
    log_path: str | Path | None = None,
    **config: Any,
) -> EmulatorProcess:
    """Start an emulator subprocess on ``host:port`` (0 = a free port) and wait until it answers.

    ``config`` holds :class:`EmulatorConfig` settings (checked here, before anything starts). The
    server's output goes to ``log_path`` (discarded if None).
    """
    cfg = EmulatorConfig.from_mapping(config)
    workdir = Path(tempfile.mkdtemp(prefix="stripe-emulator-"))
    ready_file = workdir / "ready.json"
    env = {**os.environ, _CONFIG_ENV: json.dumps(cfg.to_dict())}
    command = [
        sys.executable,
        "-m",
        "stripe_migration.sandbox.stripe_emulator",
        "--host",
        host,
        "--port",
        str(port),
        "--ready-file",
        str(ready_file),
    ]
    log_file = Path(log_path) if log_path else None
    with open(log_file or os.devnull, "ab") as out:
        popen = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = EmulatorProcess(url="", pid=popen.pid, config=cfg, log_path=log_file, _popen=popen)
    deadline = time.monotonic() + startup_timeout_s
    try:
        while not ready_file.exists():
            if popen.poll() is not None:
                raise RuntimeError(
                    f"the Stripe emulator exited with status {popen.returncode} while starting"
                    + (f"; see {log_file}" if log_file else "")
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Stripe emulator did not start in {startup_timeout_s} s")
            time.sleep(0.02)
        process.url = json.loads(ready_file.read_text())["url"]
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                try:
                    if client.get(f"{process.url}/_emulator/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the Stripe emulator at {process.url} did not answer")
                time.sleep(0.02)
    except BaseException:
        process.stop()
        raise
    finally:
        ready_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            workdir.rmdir()
    return process


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_migration.sandbox.stripe_emulator",
        description="Run the local Stripe API emulator in the foreground.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--config-file", type=Path, help="JSON object of EmulatorConfig settings")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="one setting, value in JSON (e.g. --set latency_ms=100 --set global_rate_per_s=null)",
    )
    parser.add_argument("--ready-file", type=Path, help="write {'url': ...} here once listening")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def _config_from(args: argparse.Namespace) -> EmulatorConfig:
    values: dict[str, Any] = {}
    raw = os.environ.pop(_CONFIG_ENV, None)
    if raw:
        values.update(json.loads(raw))
    if args.config_file:
        values.update(json.loads(args.config_file.read_text()))
    keys = os.environ.get("STRIPE_EMULATOR_SECRET_KEYS")
    if keys:
        values["secret_keys"] = [k.strip() for k in keys.split(",") if k.strip()]
    webhook_secret = os.environ.get("STRIPE_EMULATOR_WEBHOOK_SECRET")
    if webhook_secret:
        values["webhook_secret"] = webhook_secret
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected NAME=JSON")
        try:
            values[name] = json.loads(value)
        except json.JSONDecodeError:
            values[name] = value
    try:
        return EmulatorConfig.from_mapping(values)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"invalid emulator setting: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator in the foreground until interrupted."""
    import uvicorn

    from .app import create_app

    args = _parse_args(argv)
    config = _config_from(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level=args.log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
    )
    print(f"Stripe emulator listening on {url} (pid {os.getpid()})", flush=True)
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
        tmp.replace(args.ready_file)
    server.run(sockets=[sock])
