"""End to end: a product edited in Stripe (the emulator) → signed webhook → receiver (its own
process) → stripe_events_sensor → process_stripe_events run → drift on the CMS row. And the
command line: `webhook serve`, `events status` and `events reprocess-dead`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from stripe_migration.cli import main
from stripe_migration.events.assets import stripe_events
from stripe_migration.events.checks import batch_processed_cleanly, no_dead_events
from stripe_migration.events.jobs import process_stripe_events
from stripe_migration.events.sensors import stripe_events_sensor
from stripe_migration.webhook.signature import sign
from stripe_migration_tests.events.test_events_dagster import (
    EventResources,
    age_attempts,
    broken_product_event,
    event_resources,
    payment_failed,
    query,
    run,
    tick,
)
from stripe_migration_tests.events.test_events_dagster import add as add_events
from stripe_migration_tests.fixtures.receiver import start_receiver

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def rows(db: str) -> list[dict]:
    with psycopg.connect(db) as conn:
        cur = conn.execute("SELECT * FROM products")
        return [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur]


def wait_for(condition, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def insert_mug(db: str) -> str:
    """A CMS row (a 12.50 eur mug) never synced; its id."""
    [(cms_id,)] = query(
        db,
        "INSERT INTO products (name, description, price, currency) "
        "VALUES ('Mug', 'A mug', '12.50', 'eur') RETURNING id::text",
    )
    return cms_id


def record_sync(db: str, cms_id: str, product_id: str, price_id: str) -> None:
    """Write the mug's Stripe ids back as the migration's checkpoint does (running
    migrate_catalog here would triple the test's time)."""
    checkpoint = {
        "id": cms_id,
        "stripe_product_id": product_id,
        "stripe_price_id": price_id,
        "sync_status": "synced",
        "synced_unit_amount": 1250,
        "synced_currency": "eur",
    }
    query(
        db,
        "SELECT apply_sync_results(jsonb_build_array(%s::jsonb || jsonb_build_object("
        "'synced_version', (SELECT updated_at FROM products WHERE id = %s::uuid))))",
        (json.dumps(checkpoint), cms_id),
    )


def events_definitions(events_db: EventResources) -> dg.Definitions:
    """The events' asset, checks, job and sensor on ``events_db``."""
    return dg.Definitions(
        assets=[stripe_events],
        asset_checks=[no_dead_events, batch_processed_cleanly],
        jobs=[process_stripe_events],
        sensors=[stripe_events_sensor],
        resources=events_db,
    )


def test_a_product_edited_in_stripe_reaches_the_cms_row_through_the_sensor(
    migrated_db: str, emulator, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # A product as the migration leaves it: created in Stripe, its ids written back.
    cms_id = insert_mug(migrated_db)
    client = emulator.client()
    product = client.v1.products.create(
        params={
            "name": "Mug",
            "description": "A mug",
            "metadata": {"cms_id": cms_id},
            "default_price_data": {"unit_amount": 1250, "currency": "eur"},
        }
    )
    record_sync(migrated_db, cms_id, product.id, product.default_price)
    assert query(migrated_db, "SELECT needs_sync FROM products") == [(False,)]

    events_db = event_resources(migrated_db)
    with start_receiver(
        migrated_db,
        f"whsec_previous_endpoint,{emulator.webhook_secret}",
        log_path=tmp_path / "receiver.log",
    ) as receiver:
        emulator.control.configure(webhook_url=receiver.webhook_url)
        client.v1.products.update(product.id, params={"name": "Mug (Stripe)"})
        wait_for(
            lambda: query(migrated_db, "SELECT type FROM stripe_events") == [("product.updated",)],
            "the receiver to store the product.updated event",
        )
    assert emulator.control.stats()["webhooks"]["failed"] == 0

    result = tick(instance, events_db)
    [request] = result.run_requests
    defs = events_definitions(events_db)
    outcome = run(defs, instance, request)
    meta = outcome.asset_materializations_for_node("stripe_events")[0].metadata
    assert (meta["event_count"].value, meta["succeeded"].value, meta["failed"].value) == (1, 1, 0)
    assert meta["pending_ready"].value == 0

    [row] = rows(migrated_db)
    assert row["name"] == "Mug"  # the CMS keeps its value; the drift is for the next plan
    drift = row["stripe_drift"]
    assert drift["in_sync"] is False
    assert drift["product"]["stripe_id"] == product.id
    assert drift["product"]["differences"] == {"name": {"stripe": "Mug (Stripe)", "cms": "Mug"}}
    assert row["needs_sync"] is True
    assert query(
        migrated_db,
        "SELECT processed_at IS NOT NULL, processing_attempts, b.status "
        "FROM stripe_events e JOIN stripe_event_batches b USING (batch_id)",
    ) == [(True, 1, "completed")]
    # Processed: the sensor has nothing more to launch.
    assert not tick(instance, events_db, result.cursor).run_requests


@pytest.mark.slow  # a receiver and a processing run; the fast tier keeps the test above
def test_a_product_born_through_its_price_leaves_no_drift(
    migrated_db: str, emulator, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """The migration's second way of creating a product, as its webhooks arrive: the product is
    created without its description (``product.created``), then completed in the same second
    (``product.updated``). Processed, they leave the row in sync and out of the next run."""
    cms_id = insert_mug(migrated_db)
    events_db = event_resources(migrated_db)
    with start_receiver(
        migrated_db, emulator.webhook_secret, log_path=tmp_path / "receiver.log"
    ) as receiver:
        emulator.control.configure(webhook_url=receiver.webhook_url)
        client = emulator.client()
        price = client.v1.prices.create(
            params={
                "currency": "eur",
                "unit_amount": 1250,
                "lookup_key": f"cms_{cms_id}",
                "metadata": {"cms_id": cms_id},
                "product_data": {"name": "Mug", "metadata": {"cms_id": cms_id}},
            }
        )
        client.v1.products.update(
            price.product, params={"description": "A mug", "default_price": price.id}
        )
        record_sync(migrated_db, cms_id, price.product, price.id)
        wait_for(
            lambda: (
                sorted(t for (t,) in query(migrated_db, "SELECT type FROM stripe_events"))
                == ["price.created", "product.created", "product.updated"]
            ),
            "the receiver to store the three events",
        )
    born, completed = (
        created
        for (created,) in query(
            migrated_db,
            "SELECT created_at FROM stripe_events WHERE type LIKE 'product.%' ORDER BY type",
        )
    )
    result = tick(instance, events_db)
    defs = events_definitions(events_db)
    for request in result.run_requests:
        assert run(defs, instance, request).success
    [row] = rows(migrated_db)
    assert row["stripe_drift"]["in_sync"] is True, (born, completed, row["stripe_drift"])
    assert row["needs_sync"] is False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webhook_serve_receives_signed_events(migrated_db: str, tmp_path: Path) -> None:
    missing = CliRunner().invoke(
        main, ["webhook", "serve"], env={"DATABASE_URL": migrated_db, "STRIPE_WEBHOOK_SECRET": ""}
    )
    assert missing.exit_code != 0 and "set STRIPE_WEBHOOK_SECRET" in missing.output

    secret = "whsec_cli_test_secret"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": migrated_db, "STRIPE_WEBHOOK_SECRET": secret}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from stripe_migration.cli import main; main()",
            "webhook",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,  # no .env from the repository
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, "webhook serve to answer /health", 30)
        body = json.dumps(payment_failed("evt_cli", int(time.time()))).encode()
        good = httpx.post(
            url + "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, secret)}
        )
        bad = httpx.post(
            url + "/webhooks/stripe",
            content=body.replace(b"evt_cli", b"evt_forged"),
            headers={"Stripe-Signature": sign(body, secret)},
        )
        assert (good.status_code, bad.status_code) == (200, 400)
        assert query(migrated_db, "SELECT event_id FROM stripe_events") == [("evt_cli",)]
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "receiving Stripe webhooks on" in output and secret not in output


@pytest.mark.slow  # several processing runs; the fast tier keeps the sensor and webhook tests
def test_reprocess_dead_gives_dead_events_new_attempts_and_keeps_their_history(
    migrated_db: str, instance: dg.DagsterInstance
) -> None:
    base = int(time.time()) - 1000
    add_events(
        migrated_db,
        broken_product_event("evt_dead_1", base),
        broken_product_event("evt_dead_2", base + 1),
        payment_failed("evt_fine", base + 2),
    )
    events_db = event_resources(migrated_db, max_attempts=2)
    defs = dg.Definitions(
        assets=[stripe_events],
        asset_checks=[no_dead_events, batch_processed_cleanly],
        jobs=[process_stripe_events],
        resources=events_db,
    )
    env = {"DATABASE_URL": migrated_db, "STRIPE_EVENTS_MAX_ATTEMPTS": "2"}
    # The first batch is partial; the second holds the two broken events alone: the run fails.
    for succeeds in (True, False):
        run(defs, instance, tick(instance, events_db).run_requests[0], success=succeeds)
        age_attempts(migrated_db, 301)
    assert not tick(instance, events_db).run_requests

    status = CliRunner().invoke(main, ["events", "status"], env=env)
    assert status.exit_code == 0, status.output
    assert "dead 2" in status.output
    assert "dead evt_dead_1 product.updated (2 attempts): EventDataError" in status.output

    one = CliRunner().invoke(
        main,
        ["events", "reprocess-dead", "--event-id", "evt_dead_1", "--event-id", "evt_fine"],
        env=env,
    )
    assert one.exit_code == 1  # evt_fine is not dead: said so, left alone
    assert "reprocessing evt_dead_1" in one.output
    assert "not dead, left alone: evt_fine" in one.output
    [(attempts, metadata)] = query(
        migrated_db,
        "SELECT processing_attempts, metadata FROM stripe_events WHERE event_id = 'evt_dead_1'",
    )
    assert attempts == 0
    [entry] = metadata["reprocessed"]
    assert [a["attempt_number"] for a in entry["attempts"]] == [1, 2]
    assert all("EventDataError" in a["error_message"] for a in entry["attempts"])

    # The sensor retries it (and only it); the new attempt is numbered 1 again.
    [request] = tick(instance, events_db).run_requests
    result = run(defs, instance, request, success=False)  # still broken, alone in its batch
    assert (
        result.asset_materializations_for_node("stripe_events")[0].metadata["event_count"].value
        == 1
    )
    assert query(
        migrated_db,
        "SELECT event_id, attempt_number, status FROM stripe_event_processing "
        "WHERE event_id = 'evt_dead_1'",
    ) == [("evt_dead_1", 1, "failed")]

    every = CliRunner().invoke(main, ["events", "reprocess-dead"], env=env)
    assert every.exit_code == 0, every.output
    assert "reprocessing evt_dead_2" in every.output and "1 dead events" in every.output
