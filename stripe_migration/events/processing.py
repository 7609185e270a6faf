"""Processing stored Stripe events, without Dagster: run the handlers of a claimed batch, archive.

How an event moves (the SQL of each step is in ``queries.py``):

1. ``queries.claim_batch`` takes up to ``batch_size`` pending events (not processed, fewer than
   ``max_attempts`` attempts, no attempt started within ``retry_delay_s``), oldest first, with
   ``FOR UPDATE SKIP LOCKED``. In the same transaction it records the batch, links the events to
   it, increments ``processing_attempts`` and inserts a ``started`` attempt per event. That fresh
   attempt is the claim: no other run takes the event until the retry delay has passed.
2. :func:`process_batch` handles each event in its own transaction: it locks the event, checks that
   its attempt is still the newest and still ``started``, runs the handler in a savepoint, and
   commits the handler's writes together with the attempt's result and ``processed_at``. A handler
   error rolls back to the savepoint and is recorded on the attempt. The handler's detail goes to
   the event's ``metadata`` (``outcome``, ``detail``); an ``ignored`` attempt also keeps it as its
   ``error_message``, the reason nothing was done (an unknown type: "no handler for event type
   'customer.created'; ignored"), so the attempt history says why wherever it goes (archive too).

A crash anywhere leaves every event either processed (its writes and ``processed_at`` committed
together) or with a ``started`` attempt that expires after the retry delay; the next claim marks
such attempts ``failed`` ("interrupted") and tries again, until ``max_attempts``. Attempts are
counted when claimed, so an event that crashes the process every time still becomes dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.pq import TransactionStatus

from stripe_migration.events import queries
from stripe_migration.events.handlers import HandlerOutcome, handle_event
from stripe_migration.events.queries import ClaimedEvent, check_positive
from stripe_migration.resources.redaction import redact
from stripe_migration.settings import EVENTS_ARCHIVE_BATCH_SIZE

Handler = Callable[[psycopg.Connection, Mapping[str, Any]], HandlerOutcome]

MAX_ERROR_CHARS = 1000


class FailedEvent(NamedTuple):
    """An event whose handler raised in a batch: its attempt's number and recorded error."""

    event_id: str
    attempt_number: int
    error: str


@dataclass(frozen=True)
class BatchResult:
    """What :func:`process_batch` did with a batch; ``status`` is the batch's as recorded by
    ``queries.close_batch``: ``completed`` (nothing failed), ``partial`` (some events failed, some
    were processed) or ``failed`` (events failed and none was processed)."""

    batch_id: str
    status: str
    event_count: int
    succeeded: int
    ignored: int
    failed: int
    skipped: int
    duration_s: float
    errors: tuple[FailedEvent, ...] = field(default=())

    @property
    def processed(self) -> int:
        """Events processed (succeeded or ignored)."""
        return self.succeeded + self.ignored


@dataclass(frozen=True)
class ArchiveResult:
    """What :func:`archive_events` moved, and what is left."""

    archived: int
    batches: int
    remaining: int
    oldest_age_s: float | None
    longest_batch_s: float
    duration_s: float


def error_message(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` for an attempt row: keys, secrets and passwords redacted, truncated."""
    text = redact(f"{type(exc).__name__}: {exc}")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def _process_one(
    conn: psycopg.Connection, batch_id: str, event: ClaimedEvent, handler: Handler
) -> tuple[str, str | None]:
    """Handle one claimed event in one transaction. Return (succeeded|ignored|failed|skipped, detail)."""
    with conn.transaction():
        locked = queries.lock_claimed_event(conn, event)
        if locked is None:
            return "skipped", "no longer in stripe_events (archived)"
        payload, current = locked
        if not current:
            return "skipped", "already processed or claimed again"
        try:
            with conn.transaction():
                outcome = handler(conn, payload)
                if not isinstance(outcome, HandlerOutcome) or outcome.status not in (
                    "succeeded",
                    "ignored",
                ):
                    raise TypeError(f"handler returned {outcome!r}, not a HandlerOutcome")
        except Exception as exc:
            message = error_message(exc)
            queries.record_failure(conn, batch_id, event, message)
            return "failed", message
        queries.record_processed(
            conn, batch_id, event, outcome.status, outcome.detail[:MAX_ERROR_CHARS]
        )
        return outcome.status, outcome.detail


def process_batch(
    conn: psycopg.Connection,
    batch_id: str,
    events: Sequence[ClaimedEvent],
    handler: Handler = handle_event,
) -> BatchResult:
    """Process the events of a batch claimed by :func:`~stripe_migration.events.queries.claim_batch`,
    one transaction each, on ``conn`` (autocommit, outside a transaction).

    Handler exceptions are recorded on the attempt and counted as failures; anything else (the
    database going away, KeyboardInterrupt) propagates and leaves the rest for a later claim.
    """
    started = time.monotonic()
    counts = {"succeeded": 0, "ignored": 0, "failed": 0, "skipped": 0}
    errors: list[FailedEvent] = []
    for event in events:
        status, detail = _process_one(conn, batch_id, event, handler)
        counts[status] += 1
        if status == "failed":
            errors.append(FailedEvent(event.event_id, event.attempt_number, detail or ""))
    return BatchResult(
        batch_id=batch_id,
        status=queries.close_batch(conn, batch_id),
        event_count=len(events),
        succeeded=counts["succeeded"],
        ignored=counts["ignored"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        duration_s=time.monotonic() - started,
        errors=tuple(errors),
    )


def archive_events(
    conn: psycopg.Connection,
    retention_days: int,
    batch_size: int = EVENTS_ARCHIVE_BATCH_SIZE,
    max_batches: int | None = None,
) -> ArchiveResult:
    """Move events created more than ``retention_days`` ago to ``stripe_events_archive``.

    Calls ``archive_old_events`` batch after batch, each in its own transaction so locks stay short
    and an interruption keeps what was done, until a batch moves nothing (or ``max_batches``).
    ``conn`` must not be inside a transaction.
    """
    check_positive(retention_days=retention_days, batch_size=batch_size)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("archive_events needs a connection outside a transaction")
    retention = timedelta(days=retention_days)
    started = time.monotonic()
    archived = batches = 0
    longest = 0.0
    while max_batches is None or batches < max_batches:
        batch_started = time.monotonic()
        moved = queries.archive_one_batch(conn, retention, batch_size)
        longest = max(longest, time.monotonic() - batch_started)
        if moved == 0:
            break
        batches += 1
        archived += moved
    remaining, oldest_age_s = queries.past_retention(conn, retention)
    return ArchiveResult(
        archived=archived,
        batches=batches,
        remaining=remaining,
        oldest_age_s=oldest_age_s,
        longest_batch_s=longest,
        duration_s=time.monotonic() - started,
    )
