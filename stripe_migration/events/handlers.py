"""What each Stripe event does to our data: plain functions of a connection and an event.

- ``product.*`` and ``price.*`` record drift on the CMS row (``products.stripe_drift`` and
  ``stripe_drift_at``): what Stripe now says that differs from the CMS, or that the object was
  archived or deleted in Stripe. They never write the CMS's own fields, so they do not fight the
  migration; the next plan sees the drift and decides.
- ``invoice.payment_failed`` and ``payment_intent.payment_failed`` add a row to
  ``payment_recovery_attempts``.
- Any other type is ignored, which is not an error; the outcome's detail says so ("no handler
  for event type 'customer.created'; ignored") and is stored with the attempt.

Every handler is idempotent (same event twice, same result) and order-safe: drift is kept per Stripe
object kind ("product", "price") with the ``created`` time of the event it came from, and an event
older than the one recorded never overwrites it. ``stripe_drift`` looks like::

    {"in_sync": false,
     "product": {"event_id": "evt_..", "event_type": "product.updated", "event_created": 1700000000,
                 "stripe_id": "prod_..", "archived": false, "deleted": false,
                 "differences": {"name": {"stripe": "New name", "cms": "Old name"}}, "in_sync": false},
     "price": {...same keys, differences on unit_amount/currency/active...}}

A section with ``in_sync: true`` is kept as the watermark of the newest event seen for that kind;
``stripe_drift_at`` is the newest ``event_created`` of the sections. Events carry ``created`` in whole
seconds, so the order of two events of the same second is unknown: there, drift wins over "in sync"
(a stale drift costs one redundant sync, which then clears it; a lost one would hide a dashboard
edit), except that an object's update always follows its creation. Drift is relative to the CMS row when the event is processed.

Exceptions propagate: the processor records them on the attempt and retries.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

PAYMENT_FAILURE_TYPES = frozenset({"invoice.payment_failed", "payment_intent.payment_failed"})

_ROW_COLUMNS = """
    id, name, description, active, stripe_product_id, stripe_price_id, synced_unit_amount,
    synced_currency, stripe_drift
"""


@dataclass(frozen=True)
class HandlerOutcome:
    """The result of handling one event: ``succeeded`` (something was done) or ``ignored``."""

    status: Literal["succeeded", "ignored"]
    detail: str


class EventDataError(ValueError):
    """The event lacks a field its handler needs; the message names the event and the field."""


def handle_event(conn: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
    """Dispatch ``event`` (a decoded Stripe event) to its handler, in the caller's transaction."""
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise EventDataError(f"event {event.get('id')!r}: field 'type' is missing")
    if event_type.startswith("product."):
        return reconcile_product(conn, event)
    if event_type.startswith("price."):
        return reconcile_price(conn, event)
    if event_type in PAYMENT_FAILURE_TYPES:
        return record_payment_failure(conn, event)
    return HandlerOutcome("ignored", f"no handler for event type {event_type!r}; ignored")


# --- helpers -----------------------------------------------------------------------------------


def _object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise EventDataError(f"event {event.get('id')!r}: field 'data.object' is missing")
    return obj


def _required(event: Mapping[str, Any], obj: Mapping[str, Any], field: str) -> Any:
    value = obj.get(field)
    if value is None:
        raise EventDataError(f"event {event.get('id')!r}: field 'data.object.{field}' is missing")
    return value


def _created(event: Mapping[str, Any]) -> int:
    created = event.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise EventDataError(f"event {event.get('id')!r}: field 'created' must be an integer")
    return created


def _ref(value: Any) -> str | None:
    """The id of a reference that may be expanded (``{"id": ...}``) or not (``"cus_..."``)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _cms_id(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    raw = metadata.get("cms_id") if isinstance(metadata, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    """Normalise optional text for comparison: Stripe sends ``null`` where the CMS may hold ``""``."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _lock_row(conn: psycopg.Connection, where: str, value: Any) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        # ``where`` is one of the fixed column names below, never input.
        cur.execute(f"SELECT {_ROW_COLUMNS} FROM products WHERE {where} = %s FOR UPDATE", (value,))
        return cur.fetchone()


def _write_section(
    conn: psycopg.Connection,
    row: Mapping[str, Any],
    kind: str,
    section: dict[str, Any],
) -> HandlerOutcome:
    """Store ``section`` under ``kind`` in the row's drift unless a newer event is recorded there."""
    drift = dict(row["stripe_drift"] or {})
    previous = drift.get(kind)
    if isinstance(previous, Mapping):
        previous_created = previous.get("event_created", -1)
        same_second = previous_created == section["event_created"]
        if same_second and _created_then_updated(section, previous):
            return HandlerOutcome(
                "ignored",
                f"{section['event_id']} created {section['stripe_id']}, which "
                f"{previous.get('event_id')} updated since: already recorded on product {row['id']}",
            )
        if previous_created > section["event_created"]:
            return HandlerOutcome(
                "ignored",
                f"{section['event_id']} is older than {previous.get('event_id')}, already "
                f"recorded on product {row['id']}",
            )
        if (
            same_second
            # an update follows its object's creation: then the order is known, the newer wins
            and not _created_then_updated(previous, section)
            and previous.get("event_id") != section["event_id"]
            and previous.get("in_sync") is False
            and section["in_sync"]
        ):
            # Same second, order unknown: keep the drift. If it was stale, the next sync clears it.
            return HandlerOutcome(
                "ignored",
                f"{section['event_id']} has the same time as {previous.get('event_id')}, whose "
                f"drift on product {row['id']} is kept",
            )
    drift[kind] = section
    sections = [v for k, v in drift.items() if k in ("product", "price") and isinstance(v, Mapping)]
    drift["in_sync"] = all(s.get("in_sync", True) for s in sections)
    newest = max(s["event_created"] for s in sections)
    conn.execute(
        """
        UPDATE products SET stripe_drift = %s, stripe_drift_at = to_timestamp(%s)
        WHERE id = %s AND (stripe_drift IS DISTINCT FROM %s OR stripe_drift_at IS DISTINCT FROM
                           to_timestamp(%s))
        """,
        (Jsonb(drift), newest, row["id"], Jsonb(drift), newest),
    )
    state = (
        "in sync"
        if section["in_sync"]
        else "drift "
        + ", ".join(
            (["deleted"] if section["deleted"] else [])
            + (["archived"] if section["archived"] else [])
            + sorted(section["differences"])
        )
    )
    return HandlerOutcome(
        "succeeded", f"product {row['id']}: {kind} {section['stripe_id']} {state}"
    )


def _created_then_updated(first: Mapping[str, Any], then: Mapping[str, Any]) -> bool:
    """Whether ``then`` is an update of the object ``first`` created: Stripe's ``created`` counts
    whole seconds, but an object is always updated after it was created. A product born through
    its price is created without its description, then completed within the same second."""
    return (
        first.get("stripe_id") == then.get("stripe_id")
        and str(first.get("event_type", "")).endswith(".created")
        and str(then.get("event_type", "")).endswith(".updated")
    )


def _section(
    event: Mapping[str, Any],
    stripe_id: str,
    *,
    deleted: bool,
    stripe_active: bool,
    differences: dict[str, Any],
) -> dict[str, Any]:
    """The drift section one event gives its Stripe object (see the module doc)."""
    return {
        "event_id": event.get("id"),
        "event_type": event.get("type"),
        "event_created": _created(event),
        "stripe_id": stripe_id,
        "archived": not stripe_active,
        "deleted": deleted,
        "differences": differences,
        "in_sync": not differences and not deleted,
    }


# --- products and prices -----------------------------------------------------------------------


def reconcile_product(conn: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
    """Record on the CMS row how the Stripe product in a ``product.*`` event differs from it.

    The row is the one linked by ``stripe_product_id``, else the one named by the product's
    ``metadata.cms_id`` if that row is not linked to another Stripe product.
    """
    product = _object(event)
    product_id = _required(event, product, "id")
    row = _lock_row(conn, "stripe_product_id", product_id)
    if row is None:
        cms_id = _cms_id(product)
        row = _lock_row(conn, "id", cms_id) if cms_id else None
        if row is not None and row["stripe_product_id"] not in (None, product_id):
            return HandlerOutcome(
                "ignored",
                f"{product_id} names CMS row {row['id']}, which is linked to "
                f"{row['stripe_product_id']}",
            )
    if row is None:
        return HandlerOutcome("ignored", f"no CMS row for Stripe product {product_id}")

    deleted = event.get("type") == "product.deleted" or product.get("deleted") is True
    stripe_active = bool(product.get("active", True)) and not deleted
    differences: dict[str, Any] = {}
    if not deleted:
        for field in ("name", "description"):
            if field in product and _text(product.get(field)) != _text(row[field]):
                differences[field] = {"stripe": product.get(field), "cms": row[field]}
        if stripe_active != row["active"]:
            differences["active"] = {"stripe": stripe_active, "cms": row["active"]}
    section = _section(
        event, product_id, deleted=deleted, stripe_active=stripe_active, differences=differences
    )
    return _write_section(conn, row, "product", section)


def reconcile_price(conn: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
    """Record on the CMS row how the Stripe price in a ``price.*`` event differs from what was sent.

    Only the row's current price counts (``stripe_price_id``, or any price of the row's product
    while the migration has not written a price id back); an old price the migration replaced and
    archived is not drift. The price is compared with ``synced_unit_amount``/``synced_currency``.
    """
    price = _object(event)
    price_id = _required(event, price, "id")
    row = _lock_row(conn, "stripe_price_id", price_id)
    if row is None:
        product_id = _ref(price.get("product"))
        row = _lock_row(conn, "stripe_product_id", product_id) if product_id else None
        if row is None and (cms_id := _cms_id(price)):
            row = _lock_row(conn, "id", cms_id)
        if row is None:
            return HandlerOutcome("ignored", f"no CMS row for Stripe price {price_id}")
        if row["stripe_price_id"] is not None:
            return HandlerOutcome(
                "ignored",
                f"{price_id} is not the current price of product {row['id']} "
                f"({row['stripe_price_id']})",
            )

    deleted = event.get("type") == "price.deleted" or price.get("deleted") is True
    stripe_active = bool(price.get("active", True)) and not deleted
    differences: dict[str, Any] = {}
    if not deleted:
        amount = price.get("unit_amount")
        if row["synced_unit_amount"] is not None and amount != row["synced_unit_amount"]:
            differences["unit_amount"] = {"stripe": amount, "cms": row["synced_unit_amount"]}
        currency = _text(price.get("currency"))
        synced_currency = _text(row["synced_currency"])
        if synced_currency is not None and (currency or "").lower() != synced_currency.lower():
            differences["currency"] = {
                "stripe": price.get("currency"),
                "cms": row["synced_currency"],
            }
        if not stripe_active:
            differences["active"] = {"stripe": False, "cms": True}
    section = _section(
        event, price_id, deleted=deleted, stripe_active=stripe_active, differences=differences
    )
    return _write_section(conn, row, "price", section)


# --- failed payments ---------------------------------------------------------------------------


def record_payment_failure(conn: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
    """Add a ``payment_recovery_attempts`` row for a failed invoice or payment intent (once per event)."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventDataError("payment failure event without an 'id'")
    obj = _object(event)
    object_id = _required(event, obj, "id")
    event_type = event["type"]
    if event_type == "invoice.payment_failed":
        error = obj.get("last_finalization_error")
        row = {
            "invoice_id": object_id,
            "payment_intent_id": _ref(obj.get("payment_intent")),
            "amount": obj.get("amount_remaining", obj.get("amount_due")),
        }
    else:
        error = obj.get("last_payment_error")
        row = {
            "invoice_id": _ref(obj.get("invoice")),
            "payment_intent_id": object_id,
            "amount": obj.get("amount"),
        }
    error = error if isinstance(error, Mapping) else {}
    amount = row["amount"]
    inserted = conn.execute(
        """
        INSERT INTO payment_recovery_attempts (
            event_id, event_type, customer_id, invoice_id, payment_intent_id, amount, currency,
            failure_code, failure_message
        ) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING 1
        """,
        (
            event_id,
            event_type,
            _ref(obj.get("customer")),
            row["invoice_id"],
            row["payment_intent_id"],
            amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
            _text(obj.get("currency")),
            _text(error.get("code") or error.get("decline_code")),
            _text(error.get("message")),
        ),
    ).fetchone()
    if inserted is None:
        return HandlerOutcome("succeeded", f"recovery attempt for {object_id} already recorded")
    return HandlerOutcome("succeeded", f"recovery attempt recorded for {object_id}")
