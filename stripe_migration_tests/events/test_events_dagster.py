"""The events' Dagster layer on real PostgreSQL: the sensor, the processing job with retries and dead
events, archival, the schedules, gap filling against the emulator, and the resource's settings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.test_utils import create_run_for_test

from stripe_migration.events.assets import stripe_events, stripe_events_archive
from stripe_migration.events.checks import batch_processed_cleanly, no_dead_events
from stripe_migration.events.jobs import (
    EventPages,
    archive_stripe_events,
    fill_stripe_event_gaps,
    process_stripe_events,
)
from stripe_migration.events.policy import EventPolicy, event_policy_from_env
from stripe_migration.events.schedules import stripe_events_archive_daily
from stripe_migration.events.sensors import stripe_events_sensor
from stripe_migration.resources.events_db import EventsDatabaseResource
from stripe_migration.webhook.store import insert_event, record_from_mapping
from stripe_migration_tests.fixtures.events import fill_gaps_at
from stripe_migration_tests.fixtures.migration import stripe_resource_for

DELAY = 300


# --- helpers -----------------------------------------------------------------------------------


def payment_failed(event_id: str, created: int) -> dict[str, Any]:
    """An event the real handler processes (a payment_recovery_attempts row)."""
    obj = {"id": f"pi_{event_id}", "object": "payment_intent", "amount": 100, "currency": "eur"}
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.payment_failed",
        "created": created,
        "data": {"object": obj},
    }


def broken_product_event(event_id: str, created: int) -> dict[str, Any]:
    """A product event without ``data.object.id``: the real handler fails on it every time."""
    return {
        "id": event_id,
        "object": "event",
        "type": "product.updated",
        "created": created,
        "data": {"object": {"object": "product", "name": "No id"}},
    }


def add(db: str, *events: dict[str, Any]) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        for event in events:
            assert insert_event(conn, record_from_mapping(event))


def query(db: str, sql: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(db, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def age_attempts(db: str, seconds: int) -> None:
    """Make every recorded attempt ``seconds`` older, instead of sleeping through the delay."""
    query(
        db,
        "UPDATE stripe_event_processing SET started_at = started_at - make_interval(secs => %s) "
        "RETURNING 1",
        (seconds,),
    )


EventResources = dict[str, Any]


def event_resources(database_url: str, **policy: Any) -> EventResources:
    """The two resources the events' definitions use: the database, and the event policy."""
    return {
        "events_db": EventsDatabaseResource(database_url=database_url),
        "event_policy": EventPolicy(**policy),
    }


def build_defs(events_db: EventResources, **extra: Any) -> dg.Definitions:
    return dg.Definitions(
        assets=[stripe_events, stripe_events_archive],
        asset_checks=[no_dead_events, batch_processed_cleanly],
        jobs=[process_stripe_events, archive_stripe_events, *extra.pop("jobs", [])],
        sensors=[stripe_events_sensor],
        schedules=[stripe_events_archive_daily],
        resources={**events_db, **extra},
        executor=dg.in_process_executor,
    )


def tick(instance: dg.DagsterInstance, events_db: EventResources, cursor: str | None = None) -> Any:
    # As a context manager: the context opens its own instance from the given one's ref, and only
    # closing the context closes it (left to the garbage collector, it resets Dagster's current
    # defs-state storage to a dead instance in the middle of a later test).
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=events_db) as context:
        return stripe_events_sensor.evaluate_tick(context)


def run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    request: dg.RunRequest,
    *,
    success: bool = True,
):
    """Execute the processing run the sensor asked for, with its config and tags; assert that it
    succeeded (or, with ``success=False``, that it failed: a batch that failed whole)."""
    result = defs.resolve_job_def("process_stripe_events").execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert result.success is success
    return result


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The run's asset check evaluations by check name."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


@pytest.fixture
def events_db(migrated_db: str) -> EventResources:
    return event_resources(migrated_db, retry_delay_s=DELAY, batch_size=10)


# --- the sensor --------------------------------------------------------------------------------


def test_sensor_launches_a_keyed_run_per_batch_and_not_the_same_state_twice(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    base = int(time.time()) - 1000
    add(migrated_db, *(payment_failed(f"evt_{i:02d}", base + i) for i in range(25)))

    first = tick(instance, events_db)
    assert len(first.run_requests) == 3  # 25 events in batches of 10
    keys = [r.run_key for r in first.run_requests]
    assert len(set(keys)) == 3 and all(keys)
    assert all(
        r.run_config == {"ops": {"stripe_events": {"config": {"batch_size": 10}}}}
        for r in first.run_requests
    )
    assert [r.tags["stripe_migration/first_event"] for r in first.run_requests] == [
        "evt_00",
        "evt_10",
        "evt_20",
    ]

    # The same pending state is not launched again, even as runs are still queued.
    again = tick(instance, events_db, first.cursor)
    assert again.run_requests == [] and "already launched" in again.skip_message

    # New events make a new state: only the new batch is launched.
    add(migrated_db, payment_failed("evt_25", base + 25))
    more = tick(instance, events_db, again.cursor)
    assert [r.tags["stripe_migration/first_event"] for r in more.run_requests] == ["evt_20"]
    assert more.run_requests[0].run_key not in keys

    # A fresh cursor (the sensor was reset) asks for the same batches under the same digests: in
    # the same retry-delay window (the key's suffix) the keys are equal and Dagster skips them.
    def digests(run_keys: list[str]) -> list[str]:
        return [k.rsplit("-", 1)[0] for k in run_keys]

    reset = [r.run_key for r in tick(instance, events_db).run_requests]
    assert digests(reset[:2]) == digests(keys[:2])


def test_sensor_keeps_at_most_max_concurrent_batches_in_flight(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    base = int(time.time()) - 1000
    add(migrated_db, *(payment_failed(f"evt_{i:02d}", base + i) for i in range(100)))

    def create(status: dg.DagsterRunStatus, job_name: str = "process_stripe_events"):
        # What the daemon records for a queued run: the code location it will load the job from.
        origin = RemoteJobOrigin(
            RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("stripe_migration"), "__repo__"),
            job_name,
        )
        return create_run_for_test(
            instance, job_name=job_name, status=status, remote_job_origin=origin
        )

    queued = [create(dg.DagsterRunStatus.QUEUED) for _ in range(3)]
    # Finished runs of the job and runs of other jobs do not count.
    create(dg.DagsterRunStatus.SUCCESS)
    create(dg.DagsterRunStatus.STARTED, job_name="archive_stripe_events")

    assert len(tick(instance, events_db).run_requests) == 2  # 5 allowed, 3 in flight

    for _ in range(2):
        create(dg.DagsterRunStatus.STARTED)
    full = tick(instance, events_db)
    assert full.run_requests is None or full.run_requests == []
    assert "5 processing runs in flight" in full.skip_message

    instance.report_run_canceled(queued[0])
    assert len(tick(instance, events_db).run_requests) == 1


def test_failing_event_is_retried_after_the_delay_then_dead_and_reported(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    base = int(time.time()) - 1000
    add(migrated_db, payment_failed("evt_ok", base), broken_product_event("evt_bad", base + 1))
    defs = build_defs(events_db)

    for attempt in (1, 2, 3):
        requests = tick(instance, events_db).run_requests
        assert len(requests) == 1, f"attempt {attempt}"
        # The first batch is partial (the run succeeds); the retries hold evt_bad alone, so the
        # batch fails whole and so does the run.
        result = run(defs, instance, requests[0], success=attempt == 1)
        meta = result.asset_materializations_for_node("stripe_events")[0].metadata
        assert meta["event_count"].value == (2 if attempt == 1 else 1)
        assert meta["failed"].value == 1
        assert meta["processed"].value == (1 if attempt == 1 else 0)
        check = check_evaluations(result)["no_dead_events"]
        assert check.passed == (attempt < 3)
        # Not retried before the delay has passed.
        early = tick(instance, events_db)
        assert not early.run_requests and early.skip_message == "no pending event"
        age_attempts(migrated_db, DELAY + 1)

    # Dead: no more runs, the last error kept, every attempt recorded.
    dead_tick = tick(instance, events_db)
    assert not dead_tick.run_requests
    attempts = query(
        migrated_db,
        "SELECT attempt_number, status, error_message FROM stripe_event_processing "
        "WHERE event_id = 'evt_bad' ORDER BY attempt_number",
    )
    assert [(a[0], a[1]) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all("EventDataError" in a[2] and "data.object.id" in a[2] for a in attempts)
    assert query(
        migrated_db,
        "SELECT processed_at IS NULL, processing_attempts FROM stripe_events "
        "WHERE event_id = 'evt_bad'",
    ) == [(True, 3)]
    assert query(
        migrated_db,
        "SELECT status, processing_attempts FROM stripe_events "
        "JOIN stripe_event_processing USING (event_id) WHERE event_id = 'evt_ok'",
    ) == [("succeeded", 1)]
    batches = query(
        migrated_db,
        "SELECT event_count, processed_count, failed_count, status FROM stripe_event_batches "
        "ORDER BY started_at",
    )
    assert batches == [(2, 1, 1, "partial"), (1, 0, 1, "failed"), (1, 0, 1, "failed")]

    # Reported by the run in which evt_bad used its last attempt, although that run failed.
    check = check_evaluations(result)["no_dead_events"]
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["dead_events"].value == 1
    table = check.metadata["events"].value
    assert [r.data["event_id"] for r in table.records] == ["evt_bad"]
    assert "EventDataError" in table.records[0].data["last_error"]
    assert table.records[0].data["attempts"] == 3


def test_settings_can_be_overridden_in_run_config(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    base = int(time.time()) - 1000
    add(migrated_db, *(payment_failed(f"evt_{i}", base + i) for i in range(3)))
    result = (
        build_defs(events_db)
        .resolve_job_def("process_stripe_events")
        .execute_in_process(
            run_config={"ops": {"stripe_events": {"config": {"batch_size": 2, "max_attempts": 1}}}},
            instance=instance,
        )
    )
    meta = result.asset_materializations_for_node("stripe_events")[0].metadata
    assert (meta["event_count"].value, meta["processed"].value) == (2, 2)
    assert (meta["max_attempts"].value, meta["pending_ready"].value) == (1, 1)


# --- archival ----------------------------------------------------------------------------------


def test_archive_moves_exactly_the_events_past_retention_with_their_history(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources
) -> None:
    day = 86400
    now = int(time.time())
    old = [payment_failed(f"evt_old_{i}", now - 200 * day + i) for i in range(5)]
    edge = payment_failed("evt_edge", now - 179 * day)
    new = payment_failed("evt_new", now - 10)
    add(migrated_db, *old, edge, new, broken_product_event("evt_old_bad", now - 190 * day))
    defs = build_defs(events_db)
    run(defs, instance, tick(instance, events_db).run_requests[0])  # attempts to carry along

    result = defs.resolve_job_def("archive_stripe_events").execute_in_process(
        run_config={"ops": {"stripe_events_archive": {"config": {"batch_size": 2}}}},
        instance=instance,
    )
    assert result.success
    meta = result.asset_materializations_for_node("stripe_events_archive")[0].metadata
    assert meta["archived"].value == 6
    assert meta["batches"].value == 3
    assert meta["remaining"].value == 0
    assert meta["skipped"].value is False
    assert 178 < meta["oldest_event_age_days"].value < 180
    assert meta["duration_s"].value >= meta["longest_batch_s"].value > 0
    # The dead-events check is refreshed by the archive run (the failed event is archived).
    assert [c.check_name for c in result.get_asset_check_evaluations()] == ["no_dead_events"]

    archived = dict(
        query(migrated_db, "SELECT event_id, processing_history FROM stripe_events_archive")
    )
    assert set(archived) == {e["id"] for e in old} | {"evt_old_bad"}
    assert [h["status"] for h in archived["evt_old_0"]] == ["succeeded"]
    assert [h["status"] for h in archived["evt_old_bad"]] == ["failed"]
    assert "EventDataError" in archived["evt_old_bad"][0]["error_message"]
    assert {r[0] for r in query(migrated_db, "SELECT event_id FROM stripe_events")} == {
        "evt_edge",
        "evt_new",
    }
    assert query(
        migrated_db,
        "SELECT count(*) FROM stripe_event_processing WHERE event_id LIKE 'evt_old%%'",
    ) == [(0,)]

    again = defs.resolve_job_def("archive_stripe_events").execute_in_process(instance=instance)
    assert (
        again.asset_materializations_for_node("stripe_events_archive")[0].metadata["archived"].value
        == 0
    )


def test_archive_switched_off_moves_nothing_and_the_schedule_skips(
    migrated_db: str, instance: dg.DagsterInstance
) -> None:
    add(migrated_db, payment_failed("evt_old", int(time.time()) - 365 * 86400))
    off = event_resources(migrated_db, archive_enabled=False)
    on = event_resources(migrated_db)

    with dg.build_schedule_context(instance=instance, resources=off) as context:
        skipped = stripe_events_archive_daily.evaluate_tick(context)
    assert not skipped.run_requests and "switched off" in skipped.skip_message
    with dg.build_schedule_context(instance=instance, resources=on) as context:
        assert len(stripe_events_archive_daily.evaluate_tick(context).run_requests) == 1

    result = (
        build_defs(off)
        .resolve_job_def("archive_stripe_events")
        .execute_in_process(instance=instance)
    )
    meta = result.asset_materializations_for_node("stripe_events_archive")[0].metadata
    assert meta["skipped"].value is True and meta["archived"].value == 0
    assert query(migrated_db, "SELECT count(*) FROM stripe_events") == [(1,)]


# --- gap filling -------------------------------------------------------------------------------


def output_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    [event] = [e for e in result.events_for_node(node) if e.is_successful_output]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def test_gap_fill_job_stores_the_events_the_receiver_never_got(
    migrated_db: str, instance: dg.DagsterInstance, events_db: EventResources, emulator
) -> None:
    client = emulator.client()
    for i in range(4):
        client.v1.products.create(params={"name": f"Gap {i}"})
    listed = client.v1.events.list(params={"limit": 100}).data
    assert len(listed) == 4
    delivered = min(listed, key=lambda e: e.created)
    add(migrated_db, delivered.to_dict(recursive=True, for_json=True))

    defs = build_defs(
        events_db, stripe=stripe_resource_for(emulator), jobs=[fill_stripe_event_gaps]
    )
    job = defs.resolve_job_def("fill_stripe_event_gaps")
    result = job.execute_in_process(instance=instance)
    assert result.success
    meta = output_metadata(result, "fill_event_gaps")
    assert meta["stored"] == 3
    assert meta["stripe_requests"] >= 1
    assert {r[0] for r in query(migrated_db, "SELECT event_id FROM stripe_events")} == {
        e.id for e in listed
    }
    again = job.execute_in_process(instance=instance)
    assert output_metadata(again, "fill_event_gaps")["stored"] == 0


def test_gap_fill_pages_through_the_rate_limited_client(migrated_db: str, emulator) -> None:
    client = emulator.client()
    for i in range(7):
        client.v1.products.create(params={"name": f"Paged {i}"})
    api = stripe_resource_for(emulator).get_client()
    api.page_size = 2  # Stripe pages of 2, handed to fill_gaps in pages of 3
    assert fill_gaps_at(migrated_db, EventPages(api, page_size=3)) == 7
    assert api.stats.requests == 4
    assert len(query(migrated_db, "SELECT event_id FROM stripe_events")) == 7
    assert fill_gaps_at(migrated_db, EventPages(api, page_size=3), since=0) == 0


# --- the resource ------------------------------------------------------------------------------


def test_settings_come_from_the_environment_with_the_seed_defaults() -> None:
    default = event_policy_from_env({})
    assert default.model_dump() == {
        "max_attempts": 3,
        "retry_delay_s": 300,
        "retention_days": 180,
        "archive_enabled": True,
        "batch_size": 100,
        "max_concurrent_batches": 5,
    }
    tuned = event_policy_from_env(
        {
            "STRIPE_EVENTS_MAX_ATTEMPTS": "5",
            "STRIPE_EVENTS_RETRY_DELAY_S": "60",
            "STRIPE_EVENTS_RETENTION_DAYS": "30",
            "STRIPE_EVENTS_ARCHIVE_ENABLED": "false",
            "STRIPE_EVENTS_BATCH_SIZE": "20",
            "STRIPE_EVENTS_MAX_CONCURRENT_BATCHES": "2",
        }
    )
    assert (tuned.max_attempts, tuned.retry_delay_s, tuned.retention_days) == (5, 60, 30)
    assert (tuned.archive_enabled, tuned.batch_size, tuned.max_concurrent_batches) == (False, 20, 2)

    with pytest.raises(ValueError, match="STRIPE_EVENTS_BATCH_SIZE='ten'"):
        event_policy_from_env({"STRIPE_EVENTS_BATCH_SIZE": "ten"})
    with pytest.raises(ValueError, match="max_attempts"):
        event_policy_from_env({"STRIPE_EVENTS_MAX_ATTEMPTS": "0"})


def test_the_database_password_never_shows() -> None:
    url = "postgresql://app:s3cret-pw@db.example.com:5432/app"
    resource = EventsDatabaseResource(database_url=url)
    assert "s3cret-pw" not in repr(resource) and "s3cret-pw" not in str(resource)
    with pytest.raises(Exception) as info:
        EventsDatabaseResource(database_url="mysql://app:s3cret-pw@db/app")
    assert "not a PostgreSQL URL" in str(info.value) and "s3cret-pw" not in str(info.value)
