"""Run the emulator: in a subprocess (:func:`start_emulator`) or in the foreground (:func:`main`).

The subprocess is started, checked and stopped by :mod:`stripe_migration.sandbox._process`.

``python -m stripe_migration.sandbox.stripe_emulator --port 12111`` serves in the foreground.
Secrets never go on the command line (other users can read it): keys come from the environment
(``STRIPE_EMULATOR_SECRET_KEYS``, comma-separated, and ``STRIPE_EMULATOR_WEBHOOK_SECRET``), from a
JSON ``--config-file``, or from ``STRIPE_EMULATOR_CONFIG`` (JSON; used by :func:`start_emulator`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stripe_migration.sandbox._process import ServerProcess, listening_socket, start_server

from .config import EmulatorConfig

_CONFIG_ENV = "STRIPE_EMULATOR_CONFIG"


@dataclass
class EmulatorProcess(ServerProcess):
    """A running emulator subprocess, with the configuration it was started with."""

    config: EmulatorConfig

    @property
    def secret_key(self) -> str:
        """The first configured secret key."""
        return self.config.secret_keys[0]


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
    server's output goes to ``log_path`` (a temporary file if None).
    """
    cfg = EmulatorConfig.from_mapping(config)
    return start_server(
        "the Stripe emulator",
        "stripe_migration.sandbox.stripe_emulator",
        env={_CONFIG_ENV: json.dumps(cfg.to_dict())},
        host=host,
        port=port,
        health_path="/_emulator/health",
        log_path=log_path,
        startup_timeout_s=startup_timeout_s,
        process_type=EmulatorProcess,
        config=cfg,
    )


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
    parser.add_argument("--fd", type=int, help="an already bound listening socket to serve on")
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
    sock = listening_socket(args.fd, args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"
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
    server.run(sockets=[sock])
