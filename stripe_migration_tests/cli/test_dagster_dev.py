"""A data engineer's reflex: `stripe-migration sandbox up`, then plain `dagster dev` in the same folder.

The folder holds what the repository root holds for Dagster (dagster.yaml, workspace.yaml) and
the .env that `sandbox up` writes; nothing else is set in the environment. `dagster dev` must load
the code location on the sandbox with the PostgreSQL instance, and a run started by our CLI in
that folder must show in its UI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stripe_migration_tests.fixtures.dagster_dev import (
    COMMAND,
    clean_env,
    dagster_dev,
    graphql,
    new_project,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_plain_dagster_dev_after_sandbox_up_runs_on_the_sandbox(tmp_path: Path) -> None:
    project = new_project(tmp_path / "proj")
    env = clean_env()
    up = subprocess.run(
        [*COMMAND, "sandbox", "up"], cwd=project, env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    assert "DAGSTER_PG_URL=" in (project / ".env").read_text()
    try:
        with dagster_dev(project, env, tmp_path / "dagster-dev.log") as url:
            assets = graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
            keys = {"/".join(a["assetKey"]["path"]) for a in assets}
            assert {
                "supabase_products",
                "catalog_plan",
                "stripe_products",
                "migration_report",
            } <= keys
            # The instance is the PostgreSQL one of dagster.yaml, fed by the .env.
            info = graphql(url, "{ instance { info } }")["instance"]["info"]
            assert "run_storage: PostgresRunStorage" in info
            assert "event_log_storage: PostgresEventLogStorage" in info

            check = subprocess.run(
                [*COMMAND, "check", "--json"], cwd=project, env=env, capture_output=True, text=True
            )
            assert check.returncode == 0, check.stderr
            run_id = json.loads(check.stdout)["run_id"]
            run = graphql(
                url,
                "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName } } }",
                {"id": run_id},
            )["runOrError"]
            assert run == {"__typename": "Run", "status": "SUCCESS", "jobName": "preflight"}
    finally:
        subprocess.run([*COMMAND, "sandbox", "down"], cwd=project, env=env, capture_output=True)
    assert not list(project.glob(".tmp_dagster_home_*"))  # dagster dev cleaned up after itself
