"""Gap filling: events Stripe has but the receiver never stored end up in stripe_events, once."""

from __future__ import annotations

from typing import Any

import psycopg
import stripe

from stripe_migration.events.gap_fill import ListEvents
from stripe_migration.webhook.store import insert_event, record_from_mapping
from stripe_migration_tests.fixtures.events import fill_gaps_at


def stripe_lister(client: stripe.StripeClient, page_size: int = 2) -> ListEvents:
    """``GET /v1/events`` through the official client, small pages to exercise pagination."""

    def list_events(created_gte: int | None, starting_after: str | None) -> Any:
        params: dict[str, Any] = {"limit": page_size}
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        if starting_after is not None:
            params["starting_after"] = starting_after
        return client.v1.events.list(params=params)

    return list_events


def stored_ids(db: str) -> set[str]:
    with psycopg.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM stripe_events")}


def test_events_never_delivered_are_stored_by_gap_filling(
    migrated_db: str, stripe_client: stripe.StripeClient
) -> None:
    for i in range(5):
        stripe_client.v1.products.create(params={"name": f"Gap product {i}"})
    ours = [
        e
        for e in stripe_client.v1.events.list(params={"limit": 100, "type": "product.created"}).data
        if e.data.object.name.startswith("Gap product")
    ]
    assert len(ours) == 5
    # The receiver got the two oldest before it went down.
    delivered = sorted(ours, key=lambda e: e.created)[:2]
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for e in delivered:
            insert_event(conn, record_from_mapping(e.to_dict(for_json=True)))

    assert fill_gaps_at(migrated_db, stripe_lister(stripe_client)) == 3
    assert stored_ids(migrated_db) == {e.id for e in ours}
    assert fill_gaps_at(migrated_db, stripe_lister(stripe_client)) == 0

    with psycopg.connect(migrated_db) as conn:
        payload = conn.execute(
            "SELECT payload FROM stripe_events WHERE event_id = %s", (ours[0].id,)
        ).fetchone()[0]
    assert payload["type"] == "product.created"
    assert payload["data"]["object"]["id"] == ours[0].data.object.id


def test_listing_starts_at_the_newest_stored_event_minus_the_overlap(migrated_db: str) -> None:
    def event(i: int) -> dict[str, Any]:
        return {
            "id": f"evt_{i}",
            "object": "event",
            "type": "customer.created",
            "created": 1_700_000_000 + i * 100,
            "data": {"object": {"id": f"cus_{i}"}},
        }

    stripe_side = [event(i) for i in range(7, -1, -1)]  # newest first, as Stripe lists
    calls: list[tuple[int | None, str | None]] = []

    def list_events(created_gte: int | None, starting_after: str | None) -> dict[str, Any]:
        calls.append((created_gte, starting_after))
        matching = [e for e in stripe_side if created_gte is None or e["created"] >= created_gte]
        start = (
            0 if starting_after is None else [e["id"] for e in matching].index(starting_after) + 1
        )
        return {"data": matching[start : start + 3], "has_more": start + 3 < len(matching)}

    assert fill_gaps_at(migrated_db, list_events) == 8  # nothing stored yet: everything
    assert calls[0] == (None, None) and len(calls) == 3
    calls.clear()
    assert fill_gaps_at(migrated_db, list_events, overlap_s=250) == 0
    assert calls[0] == (1_700_000_700 - 250, None)
    assert fill_gaps_at(migrated_db, list_events, since=0) == 0
    assert len(stored_ids(migrated_db)) == 8
