"""The receiver under load, for real: group commit, shedding with 503, a worker killed mid-burst.

Real uvicorn, real HTTP, real PostgreSQL. What makes requests wait is a lock on ``stripe_events``
held by the test, so which requests are held and which are shed is decided, not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from stripe_migration.webhook.app import create_app
from stripe_migration.webhook.signature import sign
from stripe_migration_tests.events.test_receiver import SECRET, event, post, served, stored
from stripe_migration_tests.fixtures.receiver import start_receiver


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextlib.contextmanager
def events_locked(database_url: str) -> Iterator[None]:
    """Hold a lock on ``stripe_events`` that blocks every insert until the block ends."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE stripe_events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def queue_depth(url: str) -> int:
    """The requests the (single-process) receiver at ``url`` holds, from its health path."""
    return httpx.get(url + "/health", timeout=5).json()["queue_depth"]


def post_in_thread(url: str, body: bytes, results: dict[str, httpx.Response], key: str):
    """Post ``body`` from a thread of its own; the response lands in ``results[key]``."""

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            results[key] = post(client, url, body)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_past_the_queue_depth_requests_get_503_with_retry_after_and_none_is_lost(
    migrated_db: str,
) -> None:
    app = create_app(migrated_db, SECRET, max_queue_depth=3)
    held: dict[str, httpx.Response] = {}
    with served(app) as url:
        with events_locked(migrated_db):
            threads = [
                post_in_thread(url, json.dumps(event(f"evt_held_{i}")).encode(), held, str(i))
                for i in range(3)
            ]
            wait_until(lambda: queue_depth(url) == 3, "three requests held")
            with httpx.Client(timeout=10) as client:
                shed = [
                    post(client, url, json.dumps(event(f"evt_shed_{i}")).encode()) for i in range(4)
                ]
            assert held == {}, "a held request was answered before its commit"
        for thread in threads:
            thread.join(timeout=30)
        with httpx.Client(timeout=10) as client:
            retried = [
                post(client, url, json.dumps(event(f"evt_shed_{i}")).encode()) for i in range(4)
            ]
        assert queue_depth(url) == 0
    assert [(r.status_code, r.headers.get("retry-after")) for r in shed] == [(503, "1")] * 4
    assert {r.json()["error"] for r in shed} == {"overloaded, retry later"}
    assert sorted(r.status_code for r in held.values()) == [200] * 3
    assert [r.status_code for r in retried] == [200] * 4  # Stripe's retry is then stored
    assert sorted(stored(migrated_db)) == sorted(
        [f"evt_held_{i}" for i in range(3)] + [f"evt_shed_{i}" for i in range(4)]
    )


def test_events_that_wait_together_share_a_transaction(migrated_db: str) -> None:
    results: dict[str, httpx.Response] = {}
    with served(create_app(migrated_db, SECRET)) as url:
        with events_locked(migrated_db):
            threads = [
                post_in_thread(url, json.dumps(event(f"evt_{i}")).encode(), results, str(i))
                for i in range(6)
            ]
            wait_until(lambda: queue_depth(url) == 6, "six requests waiting for a commit")
        for thread in threads:
            thread.join(timeout=30)
    assert sorted(r.status_code for r in results.values()) == [200] * 6
    with psycopg.connect(migrated_db) as conn:
        transactions = conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM stripe_events"
        ).fetchone()
    # The first insert waited on the lock alone or with company; the rest queued behind it.
    assert transactions[0] <= 2


def test_events_that_wait_together_are_stored_and_a_bad_one_fails_alone(
    migrated_db: str,
) -> None:
    bodies = {
        "good_a": json.dumps(event("evt_a")).encode(),
        "bad": json.dumps(event("evt_bad", note="a\u0000b")).encode(),  # jsonb refuses \u0000
        "good_b": json.dumps(event("evt_b")).encode(),
        "again_a": json.dumps(event("evt_a"), indent=1).encode(),
    }
    results: dict[str, httpx.Response] = {}
    with served(create_app(migrated_db, SECRET)) as url:
        with events_locked(migrated_db):
            threads = [post_in_thread(url, body, results, key) for key, body in bodies.items()]
            wait_until(lambda: queue_depth(url) == 4, "four requests waiting for a commit")
            assert results == {}
        for thread in threads:
            thread.join(timeout=30)
    assert {k: r.status_code for k, r in results.items()} == {
        "good_a": 200,
        "bad": 400,
        "good_b": 200,
        "again_a": 200,
    }
    assert sorted([results["good_a"].json()["duplicate"], results["again_a"].json()["duplicate"]])
    assert results["good_b"].json() == {"received": True, "duplicate": False}
    assert sorted(stored(migrated_db)) == ["evt_a", "evt_b"]


async def _burst(
    url: str, count: int, senders: int, on_answer: Callable[[int], None]
) -> tuple[set[str], int]:
    """Post ``count`` events from ``senders`` connections; return the ids answered 2xx and the
    number of requests that got no answer (connection lost). ``on_answer(n)`` after each 2xx."""
    queue = list(range(count))
    acknowledged: set[str] = set()
    lost_answers = 0

    async def sender() -> None:
        nonlocal lost_answers
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as c:
            while queue:
                event_id = f"evt_burst_{queue.pop():05d}"
                body = json.dumps(event(event_id)).encode()
                headers = {"Stripe-Signature": sign(body, SECRET)}
                try:
                    response = await c.post(url + "/webhooks/stripe", content=body, headers=headers)
                except httpx.TransportError:
                    lost_answers += 1
                    continue
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200:
                    acknowledged.add(event_id)
                    on_answer(len(acknowledged))

    await asyncio.gather(*(sender() for _ in range(senders)))
    return acknowledged, lost_answers


@pytest.mark.slow  # a 2,000-event burst and a worker restart; the fast tier keeps the others
def test_every_event_answered_2xx_survives_a_worker_killed_mid_burst(
    migrated_db: str, tmp_path: Path
) -> None:
    receiver = start_receiver(migrated_db, SECRET, workers=2, log_path=tmp_path / "r.log")
    try:
        supervisor = psutil.Process(receiver.pid)
        wait_until(lambda: len(supervisor.children()) == 2, "two workers")
        port = int(receiver.url.rsplit(":", 1)[1])
        killed: list[tuple[int, int, int]] = []  # (pid, its connections, answers before)

        def kill_one_worker(answers: int) -> None:
            if killed or answers < 300:
                return
            busiest, connections = max(
                (
                    (w, sum(c.laddr.port == port for c in w.net_connections("tcp")))
                    for w in supervisor.children()
                ),
                key=lambda pair: pair[1],
            )
            os.kill(busiest.pid, signal.SIGKILL)
            killed.append((busiest.pid, connections, answers))

        acknowledged, lost_answers = asyncio.run(_burst(receiver.url, 2000, 32, kill_one_worker))
        assert killed, "the burst ended before the kill"
        pid, connections, answers_before = killed[0]
        assert connections > 0, "the killed worker held no connection"
        assert len(acknowledged) > answers_before, "nothing answered after the kill"
        # The supervisor replaces the dead worker; the receiver keeps serving.
        wait_until(
            lambda: len(supervisor.children()) == 2 and pid not in supervisor.children(),
            "a new worker in place of the killed one",
        )
        with httpx.Client(timeout=10) as client:
            assert post(client, receiver.url, json.dumps(event("evt_after")).encode()).is_success
    finally:
        receiver.stop()
    table = set(stored(migrated_db))
    assert acknowledged <= table, f"{len(acknowledged - table)} events answered 2xx are missing"
    # What the killed worker held unanswered may or may not have committed: never both lost
    # and acknowledged, which is the promise. Report the count for whoever reads -rP.
    print(f"kill: {len(acknowledged)} acknowledged, {lost_answers} without an answer")


def socket_inodes(pid: int) -> set[str]:
    """The sockets process ``pid`` holds open (``socket:[inode]``)."""
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {link for link in links if link.startswith("socket:")}


def test_workers_share_one_listening_socket_and_stop_together(
    migrated_db: str, tmp_path: Path
) -> None:
    receiver = start_receiver(migrated_db, SECRET, workers=2, log_path=tmp_path / "r.log")
    try:
        supervisor = psutil.Process(receiver.pid)
        wait_until(lambda: len(supervisor.children()) == 2, "two workers")
        workers = supervisor.children()
        # The supervisor holds one socket, the listening one; each worker holds it too.
        assert len(shared := socket_inodes(receiver.pid)) == 1
        assert all(shared <= socket_inodes(w.pid) for w in workers)
    finally:
        assert receiver.stop() == 0
    assert not any(w.is_running() for w in workers)
