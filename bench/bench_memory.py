"""Peak memory (RSS) of the process that runs a migration of a large catalogue through Dagster.

Starts the sandbox in a temporary directory, seeds ``--products`` (100,000) CMS rows, then runs
``migrate_catalog`` over every partition in a **child process** that does nothing else (so the
seeding does not count), with the emulator's rate limits off and no simulated latency by default:
this measures memory, not rate. The child reports its peak RSS (``getrusage``: the kernel's
high-water mark) and, from its own RSS sampled every 0.2 s, the peak within each step. The
sandbox's servers are other processes and are not counted.

Target: under 1 GiB.

``--mode cli`` (default) runs the job through ``stripe-migration migrate``'s own ``run_job``, on
the code location's definitions configured from the environment; ``--mode launched`` with
``dg.execute_job``, the way a run launched from the Dagster UI or a schedule is executed (the CLI
executes the same way); ``--mode in-process`` with ``execute_in_process``, as the command did
before, which keeps every step's output in memory until the run ends (for its result object).

    python bench/bench_memory.py                   # 100,000 products
    python bench/bench_memory.py --products 20000 --latency-ms 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
from harness import (
    ALL_PARTITIONS,
    FAST_CLIENT_ENV,
    FAST_EMULATOR,
    NO_FAULTS,
    EmulatorDelta,
    RunFigures,
    Stack,
    Watchdog,
    emit,
    machine,
    run_job,
    sandbox,
    step_intervals,
    stop_sandbox_now,
)

from stripe_migration.sandbox.sample_data import generate_products
from stripe_migration.sandbox.stack import read_state
from stripe_migration.sandbox.stripe_emulator import EmulatorControl

TARGET_BYTES = 2**30
WORKDIR_ENV = "BENCH_MEMORY_WORKDIR"
MODES = ("cli", "launched", "in-process")
SAMPLE_EVERY_S = 0.2


class RssSampler:
    """This process's RSS every ``SAMPLE_EVERY_S``, as ``(time.time(), bytes)`` pairs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._process = psutil.Process()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._process.memory_info().rss))
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> int:
        """The highest sample in ``[start, end]`` (0 if none)."""
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def _stack(workdir: Path) -> Stack:
    state = read_state(workdir)
    assert state is not None, f"no sandbox in {workdir}"
    control = EmulatorControl(state.env["STRIPE_API_BASE"], timeout_s=120.0)
    return Stack(workdir=workdir, state=state, control=control)


def migrate_catalog_job() -> dg.JobDefinition:
    """The sandbox's ``migrate_catalog`` (``dg.execute_job`` rebuilds the job from this)."""
    stack = _stack(Path(os.environ[WORKDIR_ENV]))
    return stack.definitions(FAST_CLIENT_ENV).resolve_job_def("migrate_catalog")


def cli_run(stack: Stack, instance: dg.DagsterInstance) -> RunFigures:
    """The migration as ``stripe-migration migrate`` runs it: the CLI's own ``run_job`` on the
    code location's definitions, configured from the environment like the command."""
    os.environ.update({**stack.state.env, **FAST_CLIENT_ENV})
    from stripe_migration.cli.console import RunConsole
    from stripe_migration.cli.runner import load_definitions
    from stripe_migration.cli.runner import run_job as cli_run_job

    load_definitions()
    before = stack.control.stats()
    started = time.monotonic()
    with open(os.devnull, "w") as quiet, RunConsole("WARNING", file=quiet, terminal=False) as out:
        outcome = cli_run_job(instance, "migrate_catalog", tags=dict(ALL_PARTITIONS), console=out)
    intervals = step_intervals(instance, outcome.run_id)
    return RunFigures(
        success=outcome.success,
        wall_s=time.monotonic() - started,
        step_s={step: round(end - begin, 3) for step, (begin, end) in intervals.items()},
        intervals=intervals,
        apply=outcome.metadata.get("stripe_catalog", outcome.metadata.get("stripe_products", {})),
        plan=outcome.metadata.get("catalog_plan", {}),
        emulator=EmulatorDelta.between(before, stack.control.stats()),
        failure=None if outcome.success else outcome.reason,
        checks={name: False for name in outcome.failed_checks},
    )


def child(workdir: Path, mode: str) -> None:
    """Run the migration in this process and print its figures as one JSON line."""
    baseline = psutil.Process().memory_info().rss
    stack = _stack(workdir)
    os.environ[WORKDIR_ENV] = str(workdir)
    job = dg.reconstructable(migrate_catalog_job) if mode == "launched" else None
    with RssSampler() as sampler, stack.instance() as instance:
        if mode == "cli":
            run = cli_run(stack, instance)
        else:
            run = run_job(
                stack, stack.definitions(FAST_CLIENT_ENV), instance, reconstructable_job=job
            )
    stack.control.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "success": run.success,
                "failure": run.failure,
                "job_s": round(run.wall_s, 1),
                "products_applied": int(run.apply.get("products_applied", 0)),
                "peak_rss_bytes": peak,
                "rss_before_run_bytes": baseline,
                "peak_rss_by_step_mib": {
                    step: round(sampler.peak_between(start, end) / 2**20, 1)
                    for step, (start, end) in sorted(run.intervals.items(), key=lambda i: i[1])
                },
                "step_s": run.step_s,
                "checks": run.checks,
            }
        ),
        flush=True,
    )


def main() -> int:
    """Seed, run the child, print the figures; exit 1 if the run failed or the target was missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="cli",
        help="cli: the CLI's run_job, as `stripe-migration migrate` runs it; launched: "
        "dg.execute_job, as a run launched from the UI runs; in-process: execute_in_process "
        "(Dagster keeps every step's output in memory until the end)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode)
        return 0

    workdir: list[Path] = []
    figures: dict = {}
    with (
        Watchdog(args.timeout_s, lambda: [stop_sandbox_now(d) for d in workdir]) as dog,
        sandbox("bench-memory-") as stack,
    ):
        workdir.append(stack.workdir)
        started = time.monotonic()
        stack.seed(generate_products(args.products, seed=1, bad_fraction=0.04))
        seed_s = time.monotonic() - started
        stack.emulator(
            **{**FAST_EMULATOR, "latency_ms": args.latency_ms}, **NO_FAULTS, max_in_flight=None
        )
        # The child's stdout holds its JSON line; its logs go to stderr, passed through.
        out = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(stack.workdir),
                "--mode",
                args.mode,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
            timeout=args.timeout_s,
            check=False,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            print(f"memory: the child failed (exit {out.returncode})", file=sys.stderr)
            return 1
        figures = json.loads(lines[-1])
        figures["seed_s"] = round(seed_s, 1)
        figures["machine"] = machine()
    if dog.fired:
        return 124
    peak_mib = figures["peak_rss_bytes"] / 2**20
    met = figures["success"] and figures["peak_rss_bytes"] < TARGET_BYTES
    emit(
        f"memory: peak RSS {peak_mib:.0f} MiB migrating {args.products} products ({args.mode}) "
        f"({figures['products_applied']} applied in {figures['job_s']} s; "
        f"{figures['rss_before_run_bytes'] / 2**20:.0f} MiB before the run); target < 1024 MiB"
        + ("" if figures["success"] else f"; FAILED: {figures['failure']}"),
        {
            "bench": "memory",
            "products": args.products,
            "latency_ms": args.latency_ms,
            "mode": args.mode,
            "peak_rss_mib": round(peak_mib, 1),
            **figures,
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
