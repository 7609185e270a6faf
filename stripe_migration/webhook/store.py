"""Parsing a webhook body into a :class:`StripeEventRecord` and storing it in ``stripe_events``.

The same insert serves the receiver (through an async connection pool) and gap filling (through a
plain connection): ``ON CONFLICT (event_id) DO NOTHING``, and nothing is stored for an event already
moved to ``stripe_events_archive``, so a late redelivery of an archived event is not processed again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from stripe_migration.db.urls import libpq_url

_MAX_ID_CHARS = 255
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedEvent(ValueError):
    """A webhook body or listed event is not a Stripe event; the message names the field."""


@dataclass(frozen=True)
class StripeEventRecord:
    """One Stripe event as stored in ``stripe_events``; ``payload_json`` is the event's JSON text."""

    event_id: str
    type: str
    created: int
    livemode: bool
    api_version: str | None
    payload_json: str

    def __repr__(self) -> str:  # the payload may be large; ids are enough to identify it
        return f"StripeEventRecord(event_id={self.event_id!r}, type={self.type!r}, created={self.created})"


def _reject_constant(name: str) -> Any:
    raise MalformedEvent(f"body is not valid JSON for PostgreSQL: {name} is not allowed")


def _check_text(event: Mapping[str, Any], field: str, where: str) -> str:
    value = event.get(field)
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(
            f"{where}: field {field!r} must be a non-empty string, got {value!r:.60}"
        )
    if len(value) > _MAX_ID_CHARS:
        raise MalformedEvent(f"{where}: field {field!r} is longer than {_MAX_ID_CHARS} characters")
    _check_storable(value, field, where)
    return value


def _check_storable(value: str, field: str, where: str) -> None:
    """Refuse text PostgreSQL cannot hold: a NUL, or a lone surrogate (a JSON ``\\ud800`` escape),
    which has no UTF-8 form."""
    if "\x00" in value or _LONE_SURROGATE.search(value):
        raise MalformedEvent(
            f"{where}: field {field!r} holds a NUL or a lone surrogate, which cannot be stored"
        )


def record_from_mapping(
    event: Mapping[str, Any], payload_json: str | None = None
) -> StripeEventRecord:
    """Validate a decoded Stripe event and return its record.

    Requires ``id``, ``type``, integer ``created`` and an object at ``data.object``; ``object``, when
    present, must be ``"event"``. ``payload_json`` is the original text, if there is one (the
    receiver stores the body exactly as signed); otherwise ``event`` is serialised.
    """
    if not isinstance(event, Mapping):
        raise MalformedEvent(f"an event must be a JSON object, got {type(event).__name__}")
    event_id = _check_text(event, "id", "event")
    where = f"event {event_id}"
    event_type = _check_text(event, "type", where)
    kind = event.get("object", "event")
    if kind != "event":
        raise MalformedEvent(f"{where}: field 'object' must be 'event', got {kind!r:.60}")
    created = event.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise MalformedEvent(
            f"{where}: field 'created' must be a Unix timestamp, got {created!r:.60}"
        )
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise MalformedEvent(f"{where}: field 'data.object' must be an object")
    livemode = event.get("livemode", False)
    if not isinstance(livemode, bool):
        raise MalformedEvent(
            f"{where}: field 'livemode' must be true or false, got {livemode!r:.60}"
        )
    api_version = event.get("api_version")
    if api_version is not None and not isinstance(api_version, str):
        raise MalformedEvent(
            f"{where}: field 'api_version' must be a string, got {api_version!r:.60}"
        )
    if api_version is not None:
        _check_storable(api_version, "api_version", where)
    if payload_json is None:
        try:
            payload_json = json.dumps(event, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise MalformedEvent(f"{where}: not serialisable as JSON ({exc})") from None
    return StripeEventRecord(event_id, event_type, created, livemode, api_version, payload_json)


def parse_event(body: bytes) -> StripeEventRecord:
    """Decode a webhook body (UTF-8 JSON) into a :class:`StripeEventRecord`.

    Raise :class:`MalformedEvent` for anything that is not a Stripe event.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("body is not UTF-8") from None
    try:
        decoded = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MalformedEvent("body is nested too deeply to be a Stripe event") from None
    return record_from_mapping(decoded, payload_json=text)


INSERT_EVENT_SQL = """
INSERT INTO stripe_events (event_id, type, payload, livemode, api_version, created_at)
SELECT %(event_id)s, %(type)s, %(payload)s::jsonb, %(livemode)s, %(api_version)s,
       to_timestamp(%(created)s)
WHERE NOT EXISTS (SELECT 1 FROM stripe_events_archive a WHERE a.event_id = %(event_id)s)
ON CONFLICT (event_id) DO NOTHING
RETURNING 1
"""


def _params(record: StripeEventRecord) -> dict[str, Any]:
    return {
        "event_id": record.event_id,
        "type": record.type,
        "payload": record.payload_json,
        "livemode": record.livemode,
        "api_version": record.api_version,
        "created": record.created,
    }


def insert_event(conn: psycopg.Connection, record: StripeEventRecord) -> bool:
    """Store ``record`` unless its event is already stored or archived. Return whether it was new.

    Runs in the caller's transaction (or autocommits on an autocommit connection).
    """
    return conn.execute(INSERT_EVENT_SQL, _params(record)).fetchone() is not None


async def insert_event_async(conn: psycopg.AsyncConnection, record: StripeEventRecord) -> bool:
    """The async twin of :func:`insert_event`."""
    cursor = await conn.execute(INSERT_EVENT_SQL, _params(record))
    return (await cursor.fetchone()) is not None


INSERT_EVENTS_SQL = """
INSERT INTO stripe_events (event_id, type, payload, livemode, api_version, created_at)
SELECT e.event_id, e.type, e.payload::jsonb, e.livemode, e.api_version, to_timestamp(e.created)
FROM unnest(%(event_ids)s::text[], %(types)s::text[], %(payloads)s::text[],
            %(livemodes)s::boolean[], %(api_versions)s::text[], %(created)s::bigint[])
     AS e(event_id, type, payload, livemode, api_version, created)
WHERE NOT EXISTS (SELECT 1 FROM stripe_events_archive a WHERE a.event_id = e.event_id)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


async def insert_events_async(
    conn: psycopg.AsyncConnection, records: list[StripeEventRecord]
) -> set[str]:
    """Store ``records`` (distinct event ids) in one statement, in the order of their ids, and
    return the ids that were new.

    The order matters: two such statements running at once with overlapping ids take the ids'
    index locks in the same order, so they wait for each other instead of deadlocking.
    """
    ordered = sorted(records, key=lambda r: r.event_id)
    cursor = await conn.execute(
        INSERT_EVENTS_SQL,
        {
            "event_ids": [r.event_id for r in ordered],
            "types": [r.type for r in ordered],
            "payloads": [r.payload_json for r in ordered],
            "livemodes": [r.livemode for r in ordered],
            "api_versions": [r.api_version for r in ordered],
            "created": [r.created for r in ordered],
        },
    )
    return {row[0] for row in await cursor.fetchall()}


def behind_pooler(database_url: str) -> bool:
    """Whether ``database_url`` looks like a transaction-mode pooler's: Supabase's pooled port
    6543, a ``pooler``/``pgbouncer`` host, or ``pgbouncer`` in its options."""
    info = conninfo_to_dict(libpq_url(database_url))
    text = " ".join(str(info.get(k) or "") for k in ("host", "hostaddr", "options")).lower()
    return str(info.get("port") or "") == "6543" or "pooler" in text or "pgbouncer" in text


class EventStore:
    """Writes events through an async PostgreSQL connection pool (one per receiver process).

    On a direct connection the insert is a server-side prepared statement (parsed and planned once
    per connection). Transaction-mode poolers (Supabase's pooled connection string, PgBouncer) do
    not all keep a prepared statement between transactions, so there (``prepare=False``, or by
    default when :func:`behind_pooler` says so) every insert is sent whole.
    """

    def __init__(
        self,
        database_url: str,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 10.0,
        prepare: bool | None = None,
    ):
        if prepare is None:
            prepare = not behind_pooler(database_url)
        self._pool = AsyncConnectionPool(
            libpq_url(database_url),
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0 if prepare else None},
            name="stripe-webhook",
        )
        self.timeout_s = timeout_s
        self.prepare = prepare

    def __repr__(self) -> str:  # the pool's conninfo may hold a password
        return f"EventStore(max_size={self._pool.max_size})"

    async def open(self) -> None:
        """Open the pool without waiting for a connection, so the server starts even if the DB is down."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close the pool and its connections."""
        await self._pool.close()

    async def store(self, record: StripeEventRecord) -> bool:
        """Store ``record``; return False for a duplicate (already stored or archived)."""
        async with self._pool.connection(timeout=self.timeout_s) as conn:
            return await insert_event_async(conn, record)

    async def store_many(self, records: list[StripeEventRecord]) -> set[str]:
        """Store ``records`` (distinct ids) in one transaction; return the ids that were new."""
        async with self._pool.connection(timeout=self.timeout_s) as conn:
            return await insert_events_async(conn, records)

    async def check(self, timeout_s: float | None = None) -> None:
        """Run ``SELECT 1`` on a pooled connection; raise if the database cannot be reached."""
        async with self._pool.connection(timeout=timeout_s or self.timeout_s) as conn:
            await conn.execute("SELECT 1")
