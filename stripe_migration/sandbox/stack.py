"""The whole local stack at once: embedded PostgreSQL, the Supabase gateway, the Stripe emulator.

``sandbox_up`` starts the three on free loopback ports (PostgreSQL on a Unix socket) as processes
that outlive the command, writes their addresses and fresh random keys to ``<dir>/.env`` (the file
Dagster's CLI and ours read), and records their pids in ``<dir>/.sandbox/state.json`` so that
``sandbox_down`` stops exactly them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from stripe_migration.db import migrations
from stripe_migration.sandbox._process import pid_alive, stop_process_group
from stripe_migration.sandbox.postgres import start_local_postgres, stop_local_postgres

STATE_DIR_NAME = ".sandbox"
APP_DATABASE = "supabase"
DAGSTER_DATABASE = "dagster"

#: Settings the stack writes to .env, in the order written.
ENV_KEYS = (
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET",
    "DATABASE_URL",
    "DAGSTER_PG_URL",
    "STRIPE_CATALOG_AUTO_SYNC",
)


class SandboxError(RuntimeError):
    """The sandbox cannot start or stop; the message says why."""


@dataclass
class SandboxState:
    """What ``sandbox up`` started: pids to stop and the settings it wrote."""

    directory: str
    postgres_data_dir: str
    postgres_pid: int
    gateway_pid: int
    emulator_pid: int
    env: dict[str, str]
    #: The webhook receiver the emulator posts its events to (None: started without one).
    receiver_pid: int | None = None
    receiver_url: str | None = None

    @property
    def pids(self) -> list[int]:
        """Every process of the stack."""
        servers = [self.gateway_pid, self.emulator_pid]
        return [*servers, *([self.receiver_pid] if self.receiver_pid else []), self.postgres_pid]


def _state_path(directory: Path) -> Path:
    return directory / STATE_DIR_NAME / "state.json"


def read_state(directory: Path | str) -> SandboxState | None:
    """The state of the sandbox in ``directory``, or None when none was started there."""
    path = _state_path(Path(directory).resolve())
    if not path.exists():
        return None
    return SandboxState(**json.loads(path.read_text()))


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write (or update) ``path`` with ``env``, keeping any other lines a user put there."""
    kept: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            name = line.split("=", 1)[0].strip()
            if name not in env:
                kept.append(line)
    lines = [*kept, *(f"{key}={env[key]}" for key in ENV_KEYS if key in env)]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds keys


def sandbox_up(
    directory: Path | str = ".", env_file: Path | str | None = None, *, webhook: bool = False
) -> SandboxState:
    """Start the stack for ``directory`` (or reuse the running one) and write its ``.env``.

    With ``webhook``, also the webhook receiver, to which the emulator posts every event it
    makes (signed with the ``.env``'s ``STRIPE_WEBHOOK_SECRET``), into ``stripe_events``: a
    product edited through the emulator's API then reaches the events' processing as a dashboard
    edit would. A running stack is reused as it is."""
    from stripe_migration.sandbox.stripe_emulator.server import start_emulator
    from stripe_migration.sandbox.supabase_gateway.server import start_gateway

    directory = Path(directory).resolve()
    env_path = Path(env_file) if env_file else directory / ".env"
    existing = read_state(directory)
    if existing and all(pid_alive(pid) for pid in existing.pids):
        write_env_file(env_path, existing.env)
        return existing
    if existing:  # half dead: stop what is left before starting anew
        sandbox_down(directory)

    state_dir = directory / STATE_DIR_NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    pg = start_local_postgres(state_dir / "pg")
    started: list[int] = []
    try:
        app_url = pg.create_database(APP_DATABASE)
        dagster_url = pg.create_database(DAGSTER_DATABASE)
        migrations.upgrade(app_url)

        service_role_key = "sb_secret_" + secrets.token_urlsafe(32)
        stripe_key = "sk_test_" + secrets.token_urlsafe(32)
        webhook_secret = "whsec_" + secrets.token_urlsafe(32)

        gateway = start_gateway(app_url, service_role_key, log_path=state_dir / "gateway.log")
        started.append(gateway.pid)
        receiver = (
            _start_receiver(app_url, webhook_secret, state_dir / "receiver.log")
            if webhook
            else None
        )
        if receiver is not None:
            started.append(receiver.pid)
        emulator = start_emulator(
            secret_keys=[stripe_key],
            webhook_secret=webhook_secret,
            webhook_url=f"{receiver.url}{WEBHOOK_PATH}" if receiver is not None else None,
            log_path=state_dir / "emulator.log",
        )
        started.append(emulator.pid)
    except BaseException:
        for pid in started:
            stop_process_group(pid)
        stop_local_postgres(pg.data_dir)
        raise

    state = SandboxState(
        directory=str(directory),
        postgres_data_dir=str(pg.data_dir),
        postgres_pid=pg.pid,
        gateway_pid=gateway.pid,
        emulator_pid=emulator.pid,
        receiver_pid=receiver.pid if receiver is not None else None,
        receiver_url=f"{receiver.url}{WEBHOOK_PATH}" if receiver is not None else None,
        env={
            "SUPABASE_URL": gateway.url,
            "SUPABASE_SERVICE_ROLE_KEY": service_role_key,
            "STRIPE_SECRET_KEY": stripe_key,
            "STRIPE_API_BASE": emulator.url,
            "STRIPE_WEBHOOK_SECRET": webhook_secret,
            "DATABASE_URL": app_url,
            "DAGSTER_PG_URL": dagster_url,
            # Continuous sync on: the sandbox's Stripe is the emulator.
            "STRIPE_CATALOG_AUTO_SYNC": "true",
        },
    )
    _state_path(directory).write_text(json.dumps(asdict(state), indent=2))
    _state_path(directory).chmod(0o600)
    write_env_file(env_path, state.env)
    return state


#: Where the receiver takes Stripe's events (``stripe_migration.webhook.app``).
WEBHOOK_PATH = "/webhooks/stripe"


def _start_receiver(database_url: str, secret: str, log_path: Path):
    """The webhook receiver as a server process of the stack (see ``webhook serve``)."""
    from stripe_migration.sandbox._process import start_server
    from stripe_migration.webhook.server import DATABASE_URL_ENV, SECRET_ENV

    return start_server(
        "the webhook receiver",
        "stripe_migration.webhook.server",
        env={DATABASE_URL_ENV: database_url, SECRET_ENV: secret},
        health_path="/health",
        log_path=log_path,
    )


@dataclass(frozen=True)
class SandboxDown:
    """What ``sandbox_down`` did: whether a stack was running, what it removed, what it kept."""

    stopped: bool
    removed: tuple[str, ...]
    kept: tuple[str, ...]


#: The folder ``stripe-migration``'s runner makes for the Dagster instance beside ``dagster.yaml``.
DAGSTER_HOME_NAME = ".dagster_home"


def sandbox_down(directory: Path | str = ".", *, purge: bool = False) -> SandboxDown:
    """Stop the stack started for ``directory``. With ``purge``, also remove what it leaves
    behind: its settings in ``.env`` (the file itself when nothing else is in it), the ``.sandbox``
    folder (the database's files and the servers' logs) and ``.dagster_home``."""
    directory = Path(directory).resolve()
    state = read_state(directory)
    if state is not None:
        for pid in (state.gateway_pid, state.emulator_pid, state.receiver_pid):
            if pid:
                stop_process_group(pid)
        stop_local_postgres(state.postgres_data_dir)
        _state_path(directory).unlink()
    leftovers = [
        path
        for path in (
            directory / ".env",
            directory / STATE_DIR_NAME,
            directory / DAGSTER_HOME_NAME,
        )
        if path.exists()
    ]
    if not purge:
        return SandboxDown(state is not None, (), tuple(str(p) for p in leftovers))
    removed = []
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(str(path))
        elif _remove_sandbox_settings(path):
            removed.append(str(path))
        else:
            removed.append(f"the sandbox's settings from {path} (the other lines stay)")
    return SandboxDown(state is not None, tuple(removed), ())


def _remove_sandbox_settings(env_path: Path) -> bool:
    """Take the sandbox's settings out of ``env_path``; delete the file if nothing else is left.
    Return whether the file was deleted."""
    kept = [
        line
        for line in env_path.read_text().splitlines()
        if line.split("=", 1)[0].strip() not in ENV_KEYS
    ]
    if any(line.strip() for line in kept):
        env_path.write_text("\n".join(kept) + "\n")
        return False
    env_path.unlink()
    return True
