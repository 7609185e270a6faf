"""The webhook receiver served for real (uvicorn), real HTTP (httpx), real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from starlette.applications import Starlette

from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration.webhook.app import create_app
from stripe_migration.webhook.signature import sign
from stripe_migration_tests.fixtures.events import process_pending
from stripe_migration_tests.fixtures.receiver import start_receiver
from stripe_migration_tests.fixtures.stripe_emulator import StripeEmulator

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"


@contextlib.contextmanager
def served(app: Starlette) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def event(event_id: str, created: int | None = None, **extra: object) -> dict:
    """A Stripe event as Stripe would post it."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "type": "product.updated",
        "data": {"object": {"id": "prod_1", "object": "product", "name": "Mug"}},
        **extra,
    }


def post(client: httpx.Client, url: str, body: bytes, secret: str = SECRET, **kw) -> httpx.Response:
    header = sign(body, secret, kw.pop("timestamp", None))
    return client.post(
        url + "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        **kw,
    )


def stored(db: str) -> dict[str, tuple]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT event_id, type, payload, livemode, api_version, "
            "extract(epoch FROM created_at)::bigint FROM stripe_events"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.fixture
def receiver(migrated_db: str) -> Iterator[str]:
    with served(create_app(migrated_db, [SECRET, OLD_SECRET], max_body_bytes=4096)) as url:
        yield url


def test_signed_events_are_stored_once_each_duplicates_included(
    receiver: str, migrated_db: str
) -> None:
    events = [event(f"evt_{i}", created=1_700_000_000 + i) for i in range(5)]
    with httpx.Client(timeout=10) as client:
        first = [post(client, receiver, json.dumps(e).encode()) for e in events]
        # Stripe re-signs a redelivery with a new timestamp; our duplicate check is the event id.
        again = [post(client, receiver, json.dumps(e, indent=1).encode()) for e in events[:3]]
    assert [r.status_code for r in first + again] == [200] * 8
    assert [r.json() for r in first] == [{"received": True, "duplicate": False}] * 5
    assert [r.json() for r in again] == [{"received": True, "duplicate": True}] * 3
    rows = stored(migrated_db)
    assert sorted(rows) == [f"evt_{i}" for i in range(5)]
    assert rows["evt_3"] == ("product.updated", events[3], False, "2025-03-31.basil", 1_700_000_003)


def test_concurrent_duplicates_store_one_row(receiver: str, migrated_db: str) -> None:
    body = json.dumps(event("evt_race")).encode()
    with httpx.Client(timeout=10) as client:
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda: results.append(post(client, receiver, body)))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(r.json()["duplicate"] for r in results) == [False] + [True] * 7
    assert list(stored(migrated_db)) == ["evt_race"]


def test_rotation_accepts_both_secrets_and_no_other(receiver: str, migrated_db: str) -> None:
    with httpx.Client(timeout=10) as client:
        new = post(client, receiver, json.dumps(event("evt_new")).encode(), SECRET)
        old = post(client, receiver, json.dumps(event("evt_old")).encode(), OLD_SECRET)
        other = post(client, receiver, json.dumps(event("evt_x")).encode(), "whsec_someone_else")
    assert (new.status_code, old.status_code, other.status_code) == (200, 200, 400)
    assert sorted(stored(migrated_db)) == ["evt_new", "evt_old"]


def test_refusals_get_400_and_store_nothing(receiver: str, migrated_db: str) -> None:
    good = json.dumps(event("evt_1")).encode()
    now = int(time.time())
    missing_created = event("evt_2")
    del missing_created["created"]
    with httpx.Client(timeout=10) as client:
        url = receiver + "/webhooks/stripe"
        responses = {
            "bad signature": post(client, receiver, good, "whsec_wrong"),
            "tampered body": client.post(
                url,
                content=good.replace(b"Mug", b"Cup"),
                headers={"Stripe-Signature": sign(good, SECRET)},
            ),
            "stale timestamp": post(client, receiver, good, timestamp=now - 301),
            "future timestamp": post(client, receiver, good, timestamp=now + 400),
            "no header": client.post(url, content=good),
            "not json": post(client, receiver, b"{not json"),
            "not utf-8": post(client, receiver, b'{"id": "\xff"}'),
            "array": post(client, receiver, b"[1, 2]"),
            "missing created": post(client, receiver, json.dumps(missing_created).encode()),
            "no data.object": post(
                client, receiver, json.dumps(event("evt_3") | {"data": {}}).encode()
            ),
            "NaN": post(client, receiver, json.dumps(event("evt_4", extra=float("nan"))).encode()),
            "NUL in string": post(
                client, receiver, json.dumps(event("evt_5", note="a\u0000b")).encode()
            ),
        }
    assert {k: r.status_code for k, r in responses.items()} == {k: 400 for k in responses}
    assert "tolerance" in responses["stale timestamp"].json()["error"]
    assert "created" in responses["missing created"].json()["error"]
    assert stored(migrated_db) == {}


def test_body_over_the_limit_gets_413(receiver: str, migrated_db: str) -> None:
    padded = event("evt_big", padding="")
    base = len(json.dumps(padded).encode())
    at_limit = json.dumps(padded | {"padding": "x" * (4096 - base)}).encode()
    over = json.dumps(padded | {"id": "evt_ovr", "padding": "x" * (4097 - base)}).encode()
    assert (len(at_limit), len(over)) == (4096, 4097)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the stream too
        yield over[:3000]
        yield over[3000:]

    with httpx.Client(timeout=10) as client:
        ok = post(client, receiver, at_limit)
        too_big = post(client, receiver, over)
        streamed = client.post(
            receiver + "/webhooks/stripe",
            content=chunks(),
            headers={"Stripe-Signature": sign(over, SECRET)},
        )
    assert ok.status_code == 200
    assert (too_big.status_code, streamed.status_code) == (413, 413)
    assert list(stored(migrated_db)) == ["evt_big"]


def test_archived_event_is_not_stored_again(receiver: str, migrated_db: str) -> None:
    old = event("evt_old", created=1_500_000_000)
    with httpx.Client(timeout=10) as client:
        assert post(client, receiver, json.dumps(old).encode()).json()["duplicate"] is False
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            assert conn.execute("SELECT archive_old_events('1 day', 10)").fetchone() == (1,)
        again = post(client, receiver, json.dumps(old).encode())
    assert again.json() == {"received": True, "duplicate": True}
    assert stored(migrated_db) == {}


def test_health_and_database_outage(receiver: str, pg_server: LocalPostgres) -> None:
    with httpx.Client(timeout=10) as client:
        health = client.get(receiver + "/health")
        assert (health.status_code, health.json()) == (
            200,
            {"status": "ok", "database": "ok", "queue_depth": 0},
        )
        assert client.get(receiver + "/webhooks/stripe").status_code == 405
    app = create_app(pg_server.url("no_such_database"), SECRET, db_timeout_s=0.3)
    with served(app) as url, httpx.Client(timeout=10) as client:
        assert client.get(url + "/health").status_code == 503
        down = post(client, url, json.dumps(event("evt_1")).encode())
        assert down.status_code == 503 and down.headers["retry-after"] == "30"


def test_start_receiver_runs_in_a_child_process(migrated_db: str, tmp_path: Path) -> None:
    receiver = start_receiver(migrated_db, f"{SECRET},{OLD_SECRET}", log_path=tmp_path / "r.log")
    try:
        assert receiver.pid != os.getpid() and receiver.alive()
        cmdline = Path(f"/proc/{receiver.pid}/cmdline").read_bytes().decode()
        assert SECRET not in cmdline and migrated_db not in cmdline
        assert os.getsid(receiver.pid) == receiver.pid
        with httpx.Client(timeout=10) as client:
            assert (
                post(client, receiver.url, json.dumps(event("evt_a")).encode()).status_code == 200
            )
            assert post(
                client, receiver.url, json.dumps(event("evt_b")).encode(), OLD_SECRET
            ).json() == {
                "received": True,
                "duplicate": False,
            }
    finally:
        code = receiver.stop()
    assert code is not None and not receiver.alive()
    assert sorted(stored(migrated_db)) == ["evt_a", "evt_b"]
    assert SECRET not in receiver.log_tail()


def test_a_product_edited_in_stripe_reaches_the_cms_row(
    migrated_db: str, emulator: StripeEmulator
) -> None:
    """Emulator change, signed webhook, receiver, processing: drift on the CMS row."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        cms_id = conn.execute(
            "INSERT INTO products (name, price, currency) VALUES ('Mug', '12.50', 'eur') "
            "RETURNING id::text"
        ).fetchone()[0]
    app = create_app(migrated_db, ["whsec_other_endpoint", emulator.webhook_secret])
    with served(app) as url:
        emulator.control.configure(webhook_url=url + "/webhooks/stripe")
        client = emulator.client()
        product = client.v1.products.create(params={"name": "Mug", "metadata": {"cms_id": cms_id}})
        client.v1.products.update(product.id, params={"name": "Mug (edited in Stripe)"})
        expected = {e.id for e in client.v1.events.list(params={"limit": 10}).data}
        assert len(expected) == 2
        deadline = time.monotonic() + 15
        while set(stored(migrated_db)) != expected:
            assert time.monotonic() < deadline, f"stored {sorted(stored(migrated_db))}"
            time.sleep(0.05)
    assert emulator.control.stats()["webhooks"]["failed"] == 0

    result = process_pending(migrated_db, batch_size=10, max_attempts=3, retry_delay_s=300)
    assert result is not None and (result.succeeded, result.failed) == (2, 0)
    with psycopg.connect(migrated_db) as conn:
        name, drift = conn.execute(
            "SELECT name, stripe_drift FROM products WHERE id = %s", (cms_id,)
        ).fetchone()
    assert name == "Mug"  # the CMS keeps its value; the drift is for the next plan to see
    assert drift["in_sync"] is False
    assert drift["product"]["stripe_id"] == product.id
    assert drift["product"]["differences"] == {
        "name": {"stripe": "Mug (edited in Stripe)", "cms": "Mug"}
    }
