"""Continuous sync with nobody launching a run (issue 14): `sandbox up`, then plain `dagster dev`.

The sandbox's `.env` turns the catalogue sensor on and points the emulator's webhooks at the
receiver `sandbox up` started; the daemon of `dagster dev` ticks both sensors (every 3 s here,
``STRIPE_*_SENSOR_INTERVAL_S``). New products, a CMS edit, a deleted row and an edit made in
Stripe's dashboard (through the emulator's API) must each reach the right state in Stripe; a tick
with nothing new must launch nothing, and no work is launched twice.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import stripe

from stripe_migration.db.urls import libpq_url
from stripe_migration.sandbox.stripe_emulator.control import EmulatorControl
from stripe_migration_tests.fixtures.dagster_dev import (
    COMMAND,
    clean_env,
    dagster_dev,
    graphql,
    new_project,
    read_env_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Each state must be reached within this (a tick, a run's start ~8 s, its work).
REACHED_S = 120.0
TICK_S = 3

RUNS_QUERY = """
query {
  runsOrError(filter: {pipelineName: "migrate_catalog"}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""
TICKS_QUERY = """
query($name: String!) {
  instigationStateOrError(instigationSelector: {
    repositoryLocationName: "stripe_migration", repositoryName: "__repository__", name: $name
  }) {
    ... on InstigationState { status ticks(limit: 20) { status timestamp runIds skipReason } }
  }
}
"""


def _wait_for(what: str, condition: Callable[[], Any], log: Path) -> Any:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after
    ``REACHED_S`` (with the end of dagster dev's log)."""
    deadline = time.monotonic() + REACHED_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"not reached in {REACHED_S:.0f} s: {what}\n{log.read_text()[-4000:]}")


class Sandbox:
    """The running sandbox of a project folder: its CMS database and its Stripe emulator."""

    def __init__(self, env: dict[str, str]) -> None:
        self.database_url = libpq_url(env["DATABASE_URL"])
        self.control = EmulatorControl(env["STRIPE_API_BASE"])
        self.stripe = stripe.StripeClient(
            env["STRIPE_SECRET_KEY"], base_addresses={"api": env["STRIPE_API_BASE"]}
        )

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def products(self) -> dict[str, dict[str, Any]]:
        """Stripe's products by the CMS id in their metadata."""
        return {
            p["metadata"]["cms_id"]: p
            for p in self.control.objects("product")
            if p["metadata"].get("cms_id")
        }


def _runs(url: str) -> list[dict[str, Any]]:
    return graphql(url, RUNS_QUERY)["runsOrError"]["results"]


def _settled(url: str) -> bool:
    return all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in _runs(url))


def test_the_catalogue_follows_the_cms_and_the_dashboard_with_nobody_launching(
    tmp_path: Path,
) -> None:
    project = new_project(tmp_path / "proj")
    env = clean_env()
    up = subprocess.run(
        [*COMMAND, "sandbox", "up"], cwd=project, env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    settings = read_env_file(project / ".env")
    assert settings["STRIPE_CATALOG_AUTO_SYNC"] == "true"
    with (project / ".env").open("a") as dotenv:
        dotenv.write(f"STRIPE_CATALOG_SENSOR_INTERVAL_S={TICK_S}\n")
        dotenv.write(f"STRIPE_EVENTS_SENSOR_INTERVAL_S={TICK_S}\n")
    box = Sandbox(settings)
    log = tmp_path / "dagster-dev.log"
    try:
        with dagster_dev(project, env, log) as url:
            # New products: seeded while dagster dev runs.
            seeded = subprocess.run(
                [*COMMAND, "sandbox", "seed", "--products", "30", "--bad-fraction", "0"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
            )
            assert seeded.returncode == 0, seeded.stderr
            ids = [str(r[0]) for r in box.sql("SELECT id FROM products ORDER BY id")]
            assert len(ids) == 30
            _wait_for("30 new products in Stripe", lambda: len(box.products()) == 30, log)
            _wait_for("the first runs finished", lambda: _settled(url), log)

            # A CMS edit.
            renamed = ids[0]
            box.sql("UPDATE products SET name = 'Renamed by an editor' WHERE id = %s", (renamed,))
            _wait_for(
                "the CMS rename in Stripe",
                lambda: box.products()[renamed]["name"] == "Renamed by an editor",
                log,
            )

            # A deleted row: its product archived, never deleted.
            deleted = ids[1]
            box.sql("DELETE FROM products WHERE id = %s", (deleted,))
            _wait_for(
                "the deleted row's product archived",
                lambda: box.products()[deleted]["active"] is False,
                log,
            )

            # An edit in Stripe's dashboard: event → receiver → stripe_events → processing
            # sensor → drift on the row → catalogue sensor → a repair run.
            drifted = ids[2]
            [(cms_name,)] = box.sql("SELECT name FROM products WHERE id = %s", (drifted,))
            product_id = box.products()[drifted]["id"]
            box.stripe.v1.products.update(product_id, {"name": "Edited in the dashboard"})
            _wait_for(
                "the dashboard edit repaired",
                lambda: box.products()[drifted]["name"] == cms_name,
                log,
            )
            _wait_for("every run finished", lambda: _settled(url), log)

            runs = _runs(url)
            assert all(r["status"] == "SUCCESS" for r in runs), runs
            keys = [
                next((t["value"] for t in r["tags"] if t["key"] == "dagster/run_key"), None)
                for r in runs
            ]
            assert None not in keys, "every run was launched by the sensor"
            assert len(set(keys)) == len(keys), f"the same work launched twice: {keys}"

            # Nothing new: the ticks that follow launch nothing.
            settled_at = time.time()
            quiet = _wait_for(
                "three ticks after the last run",
                lambda: [
                    t
                    for t in graphql(url, TICKS_QUERY, {"name": "catalog_sync_sensor"})[
                        "instigationStateOrError"
                    ]["ticks"]
                    if t["timestamp"] > settled_at
                ][2:],
                log,
            )
            assert all(not t["runIds"] for t in quiet), quiet
            assert len(_runs(url)) == len(runs)
    finally:
        subprocess.run([*COMMAND, "sandbox", "down"], cwd=project, env=env, capture_output=True)
