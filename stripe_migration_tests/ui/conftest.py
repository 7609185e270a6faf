"""The Dagster UI over the sandbox, for the UI tests.

- ``dagster_ui`` (session): ``dagster dev`` (the webserver and the daemon, which launches queued
  runs) started from the repository's ``workspace.yaml`` in its own session, on a fresh
  ``DAGSTER_HOME`` holding a copy of the repository's ``dagster.yaml`` whose PostgreSQL storage
  is a new database on the session's embedded server. Its environment points the resources at
  the session's Supabase gateway and Stripe emulator; the runs it launches inherit it.
- ``seeded_catalog``: the gateway's tables emptied, the emulator reset and unthrottled, and a
  small catalogue with a few bad rows inserted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration.sandbox.sample_data import SampleCatalog, generate_catalog, insert_products
from stripe_migration.settings import CATALOG_PARTITION_COUNT

REPO = Path(__file__).resolve().parents[2]
LOCATION = "stripe_migration"
REPOSITORY = "__repository__"
#: The run tags of a run over every catalogue partition (what a single-run backfill sets).
ALL_PARTITIONS_TAGS = {
    "dagster/asset_partition_range_start": "00",
    "dagster/asset_partition_range_end": f"{CATALOG_PARTITION_COUNT - 1:02d}",
}
#: Rates high enough that the UI tests wait for Dagster, not for Stripe's sandbox limits.
FAST = 5000.0
STARTUP_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 180.0
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

_LOCATION_STATUS = """
query LocationStatus {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

_LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

_RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
    ... on RunNotFoundError { message }
  }
}
"""


@dataclass(frozen=True)
class DagsterUI:
    """A running ``dagster dev`` as the tests see it."""

    url: str
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST ``query`` to ``/graphql`` and return its ``data``; GraphQL errors raise."""
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=60.0,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_run(self, job_name: str, tags: dict[str, str] | None = None) -> str:
        """Launch ``job_name`` through GraphQL (as the launchpad does); return the run id."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": job_name,
            },
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]
            },
        }
        result = self.graphql(_LAUNCH_RUN, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"launching {job_name} failed: {result}")
        return result["run"]["runId"]

    def wait_for_run(self, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> str:
        """Poll the run until it ends (or ``timeout_s`` passes); return its final status."""
        deadline = time.monotonic() + timeout_s
        status = "UNKNOWN"
        while time.monotonic() < deadline:
            result = self.graphql(_RUN_STATUS, {"runId": run_id})["runOrError"]
            status = result.get("status", result["__typename"])
            if status in TERMINAL_RUN_STATUSES:
                return status
            time.sleep(0.5)
        raise AssertionError(
            f"run {run_id} still {status} after {timeout_s:.0f} s\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the ``dagster dev`` log (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ui_environment(home: Path, dagster_pg_url: str, gateway: Any, emulator: Any) -> dict[str, str]:
    """The environment of ``dagster dev`` and, by inheritance, of its runs."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        # Nothing from a developer's own sandbox or Stripe account may leak into the test.
        if not name.startswith(("DAGSTER_", "STRIPE_", "SUPABASE_", "VITE_SUPABASE_"))
    }
    return {
        **inherited,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_pg_url,
        "SUPABASE_URL": gateway.url,
        "SUPABASE_SERVICE_ROLE_KEY": gateway.key,
        "DATABASE_URL": gateway.database_url,
        "STRIPE_SECRET_KEY": emulator.secret_key,
        "STRIPE_API_BASE": emulator.url,
        "STRIPE_MAX_REQUESTS_PER_SECOND": str(FAST),
        "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": str(FAST),
    }


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process remains in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_dagster_dev(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop ``dagster dev`` as Ctrl+C in its terminal would (SIGINT to its process group: it
    tells the webserver and the daemon to shut down), then SIGKILL whatever is left after
    ``timeout_s`` (a process started with SIGINT ignored never reacts to it)."""
    pgid = process.pid  # the leader of its own session
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pgid):
        process.poll()  # reap the leader once it exits
        time.sleep(0.1)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _wait_until_loaded(ui: DagsterUI, timeout_s: float) -> None:
    """Wait until ``/server_info`` answers and the code location has loaded."""
    deadline = time.monotonic() + timeout_s
    last = "no answer from /server_info"
    while time.monotonic() < deadline:
        if ui.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with status {ui.process.returncode}\n{ui.log_tail()}"
            )
        try:
            httpx.get(f"{ui.url}/server_info", timeout=5.0).raise_for_status()
            workspace = ui.graphql(_LOCATION_STATUS)["workspaceOrError"]
        except (httpx.HTTPError, AssertionError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
            continue
        entries = {e["name"]: e for e in workspace.get("locationEntries", [])}
        entry = entries.get(LOCATION)
        if entry and entry["loadStatus"] == "LOADED":
            loaded = entry["locationOrLoadError"]
            if loaded["__typename"] == "PythonError":
                raise RuntimeError(f"code location {LOCATION} failed to load: {loaded['message']}")
            return
        last = f"code location {LOCATION}: {entry['loadStatus'] if entry else 'not listed'}"
        time.sleep(0.5)
    raise RuntimeError(f"dagster dev not ready after {timeout_s:.0f} s ({last})\n{ui.log_tail()}")


@pytest.fixture(scope="session")
def dagster_ui(
    pg_server: LocalPostgres,
    supabase_gateway: Any,
    stripe_emulator: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DagsterUI]:
    """``dagster dev`` on the sandbox, on a fresh instance in PostgreSQL, for the session."""
    home = tmp_path_factory.mktemp("dagster_ui_home")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    dagster_pg_url = pg_server.create_database("ui_dagster")
    port = _free_port()
    log_path = home / "dagster-dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(REPO / "workspace.yaml"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            # Run from DAGSTER_HOME: `dagster dev` loads ./.env, and a developer's .env in the
            # repository would otherwise point the test's runs at their own sandbox.
            cwd=home,
            env=_ui_environment(home, dagster_pg_url, supabase_gateway, stripe_emulator),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ui = DagsterUI(url=f"http://127.0.0.1:{port}", home=home, log_path=log_path, process=process)
    try:
        _wait_until_loaded(ui, STARTUP_TIMEOUT_S)
        yield ui
    finally:
        stop_dagster_dev(process)


@dataclass(frozen=True)
class SeededCatalog:
    """The catalogue a UI test migrates: its rows and which of them are bad."""

    rows: list[dict[str, Any]]
    bad_ids: frozenset[str]

    @property
    def valid_ids(self) -> set[str]:
        """Ids of the rows the migration should create in Stripe."""
        return {str(r["id"]) for r in self.rows} - self.bad_ids


@pytest.fixture
def seeded_catalog(gateway: Any, emulator: Any) -> SeededCatalog:
    """24 products, 3 of them bad, in the emptied CMS; the emulator empty and unthrottled."""
    emulator.control.configure(
        global_rate_per_s=FAST, endpoint_rate_per_s=FAST, search_rate_per_s=FAST
    )
    sample: SampleCatalog = generate_catalog(24, seed=5, bad_fraction=0.125)
    insert_products(gateway.database_url, sample.rows)
    return SeededCatalog(rows=sample.rows, bad_ids=frozenset(sample.defects))
