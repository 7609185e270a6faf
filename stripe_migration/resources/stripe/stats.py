"""Per-client statistics of Stripe calls: requests by kind, endpoint and status, retries, 429s,
replayed failures, refused live writes and the request rate reached."""

from __future__ import annotations

import threading
from collections import Counter


class StripeStats:
    """Thread-safe counters of one :class:`StripeApi`: requests by kind, endpoint and status,
    retries, 429s, failures replayed for an idempotency key, time waited on the limiter and the
    rate reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter (e.g. at the start of a step)."""
        with self._lock:
            self.by_kind: Counter[str] = Counter()
            self.by_endpoint_status: Counter[tuple[str, str]] = Counter()
            self.calls = 0
            self.calls_failed = 0
            self.retries = 0
            self.rate_limited = 0
            self.lock_timeouts = 0
            self.refused_live = 0
            self.replayed_failures = 0
            self.first_request_at: float | None = None
            self.last_response_at: float | None = None

    def record_request(
        self, endpoint: str, kind: str, status: str, started: float, ended: float
    ) -> None:
        """Count one HTTP request and its outcome (a status code or an error name)."""
        with self._lock:
            self.by_kind[kind] += 1
            self.by_endpoint_status[(endpoint, status)] += 1
            if self.first_request_at is None or started < self.first_request_at:
                self.first_request_at = started
            if self.last_response_at is None or ended > self.last_response_at:
                self.last_response_at = ended

    def add(
        self,
        *,
        calls: int = 0,
        calls_failed: int = 0,
        retries: int = 0,
        rate_limited: int = 0,
        lock_timeouts: int = 0,
        replayed_failures: int = 0,
        refused_live: int = 0,
    ) -> None:
        """Add to the counters: finished calls (each with all its attempts) and failed ones,
        retries, 429s (``lock_timeout`` ones also in ``lock_timeouts``), failures Stripe replayed
        for an idempotency key (not retried), writes refused by the live-mode guard."""
        with self._lock:
            self.calls += calls
            self.calls_failed += calls_failed
            self.retries += retries
            self.rate_limited += rate_limited
            self.lock_timeouts += lock_timeouts
            self.replayed_failures += replayed_failures
            self.refused_live += refused_live

    @property
    def requests(self) -> int:
        """HTTP requests sent (every attempt counts)."""
        with self._lock:
            return sum(self.by_kind.values())

    def requests_per_s(self) -> float:
        """Requests sent per second, from the first request to the last response."""
        with self._lock:
            total = sum(self.by_kind.values())
            if self.first_request_at is None or self.last_response_at is None:
                return 0.0
            span = self.last_response_at - self.first_request_at
            return total / span if span > 0 else 0.0

    def status_counts(self) -> dict[str, int]:
        """Requests by status over all endpoints: ``{"200": 290, "429": 3, "timeout": 1}``."""
        with self._lock:
            out: Counter[str] = Counter()
            for (_, status), n in self.by_endpoint_status.items():
                out[status] += n
            return dict(out)
