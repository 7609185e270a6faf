"""The Dagster UI in a real browser: headless Chromium finds the catalogue in the asset graph,
materializes it over every partition, and sees the run succeed. Screenshots are kept under
``$STRIPE_MIGRATION_SCREENSHOTS`` (default: the test's temporary folder)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_migration.settings import CATALOG_PARTITION_COUNT
from stripe_migration_tests.ui.conftest import (
    ALL_PARTITIONS_TAGS,
    LOCATION,
    RUN_TIMEOUT_S,
    DagsterUI,
    SeededCatalog,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CATALOG_ASSETS = (
    "supabase_products",
    "products_backup",
    "validated_products",
    "catalog_plan",
    "stripe_products",
    "stripe_prices",
    "migration_report",
)
UI_TIMEOUT_MS = 60_000
#: The backfill daemon looks for new backfills every 30 s.
BACKFILL_START_TIMEOUT_S = 120.0

_BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 10) { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """The folder the screenshots go to."""
    folder = Path(os.environ.get("STRIPE_MIGRATION_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(dagster_ui: DagsterUI, tmp_path: Path) -> Iterator[Any]:
    """A page in headless Chromium with a fresh profile, driven by Playwright."""
    if CHROMIUM is None and not _on_ci():
        pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _on_ci():
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    # A fresh instance greets its first visitor with a newsletter dialog over the page.
    dagster_ui.graphql("mutation { setNuxSeen }")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


def _backfill_run(ui: DagsterUI, backfill_id: str) -> str:
    """Wait until the backfill daemon has launched the backfill's run; return its id."""
    deadline = time.monotonic() + BACKFILL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        backfill = ui.graphql(_BACKFILL_RUNS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["runs"]:
            # A single-run backfill policy: all 16 buckets in one run, not one run per bucket
            # (the report, materialized once per migration, may come in a run of its own).
            assert len(backfill["runs"]) <= 2, backfill["runs"]
            ranged = [
                run
                for run in backfill["runs"]
                if ALL_PARTITIONS_TAGS.items()
                <= {t["key"]: t["value"] for t in run["tags"]}.items()
            ]
            if ranged:
                assert len(ranged) == 1, backfill["runs"]
                return ranged[0]["runId"]
        time.sleep(1.0)
    raise AssertionError(
        f"backfill {backfill_id} launched no run in {BACKFILL_START_TIMEOUT_S:.0f} s\n"
        f"{ui.log_tail()}"
    )


_REPORTS = """
query Reports {
  assetOrError(assetKey: {path: ["migration_report"]}) {
    ... on Asset {
      assetMaterializations(limit: 20) {
        runId
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


def _report_of(ui: DagsterUI, run_id: str) -> dict[str, str]:
    """The text metadata of the report about migration run ``run_id``, once the backfill has
    materialized it (in that run or in one of its own)."""
    deadline = time.monotonic() + BACKFILL_START_TIMEOUT_S
    while True:
        for event in ui.graphql(_REPORTS)["assetOrError"].get("assetMaterializations") or []:
            texts = {m["label"]: m.get("text") for m in event["metadataEntries"]}
            if texts.get("migration_run") == run_id:
                return texts
        assert time.monotonic() < deadline, f"no report of run {run_id}\n{ui.log_tail()}"
        time.sleep(1.0)


def test_catalogue_materialized_from_the_asset_graph_succeeds(
    dagster_ui: DagsterUI,
    seeded_catalog: SeededCatalog,
    emulator: Any,
    page: Any,
    screenshots: Path,
) -> None:
    from playwright.sync_api import expect

    # Assertions poll for as long as page actions wait: the UI is slow on a loaded CI machine.
    expect.set_options(timeout=UI_TIMEOUT_MS)

    taken: list[Path] = []

    def shot(name: str) -> None:
        path = screenshots / name
        page.screenshot(path=str(path))
        taken.append(path)

    # The catalog group's lineage: every catalogue asset is a node of the graph.
    group_url = f"{dagster_ui.url}/locations/{LOCATION}/asset-groups/catalog"
    page.goto(group_url)
    expect(page.get_by_text("Asset Group in", exact=False).first).to_be_visible()
    for asset in CATALOG_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    shot("01-asset-graph.png")

    # Materialize all, over every partition: the launch dialog starts a backfill.
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(
        dialog.get_by_text(f"{CATALOG_PARTITION_COUNT} partitions", exact=True).first
    ).to_be_visible()
    shot("02-launch-dialog.png")
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(toast).to_be_visible()
    match = re.search(r"Created backfill (\w+)", toast.inner_text())
    assert match, toast.inner_text()
    backfill_id = match.group(1)

    run_id = _backfill_run(dagster_ui, backfill_id)
    status = dagster_ui.wait_for_run(run_id, RUN_TIMEOUT_S)
    assert status == "SUCCESS", f"run {run_id} ended {status}\n{dagster_ui.log_tail()}"

    # The UI shows it: from the backfill's page to its run, whose status reads Success.
    page.goto(f"{dagster_ui.url}/runs/b/{backfill_id}?tab=runs")
    page.get_by_role("link", name=run_id[:8]).first.click()
    page.wait_for_url(re.compile(rf"/runs/.*{run_id}"))
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    # Wait for the run's logs, so that the screenshot shows its steps, not a spinner.
    expect(page.get_by_text(re.compile(r"^Succeeded \([1-9]\d*\)$"))).to_be_visible()
    expect(page.get_by_text("Loading run logs", exact=False)).to_have_count(0)
    expect(page.get_by_text("RUN_SUCCESS", exact=True).first).to_be_attached()
    shot("03-run-success.png")

    # The report: one materialization about that run (its page lists one per run, with the
    # run's figures), not one per bucket each carrying the whole run's figures.
    report = _report_of(dagster_ui, run_id)
    assert report["partitions"] == "00..15", report
    page.goto(f"{dagster_ui.url}/assets/migration_report?view=events")
    expect(page.get_by_text("Catalogue migration report", exact=True).first).to_be_visible()
    expect(page.get_by_text(run_id, exact=True).first).to_be_visible()  # migration_run
    shot("04-report-events.png")

    # Back on the graph, every partitioned catalogue asset now has all its partitions.
    page.goto(group_url)
    # The graph's partition health refreshes on its own schedule: give a loaded machine time.
    expect(page.get_by_text("100% filled", exact=True)).to_have_count(
        len(CATALOG_ASSETS) - 1, timeout=90_000
    )
    shot("05-asset-graph-after-run.png")

    # And the run did the work: one Stripe product per valid CMS row.
    cms_ids = sorted(p["metadata"]["cms_id"] for p in emulator.control.objects("product"))
    assert cms_ids == sorted(seeded_catalog.valid_ids)
    for path in taken:
        assert path.stat().st_size > 10_000, f"{path} looks blank"
        print(f"screenshot: {path}")
