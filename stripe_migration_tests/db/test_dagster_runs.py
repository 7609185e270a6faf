"""A killed CLI run's pool slot is released before the next run (Dagster on PostgreSQL)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from stripe_migration.db.dagster_runs import RUNNER_PID_TAG, fail_dead_runs, runner_tags

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance(empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_URL", empty_db)
    with dg.DagsterInstance.get() as instance:
        yield instance


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    run = instance.create_run_for_job(
        dg.GraphDefinition(name="g", node_defs=[]).to_job(), tags=tags
    )
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value="PIPELINE_START", job_name=run.job_name, message="started"
        ),
    )
    return instance.get_run_by_id(run.run_id)


def test_dead_runs_are_failed_and_release_their_slots(instance: dg.DagsterInstance) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = instance.event_log_storage
    storage.set_concurrency_slots("stripe_api", 1)

    dead_run = _started_run(instance, {**runner_tags(), RUNNER_PID_TAG: str(dead.pid)})
    live_run = _started_run(instance, runner_tags())  # this very process: alive
    assert dead_run.status == dg.DagsterRunStatus.STARTED
    storage.claim_concurrency_slot("stripe_api", dead_run.run_id, "stripe_catalog")
    assert storage.get_concurrency_info("stripe_api").active_slot_count == 1

    assert fail_dead_runs(instance) == [dead_run.run_id]
    assert instance.get_run_by_id(dead_run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live_run.run_id).status == dg.DagsterRunStatus.STARTED
    assert storage.get_concurrency_info("stripe_api").active_slot_count == 0
    assert fail_dead_runs(instance) == []
