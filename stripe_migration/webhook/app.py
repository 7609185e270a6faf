"""The Starlette app that receives Stripe webhooks.

``POST /webhooks/stripe`` reads the raw body (refusing more than ``max_body_bytes`` with 413),
verifies ``Stripe-Signature`` against the endpoint secrets, checks that the body is a Stripe event,
stores it (``ON CONFLICT (event_id) DO NOTHING``) and answers 200 once it is committed: concurrent
events share one transaction (:mod:`stripe_migration.webhook.group_commit`). Processing happens
later, in the processing job. A body that fails any check gets 400 and nothing is stored; when the
database cannot be reached the answer is 503, so Stripe retries the delivery.

Overload is answered, not queued: past ``max_queue_depth`` requests in this process waiting for
their commit, a new one gets 503 with ``Retry-After`` at once, before its body is read, and nothing
is stored. ``GET /health`` checks the database through the same pool and reports the depth.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

import psycopg
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stripe_migration.webhook.group_commit import DEFAULT_MAX_BATCH, DEFAULT_WINDOW_S, GroupCommit
from stripe_migration.webhook.signature import (
    DEFAULT_TOLERANCE_S,
    SignatureError,
    SignatureVerifier,
)
from stripe_migration.webhook.store import EventStore, MalformedEvent, parse_event

WEBHOOK_PATH = "/webhooks/stripe"
HEALTH_PATH = "/health"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Stripe events are usually a few kilobytes; a megabyte leaves room for large objects."""
DEFAULT_MAX_QUEUE_DEPTH = 64
"""Requests one process holds at once before it sheds; at ~1,000 commits/s a process, ~64 ms."""
SHED_RETRY_AFTER_S = 1

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    database_url: str,
    secrets: str | Iterable[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    pool_max_size: int = 10,
    db_timeout_s: float = 5.0,
    prepare: bool | None = None,
    max_queue_depth: int = DEFAULT_MAX_QUEUE_DEPTH,
    group_commit_window_s: float = DEFAULT_WINDOW_S,
    max_batch: int = DEFAULT_MAX_BATCH,
    group_commit: bool = True,
) -> Starlette:
    """Build the receiver app writing to ``database_url``, accepting bodies signed with ``secrets``.

    ``secrets`` is one secret, a comma-separated string, or several secrets (rotation: every one is
    accepted). The connection pool opens when the app starts and closes when it stops.
    ``prepare``: server-side prepared statements (None: unless the URL looks like a pooler's).
    ``max_queue_depth``: requests held at once before new ones get 503 (overload shedding).
    ``group_commit_window_s`` and ``max_batch``: how long a commit waits for company, how many
    events it takes at most; ``group_commit=False``: one transaction per request instead.
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    if max_queue_depth < 1:
        raise ValueError(f"max_queue_depth must be positive, got {max_queue_depth}")
    verifier = SignatureVerifier(secrets, tolerance_s=tolerance_s)
    store = EventStore(
        database_url, max_size=pool_max_size, timeout_s=db_timeout_s, prepare=prepare
    )
    committer = GroupCommit(store, window_s=group_commit_window_s, max_batch=max_batch)
    depth = [0]

    async def receive(request: Request) -> JSONResponse:
        if depth[0] >= max_queue_depth:
            return JSONResponse(
                {"error": "overloaded, retry later"},
                status_code=503,
                headers={"Retry-After": str(SHED_RETRY_AFTER_S)},
            )
        depth[0] += 1
        try:
            return await _receive(request)
        finally:
            depth[0] -= 1

    async def _receive(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                return _error(400, "invalid Content-Length header")
            if len(declared) > 18 or int(declared) > max_body_bytes:
                return _error(413, f"body larger than {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _error(413, f"body larger than {max_body_bytes} bytes")
        raw = bytes(body)
        try:
            verifier.verify(raw, request.headers.get("stripe-signature"))
            record = parse_event(raw)
        except (SignatureError, MalformedEvent) as exc:
            log.warning("webhook refused: %s", exc)
            return _error(400, str(exc))
        try:
            stored = await (committer.store(record) if group_commit else store.store(record))
        except psycopg.DataError as exc:
            # e.g. a \u0000 in a string, which jsonb cannot hold.
            log.warning("webhook %s refused by PostgreSQL: %s", record.event_id, type(exc).__name__)
            return _error(400, f"event {record.event_id} cannot be stored: {type(exc).__name__}")
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.error("webhook %s not stored, database unavailable: %s", record.event_id, exc)
            return JSONResponse(
                {"error": "database unavailable, retry later"},
                status_code=503,
                headers={"Retry-After": "30"},
            )
        return JSONResponse({"received": True, "duplicate": not stored})

    async def health(request: Request) -> JSONResponse:
        try:
            await store.check()
        except (PoolTimeout, psycopg.Error) as exc:
            log.error("health check: database unavailable: %s", exc)
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "queue_depth": depth[0]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        committer.start()
        try:
            yield
        finally:
            await committer.close()
            await store.close()

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, receive, methods=["POST"]),
            Route(HEALTH_PATH, health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.verifier = verifier
    app.state.max_body_bytes = max_body_bytes
    app.state.max_queue_depth = max_queue_depth
    return app
