"""Event handlers against real PostgreSQL: drift on CMS rows, recovery attempts, ignored types."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from stripe_migration.events.handlers import EventDataError, HandlerOutcome, handle_event

T0 = 1_700_000_000


@pytest.fixture
def conn(migrated_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn


def add_product(conn: psycopg.Connection, **fields: Any) -> str:
    values = {
        "name": "Mug",
        "description": "A mug",
        "price": "12.50",
        "currency": "eur",
        "stripe_product_id": "prod_mug",
        "stripe_price_id": "price_mug",
        "synced_unit_amount": 1250,
        "synced_currency": "eur",
        "sync_status": "synced",
    } | fields
    columns = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    row = conn.execute(
        f"INSERT INTO products ({columns}) VALUES ({placeholders}) RETURNING id::text",
        list(values.values()),
    ).fetchone()
    return row[0]


def product_row(conn: psycopg.Connection, product_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM products WHERE id = %s", (product_id,)).fetchone()


def product_event(
    event_id: str, created: int, type_: str = "product.updated", **obj: Any
) -> dict[str, Any]:
    product = {"id": "prod_mug", "object": "product", "name": "Mug", "description": "A mug"}
    product |= {"active": True, "metadata": {}} | obj
    return {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": created,
        "data": {"object": product},
    }


def price_event(
    event_id: str, created: int, type_: str = "price.updated", **obj: Any
) -> dict[str, Any]:
    price = {"id": "price_mug", "object": "price", "product": "prod_mug", "unit_amount": 1250}
    price |= {"currency": "eur", "active": True, "metadata": {}} | obj
    return {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": created,
        "data": {"object": price},
    }


def handle(conn: psycopg.Connection, event: dict[str, Any]) -> HandlerOutcome:
    with conn.transaction():
        return handle_event(conn, event)


def test_edit_in_stripe_is_recorded_as_drift_without_touching_cms_fields(
    conn: psycopg.Connection,
) -> None:
    pid = add_product(conn)
    outcome = handle(conn, product_event("evt_1", T0, name="Big mug", description=None))
    assert outcome.status == "succeeded" and "drift" in outcome.detail
    row = product_row(conn, pid)
    assert (row["name"], row["description"], row["active"], row["sync_status"]) == (
        "Mug",
        "A mug",
        True,
        "synced",
    )
    assert row["stripe_drift_at"] == datetime.fromtimestamp(T0, UTC)
    drift = row["stripe_drift"]
    assert drift["in_sync"] is False
    assert drift["product"] == {
        "event_id": "evt_1",
        "event_type": "product.updated",
        "event_created": T0,
        "stripe_id": "prod_mug",
        "archived": False,
        "deleted": False,
        "differences": {
            "name": {"stripe": "Big mug", "cms": "Mug"},
            "description": {"stripe": None, "cms": "A mug"},
        },
        "in_sync": False,
    }


def test_archived_and_deleted_in_stripe(conn: psycopg.Connection) -> None:
    pid = add_product(conn)
    handle(conn, product_event("evt_1", T0, active=False))
    drift = product_row(conn, pid)["stripe_drift"]["product"]
    assert (drift["archived"], drift["differences"]) == (
        True,
        {"active": {"stripe": False, "cms": True}},
    )
    handle(conn, product_event("evt_2", T0 + 1, "product.deleted", deleted=True))
    drift = product_row(conn, pid)["stripe_drift"]
    assert (drift["product"]["deleted"], drift["in_sync"]) == (True, False)


def test_archived_in_both_is_in_sync(conn: psycopg.Connection) -> None:
    pid = add_product(conn, active=False, sync_status="archived")
    handle(conn, product_event("evt_1", T0, active=False))
    assert product_row(conn, pid)["stripe_drift"]["in_sync"] is True


def test_an_older_event_never_overwrites_a_newer_one(conn: psycopg.Connection) -> None:
    pid = add_product(conn)
    newer = product_event("evt_new", T0 + 10)  # matches the CMS: in sync
    older = product_event("evt_old", T0, name="Stale name")
    assert handle(conn, newer).status == "succeeded"
    outcome = handle(conn, older)
    assert outcome.status == "ignored" and "older" in outcome.detail
    row = product_row(conn, pid)
    assert row["stripe_drift"]["product"]["event_id"] == "evt_new"
    assert row["stripe_drift"]["in_sync"] is True
    assert row["stripe_drift_at"] == datetime.fromtimestamp(T0 + 10, UTC)


def test_in_the_same_second_drift_wins_over_in_sync(conn: psycopg.Connection) -> None:
    pid = add_product(conn)
    handle(conn, product_event("evt_edit", T0, name="Edited in dashboard"))
    outcome = handle(conn, product_event("evt_sync", T0))
    assert outcome.status == "ignored" and "kept" in outcome.detail
    assert product_row(conn, pid)["stripe_drift"]["product"]["event_id"] == "evt_edit"
    handle(conn, product_event("evt_later", T0 + 1))  # the next sync clears it
    assert product_row(conn, pid)["stripe_drift"]["in_sync"] is True


@pytest.mark.parametrize("order", ["created first", "updated first"])
def test_a_creation_completed_in_the_same_second_is_in_sync(
    conn: psycopg.Connection, order: str
) -> None:
    """A product born through its price is created without its description, then completed
    within the same second: the update is the later state, whichever event is handled first."""
    pid = add_product(conn, stripe_product_id=None, stripe_price_id=None)
    born = product_event(
        "evt_born", T0, "product.created", id="prod_new", description=None, metadata={"cms_id": pid}
    )
    done = product_event("evt_done", T0, id="prod_new", metadata={"cms_id": pid})
    events = [born, done] if order == "created first" else [done, born]
    outcomes = [handle(conn, event) for event in events]
    drift = product_row(conn, pid)["stripe_drift"]
    assert drift["in_sync"] is True and drift["product"]["event_id"] == "evt_done"
    if order == "updated first":
        assert outcomes[1].status == "ignored" and "updated since" in outcomes[1].detail
    # Two updates in one second still keep the drift (their order is unknown).
    linked = {"id": "prod_new", "metadata": {"cms_id": pid}}
    handle(conn, product_event("evt_edit", T0, name="Edited", **linked))
    handle(conn, product_event("evt_sync", T0, **linked))
    assert product_row(conn, pid)["stripe_drift"]["product"]["event_id"] == "evt_edit"


def test_same_event_twice_changes_nothing_the_second_time(conn: psycopg.Connection) -> None:
    pid = add_product(conn)
    event = product_event("evt_1", T0, name="Big mug")
    handle(conn, event)
    first = product_row(conn, pid)
    assert handle(conn, event).status == "succeeded"
    second = product_row(conn, pid)
    assert second["stripe_drift"] == first["stripe_drift"]
    assert second["updated_at"] == first["updated_at"]  # no write at all


def test_row_found_by_cms_id_before_the_migration_links_it(conn: psycopg.Connection) -> None:
    pid = add_product(conn, stripe_product_id=None, stripe_price_id=None)
    event = product_event("evt_1", T0, id="prod_new", metadata={"cms_id": pid}, name="Mugg")
    assert handle(conn, event).status == "succeeded"
    row = product_row(conn, pid)
    assert row["stripe_product_id"] is None  # linking is the migration's job
    assert row["stripe_drift"]["product"]["differences"] == {
        "name": {"stripe": "Mugg", "cms": "Mug"}
    }


def test_cms_id_of_a_row_linked_elsewhere_and_unknown_products_are_ignored(
    conn: psycopg.Connection,
) -> None:
    pid = add_product(conn)
    dup = product_event("evt_1", T0, id="prod_dup", metadata={"cms_id": pid})
    outcome = handle(conn, dup)
    assert outcome.status == "ignored" and "prod_mug" in outcome.detail
    stranger = product_event("evt_2", T0, id="prod_x", metadata={"cms_id": str(uuid.uuid4())})
    assert handle(conn, stranger).status == "ignored"
    bad_uuid = product_event("evt_3", T0, id="prod_y", metadata={"cms_id": "not-a-uuid"})
    assert handle(conn, bad_uuid).status == "ignored"
    assert product_row(conn, pid)["stripe_drift"] is None


def test_price_drift_is_kept_apart_from_product_drift(conn: psycopg.Connection) -> None:
    pid = add_product(conn)
    handle(conn, product_event("evt_p", T0 + 10))
    # Older than the product event, but the first price event: recorded in its own section.
    outcome = handle(conn, price_event("evt_pr", T0, active=False))
    assert outcome.status == "succeeded"
    row = product_row(conn, pid)
    assert row["stripe_drift"]["price"]["archived"] is True
    assert row["stripe_drift"]["price"]["differences"] == {"active": {"stripe": False, "cms": True}}
    assert row["stripe_drift"]["product"]["in_sync"] is True
    assert row["stripe_drift"]["in_sync"] is False
    assert row["stripe_drift_at"] == datetime.fromtimestamp(T0 + 10, UTC)


def test_price_compared_with_what_was_synced(conn: psycopg.Connection) -> None:
    pid = add_product(conn)
    handle(conn, price_event("evt_1", T0, unit_amount=1300, currency="usd"))
    differences = product_row(conn, pid)["stripe_drift"]["price"]["differences"]
    assert differences == {
        "unit_amount": {"stripe": 1300, "cms": 1250},
        "currency": {"stripe": "usd", "cms": "eur"},
    }
    handle(conn, price_event("evt_2", T0 + 1, currency="EUR"))
    assert product_row(conn, pid)["stripe_drift"]["in_sync"] is True


def test_replaced_price_archived_by_the_migration_is_not_drift(conn: psycopg.Connection) -> None:
    pid = add_product(conn, stripe_price_id="price_new")
    outcome = handle(conn, price_event("evt_1", T0, id="price_old", active=False))
    assert outcome.status == "ignored" and "not the current price" in outcome.detail
    assert product_row(conn, pid)["stripe_drift"] is None


def payment_failed(event_id: str, type_: str) -> dict[str, Any]:
    if type_ == "invoice.payment_failed":
        obj = {
            "id": "in_1",
            "object": "invoice",
            "customer": "cus_1",
            "payment_intent": {"id": "pi_1"},
            "amount_due": 2500,
            "amount_remaining": 2500,
            "currency": "eur",
        }
    else:
        obj = {
            "id": "pi_1",
            "object": "payment_intent",
            "customer": {"id": "cus_1"},
            "amount": 2500,
            "currency": "eur",
            "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
        }
    return {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": T0,
        "data": {"object": obj},
    }


def test_failed_payments_become_recovery_attempts_once(conn: psycopg.Connection) -> None:
    for event_id, type_ in [
        ("evt_inv", "invoice.payment_failed"),
        ("evt_pi", "payment_intent.payment_failed"),
        ("evt_pi", "payment_intent.payment_failed"),
    ]:
        assert handle(conn, payment_failed(event_id, type_)).status == "succeeded"
    rows = conn.execute(
        "SELECT event_id, event_type, customer_id, invoice_id, payment_intent_id, amount, currency, "
        "failure_code, failure_message, status FROM payment_recovery_attempts ORDER BY event_id"
    ).fetchall()
    assert rows == [
        (
            "evt_inv",
            "invoice.payment_failed",
            "cus_1",
            "in_1",
            "pi_1",
            2500,
            "eur",
            None,
            None,
            "pending",
        ),
        (
            "evt_pi",
            "payment_intent.payment_failed",
            "cus_1",
            None,
            "pi_1",
            2500,
            "eur",
            "card_declined",
            "Your card was declined.",
            "pending",
        ),
    ]


def test_other_types_are_ignored(conn: psycopg.Connection) -> None:
    event = {"id": "evt_1", "type": "customer.created", "created": T0, "data": {"object": {}}}
    assert handle(conn, event) == HandlerOutcome(
        "ignored", "no handler for event type 'customer.created'; ignored"
    )


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"id": "evt_1", "type": "product.updated", "created": T0, "data": {}}, "data.object"),
        (
            {"id": "evt_1", "type": "price.updated", "created": T0, "data": {"object": {"x": 1}}},
            "data.object.id",
        ),
        ({"id": "evt_1", "created": T0}, "type"),
    ],
)
def test_malformed_events_raise_naming_the_field(
    conn: psycopg.Connection, event: dict[str, Any], field: str
) -> None:
    with pytest.raises(EventDataError, match=f"evt_1.*'{field}'"):
        handle(conn, event)
