"""Continuous sync (issue 14): how fast an edit reaches Stripe with nobody launching a run, what a
small run costs, and what an idle hour costs.

What a data engineer does, in a temporary project folder: ``stripe-migration sandbox up`` (embedded
PostgreSQL, the Supabase gateway, the Stripe emulator and the webhook receiver the emulator posts
its events to), then plain ``dagster dev`` (webserver and daemon), whose daemon ticks the
catalogue sensor (``STRIPE_CATALOG_AUTO_SYNC=true``, written by ``sandbox up``) and the events'
processing sensor, both every ``--tick-s`` seconds (default 30, their default).

Setup, not measured: ``--products`` rows (no bad row) are seeded and migrated once with
``stripe-migration migrate`` with every limit off, no latency and the emulator's webhook delivery
off (20,000 products would make 40,000 events whose processing, 100 a run, would take the better
part of an hour and is not what is measured). For the same reason the hourly gap fill
(``stripe_event_gaps_hourly``) is stopped while the bench runs: it would store those 40,000 events
from ``GET /v1/events`` and start that backlog. Then the emulator and the client are set to
Stripe's live limits (100 requests/s, 25/s per endpoint, burst 1 s) and 100 +/- 50 ms of latency.

Measured, each printed as one human line and one JSON line (machine, load average, commit):

1. ``migrate_nothing``: ``stripe-migration migrate`` in the project folder on a catalogue with
   nothing to do, wall clock of the process (``dagster dev`` not started yet), ``--migrate-repeats``
   times.
2. ``cost_one_bucket``: 5 rows of one bucket renamed in one transaction; the sensor's run: Stripe
   calls (the emulator's stats, by endpoint and status, from the edit to the run's end) and seconds
   from the run's start to its success (its Dagster record). ``cost_spread``: the same for 5 rows
   drawn from the whole catalogue (several buckets: one run per contiguous range of buckets).
3. ``edit_latency``: ``--edits`` rows renamed at random moments over ``--window-min`` minutes; time
   from the UPDATE's commit to the emulator holding the new name, polled every second or so while
   an edit is outstanding (``--poll``): by the control API's whole product table (not counted in
   the stats) when it answers in < 0.15 s, else ``GET /v1/products/{id}`` of each outstanding
   product (a few calls a second, counted apart: at 20,000 products the table took 0.75 s to
   serialise in the emulator's event loop, holding the runs' calls back). ``drift_repair``: ``--drifts``
   products renamed through the emulator's Stripe API with the official client at random moments
   of the same window; time until the product holds the CMS name again.
4. ``idle``: ``--idle-min`` minutes with no change after everything settled: runs launched, Stripe
   calls made, the catalogue sensor's ticks; the hour extrapolated from it (said so).

Run: ``python bench/bench_continuous.py`` (the issue's figures: 20,000 products, 20 edits and 5
drifts over 10 minutes, 10 idle minutes; ~30 min) or shorter, e.g. ``--products 2000
--window-min 3 --idle-min 2``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (
    FAST_CLIENT_ENV,
    FAST_EMULATOR,
    LIVE_CLIENT_ENV,
    LIVE_EMULATOR,
    NO_FAULTS,
    EmulatorDelta,
    Watchdog,
    emit,
    remove_at_exit,
)

from stripe_migration.db.urls import libpq_url
from stripe_migration.sandbox.sample_data import generate_products, insert_products
from stripe_migration.sandbox.stack import sandbox_down
from stripe_migration.sandbox.stripe_emulator import EmulatorControl
from stripe_migration_tests.fixtures.dagster_dev import (
    COMMAND,
    clean_env,
    dagster_dev,
    graphql,
    new_project,
    read_env_file,
)

CATALOG_JOB = "migrate_catalog"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
#: The schedule stopped while the bench runs (see the module docstring).
GAP_FILL_SCHEDULE = "stripe_event_gaps_hourly"
LOCATION = {"repositoryLocationName": "stripe_migration", "repositoryName": "__repository__"}

RUNS_QUERY = """
query {
  runsOrError(limit: 1000) {
    ... on Runs { results { runId jobName status creationTime startTime endTime
                            tags { key value } } }
  }
}
"""
TICKS_QUERY = """
query($name: String!) {
  instigationStateOrError(instigationSelector: {
    repositoryLocationName: "stripe_migration", repositoryName: "__repository__", name: $name
  }) {
    ... on InstigationState { status ticks(limit: 200) { status timestamp runIds skipReason } }
  }
}
"""
SCHEDULE_QUERY = """
query($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    ... on Schedule { scheduleState { id status } }
  }
}
"""
STOP_SCHEDULE = """
mutation($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""


def log(message: str) -> None:
    """Progress on stderr (the figures alone go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    """``/proc/loadavg``'s three averages now."""
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, nearest rank (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return round(ordered[min(rank, len(ordered)) - 1], 2)


def summary(values: list[float]) -> dict[str, Any]:
    """n, p50, p95, max and mean of latencies (seconds)."""
    return {
        "n": len(values),
        "p50_s": percentile(values, 0.50),
        "p95_s": percentile(values, 0.95),
        "max_s": round(max(values), 2) if values else None,
        "mean_s": round(statistics.fmean(values), 2) if values else None,
        "all_s": [round(v, 2) for v in values],
    }


class Bench:
    """The running project: its sandbox, its ``dagster dev`` (once started), and the figures."""

    def __init__(self, args: argparse.Namespace, project: Path) -> None:
        self.args = args
        self.project = project
        self.env = clean_env()
        self.settings = read_env_file(project / ".env")
        self.database_url = libpq_url(self.settings["DATABASE_URL"])
        self.control = EmulatorControl(self.settings["STRIPE_API_BASE"], timeout_s=60.0)
        self.stripe = stripe.StripeClient(
            self.settings["STRIPE_SECRET_KEY"],
            base_addresses={"api": self.settings["STRIPE_API_BASE"]},
        )
        self.url: str | None = None
        self.rng = random.Random(args.seed)
        self.poll_seconds: list[float] = []
        #: Stripe API calls the bench itself made (dashboard edits, polls by id).
        self.own_calls = 0
        self.options = {
            "products": args.products,
            "edits": args.edits,
            "drifts": args.drifts,
            "window_min": args.window_min,
            "idle_min": args.idle_min,
            "tick_s": args.tick_s,
            "seed": args.seed,
        }

    # -- the CMS and Stripe ---------------------------------------------------------------------

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def pending_work(self) -> int:
        """Rows and deletions the catalogue sensor would see now."""
        rows = self.sql(
            "SELECT coalesce(sum(rows_pending + deletions_pending), 0) FROM catalog_pending_work()"
        )
        return int(rows[0][0])

    def unprocessed_events(self) -> int:
        return int(self.sql("SELECT count(*) FROM stripe_events WHERE processed_at IS NULL")[0][0])

    def stripe_names(self) -> dict[str, str]:
        """Every Stripe product's name by its id, from the emulator's control API (not counted in
        its stats, not rate limited; but the emulator serialises the whole table in its event
        loop, ~50 ms per 1,000 products, holding its API requests back meanwhile)."""
        started = time.monotonic()
        names = {p["id"]: p.get("name") for p in self.control.objects("product")}
        self.poll_seconds.append(time.monotonic() - started)
        return names

    def names_of(self, product_ids: list[str], how: str) -> dict[str, str]:
        """The names of ``product_ids`` now: ``control`` (see :meth:`stripe_names`) or ``api``
        (``GET /v1/products/{id}`` each with the official client: counted in the emulator's stats
        and rate limits, so counted here too as ``own_calls``)."""
        if how == "control":
            names = self.stripe_names()
            return {i: names.get(i, "") for i in product_ids}
        started = time.monotonic()
        out = {}
        for product_id in product_ids:
            out[product_id] = self.stripe.v1.products.retrieve(product_id).name or ""
            self.own_calls += 1
        self.poll_seconds.append(time.monotonic() - started)
        return out

    # -- dagster dev ----------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        assert self.url is not None
        return graphql(self.url, RUNS_QUERY)["runsOrError"]["results"]

    def ticks(self, name: str, since: float) -> list[dict[str, Any]]:
        assert self.url is not None
        state = graphql(self.url, TICKS_QUERY, {"name": name})["instigationStateOrError"]
        return [t for t in state.get("ticks", []) if t["timestamp"] >= since]

    def stop_gap_fill(self) -> str:
        """Stop the hourly gap fill (see the module docstring); return its status after."""
        assert self.url is not None
        selector = {**LOCATION, "scheduleName": GAP_FILL_SCHEDULE}
        found = graphql(self.url, SCHEDULE_QUERY, {"selector": selector})["scheduleOrError"]
        state_id = found["scheduleState"]["id"]
        result = graphql(self.url, STOP_SCHEDULE, {"id": state_id})["stopRunningSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            raise RuntimeError(f"could not stop {GAP_FILL_SCHEDULE}: {result}")
        return result["scheduleState"]["status"]

    def settle(self, timeout_s: float = 600.0) -> float:
        """Wait until no run is queued or running, the catalogue has no pending work and every
        stored event is processed, twice in a row 2 s apart; return the seconds waited."""
        started = time.monotonic()
        calm = 0
        while time.monotonic() - started < timeout_s:
            busy = [r for r in self.runs() if r["status"] not in TERMINAL]
            if not busy and self.pending_work() == 0 and self.unprocessed_events() == 0:
                calm += 1
                if calm >= 2:
                    return round(time.monotonic() - started, 1)
            else:
                calm = 0
            time.sleep(2.0)
        raise RuntimeError(
            f"not settled in {timeout_s:.0f} s: runs {[(r['jobName'], r['status']) for r in busy]}"
            f", pending work {self.pending_work()}, unprocessed events "
            f"{self.unprocessed_events()}"
        )

    # -- setup ----------------------------------------------------------------------------------

    def migrate(self, extra_env: dict[str, str] | None = None) -> tuple[float, str]:
        """``stripe-migration migrate`` in the project folder; (wall seconds, its output's tail)."""
        started = time.monotonic()
        done = subprocess.run(
            [*COMMAND, "migrate"],
            cwd=self.project,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"migrate failed ({done.returncode}):\n{done.stdout[-3000:]}"
                               f"\n{done.stderr[-3000:]}")  # fmt: skip
        return wall, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def setup(self) -> dict[str, Any]:
        """Seed and first-sync the catalogue fast, then set the live limits (not measured)."""
        webhook_url = self.control.config()["webhook_url"]
        self.control.configure(**FAST_EMULATOR, **NO_FAULTS, webhook_url=None)
        rows = generate_products(self.args.products, seed=self.args.seed, bad_fraction=0.0)
        started = time.monotonic()
        inserted = insert_products(self.settings["DATABASE_URL"], rows)
        seeded_s = time.monotonic() - started
        log(f"seeded {inserted} products in {seeded_s:.1f} s; first sync with no limits")
        wall, line = self.migrate(FAST_CLIENT_ENV)
        log(f"first sync: {wall:.1f} s: {line}")
        pending = self.pending_work()
        products = len(self.control.objects("product"))
        if pending or products != self.args.products:
            raise RuntimeError(f"first sync left {pending} rows pending, {products} products")
        self.control.configure(**LIVE_EMULATOR, webhook_url=webhook_url)
        return {"seeded": inserted, "first_sync_s": round(wall, 1), "stripe_products": products}

    # -- the figures ----------------------------------------------------------------------------

    def migrate_nothing(self) -> None:
        load_before = loadavg()
        walls = []
        before = self.control.stats()
        for _ in range(self.args.migrate_repeats):
            wall, line = self.migrate()
            walls.append(round(wall, 2))
            log(f"migrate, nothing to do: {wall:.2f} s: {line}")
        delta = EmulatorDelta.between(before, self.control.stats())
        emit(
            f"migrate, nothing to do ({self.args.products:,} products, live limits): "
            f"{', '.join(f'{w:.2f}' for w in walls)} s end to end, {delta.requests()} Stripe "
            f"calls in all (target <= 8 s; load {load_before[0]} -> {loadavg()[0]})",
            {
                "figure": "migrate_nothing",
                "options": self.options,
                "wall_s": walls,
                "stripe_calls_total": delta.requests(),
                "stripe": delta.as_dict(),
                "dagster_dev": "not started",
                "loadavg_before": load_before,
                "target_s": 8.0,
                "met": max(walls) <= 8.0,
            },
        )

    def cost(self, label: str, ids: list[str]) -> None:
        """Rename ``ids`` in one transaction; the runs the sensor launches for them."""
        self.settle()
        load_before = loadavg()
        known = {r["runId"] for r in self.runs()}
        stripe_ids = dict(
            self.sql("SELECT id::text, stripe_product_id FROM products WHERE id = ANY(%s::uuid[])",
                     (ids,))
        )  # fmt: skip
        token = uuid.uuid4().hex[:8]
        names = {i: f"Cost edit {label} {k} {token}" for k, i in enumerate(ids)}
        before = self.control.stats()
        with psycopg.connect(self.database_url) as conn:
            for i, name in names.items():
                conn.execute("UPDATE products SET name = %s WHERE id = %s", (name, i))
        edited_at = time.time()
        deadline = time.monotonic() + 600
        new_runs: list[dict[str, Any]] = []
        # Stripe is looked at only once the runs are over (the control API, not counted), so the
        # emulator serves nothing but the runs meanwhile.
        while time.monotonic() < deadline:
            new_runs = [
                r for r in self.runs() if r["runId"] not in known and r["jobName"] == CATALOG_JOB
            ]
            if new_runs and all(r["status"] in TERMINAL for r in new_runs):
                held = self.stripe_names()
                if all(held.get(stripe_ids[i]) == names[i] for i in ids):
                    break
            time.sleep(1.0)
        else:
            raise RuntimeError(f"{label}: not reached or runs not finished in 600 s: {new_runs}")
        delta = EmulatorDelta.between(before, self.control.stats())
        runs = [
            {
                "run_id": r["runId"],
                "status": r["status"],
                "partitions": "{start}..{end}".format(
                    **{
                        t["key"].rsplit("_", 1)[1]: t["value"]
                        for t in r["tags"]
                        if t["key"].startswith("dagster/asset_partition_range_")
                    }
                ),
                "launched_after_edit_s": round(r["creationTime"] - edited_at, 2),
                "run_s": round(r["endTime"] - r["startTime"], 2),
                "queued_s": round(r["startTime"] - r["creationTime"], 2),
            }
            for r in sorted(new_runs, key=lambda r: r["creationTime"])
        ]
        reads = delta.requests("GET")
        calls = delta.requests()
        run_s = [r["run_s"] for r in runs]
        done_after_edit = max(r["endTime"] for r in new_runs) - edited_at
        buckets = sorted({r[0] for r in self.sql(
            "SELECT sync_partition FROM products WHERE id = ANY(%s::uuid[])", (ids,))})  # fmt: skip
        endpoints = ", ".join(
            f"{e} {sum(s.values())}" for e, s in sorted(delta.by_endpoint.items())
        )
        emit(
            f"cost of a {len(ids)}-row edit ({label}, {len(buckets)} bucket(s), "
            f"{self.args.products:,} products): {len(runs)} run(s), {calls} Stripe calls "
            f"({calls - reads} writes, {reads} reads: {endpoints}), run start->success "
            f"{', '.join(f'{s:.1f}' for s in run_s)} s, last run done {done_after_edit:.1f} s "
            f"after the edit (targets <= 15 calls, <= 10 s; load {load_before[0]})",
            {
                "figure": f"cost_{label}",
                "options": self.options,
                "rows": len(ids),
                "buckets": buckets,
                "runs": runs,
                "stripe_calls": calls,
                "stripe_writes": calls - reads,
                "stripe_reads": reads,
                "stripe": delta.as_dict(),
                "last_run_done_after_edit_s": round(done_after_edit, 2),
                "loadavg_before": load_before,
                "targets": {"stripe_calls": 15, "run_s": 10.0},
                "met": calls <= 15 and all(s <= 10.0 for s in run_s) and len(runs) == 1,
            },
        )

    def latency(self) -> None:
        """CMS edits and dashboard drifts at random moments of one window."""
        self.settle()
        load_before = loadavg()
        window_s = self.args.window_min * 60.0
        all_ids = [
            (str(i), p, n)
            for i, p, n in self.sql("SELECT id, stripe_product_id, name FROM products ORDER BY id")
        ]
        chosen = self.rng.sample(all_ids, self.args.edits + self.args.drifts)
        plan = [(self.rng.uniform(0, window_s), "edit", row) for row in chosen[: self.args.edits]]
        plan += [(self.rng.uniform(0, window_s), "drift", row) for row in chosen[self.args.edits :]]
        plan.sort(key=lambda p: p[0])
        how = self.args.poll
        if how == "auto":
            trial = time.monotonic()
            self.stripe_names()
            trial_s = time.monotonic() - trial
            how = "control" if trial_s < 0.15 else "api"
            log(f"the control API's product table took {trial_s:.2f} s: polling by {how}")
        self.poll_seconds.clear()
        known = {r["runId"] for r in self.runs()}
        before = self.control.stats()
        own_before = self.own_calls
        token = uuid.uuid4().hex[:8]
        outstanding: dict[str, tuple[str, str, float]] = {}  # stripe id -> (kind, wanted, t0)
        latencies: dict[str, list[float]] = {"edit": [], "drift": []}
        started = time.monotonic()
        log(f"window of {window_s:.0f} s: {self.args.edits} edits, {self.args.drifts} drifts")
        last_action = 0.0
        edits_made = 0
        max_wait_s = self.args.max_wait_s
        while plan or outstanding:
            elapsed = time.monotonic() - started
            while plan and plan[0][0] <= elapsed:
                _, kind, (row_id, product_id, cms_name) = plan.pop(0)
                if kind == "edit":
                    edits_made += 1
                    wanted = f"Bench edit {edits_made} {token}"
                    self.sql("UPDATE products SET name = %s WHERE id = %s", (wanted, row_id))
                else:
                    wanted = cms_name
                    self.stripe.v1.products.update(
                        product_id, {"name": f"Edited in the dashboard {token}"}
                    )
                    self.own_calls += 1
                outstanding[product_id] = (kind, wanted, time.time())
                last_action = time.monotonic()
                log(f"{kind} of {product_id} at {elapsed:.0f} s")
            if outstanding:
                names = self.names_of(list(outstanding), how)
                now = time.time()
                for product_id, (kind, wanted, t0) in list(outstanding.items()):
                    if names.get(product_id) == wanted:
                        latencies[kind].append(now - t0)
                        del outstanding[product_id]
                        log(f"{kind} of {product_id} in Stripe after {now - t0:.1f} s")
            if not plan and outstanding and time.monotonic() - last_action > max_wait_s:
                break
            next_action = plan[0][0] - (time.monotonic() - started) if plan else 1.0
            poll = 1.0 if how == "api" else max(1.0, 3 * self.poll_seconds[-1])
            time.sleep(max(0.05, min(next_action, poll if outstanding else next_action)))
        delta = EmulatorDelta.between(before, self.control.stats())
        missed = {k: sum(1 for v in outstanding.values() if v[0] == k) for k in ("edit", "drift")}
        runs = [r for r in self.runs() if r["runId"] not in known]
        by_job = Counter(r["jobName"] for r in runs)
        catalog_run_s = [
            round(r["endTime"] - r["startTime"], 1)
            for r in runs
            if r["jobName"] == CATALOG_JOB and r["endTime"] and r["startTime"]
        ]
        common = {
            "options": self.options,
            "loadavg_before": load_before,
            "window_runs_by_job": dict(by_job),
            "window_catalog_run_s": catalog_run_s,
            "window_stripe_calls": delta.requests(),
            "window_stripe_calls_by_the_bench": self.own_calls - own_before,
            "window_stripe_429": delta.rate_limited,
            "poll": how,
            "poll_s_median": round(statistics.median(self.poll_seconds), 3)
            if self.poll_seconds
            else None,
            "window_s": round(time.monotonic() - started, 1),
        }
        edit = summary(latencies["edit"])
        emit(
            f"edit -> Stripe ({self.args.edits} CMS edits over {self.args.window_min:g} min, "
            f"tick {self.args.tick_s} s, {self.args.products:,} products, live limits): "
            f"p50 {edit['p50_s']} s, p95 {edit['p95_s']} s, max {edit['max_s']} s, "
            f"{missed['edit']} not reached in {max_wait_s:.0f} s (targets p95 <= 60, p50 <= 35; "
            f"load {load_before[0]} -> {loadavg()[0]})",
            {
                "figure": "edit_latency",
                **edit,
                "not_reached": missed["edit"],
                "targets": {"p95_s": 60.0, "p50_s": 35.0},
                "met": bool(edit["n"])
                and not missed["edit"]
                and edit["p95_s"] <= 60.0
                and edit["p50_s"] <= 35.0,
                **common,
            },
        )
        drift = summary(latencies["drift"])
        emit(
            f"dashboard drift -> repaired ({self.args.drifts} renames through the emulator's API "
            f"in the same window): p50 {drift['p50_s']} s, p95 {drift['p95_s']} s, max "
            f"{drift['max_s']} s, {missed['drift']} not repaired in {max_wait_s:.0f} s "
            f"(target p95 <= 90; load {load_before[0]} -> {loadavg()[0]})",
            {
                "figure": "drift_repair",
                **drift,
                "not_reached": missed["drift"],
                "targets": {"p95_s": 90.0},
                "met": bool(drift["n"]) and not missed["drift"] and drift["p95_s"] <= 90.0,
                **common,
            },
        )

    def idle(self) -> None:
        settled_s = self.settle()
        load_before = loadavg()
        idle_s = self.args.idle_min * 60.0
        known = {r["runId"] for r in self.runs()}
        before = self.control.stats()
        t0 = time.time()
        log(f"idle window of {idle_s:.0f} s (settled after {settled_s} s)")
        time.sleep(idle_s)
        delta = EmulatorDelta.between(before, self.control.stats())
        runs = [r for r in self.runs() if r["runId"] not in known]
        ticks = self.ticks("catalog_sync_sensor", t0)
        tick_status = Counter(t["status"] for t in ticks)
        per_hour = 60.0 / self.args.idle_min
        calls = delta.requests()
        emit(
            f"idle ({self.args.idle_min:g} min measured, no change, {self.args.products:,} "
            f"products): {len(runs)} runs launched, {calls} Stripe calls, "
            f"{len(ticks)} catalogue sensor ticks ({dict(tick_status)}); extrapolated to an hour: "
            f"{len(runs) * per_hour:g} runs, {calls * per_hour:g} calls (target 0 and 0; "
            f"load {load_before[0]} -> {loadavg()[0]})",
            {
                "figure": "idle",
                "options": self.options,
                "measured_s": idle_s,
                "runs_launched": len(runs),
                "runs_by_job": dict(Counter(r["jobName"] for r in runs)),
                "stripe_calls": calls,
                "stripe": delta.as_dict(),
                "catalog_sensor_ticks": len(ticks),
                "catalog_sensor_tick_status": dict(tick_status),
                "extrapolated_per_hour": {
                    "runs": len(runs) * per_hour,
                    "stripe_calls": calls * per_hour,
                },
                "loadavg_before": load_before,
                "targets": {"runs": 0, "stripe_calls": 0},
                "met": not runs and calls == 0,
                "note": f"{GAP_FILL_SCHEDULE} stopped during the bench (see its docstring)",
            },
        )


def kill_own_children() -> None:
    """The watchdog's last resort for ``dagster dev``: this process's children, by pid."""
    for child in psutil.Process().children():
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            os.killpg(child.pid, signal.SIGKILL)


def run(args: argparse.Namespace, project: Path) -> None:
    env = clean_env()
    up = subprocess.run(
        [*COMMAND, "sandbox", "up"], cwd=project, env=env, capture_output=True, text=True
    )
    if up.returncode != 0:
        raise RuntimeError(f"sandbox up failed: {up.stderr}")
    with (project / ".env").open("a") as dotenv:
        for name, value in LIVE_CLIENT_ENV.items():
            dotenv.write(f"{name}={value}\n")
        dotenv.write(f"STRIPE_CATALOG_SENSOR_INTERVAL_S={args.tick_s}\n")
        dotenv.write(f"STRIPE_EVENTS_SENSOR_INTERVAL_S={args.tick_s}\n")
    bench = Bench(args, project)
    try:
        setup = bench.setup()
        log(f"setup: {setup}; emulator at live limits, 100 +/- 50 ms")
        bench.migrate_nothing()
        log("starting dagster dev")
        with dagster_dev(project, env, project.parent / "dagster-dev.log") as url:
            bench.url = url
            log(f"dagster dev at {url}; {GAP_FILL_SCHEDULE}: {bench.stop_gap_fill()}")
            phases: list[tuple[str, Callable[[], None]]] = []
            ids = [
                (str(i), p)
                for i, p in bench.sql("SELECT id, sync_partition FROM products ORDER BY id")
            ]
            bucket = bench.rng.randrange(16)
            one_bucket = bench.rng.sample([i for i, p in ids if p == bucket], 5)
            spread = bench.rng.sample([i for i, _ in ids if i not in one_bucket], 5)
            phases.append(("cost, one bucket", lambda: bench.cost("one_bucket", one_bucket)))
            phases.append(("cost, spread", lambda: bench.cost("spread", spread)))
            phases.append(("latency window", bench.latency))
            phases.append(("idle window", bench.idle))
            for name, phase in phases:
                log(f"phase: {name}")
                phase()
    finally:
        bench.control.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--edits", type=int, default=20, help="CMS edits in the window")
    parser.add_argument("--drifts", type=int, default=5, help="dashboard edits in the window")
    parser.add_argument("--window-min", type=float, default=10.0)
    parser.add_argument("--idle-min", type=float, default=10.0)
    parser.add_argument("--tick-s", type=int, default=30, help="both sensors' interval")
    parser.add_argument("--migrate-repeats", type=int, default=3)
    parser.add_argument(
        "--max-wait-s", type=float, default=300.0, help="after the last edit, wait this long"
    )
    parser.add_argument(
        "--poll",
        choices=("auto", "control", "api"),
        default="auto",
        help="how the latency window sees Stripe: the control API's whole product table, or "
        "GET /v1/products/{id} of each outstanding product; auto: control if it answers in < 0.15 s",
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep-log", help="copy dagster dev's log to this file at the end")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-continuous-"))
    remove_at_exit(workdir)
    project = new_project(workdir / "proj")

    def last_resort() -> None:
        kill_own_children()
        with contextlib.suppress(Exception):
            sandbox_down(project)

    try:
        with Watchdog(args.timeout_s, last_resort=last_resort):
            run(args, project)
    finally:
        with contextlib.suppress(Exception):
            sandbox_down(project)
        dev_log = workdir / "dagster-dev.log"
        if args.keep_log and dev_log.exists():
            shutil.copy(dev_log, args.keep_log)
        shutil.rmtree(workdir, ignore_errors=True)
        left = psutil.Process().children(recursive=True)
        if left:
            log(f"processes still alive: {left}")


if __name__ == "__main__":
    main()
