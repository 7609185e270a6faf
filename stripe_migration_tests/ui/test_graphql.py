"""The catalogue as the Dagster UI serves it: a running webserver's GraphQL API shows the asset
graph, its partitions, its checks and jobs, runs the migration and returns its report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
import pytest

from stripe_migration.definitions import defs
from stripe_migration.settings import CATALOG_PARTITION_COUNT
from stripe_migration.webhook.store import insert_event, record_from_mapping
from stripe_migration_tests.ui.conftest import (
    ALL_PARTITIONS_TAGS,
    LOCATION,
    REPOSITORY,
    DagsterUI,
    SeededCatalog,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CATALOG_ASSETS = {
    "supabase_products",
    "products_backup",
    "validated_products",
    "catalog_plan",
    "stripe_products",
    "stripe_prices",
    "migration_report",
}
CHECKS = {
    "stripe_products": {
        "every_valid_product_has_stripe_ids",
        "stripe_matches_cms",
        "one_stripe_product_per_cms_id",
    },
    "validated_products": {"valid_rows_match_schema", "every_invalid_row_has_a_reason"},
}
JOBS = {"migrate_catalog", "plan_catalog", "rollback_catalog", "preflight"}
PARTITION_KEYS = [f"{bucket:02d}" for bucket in range(CATALOG_PARTITION_COUNT)]

_CATALOG_GROUP = """
query CatalogGroup($group: AssetGroupSelector!) {
  assetNodes(group: $group) {
    assetKey { path }
    groupName
    description
    dependencyKeys { path }
    isPartitioned
    partitionKeys
    jobNames
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking description } }
    }
  }
}
"""

_JOBS = """
query Jobs($repo: RepositorySelector!) {
  repositoryOrError(repositorySelector: $repo) {
    __typename
    ... on Repository { jobs { name description isAssetJob } }
  }
}
"""

_MATERIALIZATIONS = """
query Materializations($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 100) {
        runId
        partition
        metadataEntries {
          label
          __typename
          ... on MarkdownMetadataEntry { mdStr }
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""

_CHECK_EXECUTIONS = """
query CheckExecutions($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 100) {
    runId
    status
    partition
    evaluation { success }
  }
}
"""


def _key(node: dict[str, Any]) -> str:
    return "/".join(node["assetKey"]["path"])


@pytest.fixture(scope="module")
def catalog_nodes(dagster_ui: DagsterUI) -> dict[str, dict[str, Any]]:
    """The webserver's asset nodes of the ``catalog`` group, by asset key."""
    group = {
        "groupName": "catalog",
        "repositoryName": REPOSITORY,
        "repositoryLocationName": LOCATION,
    }
    nodes = dagster_ui.graphql(_CATALOG_GROUP, {"group": group})["assetNodes"]
    return {_key(node): node for node in nodes}


def test_catalog_group_holds_the_catalogue_assets(catalog_nodes: dict[str, dict]) -> None:
    assert set(catalog_nodes) == CATALOG_ASSETS
    for name, node in catalog_nodes.items():
        assert node["groupName"] == "catalog", name
        assert node["description"], f"{name} has no description in the UI"
        assert "migrate_catalog" in node["jobNames"], name


def test_asset_dependencies_are_the_defined_graph(catalog_nodes: dict[str, dict]) -> None:
    graph = defs.resolve_asset_graph()
    for name, node in catalog_nodes.items():
        shown = {"/".join(k["path"]) for k in node["dependencyKeys"]}
        defined = {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}
        assert shown == defined, name
    # The flow the issue describes: read → validate → plan → apply → report.
    edges = {(dep, name) for name, node in catalog_nodes.items() for dep in _deps(node)}
    assert {
        ("supabase_products", "products_backup"),
        ("supabase_products", "validated_products"),
        ("validated_products", "catalog_plan"),
        ("catalog_plan", "stripe_products"),
        ("catalog_plan", "stripe_prices"),
        ("stripe_products", "migration_report"),
    } <= edges


def _deps(node: dict[str, Any]) -> Iterator[str]:
    return ("/".join(k["path"]) for k in node["dependencyKeys"])


def test_catalogue_assets_have_the_16_bucket_partitions_and_the_report_one_per_run(
    catalog_nodes: dict[str, dict],
) -> None:
    for name, node in catalog_nodes.items():
        if name == "migration_report":  # a run's figures, plotted run over run
            assert not node["isPartitioned"]
            continue
        assert node["isPartitioned"], name
        assert node["partitionKeys"] == PARTITION_KEYS, name


def test_asset_checks_are_attached_to_their_assets(catalog_nodes: dict[str, dict]) -> None:
    for asset, expected in CHECKS.items():
        result = catalog_nodes[asset]["assetChecksOrError"]
        assert result["__typename"] == "AssetChecks", result
        checks = {c["name"]: c for c in result["checks"]}
        assert set(checks) == expected, asset
        assert all(c["description"] for c in checks.values()), asset
    verification = catalog_nodes["stripe_products"]["assetChecksOrError"]["checks"]
    assert all(c["blocking"] for c in verification), "a failed verification must stop the run"


def test_catalogue_jobs_are_listed(dagster_ui: DagsterUI) -> None:
    repo = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    result = dagster_ui.graphql(_JOBS, {"repo": repo})["repositoryOrError"]
    assert result["__typename"] == "Repository", result
    jobs = {job["name"]: job for job in result["jobs"]}
    assert set(jobs) >= JOBS
    assert all(jobs[name]["description"] for name in JOBS)
    assert jobs["migrate_catalog"]["isAssetJob"]


def test_migration_launched_through_graphql_succeeds_and_reports(
    dagster_ui: DagsterUI, seeded_catalog: SeededCatalog, emulator: Any
) -> None:
    run_id = dagster_ui.launch_run("migrate_catalog", ALL_PARTITIONS_TAGS)
    status = dagster_ui.wait_for_run(run_id)
    assert status == "SUCCESS", f"run {run_id} ended {status}\n{dagster_ui.log_tail()}"

    # The run did the work: one Stripe product per valid row, none for the bad ones.
    cms_ids = [p["metadata"]["cms_id"] for p in emulator.control.objects("product")]
    assert sorted(cms_ids) == sorted(seeded_catalog.valid_ids)

    # The report as the UI shows it: the Markdown and the numbers it plots, once for the run
    # (not once per bucket, which a partitions plot would show sixteen times).
    data = dagster_ui.graphql(_MATERIALIZATIONS, {"key": {"path": ["migration_report"]}})
    events = [e for e in data["assetOrError"]["assetMaterializations"] if e["runId"] == run_id]
    assert [e["partition"] for e in events] == [None]
    metadata = {m["label"]: m for m in events[0]["metadataEntries"]}
    report = metadata["report"]
    assert report["__typename"] == "MarkdownMetadataEntry"
    assert report["mdStr"].startswith("# Catalogue migration report")
    for bad_id in seeded_catalog.bad_ids:
        assert bad_id in report["mdStr"], f"bad row {bad_id} is missing from the report"
    assert metadata["created"]["intValue"] == len(seeded_catalog.valid_ids)
    assert metadata["failed"]["intValue"] == len(seeded_catalog.bad_ids)
    assert metadata["duration_s"]["__typename"] == "FloatMetadataEntry"

    # Every check ran in this run and none failed.
    for asset, names in CHECKS.items():
        for name in names:
            variables = {"key": {"path": [asset]}, "check": name}
            executions = [
                e
                for e in dagster_ui.graphql(_CHECK_EXECUTIONS, variables)["assetCheckExecutions"]
                if e["runId"] == run_id
            ]
            evaluated = [e for e in executions if e["evaluation"] is not None]
            assert evaluated, f"{asset}.{name} did not run"
            assert all(e["status"] == "SUCCEEDED" for e in evaluated), (name, evaluated)
            assert all(e["evaluation"]["success"] for e in evaluated), (name, evaluated)


_FAILED_PROCESSING_RUNS = """
query FailedProcessingRuns {
  runsOrError(filter: {pipelineName: "process_stripe_events", statuses: [FAILURE]}) {
    __typename
    ... on Runs { results { runId status } }
  }
}
"""


def test_a_processing_run_whose_batch_failed_whole_is_shown_failed(
    dagster_ui: DagsterUI, gateway: Any
) -> None:
    # An event its handler fails on every time: the batch holding it alone fails whole.
    broken = {
        "id": "evt_ui_broken",
        "object": "event",
        "type": "product.updated",
        "created": int(time.time()),
        "data": {"object": {"object": "product", "name": "No id"}},
    }
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        assert insert_event(conn, record_from_mapping(broken))
    launched = dagster_ui.launch_run("process_stripe_events")
    assert dagster_ui.wait_for_run(launched) in ("SUCCESS", "FAILURE")

    # The batch ran in that run, or in one the daemon's sensor launched first (then that run
    # found nothing to claim): either way the run that processed it reads Failure in the UI.
    deadline = time.monotonic() + 120
    while not (failed := dagster_ui.graphql(_FAILED_PROCESSING_RUNS)["runsOrError"]["results"]):
        assert time.monotonic() < deadline, f"no failed processing run\n{dagster_ui.log_tail()}"
        time.sleep(1.0)
    [run] = failed
    variables = {"key": {"path": ["stripe_events"]}, "check": "batch_processed_cleanly"}
    evaluations = [
        e
        for e in dagster_ui.graphql(_CHECK_EXECUTIONS, variables)["assetCheckExecutions"]
        if e["runId"] == run["runId"] and e["evaluation"] is not None
    ]
    assert evaluations and not any(e["evaluation"]["success"] for e in evaluations), evaluations
