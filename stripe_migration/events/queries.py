"""Every SQL statement on ``stripe_events``, its attempts and its batches, over an open connection.

Processing (``processing.py``), the sensor, the checks, the command line and gap filling call
these; none of them writes SQL on those tables itself. The receiver's insert is the one exception
kept beside the receiver (``webhook/store.py``), which must not depend on ``events/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row

from stripe_migration.settings import EVENTS_RETRY_DELAY_S

INTERRUPTED = "interrupted: the processing run stopped before recording a result"
SUPERSEDED = "superseded: the event was claimed again after the retry delay"

# Pending: not processed, attempts left, and no attempt started within the retry delay.
_PENDING = """
    e.processed_at IS NULL
    AND e.processing_attempts < %(max_attempts)s
    AND NOT EXISTS (
        SELECT 1 FROM stripe_event_processing p
        WHERE p.event_id = e.event_id
          AND p.started_at > now() - make_interval(secs => %(retry_delay_s)s)
    )
"""


@dataclass(frozen=True)
class ClaimedEvent:
    """An event claimed for processing, with the number of the attempt made for it."""

    event_id: str
    type: str
    attempt_number: int
    created_at: datetime


class Claim(NamedTuple):
    """A claimed batch: ``batch_id`` is None (and ``events`` empty) when nothing was pending."""

    batch_id: str | None
    events: list[ClaimedEvent]


@dataclass(frozen=True)
class PendingCounts:
    """The state of the queue: ``ready`` events can be claimed now."""

    new: int
    retrying: int
    ready: int
    dead: int
    oldest_pending_age_s: float | None


@dataclass(frozen=True)
class DeadEvent:
    """An event that used all its attempts without success, with its last error."""

    event_id: str
    type: str
    created_at: datetime
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _new_batch_id() -> str:
    return f"batch-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def claim_batch(
    conn: psycopg.Connection, batch_size: int, max_attempts: int, retry_delay_s: int
) -> Claim:
    """Claim up to ``batch_size`` pending events for a new batch; see the module docstring.

    Commits on return (or releases a savepoint, inside a caller's transaction). Two concurrent calls
    never claim the same event. Batches left ``processing`` by a crashed run, untouched for longer
    than the retry delay (at least a minute), are closed as ``failed``/``partial`` on the way.
    """
    check_positive(batch_size=batch_size, max_attempts=max_attempts)
    if retry_delay_s < 0:
        raise ValueError(f"retry_delay_s must be >= 0, got {retry_delay_s}")
    params = {"max_attempts": max_attempts, "retry_delay_s": retry_delay_s, "limit": batch_size}
    with conn.transaction():
        conn.execute(
            """
            UPDATE stripe_event_batches
            SET status = CASE WHEN processed_count > 0 THEN 'partial' ELSE 'failed' END,
                completed_at = now()
            WHERE status = 'processing'
              AND updated_at < now() - make_interval(secs => greatest(%s, 60))
            """,
            (retry_delay_s,),
        )
        locked = [
            row[0]
            for row in conn.execute(
                f"""
                SELECT e.event_id FROM stripe_events e
                WHERE {_PENDING}
                ORDER BY e.created_at, e.received_at, e.id
                LIMIT %(limit)s
                FOR UPDATE OF e SKIP LOCKED
                """,
                params,
            )
        ]
        if not locked:
            return Claim(None, [])
        # A row claimed by a run that committed while this statement ran is re-checked by
        # PostgreSQL on its own columns only, not on the NOT EXISTS over attempts; a second
        # statement, with a fresh snapshot, sees that run's attempt. The rows are locked now.
        rows = conn.execute(
            f"""
            SELECT e.event_id FROM stripe_events e
            WHERE e.event_id = ANY(%(ids)s) AND {_PENDING}
            ORDER BY e.created_at, e.received_at, e.id
            """,
            params | {"ids": locked},
        ).fetchall()
        ids = [row[0] for row in rows]
        if not ids:
            return Claim(None, [])
        batch_id = _new_batch_id()
        conn.execute(
            """
            INSERT INTO stripe_event_batches (batch_id, status, event_count, started_at)
            VALUES (%s, 'processing', %s, now())
            """,
            (batch_id, len(ids)),
        )
        conn.execute(
            """
            UPDATE stripe_event_processing
            SET status = 'failed', error_message = %s, completed_at = now()
            WHERE event_id = ANY(%s) AND status = 'started'
            """,
            (INTERRUPTED, ids),
        )
        claimed = conn.execute(
            """
            UPDATE stripe_events
            SET processing_attempts = processing_attempts + 1, batch_id = %s
            WHERE event_id = ANY(%s)
            RETURNING event_id, type, processing_attempts, created_at
            """,
            (batch_id, ids),
        ).fetchall()
        order = {event_id: i for i, event_id in enumerate(ids)}
        claimed.sort(key=lambda r: order[r[0]])
        conn.execute(
            """
            INSERT INTO stripe_event_processing (event_id, attempt_number, status, started_at)
            SELECT event_id, attempt_number, 'started', now()
            FROM unnest(%s::text[], %s::int[]) AS t (event_id, attempt_number)
            """,
            ([r[0] for r in claimed], [r[2] for r in claimed]),
        )
    return Claim(batch_id, [ClaimedEvent(r[0], r[1], r[2], r[3]) for r in claimed])


def finish_attempt(
    conn: psycopg.Connection, event: ClaimedEvent, status: str, error: str | None
) -> None:
    conn.execute(
        """
        UPDATE stripe_event_processing
        SET status = %s, error_message = %s, completed_at = clock_timestamp()
        WHERE event_id = %s AND attempt_number = %s
        """,
        (status, error, event.event_id, event.attempt_number),
    )


def pending_counts(
    conn: psycopg.Connection, max_attempts: int, retry_delay_s: int = EVENTS_RETRY_DELAY_S
) -> PendingCounts:
    """Count unprocessed events: never tried, tried and waiting, ready to claim now, dead.

    ``retrying`` includes events whose attempt is running; ``dead`` excludes an event whose last
    attempt is still running (started within ``retry_delay_s``).
    """
    row = conn.execute(
        f"""
        SELECT
            count(*) FILTER (WHERE e.processing_attempts = 0),
            count(*) FILTER (WHERE e.processing_attempts > 0
                             AND e.processing_attempts < %(max_attempts)s),
            count(*) FILTER (WHERE {_PENDING}),
            count(*) FILTER (WHERE e.processing_attempts >= %(max_attempts)s AND NOT EXISTS (
                SELECT 1 FROM stripe_event_processing p
                WHERE p.event_id = e.event_id AND p.status = 'started'
                  AND p.started_at > now() - make_interval(secs => %(retry_delay_s)s))),
            extract(epoch FROM now() - min(e.created_at)
                    FILTER (WHERE e.processing_attempts < %(max_attempts)s))::float8
        FROM stripe_events e
        WHERE e.processed_at IS NULL
        """,
        {"max_attempts": max_attempts, "retry_delay_s": retry_delay_s},
    ).fetchone()
    assert row is not None
    return PendingCounts(*(int(v) for v in row[:4]), oldest_pending_age_s=row[4])


def dead_events(
    conn: psycopg.Connection,
    max_attempts: int,
    retry_delay_s: int = EVENTS_RETRY_DELAY_S,
    limit: int = 100,
) -> list[DeadEvent]:
    """Events that used ``max_attempts`` attempts without success, oldest first, with the last error.

    An event whose last attempt is still running (started within ``retry_delay_s``) is not dead yet;
    one whose last attempt was interrupted shows :data:`INTERRUPTED` as its error.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT e.event_id, e.type, e.created_at, e.processing_attempts AS attempts,
                   CASE WHEN last.status = 'started' THEN %(interrupted)s
                        ELSE last.error_message END AS last_error,
                   last.started_at AS last_attempt_at
            FROM stripe_events e
            LEFT JOIN LATERAL (
                SELECT p.status, p.error_message, p.started_at FROM stripe_event_processing p
                WHERE p.event_id = e.event_id
                ORDER BY p.attempt_number DESC LIMIT 1
            ) last ON true
            WHERE e.processed_at IS NULL
              AND e.processing_attempts >= %(max_attempts)s
              AND NOT (last.status IS NOT DISTINCT FROM 'started'
                       AND last.started_at > now() - make_interval(secs => %(retry_delay_s)s))
            ORDER BY e.created_at, e.event_id
            LIMIT %(limit)s
            """,
            {
                "max_attempts": max_attempts,
                "retry_delay_s": retry_delay_s,
                "limit": limit,
                "interrupted": INTERRUPTED,
            },
        )
        return [DeadEvent(**row) for row in cur.fetchall()]


def ready_events(
    conn: psycopg.Connection, max_attempts: int, retry_delay_s: int, limit: int
) -> list[tuple[str, int]]:
    """The events :func:`claim_batch` would take now, in its order, as ``(event_id, attempts)``.

    At most ``limit`` of them; read without locking, so a claim may take a different set.
    """
    check_positive(max_attempts=max_attempts, limit=limit)
    rows = conn.execute(
        f"""
        SELECT e.event_id, e.processing_attempts FROM stripe_events e
        WHERE {_PENDING}
        ORDER BY e.created_at, e.received_at, e.id
        LIMIT %(limit)s
        """,
        {"max_attempts": max_attempts, "retry_delay_s": retry_delay_s, "limit": limit},
    ).fetchall()
    return [(row[0], int(row[1])) for row in rows]


def reprocess_dead_events(
    conn: psycopg.Connection,
    max_attempts: int,
    retry_delay_s: int = EVENTS_RETRY_DELAY_S,
    event_ids: Sequence[str] | None = None,
) -> list[str]:
    """Give dead events (all of them, or those of ``event_ids``) a fresh set of attempts.

    Their attempt rows move into ``metadata.reprocessed`` (a list with one ``{"at", "attempts"}``
    entry per reprocessing), because attempt numbers restart at 1; ``processing_attempts`` goes
    back to 0, so the next claim takes them. Return the ids reset, oldest first; an id that is not
    dead (processed, attempts left, or unknown) is left alone. Commits on return.
    """
    check_positive(max_attempts=max_attempts)
    with conn.transaction():
        ids = [
            row[0]
            for row in conn.execute(
                """
                SELECT e.event_id FROM stripe_events e
                WHERE e.processed_at IS NULL
                  AND e.processing_attempts >= %(max_attempts)s
                  AND (%(ids)s::text[] IS NULL OR e.event_id = ANY(%(ids)s::text[]))
                  AND NOT EXISTS (
                      SELECT 1 FROM stripe_event_processing p
                      WHERE p.event_id = e.event_id AND p.status = 'started'
                        AND p.started_at > now() - make_interval(secs => %(retry_delay_s)s))
                ORDER BY e.created_at, e.event_id
                FOR UPDATE OF e
                """,
                {
                    "max_attempts": max_attempts,
                    "retry_delay_s": retry_delay_s,
                    "ids": None if event_ids is None else list(event_ids),
                },
            )
        ]
        if not ids:
            return []
        conn.execute(
            """
            UPDATE stripe_events e
            SET processing_attempts = 0,
                metadata = e.metadata || jsonb_build_object(
                    'reprocessed',
                    COALESCE(e.metadata -> 'reprocessed', '[]'::jsonb) || jsonb_build_array(
                        jsonb_build_object('at', now(), 'attempts', COALESCE((
                            SELECT jsonb_agg(to_jsonb(p) - 'id' - 'event_id'
                                             ORDER BY p.attempt_number)
                            FROM stripe_event_processing p WHERE p.event_id = e.event_id
                        ), '[]'::jsonb))))
            WHERE e.event_id = ANY(%s)
            """,
            (ids,),
        )
        conn.execute("DELETE FROM stripe_event_processing WHERE event_id = ANY(%s)", (ids,))
    return ids


def lock_claimed_event(conn: psycopg.Connection, event: ClaimedEvent) -> tuple[Any, bool] | None:
    """Lock a claimed event and its attempt (inside the caller's transaction).

    Return None when the event is gone (archived); else ``(payload, current)``, ``current`` being
    whether the event is unprocessed and this attempt still its newest and still ``started``. A
    ``started`` attempt that is no longer current is closed as :data:`SUPERSEDED`.
    """
    row = conn.execute(
        """
        SELECT payload, processed_at, processing_attempts FROM stripe_events
        WHERE event_id = %s FOR UPDATE
        """,
        (event.event_id,),
    ).fetchone()
    if row is None:
        return None
    payload, processed_at, attempts = row
    attempt = conn.execute(
        """
        SELECT status FROM stripe_event_processing
        WHERE event_id = %s AND attempt_number = %s FOR UPDATE
        """,
        (event.event_id, event.attempt_number),
    ).fetchone()
    if processed_at is not None or attempts != event.attempt_number or attempt != ("started",):
        if attempt == ("started",):
            finish_attempt(conn, event, "failed", SUPERSEDED)
        return payload, False
    conn.execute(
        """
        UPDATE stripe_event_processing SET started_at = clock_timestamp()
        WHERE event_id = %s AND attempt_number = %s
        """,
        (event.event_id, event.attempt_number),
    )
    return payload, True


def record_failure(
    conn: psycopg.Connection, batch_id: str, event: ClaimedEvent, message: str
) -> None:
    """Close the event's attempt as failed with ``message`` and count it on its batch."""
    finish_attempt(conn, event, "failed", message)
    conn.execute(
        "UPDATE stripe_event_batches SET failed_count = failed_count + 1 WHERE batch_id = %s",
        (batch_id,),
    )


def record_processed(
    conn: psycopg.Connection, batch_id: str, event: ClaimedEvent, status: str, detail: str
) -> None:
    """Close the event's attempt with ``status``, mark the event processed with its outcome, and
    count it on its batch. An ``ignored`` attempt keeps ``detail`` (why nothing was done) in its
    ``error_message``, the attempts' only text column; a ``succeeded`` one has none."""
    finish_attempt(conn, event, status, detail if status == "ignored" else None)
    conn.execute(
        """
        UPDATE stripe_events
        SET processed_at = clock_timestamp(),
            metadata = metadata || jsonb_build_object('outcome', %s::text, 'detail', %s::text)
        WHERE event_id = %s
        """,
        (status, detail, event.event_id),
    )
    conn.execute(
        "UPDATE stripe_event_batches SET processed_count = processed_count + 1 WHERE batch_id = %s",
        (batch_id,),
    )


def close_batch(conn: psycopg.Connection, batch_id: str) -> str:
    """Set the batch's final status from its counts (completed, partial or failed); return it."""
    row = conn.execute(
        """
        UPDATE stripe_event_batches
        SET status = CASE WHEN failed_count = 0 THEN 'completed'
                          WHEN processed_count > 0 THEN 'partial'
                          ELSE 'failed' END,
            completed_at = now()
        WHERE batch_id = %s
        RETURNING status
        """,
        (batch_id,),
    ).fetchone()
    if row is None:
        raise ValueError(f"no batch {batch_id!r} in stripe_event_batches")
    return row[0]


def archive_one_batch(conn: psycopg.Connection, retention: timedelta, batch_size: int) -> int:
    """Move up to ``batch_size`` events older than ``retention`` to the archive, in one
    transaction (``archive_old_events``); return how many moved."""
    with conn.transaction():
        row = conn.execute("SELECT archive_old_events(%s, %s)", (retention, batch_size)).fetchone()
    return int(row[0]) if row else 0


def past_retention(conn: psycopg.Connection, retention: timedelta) -> tuple[int, float | None]:
    """Events older than ``retention`` still in ``stripe_events``, and the oldest event's age (s)."""
    with conn.transaction():
        row = conn.execute(
            """
            SELECT count(*) FILTER (WHERE created_at < now() - %s),
                   extract(epoch FROM now() - min(created_at))::float8
            FROM stripe_events
            """,
            (retention,),
        ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def newest_stored_created(conn: psycopg.Connection) -> int | None:
    """``created`` (Unix seconds) of the newest event in ``stripe_events``, or None if empty."""
    row = conn.execute(
        "SELECT floor(extract(epoch FROM max(created_at)))::bigint FROM stripe_events"
    ).fetchone()
    return None if row is None else row[0]
