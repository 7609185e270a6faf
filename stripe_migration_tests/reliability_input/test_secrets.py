"""Secrets: every component runs with recognisable keys, and no key may appear anywhere a person
(or an attacker with read access to logs) could read it.

The stack here is started with canary secrets (a Stripe test key, a live key, a wrong key, a
service-role key and a wrong one, two webhook secrets and a database password), in the formats the
sandbox generates (``secrets.token_urlsafe``: letters, digits, ``-`` and ``_``, which a naive
redaction pattern stops at). Then the project does its work, the failing paths included: a
migration and a re-run after edits, webhook delivery to the receiver, event processing, gap
filling, runs with a wrong Stripe key (401), a live key (refused before any write), a wrong
service-role key, webhooks with bad signatures, and direct calls that raise.

Searched afterwards, for each secret in full, its last 16 characters and the 16 after its prefix:
this process's stdout and stderr (fd level) and log records; the log files of the emulator, the
gateway and the receiver; their command lines; every table of the PostgreSQL-backed Dagster
instance (event log with asset metadata and failure texts, runs, tags...); every file under the
Dagster home; exception texts and reprs. The CLI test does the same for ``sandbox up``, ``seed``,
``migrate``, ``check`` and ``sandbox down`` run as a user would, with the sandbox's own keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest
from psycopg import sql

from stripe_migration.catalog import assets as catalog_assets
from stripe_migration.catalog import checks as catalog_checks
from stripe_migration.catalog.jobs import migrate_catalog, preflight
from stripe_migration.db import migrations
from stripe_migration.events import assets as events_assets
from stripe_migration.events import checks as events_checks
from stripe_migration.events.jobs import fill_stripe_event_gaps, process_stripe_events
from stripe_migration.events.policy import event_policy_from_env
from stripe_migration.resources.environment import (
    stripe_resource_from_env,
    supabase_resource_from_env,
)
from stripe_migration.resources.events_db import events_db_resource_from_env
from stripe_migration.resources.pickle_io_manager import PartitionRangePickleIOManager
from stripe_migration.resources.stripe.errors import LiveModeRefused, StripeAuthError
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration.resources.supabase.errors import SupabaseError
from stripe_migration.resources.supabase.resource import SupabaseResource
from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration.sandbox.sample_data import generate_products, insert_products
from stripe_migration.sandbox.stripe_emulator import EmulatorControl, start_emulator
from stripe_migration.sandbox.supabase_gateway import start_gateway
from stripe_migration.webhook.signature import sign
from stripe_migration_tests.fixtures.migration import ALL_PARTITIONS
from stripe_migration_tests.fixtures.receiver import start_receiver

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
FAST = "5000"


def _canary(prefix: str, marker: str) -> str:
    # token_urlsafe, as the sandbox makes its keys: '-' and '_' included.
    return f"{prefix}{marker}{secrets.token_urlsafe(24)}"


SECRETS = {
    "Stripe secret key": _canary("sk_test_", "SECRETCANARY"),
    "Stripe live key": _canary("sk_live_", "LIVECANARY"),
    "wrong Stripe key": _canary("sk_test_", "WRONGCANARY"),
    "service role key": _canary("sb_secret_", "CANARY"),
    "wrong service role key": _canary("sb_secret_", "WRONGCANARY"),
    "webhook secret": _canary("whsec_", "CANARY"),
    "previous webhook secret": _canary("whsec_", "OLDCANARY"),
    "unknown webhook secret": _canary("whsec_", "FORGEDCANARY"),
    "database password": _canary("", "PGCANARY"),
}


#: Prefixes before a key's random part; the 16 characters after the prefix are searched too.
PREFIXES = ("sk_test_", "sk_live_", "sb_secret_", "whsec_")


def needles(secret: str) -> set[str]:
    """The secret, its last 16 characters, and the 16 after its prefix."""
    body = next((secret[len(p) :] for p in PREFIXES if secret.startswith(p)), secret)
    return {secret, secret[-16:], body[:16]}


def leaks(text: str, known: dict[str, str] | None = None) -> list[str]:
    """Names of the secrets (of ``known``, default :data:`SECRETS`) some needle of which is in
    ``text``."""
    return [
        name
        for name, secret in (known or SECRETS).items()
        if any(needle in text for needle in needles(secret))
    ]


@dataclass
class Evidence:
    """Every text gathered, by where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: object) -> None:
        """Record ``text`` (bytes are decoded, other objects taken as ``str``)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.texts.append((where, str(text)))

    def add_exception(self, where: str, exc: BaseException) -> None:
        """Record an exception's text, repr and formatted traceback."""
        self.add(f"{where} (str)", exc)
        self.add(f"{where} (repr)", repr(exc))
        self.add(f"{where} (traceback)", "".join(traceback.format_exception(exc)))

    def add_files(self, where: str, root: Path) -> int:
        """Record every file under ``root``; return how many."""
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(f"{where}/{path.relative_to(root)}", path.read_bytes())
                count += 1
        return count

    def found(self, known: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
        """(where, secret names) for every text holding a secret."""
        return [(where, hit) for where, text in self.texts if (hit := leaks(text, known))]

    def size(self) -> int:
        """Characters gathered."""
        return sum(len(text) for _, text in self.texts)


# -- the canary stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    """The emulator, gateway and receiver started with the canary secrets, and their settings."""

    env: dict[str, str]
    app_url: str
    dagster_url: str
    emulator_url: str
    gateway_url: str
    webhook_url: str
    logs: dict[str, Path]
    pids: dict[str, int]
    reprs: dict[str, str]


def _with_password(url: str, password: str) -> str:
    # The embedded server trusts local connections, so the password is carried but never checked:
    # exactly what is needed to see whether anything prints it.
    return url.replace("postgres:@", f"postgres:{password}@", 1)


@pytest.fixture(scope="module")
def stack(pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh application database and Dagster database, and the three servers on them."""
    tag = uuid.uuid4().hex[:8]
    password = SECRETS["database password"]
    names = {"app": f"secrets_app_{tag}", "dagster": f"secrets_dagster_{tag}"}
    logs_dir = tmp_path_factory.mktemp("secrets_logs")
    logs = {name: logs_dir / f"{name}.log" for name in ("emulator", "gateway", "receiver")}

    with contextlib.ExitStack() as cleanup:
        for name in names.values():  # dropped last, once the servers on them have stopped
            cleanup.callback(pg_server.drop_database, name)
        app_url = _with_password(pg_server.create_database(names["app"]), password)
        dagster_url = _with_password(pg_server.create_database(names["dagster"]), password)
        migrations.upgrade(app_url)
        emulator = start_emulator(
            secret_keys=[SECRETS["Stripe secret key"], SECRETS["Stripe live key"]],
            webhook_secret=SECRETS["webhook secret"],
            log_path=logs["emulator"],
            latency_ms=0.0,
            latency_jitter_ms=0.0,
            search_lag_s=0.0,
            global_rate_per_s=float(FAST),
            endpoint_rate_per_s=float(FAST),
            search_rate_per_s=float(FAST),
        )
        cleanup.callback(emulator.stop)
        gateway = start_gateway(app_url, SECRETS["service role key"], log_path=logs["gateway"])
        cleanup.callback(gateway.stop)
        receiver = start_receiver(
            app_url,
            [SECRETS["webhook secret"], SECRETS["previous webhook secret"]],
            log_path=logs["receiver"],
        )
        cleanup.callback(receiver.stop)
        with EmulatorControl(emulator.url) as control:
            control.configure(webhook_url=receiver.webhook_url, webhook_retry_delay_s=0.1)

        home = tmp_path_factory.mktemp("secrets_dagster_home")
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": dagster_url,
            "DATABASE_URL": app_url,
            "STRIPE_SECRET_KEY": SECRETS["Stripe secret key"],
            "STRIPE_API_BASE": emulator.url,
            "STRIPE_WEBHOOK_SECRET": SECRETS["webhook secret"],
            "SUPABASE_URL": gateway.url,
            "SUPABASE_SERVICE_ROLE_KEY": SECRETS["service role key"],
            "STRIPE_MAX_REQUESTS_PER_SECOND": FAST,
            "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": FAST,
        }
        yield Stack(
            env=env,
            app_url=app_url,
            dagster_url=dagster_url,
            emulator_url=emulator.url,
            gateway_url=gateway.url,
            webhook_url=receiver.webhook_url,
            logs=logs,
            pids={"emulator": emulator.pid, "gateway": gateway.pid, "receiver": receiver.pid},
            reprs={
                "emulator process": repr(emulator),
                "emulator config": repr(emulator.config),
                "gateway process": repr(gateway),
                "receiver process": repr(receiver),
            },
        )


def build_definitions(storage: Path) -> dg.Definitions:
    """The project's definitions as ``definitions.py`` assembles them, built from the environment
    now (``definitions.py`` itself read the environment when it was first imported)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules([catalog_assets, events_assets]),
        asset_checks=dg.load_asset_checks_from_modules([catalog_checks, events_checks]),
        jobs=[migrate_catalog, preflight, process_stripe_events, fill_stripe_event_gaps],
        resources={
            "stripe": stripe_resource_from_env(),
            "supabase": supabase_resource_from_env(),
            "events_db": events_db_resource_from_env(),
            "event_policy": event_policy_from_env(),
            "catalog_io_manager": PartitionRangePickleIOManager(base_dir=str(storage)),
        },
        executor=dg.in_process_executor,
    )


def run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str) -> dg.ExecuteInProcessResult:
    """Execute ``job`` (the catalogue's over every partition) without raising on failure."""
    tags = dict(ALL_PARTITIONS) if job == "migrate_catalog" else {}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The failure messages and errors of a run, as a user sees them."""
    parts = []
    for event in result.all_events:
        if event.is_failure:
            parts.append(event.message or "")
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                parts.append(error.to_string())
    return "\n".join(parts)


def _stored_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM stripe_events").fetchone()[0]


def dump_database(database_url: str) -> dict[str, str]:
    """Every row of every table of ``database_url``'s public schema, as text, by table."""
    with psycopg.connect(database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        return {
            table: "\n".join(
                row[0]
                for row in conn.execute(
                    sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
                )
            )
            for table in tables
        }


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield


@pytest.mark.slow  # every component started and failed; resources/test_redaction.py is the fast tier's
def test_no_component_shows_a_key_even_when_failing(
    stack: Stack,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()

    with environment(stack.env):
        defs = build_definitions(tmp_path / "storage")
        insert_products(stack.app_url, generate_products(40, seed=3, bad_fraction=0.1))
        with dg.DagsterInstance.get() as instance:
            assert run(defs, instance, "migrate_catalog").success
            with psycopg.connect(stack.app_url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE products SET price = '77.00', name = name || ' v2' "
                    "WHERE id IN (SELECT id FROM products WHERE sync_status = 'synced' LIMIT 5)"
                )
            assert run(defs, instance, "migrate_catalog").success

            # The emulator delivers the product/price events, signed, to the receiver.
            deadline = time.monotonic() + 30
            while _stored_events(stack.app_url) < 40 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _stored_events(stack.app_url) >= 40
            assert run(defs, instance, "process_stripe_events").success
            assert run(defs, instance, "fill_stripe_event_gaps").success

            # The failing paths, each with a write pending.
            failing = {
                "wrong Stripe key": ({"STRIPE_SECRET_KEY": SECRETS["wrong Stripe key"]}, "401"),
                "live key": ({"STRIPE_SECRET_KEY": SECRETS["Stripe live key"]}, "live"),
                "wrong service role key": (
                    {"SUPABASE_SERVICE_ROLE_KEY": SECRETS["wrong service role key"]},
                    "401",
                ),
            }
            for number, (what, (values, expected)) in enumerate(failing.items()):
                with psycopg.connect(stack.app_url, autocommit=True) as conn:
                    conn.execute(
                        "UPDATE products SET price = %s WHERE id IN "
                        "(SELECT id FROM products WHERE sync_status = 'synced' LIMIT 1)",
                        [f"{60 + number}.00"],
                    )
                with environment(values):
                    result = run(defs, instance, "migrate_catalog")
                    assert not result.success, what
                    text = failure_text(result)
                    assert expected in text.lower(), (what, text[:2000])
                    evidence.add(f"failure of the run with the {what}", text)
                    preflight_result = run(defs, instance, "preflight")
                    evidence.add(f"preflight with the {what}", failure_text(preflight_result))

            for key in instance.get_asset_keys():
                event = instance.get_latest_materialization_event(key)
                if event is not None and event.asset_materialization is not None:
                    evidence.add(f"metadata of {key.to_user_string()}", event.asset_materialization)

    # Direct calls that fail, and the reprs of everything holding a key.
    stripe_resource = StripeResource(
        secret_key=SECRETS["wrong Stripe key"], api_base=stack.emulator_url, retry_attempts=1
    )
    with pytest.raises(StripeAuthError) as stripe_error:
        stripe_resource.get_client().retrieve_account()
    evidence.add_exception("StripeApi with a wrong key", stripe_error.value)
    live = StripeResource(secret_key=SECRETS["Stripe live key"], api_base=stack.emulator_url)
    with pytest.raises(LiveModeRefused) as live_error:
        live.get_client().create_product({"name": "x"}, idempotency_key="secrets-test")
    evidence.add_exception("StripeApi with a live key", live_error.value)
    supabase = SupabaseResource(
        url=stack.gateway_url, service_role_key=SECRETS["wrong service role key"]
    )
    with pytest.raises(SupabaseError) as supabase_error:
        supabase.get_client().read_table("products", ["id"])
    evidence.add_exception("SupabaseDb with a wrong key", supabase_error.value)
    good = StripeResource(secret_key=SECRETS["Stripe secret key"], api_base=stack.emulator_url)
    good_supabase = SupabaseResource(
        url=stack.gateway_url, service_role_key=SECRETS["service role key"]
    )
    for name, thing in {
        "StripeResource": good,
        "StripeApi": good.get_client(),
        "SupabaseResource": good_supabase,
        "SupabaseDb": good_supabase.get_client(),
        **stack.reprs,
    }.items():
        evidence.add(f"repr of {name}", repr(thing) if not isinstance(thing, str) else thing)

    # The receiver, sent forged and stale signatures and a genuine one under the previous secret.
    body = json.dumps(
        {
            "id": "evt_secrets_test",
            "object": "event",
            "type": "product.updated",
            "created": int(time.time()),
            "data": {"object": {"id": "prod_x", "object": "product"}},
        }
    ).encode()
    forged = {
        "unknown secret": sign(body, SECRETS["unknown webhook secret"]),
        "stale": sign(body, SECRETS["webhook secret"], timestamp=int(time.time()) - 3600),
        "secret as the signature": f"t={int(time.time())},v1={SECRETS['webhook secret']}",
        "other body": sign(body + b" ", SECRETS["webhook secret"]),
    }
    with httpx.Client(timeout=30) as client:
        for what, header in forged.items():
            response = client.post(
                stack.webhook_url, content=body, headers={"Stripe-Signature": header}
            )
            assert response.status_code == 400, what
            evidence.add(f"receiver's answer to a {what} signature", response.text)
        rotated = sign(body, SECRETS["previous webhook secret"])
        response = client.post(
            stack.webhook_url, content=body, headers={"Stripe-Signature": rotated}
        )
        assert response.status_code == 200

    # Everything a person could read afterwards.
    out, err = capfd.readouterr()
    evidence.add("stdout", out)
    evidence.add("stderr", err)
    evidence.add("log records", caplog.text)
    for name, path in stack.logs.items():
        evidence.add(f"{name} log", path.read_bytes())
    for name, pid in stack.pids.items():
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():
            evidence.add(f"{name} command line", cmdline.read_bytes().replace(b"\0", b" "))
    tables = dump_database(stack.dagster_url)
    for table, text in tables.items():
        evidence.add(f"Dagster table {table}", text)
    files = evidence.add_files("Dagster home", Path(stack.env["DAGSTER_HOME"]))
    files += evidence.add_files("IO manager storage", tmp_path / "storage")

    # The search had something to search: the runs, failures and deliveries happened.
    assert tables["event_logs"].count("\n") > 500
    assert "ASSET_MATERIALIZATION" in tables["event_logs"]
    assert "STEP_FAILURE" in tables["event_logs"] or "RUN_FAILURE" in tables["event_logs"]
    assert files > 0 and evidence.size() > 100_000
    assert "Invalid API Key provided" in stack.logs["emulator"].read_text() or "401" in err + out

    # The search itself finds what it looks for (so an empty result means something).
    canary = SECRETS["webhook secret"]
    assert leaks(f"x{canary[-16:]}x") == leaks(f"({canary})") == ["webhook secret"]
    assert evidence.found() == [], evidence.found()


@pytest.mark.slow
def test_cli_shows_no_key_from_sandbox_up_to_down(tmp_path: Path) -> None:
    """``sandbox up``, ``seed``, ``migrate``, ``check`` and ``sandbox down`` as a user runs them:
    none of the keys the sandbox generated reaches their output, the gateway's log or the
    Dagster event log."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "SUPABASE_", "DAGSTER_")) and k != "DATABASE_URL"
    }
    env["DAGSTER_HOME"] = str(home)
    cli = [sys.executable, "-c", "from stripe_migration.cli import main; main()"]
    evidence = Evidence()

    def stripe_migration(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [*cli, *args], cwd=workdir, env=env, capture_output=True, timeout=240, check=False
        )
        evidence.add(f"stdout of {' '.join(args)}", done.stdout)
        evidence.add(f"stderr of {' '.join(args)}", done.stderr)
        if check:
            assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done

    stripe_migration("sandbox", "up", "--dir", str(workdir))
    try:
        settings = dict(
            line.split("=", 1)
            for line in (workdir / ".env").read_text().splitlines()
            if "=" in line
        )
        keys = {
            name: settings[name]
            for name in ("STRIPE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY", "STRIPE_WEBHOOK_SECRET")
        }
        stripe_migration("sandbox", "seed", "--products", "30")
        stripe_migration("migrate")
        stripe_migration("check")
        # A wrong key: the run fails, and says so without the key.
        wrong = "sk_test_" + secrets.token_urlsafe(32)
        keys["wrong key"] = wrong
        env["STRIPE_SECRET_KEY"] = wrong
        with psycopg.connect(settings["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("UPDATE products SET price = '12.34' WHERE sync_status = 'synced'")
        failed = stripe_migration("migrate", check=False)
        assert failed.returncode != 0
        del env["STRIPE_SECRET_KEY"]
        for table, text in dump_database(settings["DAGSTER_PG_URL"]).items():
            evidence.add(f"Dagster table {table}", text)
        # The stack's own files (state.json, gateway.log); not PostgreSQL's data folder.
        for path in (workdir / ".sandbox").iterdir():
            if path.is_file():
                evidence.add(f"sandbox/{path.name}", path.read_bytes())
        evidence.add_files("Dagster home", home)
    finally:
        stripe_migration("sandbox", "down", "--dir", str(workdir), check=False)

    # The .env and the sandbox state file hold the keys by design (mode 0600); nothing else may.
    everywhere = evidence.found(keys)
    assert any(where == "sandbox/state.json" for where, _ in everywhere)  # the search works
    found = [(where, hit) for where, hit in everywhere if where != "sandbox/state.json"]
    assert found == [], found
