"""A processing run whose handlers failed is visibly not clean, on real PostgreSQL and real runs:
``batch_processed_cleanly`` passes a clean batch, fails with WARN when some events failed (the run
succeeds) and with ERROR when the batch failed whole (the run fails after recording its attempts,
and the sensor retries the events); an ignored event keeps its reason on its attempt."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from stripe_migration.events.checks import MATERIALIZATIONS_PAGE, batch_outcome
from stripe_migration.events.sensors import in_flight_runs
from stripe_migration_tests.events.test_events_dagster import (
    DELAY,
    EventResources,
    add,
    age_attempts,
    broken_product_event,
    build_defs,
    check_evaluations,
    event_resources,
    payment_failed,
    query,
    run,
    tick,
)

CHECK = "batch_processed_cleanly"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


@pytest.fixture
def events_db(migrated_db: str) -> EventResources:
    return event_resources(migrated_db, retry_delay_s=DELAY, batch_size=10, max_attempts=2)


def unknown_type_event(event_id: str, created: int) -> dict[str, Any]:
    """An event of a type no handler takes."""
    obj = {"id": "cus_1", "object": "customer"}
    return {
        "id": event_id,
        "object": "event",
        "type": "customer.created",
        "created": created,
        "data": {"object": obj},
    }


def failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.is_step_failure]


def materialization(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.asset_materializations_for_node("stripe_events")
    return {k: v.value for k, v in event.metadata.items()}


def failed_events(evaluation: Any) -> list[tuple[str, int, str]]:
    table = evaluation.metadata["failed_events"].value
    return [(r.data["event_id"], r.data["attempt"], r.data["error"]) for r in table.records]


def test_a_clean_batch_passes_and_an_ignored_event_keeps_its_reason(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    defs = build_defs(events_db)
    empty = defs.resolve_job_def("process_stripe_events").execute_in_process(instance=instance)
    assert empty.success
    nothing = check_evaluations(empty)[CHECK]
    assert nothing.passed and nothing.description == "no event was pending"

    base = int(time.time()) - 1000
    add(migrated_db, payment_failed("evt_ok", base), unknown_type_event("evt_unknown", base + 1))
    result = run(defs, instance, tick(instance, events_db).run_requests[0])
    check = check_evaluations(result)[CHECK]
    meta = materialization(result)
    assert check.passed, check.description
    assert check.description == f"batch {meta['batch_id']}: no event failed"
    assert (check.metadata["event_count"].value, check.metadata["failed"].value) == (2, 0)
    assert (meta["succeeded"], meta["ignored"], meta["failed"]) == (1, 1, 0)

    reason = "no handler for event type 'customer.created'; ignored"
    assert query(
        migrated_db,
        "SELECT event_id, status, error_message FROM stripe_event_processing ORDER BY event_id",
    ) == [("evt_ok", "succeeded", None), ("evt_unknown", "ignored", reason)]
    assert query(
        migrated_db,
        "SELECT metadata->>'outcome', metadata->>'detail' FROM stripe_events "
        "WHERE event_id = 'evt_unknown'",
    ) == [("ignored", reason)]


def test_a_batch_with_a_failed_event_succeeds_with_a_failed_warn_check(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    base = int(time.time()) - 1000
    add(migrated_db, payment_failed("evt_ok", base), broken_product_event("evt_bad", base + 1))
    result = run(build_defs(events_db), instance, tick(instance, events_db).run_requests[0])

    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
    check = check_evaluations(result)[CHECK]
    batch_id = materialization(result)["batch_id"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith(
        f"1 of 2 events of batch {batch_id} failed; first: evt_bad: EventDataError: "
    )
    assert check.description.endswith(
        f"failed events are retried after {DELAY} s, up to 2 attempts"
    )
    [(event_id, attempt, error)] = failed_events(check)
    assert (event_id, attempt) == ("evt_bad", 1) and "'data.object.id' is missing" in error
    assert (check.metadata["processed"].value, check.metadata["failed"].value) == (1, 1)
    # The failed event is also a WARNING in the run's log.
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING
    ]
    assert any(m.startswith("evt_bad (attempt 1 of 2): EventDataError") for m in warnings)


def test_a_batch_that_failed_whole_fails_the_run_and_its_events_stay_retriable(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    base = int(time.time()) - 1000
    add(
        migrated_db,
        broken_product_event("evt_bad_1", base),
        broken_product_event("evt_bad_2", base + 1),
    )
    defs = build_defs(events_db)
    [request] = tick(instance, events_db).run_requests
    result = run(defs, instance, request, success=False)

    # The run failed on the check; the asset step before it recorded the batch and succeeded.
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    assert failed_steps(result) == [f"stripe_events_{CHECK}"]
    meta = materialization(result)
    assert (meta["event_count"], meta["failed"], meta["batch_status"]) == (2, 2, "failed")
    check = check_evaluations(result)[CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description.startswith(
        f"all 2 events of batch {meta['batch_id']} failed; first: evt_bad_1: EventDataError: "
    )
    assert [(e, a) for e, a, _ in failed_events(check)] == [("evt_bad_1", 1), ("evt_bad_2", 1)]
    # The dead-events check still ran beside it.
    assert check_evaluations(result)["no_dead_events"].passed
    assert query(
        migrated_db,
        "SELECT e.event_id, e.processed_at IS NULL, e.processing_attempts, p.status, "
        "p.error_message LIKE 'EventDataError%%' FROM stripe_events e "
        "JOIN stripe_event_processing p USING (event_id) ORDER BY e.event_id",
    ) == [("evt_bad_1", True, 1, "failed", True), ("evt_bad_2", True, 1, "failed", True)]

    # The failed run is not in flight; the events wait for their retry delay, then the sensor
    # launches them again under a new run key.
    assert in_flight_runs(instance) == 0
    early = tick(instance, events_db)
    assert not early.run_requests and early.skip_message == "no pending event"
    age_attempts(migrated_db, DELAY + 1)
    [retry] = tick(instance, events_db).run_requests
    assert retry.run_key != request.run_key
    assert retry.tags["stripe_migration/first_event"] == "evt_bad_1"
    last = run(defs, instance, retry, success=False)

    # That was their last attempt: the failed run reports them dead too.
    dead = check_evaluations(last)["no_dead_events"]
    assert not dead.passed and dead.metadata["dead_events"].value == 2
    assert [(e, a) for e, a, _ in failed_events(check_evaluations(last)[CHECK])] == [
        ("evt_bad_1", 2),
        ("evt_bad_2", 2),
    ]
    age_attempts(migrated_db, DELAY + 1)
    assert not tick(instance, events_db).run_requests


def test_the_check_judges_its_own_runs_batch_not_a_newer_one(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    """Runs overlap (up to max_concurrent_batches): clean batches materialized by other runs
    between this run's asset step and its check (more than a page of them) must not hide this
    run's failure."""
    add(migrated_db, broken_product_event("evt_bad", int(time.time()) - 1000))
    run_id = str(uuid.uuid4())
    injected: list[bool] = []

    def another_run_materializes(entry: Any) -> None:
        event = entry.dagster_event
        if event is not None and event.is_step_materialization and not injected:
            injected.append(True)
            for i in range(MATERIALIZATIONS_PAGE + 2):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        "stripe_events", metadata={"batch_id": f"batch-other-{i}", "event_count": 3}
                    )
                )

    instance.add_event_listener(run_id, another_run_materializes)
    result = (
        build_defs(events_db)
        .resolve_job_def("process_stripe_events")
        .execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
    )
    assert injected and not result.success
    latest = instance.get_latest_materialization_event(dg.AssetKey("stripe_events"))
    assert (
        latest.asset_materialization.metadata["batch_id"].value
        == f"batch-other-{MATERIALIZATIONS_PAGE + 1}"
    )
    check = check_evaluations(result)[CHECK]
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description.startswith(
        f"the one event of batch {materialization(result)['batch_id']}"
    )


@pytest.mark.parametrize(
    ("metadata", "passed", "severity", "said"),
    [
        (None, True, None, "stripe_events has no batch yet"),
        ({"batch_id": "", "event_count": 0, "failed": 0}, True, None, "no event was pending"),
        (
            {
                "batch_id": "b",
                "event_count": 3,
                "processed": 1,
                "failed": 2,
                "batch_status": "partial",
            },
            False,
            dg.AssetCheckSeverity.WARN,
            "2 of 3 events of batch b failed",
        ),
        (
            # One failed, two skipped (archived or claimed again meanwhile): nothing processed.
            {
                "batch_id": "b",
                "event_count": 3,
                "processed": 0,
                "failed": 1,
                "batch_status": "failed",
            },
            False,
            dg.AssetCheckSeverity.ERROR,
            "1 of 3 events of batch b failed, none processed",
        ),
    ],
)
def test_the_verdict_follows_the_batch_status(
    metadata: dict[str, Any] | None,
    passed: bool,
    severity: dg.AssetCheckSeverity | None,
    said: str,
) -> None:
    result = batch_outcome(metadata)
    assert (result.passed, result.description) == (passed, said)
    if not passed:
        assert result.severity == severity
