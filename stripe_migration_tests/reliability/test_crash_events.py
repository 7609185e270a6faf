"""Event processing and archival killed with SIGKILL mid-batch, then allowed to finish.

The victim is :mod:`.run_events` (the events core with the real handlers, in a subprocess) on a
fresh database. Kills land while a handler's writes wait to commit (after a random number of
processed events), while an archive batch is held in PostgreSQL, or after a random delay.
Afterwards: every event is in exactly one of ``stripe_events`` and ``stripe_events_archive``, the
old ones archived; every event was processed exactly once, or (the malformed ones) retried until
dead; the attempt rows tell that story without a gap; every payment failure has exactly one
recovery row; no batch is left ``processing``.

``RELIABILITY_KILLS`` sets the kills (CI: 5); ``RELIABILITY_SEED`` replays a failing sequence.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stripe_migration.events.queries import INTERRUPTED, SUPERSEDED
from stripe_migration.webhook.store import insert_event, record_from_mapping
from stripe_migration_tests.reliability.harness import (
    Deadline,
    HarnessProcess,
    kill_after_delay,
    report,
    run_seed,
    start_module,
)

#: Kills of the long suite: 5 in CI, more by hand (``RELIABILITY_KILLS=50``).
KILLS = int(os.environ.get("RELIABILITY_KILLS", "5"))

pytestmark = pytest.mark.timeout(120 + 20 * KILLS)

DAY_S = 86_400
SETTINGS = {
    "batch_size": 40,
    "max_attempts": 25,
    "retry_delay_s": 0,
    "retention_days": 180,
    "archive_batch_size": 10,
    "handler_delay_ms": 2,
}
PAYMENT_FAILURES = ("payment_intent.payment_failed", "invoice.payment_failed")


def make_events(rng: random.Random, start: int, n: int) -> list[dict[str, Any]]:
    """``n`` events numbered from ``start``, half past the retention period: payment failures (a
    recovery row each), types nobody handles (ignored), and malformed payment failures (no object
    id: every attempt fails)."""
    now = int(time.time())
    events = []
    for i in range(start, start + n):
        draw = rng.random()
        created = now - 200 * DAY_S + i if i % 2 == 0 else now - 3_600 + i
        if draw < 0.7:
            kind = rng.choice(PAYMENT_FAILURES)
            prefix = "pi" if kind.startswith("payment_intent") else "in"
            obj: dict[str, Any] = {"id": f"{prefix}_{i:06d}", "amount": 1000 + i, "currency": "eur"}
        elif draw < 0.97:
            kind, obj = rng.choice(("customer.updated", "charge.refunded")), {"id": f"x_{i}"}
        else:
            kind, obj = "payment_intent.payment_failed", {"amount": 1}
        events.append(
            {
                "id": f"evt_{i:06d}",
                "object": "event",
                "type": kind,
                "created": created,
                "data": {"object": obj},
            }
        )
    return events


def count(conn: psycopg.Connection, query: str) -> int:
    """The number a ``SELECT count(*)`` query returns."""
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


PROCESSED = (
    "SELECT (SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL) "
    "+ (SELECT count(*) FROM stripe_events_archive WHERE processed_at IS NOT NULL)"
)
ARCHIVED = "SELECT count(*) FROM stripe_events_archive"
#: Events the processor can still succeed with (the malformed ones can only die).
TO_PROCESS = (
    "SELECT count(*) FROM stripe_events "
    "WHERE processed_at IS NULL AND payload->'data'->'object' ? 'id'"
)


def kill_when(
    database_url: str, process: HarnessProcess, query: str, at_least: int, what: str
) -> bool:
    """SIGKILL ``process`` once ``query`` counts ``at_least``; return whether the kill landed."""
    deadline = Deadline(60, what)
    with psycopg.connect(database_url, autocommit=True) as conn:
        while process.alive() and count(conn, query) < at_least:
            deadline.check()
            time.sleep(0.002)
    return process.kill()


def kill_mid_archive_batch(database_url: str, process: HarnessProcess, archived: int) -> bool:
    """SIGKILL while an archive batch is in flight: after ``archived`` archived events, a lock on
    the archive holds the next batch inside its transaction; once PostgreSQL shows it waiting,
    kill, then release."""
    deadline = Deadline(60, "an archive batch waiting on the archive lock")
    with psycopg.connect(database_url, autocommit=True) as conn:
        while process.alive() and count(conn, ARCHIVED) < archived:
            deadline.check()
            time.sleep(0.002)
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE stripe_events_archive IN SHARE MODE")
        with psycopg.connect(database_url, autocommit=True) as watcher:
            while process.alive():
                deadline.check()
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE %s AND pid <> pg_backend_pid()",
                    ("%archive_old_events%",),
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.01)
            landed = process.kill()
        locker.rollback()
    return landed


def check_events(database_url: str, events: list[dict[str, Any]]) -> dict[str, int]:
    """Assert the end state (see the module docstring); return counts for the report."""
    ids = {e["id"] for e in events}
    bad = {e["id"] for e in events if "id" not in e["data"]["object"]}
    failures = {e["id"] for e in events if e["type"] in PAYMENT_FAILURES} - bad
    old = {e["id"] for e in events if e["created"] < time.time() - 180 * DAY_S}
    with psycopg.connect(database_url) as conn:
        live = conn.execute(
            "SELECT event_id, processed_at IS NOT NULL, processing_attempts, batch_id "
            "FROM stripe_events"
        ).fetchall()
        archive = conn.execute(
            "SELECT event_id, processed_at IS NOT NULL, processing_attempts, processing_history "
            "FROM stripe_events_archive"
        ).fetchall()
        live_attempts: dict[str, list[dict[str, Any]]] = {}
        for event_id, number, status, error in conn.execute(
            "SELECT event_id, attempt_number, status, error_message FROM stripe_event_processing "
            "ORDER BY event_id, attempt_number"
        ):
            live_attempts.setdefault(event_id, []).append(
                {"attempt_number": number, "status": status, "error_message": error}
            )
        recoveries = Counter(
            r[0] for r in conn.execute("SELECT event_id FROM payment_recovery_attempts")
        )
        open_batches = conn.execute(
            "SELECT count(*) FROM stripe_event_batches WHERE status = 'processing'"
        ).fetchone()
        batch_processed = conn.execute(
            "SELECT coalesce(sum(processed_count), 0) FROM stripe_event_batches"
        ).fetchone()

    live_ids = [r[0] for r in live]
    archived_ids = [r[0] for r in archive]
    assert len(live_ids) + len(archived_ids) == len(events), "events lost or duplicated"
    assert not set(live_ids) & set(archived_ids), "events in both tables"
    assert set(live_ids) | set(archived_ids) == ids
    assert set(archived_ids) == old, "the archive holds exactly the events past retention"

    histories = {r[0]: (r[1], r[2], r[3]) for r in archive}
    histories.update({r[0]: (r[1], r[2], live_attempts.get(r[0], [])) for r in live})
    interrupted = 0
    for event_id, (processed, attempts, history) in histories.items():
        numbers = [a["attempt_number"] for a in history]
        assert numbers == list(range(1, attempts + 1)), (event_id, numbers, attempts)
        statuses = [a["status"] for a in history]
        assert "started" not in statuses, (event_id, statuses)
        if event_id in bad:
            assert not processed and attempts == SETTINGS["max_attempts"], (event_id, attempts)
            assert set(statuses) == {"failed"}, (event_id, statuses)
        else:
            assert processed, f"{event_id} never processed"
            assert statuses[-1] in ("succeeded", "ignored"), (event_id, statuses)
            assert all(s == "failed" for s in statuses[:-1]), (event_id, statuses)
        for attempt in history:
            if attempt["status"] == "failed" and event_id not in bad:
                assert attempt["error_message"] in (INTERRUPTED, SUPERSEDED), attempt
                interrupted += 1
    assert set(recoveries) == failures and max(recoveries.values()) == 1, "recovery rows"
    assert open_batches == (0,), "a batch was left processing"
    assert batch_processed == (len(ids) - len(bad),), "each event counted once in its batch"
    return {
        "events": len(ids),
        "archived": len(archived_ids),
        "dead": len(bad),
        "interrupted_attempts": interrupted,
    }


def close_crashed_batches_later(database_url: str) -> None:
    """Age the batches a crash left ``processing`` past the minute after which the next claim
    closes them (instead of waiting that minute)."""
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # keep updated_at as set
        conn.execute(
            "UPDATE stripe_event_batches SET updated_at = updated_at - interval '2 minutes' "
            "WHERE status = 'processing'"
        )


@pytest.mark.slow
def test_processing_and_archival_killed_mid_batch_then_finished(
    migrated_db: str, tmp_path: Path, record_property: Any
) -> None:
    """K kills (``RELIABILITY_KILLS``, default 5) mid-handler, mid-archive-batch or at a random
    delay, then a run to the end: every event processed once (or dead), in exactly one table."""
    kills_wanted = KILLS
    seed = run_seed()
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    env = {**os.environ, "DATABASE_URL": migrated_db, "RELIABILITY_EVENTS": json.dumps(SETTINGS)}

    kinds = ("handler", "archive", "timed")
    landed: Counter[str] = Counter()
    runs = missed = 0
    while sum(landed.values()) < kills_wanted:
        runs += 1
        assert runs <= 2 * kills_wanted + 5, f"seed {seed}: too many kills missed"
        # Webhooks keep arriving between runs, so every run has work to be killed in.
        new = make_events(rng, len(events), 400 if runs == 1 else 150)
        with psycopg.connect(migrated_db) as conn:
            for event in new:
                insert_event(conn, record_from_mapping(event))
            processed, archived, to_process = (
                count(conn, PROCESSED),
                count(conn, ARCHIVED),
                count(conn, TO_PROCESS),
            )
        events += new
        kind = kinds[(runs - 1) % len(kinds)]
        process = start_module(
            "stripe_migration_tests.reliability.run_events", env, tmp_path / f"events-{runs}.log"
        )
        if kind == "handler":
            target = processed + rng.randint(1, to_process - 1)
            hit = kill_when(migrated_db, process, PROCESSED, target, f"{target} processed events")
        elif kind == "archive":
            to_archive = sum(1 for e in new if e["created"] < time.time() - 180 * DAY_S)
            target = archived + rng.randint(0, to_archive - 1)
            hit = kill_mid_archive_batch(migrated_db, process, target)
        else:
            hit = kill_after_delay(process, rng.uniform(0.2, 3.0))
        if hit:
            landed[kind] += 1
        else:
            outcome = process.outcome()
            assert outcome.success, f"seed {seed}:\n{outcome.log_tail()}"
            missed += 1

    close_crashed_batches_later(migrated_db)
    final = start_module(
        "stripe_migration_tests.reliability.run_events", env, tmp_path / "events-final.log"
    ).wait(120)
    assert final.success, f"seed {seed}:\n{final.log_tail()}"
    counts = check_events(migrated_db, events)
    report(
        record_property,
        "crash/events",
        seed=seed,
        kills_survived=sum(landed.values()),
        kills_mid_handler=landed["handler"],
        kills_mid_archive_batch=landed["archive"],
        kills_at_random_delay=landed["timed"],
        runs_finished_before_kill=missed,
        **counts,
    )
