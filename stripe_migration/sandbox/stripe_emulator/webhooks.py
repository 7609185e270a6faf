"""Deliver events to the configured endpoint as Stripe does: a JSON POST with a signature header.

``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint secret>``,
which ``stripe.Webhook.construct_event`` verifies. Deliveries run in background tasks so API
responses never wait for them; a failed delivery (connection error or non-2xx) is retried a few
times with a doubling delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from .config import EmulatorConfig

_WORKERS = 4


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """Return the ``Stripe-Signature`` header value for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where and how one event is delivered, as the config said when the event was recorded."""

    url: str
    secret: str
    max_attempts: int
    retry_delay_s: float
    timeout_s: float

    @classmethod
    def configured(cls, config: EmulatorConfig) -> WebhookEndpoint | None:
        """The endpoint ``config`` names, or None when no ``webhook_url`` is set."""
        if not config.webhook_url:
            return None
        return cls(
            url=config.webhook_url,
            secret=config.webhook_secret,
            max_attempts=config.webhook_max_attempts,
            retry_delay_s=config.webhook_retry_delay_s,
            timeout_s=config.webhook_timeout_s,
        )


class WebhookDispatcher:
    """A queue of events to deliver and the tasks delivering them."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._queue: asyncio.Queue[tuple[dict[str, Any], WebhookEndpoint]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Start the delivery tasks (inside the server's event loop)."""
        self._queue = asyncio.Queue()
        self._client = httpx.AsyncClient()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(_WORKERS)]

    async def stop(self) -> None:
        """Stop delivering; events still queued are dropped."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()

    def enqueue(self, event: dict[str, Any], endpoint: WebhookEndpoint) -> None:
        """Schedule delivery of ``event`` to ``endpoint`` (no-op before :meth:`start`)."""
        if self._queue is None:
            return
        self.counts["queued"] += 1
        self._queue.put_nowait((event, endpoint))

    def clear(self) -> None:
        """Forget queued deliveries and counters."""
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()
        self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        """Delivery counters: queued, delivered, failed (gave up), attempts, pending."""
        pending = self._queue.qsize() if self._queue is not None else 0
        return {
            "queued": self.counts["queued"],
            "delivered": self.counts["delivered"],
            "failed": self.counts["failed"],
            "attempts": self.counts["attempts"],
            "pending": pending + self.counts["in_progress"],
        }

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            self.counts["in_progress"] += 1
            try:
                await self._deliver(*item)
            finally:
                self.counts["in_progress"] -= 1
                self._queue.task_done()

    async def _deliver(self, event: dict[str, Any], endpoint: WebhookEndpoint) -> None:
        assert self._client is not None
        payload = json.dumps(event, indent=2)
        delay = endpoint.retry_delay_s
        max_attempts = endpoint.max_attempts
        for attempt in range(1, max_attempts + 1):
            self.counts["attempts"] += 1
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(payload, endpoint.secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                response = await self._client.post(
                    endpoint.url,
                    content=payload.encode(),
                    headers=headers,
                    timeout=endpoint.timeout_s,
                )
                if 200 <= response.status_code < 300:
                    self.counts["delivered"] += 1
                    return
            except httpx.HTTPError:
                pass
            if attempt < max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.counts["failed"] += 1
