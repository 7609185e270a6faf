"""The crash harness: migration subprocesses on the sandbox, ways to kill them, and the invariants
the catalogue must satisfy afterwards, whatever happened to the runs.

A :class:`MigrationSandbox` holds what a migration subprocess (:mod:`.run_migration`) needs: the
Stripe emulator, a Supabase gateway, and a Dagster home whose ``dagster.yaml`` is the repository's
(PostgreSQL storage, the ``stripe_api`` pool). :func:`check_catalogue` then compares the CMS rows
with what the emulator holds, independently of the pipeline's own bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from stripe_migration.catalog.actions import Action
from stripe_migration.catalog.plan import plan_product
from stripe_migration.catalog.schema import validate_products
from stripe_migration.catalog.stripe_payloads import custom_product_id
from stripe_migration.catalog.stripe_state import fetch_stripe_state
from stripe_migration.db.urls import libpq_url
from stripe_migration.resources.stripe.resource import StripeResource

REPO = Path(__file__).resolve().parents[2]
SCRIPT_MODULE = "stripe_migration_tests.reliability.run_migration"


def run_seed() -> int:
    """The seed of a test's random choices: ``RELIABILITY_SEED`` (to replay a failure) or a fresh
    one (report it with :func:`report`)."""
    raw = os.environ.get("RELIABILITY_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1 << 30)


def report(record_property: Callable[[str, Any], None], suite: str, **figures: Any) -> None:
    """Record a suite's figures in the test report (junit properties) and print them as one line
    on stderr (shown by ``-rA`` or ``-s``)."""
    for name, value in figures.items():
        record_property(name, value)
    line = f"[reliability] {suite}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(line, file=sys.stderr)


class Deadline:
    """A point in time to poll against, so no wait passes or fails by luck."""

    def __init__(self, seconds: float, what: str) -> None:
        self.at = time.monotonic() + seconds
        self.what = what

    def left(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def check(self) -> None:
        """Raise a clear error once the deadline has passed."""
        if self.left() < 0:
            raise TimeoutError(f"timed out waiting for {self.what}")


@dataclass(frozen=True)
class RunOutcome:
    """How one subprocess ended: its exit status (``-9`` when killed) and its JSON summary."""

    returncode: int
    summary: dict[str, Any] | None
    log_path: Path

    @property
    def success(self) -> bool:
        """Whether the run finished and succeeded."""
        return self.returncode == 0 and bool(self.summary) and self.summary.get("success", True)

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the subprocess's output, for assertion messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""


class HarnessProcess:
    """One subprocess under test (a migration, or event processing), in its own session so a
    kill takes nothing else with it."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.popen.poll() is None

    def kill(self) -> bool:
        """SIGKILL it now; return whether it was still running (the kill landed)."""
        landed = self.alive()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        return landed

    def wait(self, timeout_s: float) -> RunOutcome:
        """Wait for it to end on its own (killing it if ``timeout_s`` passes first)."""
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(
                f"the migration did not finish in {timeout_s} s; log {self.log_path}:\n"
                + self.outcome().log_tail()
            ) from None
        return self.outcome()

    def outcome(self) -> RunOutcome:
        """The outcome of the ended process (its JSON summary line, if it printed one)."""
        summary = None
        with contextlib.suppress(OSError):
            for line in reversed(self.log_path.read_text(errors="replace").splitlines()):
                if line.startswith("{"):
                    summary = json.loads(line)
                    break
        assert self.popen.returncode is not None, "the process is still running"
        return RunOutcome(self.popen.returncode, summary, self.log_path)


def start_module(module: str, env: Mapping[str, str], log_path: Path) -> HarnessProcess:
    """Start ``python -m module`` in its own session, its output going to ``log_path``."""
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module],
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return HarnessProcess(popen, log_path)


@dataclass
class MigrationSandbox:
    """Everything a migration subprocess needs, and the emulator and database to inspect."""

    database_url: str
    emulator: Any
    dagster_home: Path
    env: dict[str, str] = field(repr=False)
    runs: int = 0
    processes: list[HarnessProcess] = field(default_factory=list, repr=False)
    _instance: dg.DagsterInstance | None = field(default=None, repr=False)

    def start(self, **extra_env: str) -> HarnessProcess:
        """Start one migration subprocess (``extra_env`` added to its environment)."""
        self.runs += 1
        log_path = self.dagster_home / f"run-{self.runs:03d}.log"
        process = start_module(SCRIPT_MODULE, {**self.env, **extra_env}, log_path)
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Kill any subprocess still running (a test that failed half-way leaves none behind)."""
        for process in self.processes:
            if process.alive():
                process.kill()
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    def run(self, timeout_s: float = 120.0, **extra_env: str) -> RunOutcome:
        """Run one migration to its end."""
        return self.start(**extra_env).wait(timeout_s)

    def stripe_writes(self) -> int:
        """POST requests the emulator has answered so far (every Stripe write is a POST)."""
        return emulator_writes(self.emulator.control.stats())

    def unfinished_runs(self) -> list[str]:
        """Ids of the runs Dagster still shows as started (a killed run stays so until the next
        run's ``fail_dead_runs`` marks it failed)."""
        runs = self.instance().get_runs(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
            )
        )
        return [run.run_id for run in runs]

    def run_status(self, run_id: str) -> str:
        """The status Dagster records for ``run_id``."""
        run = self.instance().get_run_by_id(run_id)
        return run.status.value if run else "unknown"

    def held_pool_slots(self, pool: str = "stripe_api") -> dict[str, str]:
        """The slots of ``pool`` held right now, as ``{run_id: status of that run}``."""
        instance = self.instance()
        held = {}
        for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            held[slot.run_id] = run.status.value if run else "unknown"
        return held

    def instance(self) -> dg.DagsterInstance:
        """The sandbox's Dagster instance, as the subprocesses see it (opened once)."""
        if self._instance is None:
            previous = os.environ.get("DAGSTER_PG_URL")
            os.environ["DAGSTER_PG_URL"] = self.env["DAGSTER_PG_URL"]
            try:
                self._instance = dg.DagsterInstance.from_config(str(self.dagster_home))
            finally:
                if previous is None:
                    os.environ.pop("DAGSTER_PG_URL", None)
                else:
                    os.environ["DAGSTER_PG_URL"] = previous
        return self._instance


SandboxFactory = Callable[..., MigrationSandbox]


def failure_messages(result: Any) -> list[str]:
    """The messages of a Dagster result's failed steps, each with its causes (the step error
    itself only says which op failed; the cause says why)."""
    messages = []
    for event in result.all_events:
        if not event.is_step_failure or event.step_failure_data.error is None:
            continue
        parts, error = [], event.step_failure_data.error
        while error is not None:
            parts.append(error.message.strip())
            error = error.cause
        messages.append(f"{event.step_key}: " + " <- ".join(parts))
    return messages


def emulator_writes(stats: Mapping[str, Any]) -> int:
    """POST requests in an emulator stats snapshot, whatever their status."""
    return sum(
        sum(int(n) for n in by_status.values())
        for endpoint, by_status in stats["by_endpoint"].items()
        if endpoint.startswith("POST")
    )


def make_sandbox(
    *,
    emulator: Any,
    gateway_url: str,
    gateway_key: str,
    database_url: str,
    dagster_pg_url: str,
    workdir: Path,
    stripe_env: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> MigrationSandbox:
    """A sandbox whose subprocesses use the repository's ``dagster.yaml`` on ``dagster_pg_url``.

    ``stripe_env`` sets production's tuning variables (``STRIPE_MAX_REQUESTS_PER_SECOND``...),
    ``run_config`` the run config.
    """
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "SUPABASE_"))},
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_pg_url,
        "STRIPE_SECRET_KEY": emulator.secret_key,
        "STRIPE_API_BASE": emulator.url,
        "SUPABASE_URL": gateway_url,
        "SUPABASE_SERVICE_ROLE_KEY": gateway_key,
        "PYTHONWARNINGS": "ignore",
        **dict(stripe_env or {}),
        "RELIABILITY_RUN_CONFIG": json.dumps(dict(run_config or {})),
    }
    return MigrationSandbox(
        database_url=database_url, emulator=emulator, dagster_home=home, env=env
    )


# -- kills ----------------------------------------------------------------------------------------


def kill_after_writes(
    sandbox: MigrationSandbox, process: HarnessProcess, writes: int, timeout_s: float = 60.0
) -> bool:
    """SIGKILL ``process`` once the emulator has answered ``writes`` more POSTs; return whether
    the kill landed (False: the run ended first)."""
    target = sandbox.stripe_writes() + writes
    deadline = Deadline(timeout_s, f"{writes} Stripe writes")
    while process.alive() and sandbox.stripe_writes() < target:
        deadline.check()
        time.sleep(0.005)
    return process.kill()


def kill_after_delay(process: HarnessProcess, delay_s: float) -> bool:
    """SIGKILL ``process`` ``delay_s`` after now; return whether the kill landed."""
    deadline = time.monotonic() + delay_s
    while process.alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    return process.kill()


def kill_during_write_back(
    sandbox: MigrationSandbox,
    process: HarnessProcess,
    after_writes: int,
    timeout_s: float = 60.0,
) -> bool:
    """SIGKILL ``process`` while its checkpoint (``apply_sync_results``) is in flight, or the
    mark of its next batch (``sync_run_id``), whichever the lock catches first.

    After ``after_writes`` more Stripe writes, a SHARE lock on ``products`` holds the next
    write to it inside PostgreSQL; once PostgreSQL shows it waiting, the process is killed, then the
    lock is released and the orphaned write commits (or not) on its own, as after a real crash.
    """
    target = sandbox.stripe_writes() + after_writes
    deadline = Deadline(timeout_s, "a checkpoint or a mark waiting on the products lock")
    while process.alive() and sandbox.stripe_writes() < target:
        deadline.check()
        time.sleep(0.005)
    with psycopg.connect(libpq_url(sandbox.database_url)) as locker:
        locker.execute("LOCK TABLE products IN SHARE MODE")
        with psycopg.connect(libpq_url(sandbox.database_url), autocommit=True) as watcher:
            while process.alive():
                deadline.check()
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND (query LIKE %s OR query LIKE %s) AND pid <> pg_backend_pid()",
                    ("%apply_sync_results%", "%sync_run_id%"),
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.01)
            landed = process.kill()
        locker.rollback()
    return landed


# -- invariants -----------------------------------------------------------------------------------


@dataclass
class CatalogueCounts:
    """What :func:`check_catalogue` found (all of it already checked)."""

    rows: int = 0
    synced: int = 0
    archived: int = 0
    failed: int = 0
    stripe_products: int = 0
    stripe_prices: int = 0
    inactive_prices: int = 0


def cms_rows(database_url: str) -> dict[str, dict[str, Any]]:
    """Every CMS row by id."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        cur = conn.execute("SELECT * FROM products ORDER BY id")
        names = [c.name for c in cur.description or ()]
        return {str(row[0]): dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def check_catalogue(
    database_url: str,
    emulator: Any,
    *,
    seeded_ids: set[str],
    invalid_ids: set[str],
    price_edits: Mapping[str, int] | None = None,
) -> CatalogueCounts:
    """Assert the end state of a migration that was allowed to finish.

    CMS side: the seeded rows, no more, no fewer; every valid row synced (or archived when
    inactive) with both Stripe ids and no pending change; every invalid row failed with a reason
    and no Stripe id. Stripe side: exactly one product per valid row (custom id, CMS id in its
    metadata) and none for an invalid one; per product exactly one active price, its default, with
    the CMS amount (none left half-made); no two prices of a product with the same amount; at
    most one new price per price edit (``price_edits``: edits by CMS id, each to an amount the product never had).
    """
    rows = cms_rows(database_url)
    counts = CatalogueCounts(rows=len(rows))
    # Products born through their price (the second way) have Stripe's ids, and a first price
    # holding the CMS lookup key.
    by_price = {
        str(p["metadata"].get("cms_id")): p["id"]
        for p in emulator.control.objects("product")
        if p["id"] != custom_product_id(str(p["metadata"].get("cms_id")))
    }
    assert set(rows) == seeded_ids, "CMS rows were lost or added"
    valid_ids = seeded_ids - invalid_ids
    for cms_id in invalid_ids:
        row = rows[cms_id]
        assert row["sync_status"] == "failed", (cms_id, row["sync_status"])
        assert row["sync_error"] and ":" in row["sync_error"], (cms_id, row["sync_error"])
        assert row["stripe_product_id"] is None and row["stripe_price_id"] is None, cms_id
    for cms_id in valid_ids:
        row = rows[cms_id]
        expected = "synced" if row["active"] else "archived"
        assert row["sync_status"] == expected, (cms_id, row["sync_status"], row["sync_error"])
        assert row["sync_error"] is None, (cms_id, row["sync_error"])
        assert row["stripe_product_id"] in (custom_product_id(cms_id), by_price.get(cms_id)), (
            cms_id,
            row,
        )
        assert row["stripe_price_id"], (cms_id, "no price id")
        assert row["sync_content_hash"] and row["synced_unit_amount"], (cms_id, "half-written")
        assert not row["needs_sync"], (cms_id, "still in scope after the final run")
    counts.synced = sum(rows[i]["sync_status"] == "synced" for i in valid_ids)
    counts.archived = sum(rows[i]["sync_status"] == "archived" for i in valid_ids)
    counts.failed = len(invalid_ids)

    products = emulator.control.objects("product")
    prices = emulator.control.objects("price")
    counts.stripe_products, counts.stripe_prices = len(products), len(prices)
    counts.inactive_prices = sum(not p["active"] for p in prices)
    owners = Counter(p["metadata"].get("cms_id") for p in products)
    duplicated = {k: n for k, n in owners.items() if n > 1}
    assert not duplicated, f"duplicate Stripe products for CMS ids {duplicated}"
    assert set(owners) == valid_ids, (
        f"Stripe products without a valid CMS row: {sorted(set(owners) - valid_ids)[:5]}; "
        f"valid rows without a product: {sorted(valid_ids - set(owners))[:5]}"
    )
    by_product: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for price in prices:
        by_product[price["product"]].append(price)
    assert set(by_product) <= {p["id"] for p in products}, "prices of unknown products"
    for product in products:
        cms_id = product["metadata"]["cms_id"]
        row = rows[cms_id]
        assert product["id"] in (custom_product_id(cms_id), by_price.get(cms_id)), product["id"]
        assert product["default_price"], f"{cms_id}: half-made product {product['id']}"
        assert product["active"] == row["active"], (cms_id, product["active"], row["active"])
        own = by_product[product["id"]]
        active = [p["id"] for p in own if p["active"]]
        assert active == [product["default_price"]], (
            f"{cms_id}: active prices {active}, default {product['default_price']}"
        )
        assert row["stripe_price_id"] == product["default_price"], cms_id
        default = next(p for p in own if p["id"] == product["default_price"])
        assert (default["unit_amount"], default["currency"]) == (
            row["synced_unit_amount"],
            row["synced_currency"],
        ), cms_id
        amounts = Counter((p["unit_amount"], p["currency"]) for p in own)
        assert max(amounts.values()) == 1, f"{cms_id}: duplicate prices {amounts}"
        allowed = 1 + (price_edits or {}).get(cms_id, 0)
        assert len(own) <= allowed, f"{cms_id}: {len(own)} prices for {allowed - 1} price edits"
    return counts


def stripe_mismatches(database_url: str, emulator: Any) -> list[str]:
    """What the ``stripe_matches_cms`` check would complain about, product by product (for
    assertion messages: the check itself only reports counts in its metadata)."""
    rows = [
        r
        for r in cms_rows(database_url).values()
        if r["sync_status"] in ("synced", "archived") and r["stripe_product_id"]
    ]
    validated = validate_products(rows).valid.to_dict("records")
    api = StripeResource(
        secret_key=emulator.secret_key,
        api_base=emulator.url,
        max_requests_per_second=1000,
        max_endpoint_requests_per_second=1000,
    ).get_client()
    state = fetch_stripe_state(api, validated)
    out = []
    for product in validated:
        planned = plan_product(product, state.get(str(product["id"])), resync=True)
        if planned.action is not Action.UNCHANGED:
            out.append(f"{product['id']}: {planned.action.value}: {'; '.join(planned.reasons)}")
    return out
