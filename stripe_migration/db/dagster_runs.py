"""Housekeeping of the Dagster instance for runs started from the command line.

A run that ``stripe-migration`` executes in its own process holds a slot of the ``stripe_api``
pool while its Stripe step runs. If that process is killed (SIGKILL, a lost machine), the run
stays STARTED and keeps the slot: only ``dagster-daemon``'s run monitoring would notice. So CLI runs
carry the pid and host of the process running them, and before starting a new run the CLI marks
the runs whose process is gone as failed and frees their slots, so the next run resumes at once.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

RUNNER_PID_TAG = "stripe_migration/runner_pid"
RUNNER_HOST_TAG = "stripe_migration/runner_host"


def runner_tags() -> dict[str, str]:
    """Tags identifying this process as the one executing a run."""
    return {RUNNER_PID_TAG: str(os.getpid()), RUNNER_HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark this host's CLI runs whose process died as failed, free their pool slots, and return
    their ids."""
    records = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={RUNNER_HOST_TAG: socket.gethostname()},
        )
    )
    failed = []
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(RUNNER_PID_TAG, "")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, message=f"the process running it (pid {pid}) is gone: it was killed or crashed"
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed
