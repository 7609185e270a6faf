"""Claiming, processing with recorded attempts, retries, dead events and archival, on real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest

from stripe_migration.events.handlers import HandlerOutcome, handle_event
from stripe_migration.events.policy import EventPolicy
from stripe_migration.events.processing import archive_events, error_message, process_batch
from stripe_migration.events.queries import INTERRUPTED, claim_batch, dead_events, pending_counts
from stripe_migration.webhook.store import insert_event, record_from_mapping

DELAY = 300


@pytest.fixture
def conn(migrated_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn


def payment_failed(event_id: str, created: int) -> dict[str, Any]:
    obj = {"id": f"pi_{event_id}", "object": "payment_intent", "amount": 100, "currency": "eur"}
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.payment_failed",
        "created": created,
        "data": {"object": obj},
    }


def add_events(conn: psycopg.Connection, ids: list[str], created: int | None = None) -> None:
    base = int(time.time()) - 1000 if created is None else created
    for i, event_id in enumerate(ids):
        assert insert_event(conn, record_from_mapping(payment_failed(event_id, base + i)))


def time_travel(conn: psycopg.Connection, seconds: int) -> None:
    """Make every recorded attempt (and batch) ``seconds`` older, instead of sleeping."""
    conn.execute(
        "UPDATE stripe_event_processing SET started_at = started_at - make_interval(secs => %s)",
        (seconds,),
    )
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # keep updated_at as set
        conn.execute(
            "UPDATE stripe_event_batches SET updated_at = updated_at - make_interval(secs => %s)",
            (seconds,),
        )


def attempts(conn: psycopg.Connection, event_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT attempt_number, status, error_message FROM stripe_event_processing "
        "WHERE event_id = %s ORDER BY attempt_number",
        (event_id,),
    ).fetchall()


def test_batch_is_recorded_and_events_processed(conn: psycopg.Connection, migrated_db: str) -> None:
    add_events(conn, ["evt_a", "evt_b"])
    other = {
        "id": "evt_c",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {}},
    }
    insert_event(conn, record_from_mapping(other))

    batch_id, events = claim_batch(conn, batch_size=10, max_attempts=3, retry_delay_s=DELAY)
    assert [e.event_id for e in events] == ["evt_a", "evt_b", "evt_c"]
    assert {e.attempt_number for e in events} == {1}
    assert conn.execute(
        "SELECT status, event_count, processed_count FROM stripe_event_batches WHERE batch_id = %s",
        (batch_id,),
    ).fetchone() == ("processing", 3, 0)
    assert conn.execute(
        "SELECT count(*) FROM stripe_events WHERE batch_id = %s AND processing_attempts = 1",
        (batch_id,),
    ).fetchone() == (3,)

    result = process_batch(conn, batch_id, events)
    assert (result.succeeded, result.ignored, result.failed, result.status) == (
        2,
        1,
        0,
        "completed",
    )
    assert conn.execute(
        "SELECT status, event_count, processed_count, failed_count, completed_at IS NOT NULL "
        "FROM stripe_event_batches WHERE batch_id = %s",
        (batch_id,),
    ).fetchone() == ("completed", 3, 3, 0, True)
    assert attempts(conn, "evt_a") == [(1, "succeeded", None)]
    # An ignored attempt says why; a succeeded one has nothing to say.
    reason = "no handler for event type 'customer.created'; ignored"
    assert attempts(conn, "evt_c") == [(1, "ignored", reason)]
    assert conn.execute(
        "SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL AND metadata ? 'outcome'"
    ).fetchone() == (3,)
    assert conn.execute(
        "SELECT metadata->>'outcome', metadata->>'detail' FROM stripe_events WHERE event_id = 'evt_c'"
    ).fetchone() == ("ignored", reason)
    assert conn.execute("SELECT count(*) FROM payment_recovery_attempts").fetchone() == (2,)
    assert claim_batch(conn, 10, 3, 0) == (None, [])
    assert pending_counts(conn, 3) == pending_counts(conn, 3).__class__(0, 0, 0, 0, None)


def test_failing_handler_is_retried_after_the_delay_and_gives_up(
    conn: psycopg.Connection, migrated_db: str
) -> None:
    add_events(conn, ["evt_bad", "evt_flaky"])
    calls: dict[str, int] = {}

    def handler(c: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
        calls[event["id"]] = calls.get(event["id"], 0) + 1
        handle_event(c, event)  # its write must be rolled back with the failure
        if event["id"] == "evt_bad" or calls[event["id"]] == 1:
            raise RuntimeError(f"boom #{calls[event['id']]} with key sk_test_abc123 in it")
        return HandlerOutcome("succeeded", "ok")

    batches = []
    for attempt in (1, 2, 3):
        batch_id, events = claim_batch(conn, 10, max_attempts=3, retry_delay_s=DELAY)
        assert batch_id is not None and {e.attempt_number for e in events} == {attempt}
        batches.append(process_batch(conn, batch_id, events, handler))
        # Not retried before the delay has passed.
        assert claim_batch(conn, 10, 3, DELAY) == (None, [])
        counts = pending_counts(conn, 3, DELAY)
        assert counts.ready == 0
        time_travel(conn, DELAY + 1)

    assert [(b.event_count, b.failed, b.processed, b.status) for b in batches] == [
        (2, 2, 0, "failed"),
        (2, 1, 1, "partial"),
        (1, 1, 0, "failed"),
    ]
    assert calls == {"evt_bad": 3, "evt_flaky": 2}
    assert [(e.event_id, e.attempt_number) for e in batches[0].errors] == [
        ("evt_bad", 1),
        ("evt_flaky", 1),
    ]
    assert [(e.event_id, e.attempt_number) for e in batches[2].errors] == [("evt_bad", 3)]
    assert [a[:2] for a in attempts(conn, "evt_flaky")] == [(1, "failed"), (2, "succeeded")]
    bad = attempts(conn, "evt_bad")
    assert [a[:2] for a in bad] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all(a[2].startswith(f"RuntimeError: boom #{a[0]}") for a in bad)
    assert all("sk_test_abc123" not in a[2] for a in bad)
    # Only evt_flaky's successful attempt left a recovery row.
    assert conn.execute("SELECT event_id FROM payment_recovery_attempts").fetchall() == [
        ("evt_flaky",)
    ]

    assert claim_batch(conn, 10, 3, DELAY) == (None, [])  # given up
    counts = pending_counts(conn, 3, DELAY)
    assert (counts.dead, counts.ready, counts.retrying) == (1, 0, 0)
    [dead] = dead_events(conn, 3, DELAY)
    assert (dead.event_id, dead.attempts) == ("evt_bad", 3)
    assert dead.last_error.startswith("RuntimeError: boom #3")
    rows = conn.execute(
        "SELECT event_count, processed_count, failed_count, status FROM stripe_event_batches "
        "ORDER BY started_at"
    ).fetchall()
    assert rows == [(2, 0, 2, "failed"), (2, 1, 1, "partial"), (1, 0, 1, "failed")]


def test_a_crash_midway_is_resumed_and_each_event_handled_once(
    conn: psycopg.Connection, migrated_db: str
) -> None:
    add_events(conn, [f"evt_{i}" for i in range(5)])
    batch_id, events = claim_batch(conn, 10, 3, DELAY)

    def crashing(c: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
        outcome = handle_event(c, event)
        if event["id"] == "evt_2":
            raise KeyboardInterrupt  # the process dies in the middle of the handler
        return outcome

    with pytest.raises(KeyboardInterrupt):
        process_batch(conn, batch_id, events, crashing)
    assert conn.execute(
        "SELECT event_id FROM stripe_events WHERE processed_at IS NOT NULL ORDER BY event_id"
    ).fetchall() == [("evt_0",), ("evt_1",)]
    assert claim_batch(conn, 10, 3, DELAY) == (None, [])  # claimed until the delay passes

    time_travel(conn, DELAY + 1)
    batch2, resumed = claim_batch(conn, 10, 3, DELAY)
    assert [(e.event_id, e.attempt_number) for e in resumed] == [
        ("evt_2", 2),
        ("evt_3", 2),
        ("evt_4", 2),
    ]
    assert conn.execute(
        "SELECT status FROM stripe_event_batches WHERE batch_id = %s", (batch_id,)
    ).fetchone() == ("partial",)  # the crashed batch was closed
    assert attempts(conn, "evt_2") == [(1, "failed", INTERRUPTED), (2, "started", None)]

    # The crashed run's leftover events, if it came back, are not processed a second time.
    late = process_batch(conn, batch_id, events[3:], handle_event)
    assert (late.skipped, late.processed) == (2, 0)
    result = process_batch(conn, batch2, resumed)
    assert (result.succeeded, result.failed) == (3, 0)
    assert conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM payment_recovery_attempts"
    ).fetchone() == (5, 5)
    assert conn.execute(
        "SELECT count(*) FROM stripe_event_processing WHERE status = 'succeeded'"
    ).fetchone() == (5,)


def test_concurrent_claims_take_disjoint_events(migrated_db: str, conn: psycopg.Connection) -> None:
    add_events(conn, [f"evt_{i:02d}" for i in range(10)])
    with psycopg.connect(migrated_db) as a, psycopg.connect(migrated_db, autocommit=True) as b:
        with a.transaction():  # a's claim holds its row locks until this block commits
            _, first = claim_batch(a, 6, 3, DELAY)
            _, second = claim_batch(b, 10, 3, DELAY)
        assert len(first) == 6 and len(second) == 4
        assert not {e.event_id for e in first} & {e.event_id for e in second}
        assert claim_batch(b, 10, 3, DELAY) == (None, [])


def test_racing_claimers_never_share_an_event(migrated_db: str, conn: psycopg.Connection) -> None:
    ids = [f"evt_{i:03d}" for i in range(60)]
    add_events(conn, ids)
    taken: list[str] = []
    barrier = threading.Barrier(4)

    def claimer() -> None:
        with psycopg.connect(migrated_db, autocommit=True) as c:
            barrier.wait()
            while True:
                batch_id, events = claim_batch(c, 3, 3, DELAY)
                if batch_id is None:
                    return
                taken.extend(e.event_id for e in events)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(taken) == ids


def test_archival_moves_exactly_the_events_past_retention_with_their_history(
    conn: psycopg.Connection, migrated_db: str
) -> None:
    day = 86400
    now = int(time.time())
    add_events(conn, ["evt_old1", "evt_old2", "evt_old3"], created=now - 200 * day)
    add_events(conn, ["evt_keep"], created=now - 179 * day)
    add_events(conn, ["evt_new"])
    batch_id, events = claim_batch(conn, 2, 3, DELAY)  # evt_old1, evt_old2 get attempt history
    process_batch(conn, batch_id, events, lambda c, e: HandlerOutcome("ignored", "test"))

    with pytest.raises(ValueError, match="outside a transaction"), conn.transaction():
        archive_events(conn, 180, 2)
    result = archive_events(conn, retention_days=180, batch_size=2)
    assert (result.archived, result.batches, result.remaining) == (3, 2, 0)
    assert 179 * day - 5 < result.oldest_age_s < 179 * day + 5
    assert result.longest_batch_s >= 0
    assert sorted(r[0] for r in conn.execute("SELECT event_id FROM stripe_events")) == [
        "evt_keep",
        "evt_new",
    ]
    history = dict(
        conn.execute("SELECT event_id, processing_history FROM stripe_events_archive").fetchall()
    )
    assert sorted(history) == ["evt_old1", "evt_old2", "evt_old3"]
    assert [h["status"] for h in history["evt_old1"]] == ["ignored"]
    assert history["evt_old3"] == []
    assert conn.execute(
        "SELECT count(*) FROM stripe_event_processing WHERE event_id LIKE 'evt_old%'"
    ).fetchone() == (0,)
    again = archive_events(conn, retention_days=180, batch_size=2)
    assert (again.archived, again.batches) == (0, 0)


def test_error_messages_are_truncated_and_scrubbed() -> None:
    exc = RuntimeError(
        "postgresql://app:hunter2@db/x whsec_abc Bearer tok.en password=pw " + "x" * 5000
    )
    message = error_message(exc)
    assert len(message) == 1000 and message.endswith("…")
    for secret in ("hunter2", "whsec_abc", "tok.en", "pw "):
        assert secret not in message


def test_event_settings_defaults_and_validation() -> None:
    settings = EventPolicy()
    assert (settings.max_attempts, settings.retry_delay_s, settings.retention_days) == (3, 300, 180)
    assert (settings.archive_enabled, settings.batch_size, settings.max_concurrent_batches) == (
        True,
        100,
        5,
    )
    with pytest.raises(ValueError, match="max_attempts"):
        EventPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="retry_delay_s"):
        EventPolicy(retry_delay_s=-1)
    with pytest.raises(ValueError, match="archive_enabled"):
        EventPolicy(archive_enabled="yes")  # type: ignore[arg-type]
