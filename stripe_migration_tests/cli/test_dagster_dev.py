"""A data engineer's reflex: `stripe-migration sandbox up`, then plain `dagster dev` in the same folder.

The folder holds what the repository root holds for Dagster (dagster.yaml, workspace.yaml) and
the .env that `sandbox up` writes; nothing else is set in the environment. `dagster dev` must load
the code location on the sandbox with the PostgreSQL instance, and a run started by our CLI in
that folder must show in its UI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
COMMAND = [
    sys.executable,
    "-c",
    "from stripe_migration.cli import main; main(prog_name='stripe-migration')",
]
LOCATION_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "SUPABASE_", "DAGSTER_", "VITE_"))
        and k not in ("DATABASE_URL",)
    }


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


def _wait_until_loaded(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError, KeyError, TypeError, ValueError):
            entries = _graphql(url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [
                    e
                    for e in entries
                    if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"
                ]
                assert not errors, errors
                return
        time.sleep(1.0)
    pytest.fail("dagster dev did not load the code location:\n" + log.read_text()[-3000:])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # anything of its group that is left


def test_plain_dagster_dev_after_sandbox_up_runs_on_the_sandbox(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, project / name)
    env = _clean_env()
    up = subprocess.run(
        [*COMMAND, "sandbox", "up"], cwd=project, env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    assert "DAGSTER_PG_URL=" in (project / ".env").read_text()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster-dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Run from a background job without job control, this process ignores SIGINT, and an
            # ignored signal stays ignored across exec: dagster dev would then shrug off the
            # SIGINT that stops it (as a Ctrl+C in a terminal would). Restore it in the child.
            preexec_fn=_default_sigint,
        )
    try:
        _wait_until_loaded(url, dev, log)
        assets = _graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        keys = {"/".join(a["assetKey"]["path"]) for a in assets}
        assert {"supabase_products", "catalog_plan", "stripe_products", "migration_report"} <= keys
        # The instance is the PostgreSQL one of dagster.yaml, fed by the .env.
        info = _graphql(url, "{ instance { info } }")["instance"]["info"]
        assert "run_storage: PostgresRunStorage" in info
        assert "event_log_storage: PostgresEventLogStorage" in info

        check = subprocess.run(
            [*COMMAND, "check", "--json"], cwd=project, env=env, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        run_id = json.loads(check.stdout)["run_id"]
        run = _graphql(
            url,
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName } } }",
            {"id": run_id},
        )["runOrError"]
        assert run == {"__typename": "Run", "status": "SUCCESS", "jobName": "preflight"}
    finally:
        _stop(dev)
        subprocess.run([*COMMAND, "sandbox", "down"], cwd=project, env=env, capture_output=True)
    assert not list(project.glob(".tmp_dagster_home_*"))  # dagster dev cleaned up after itself
