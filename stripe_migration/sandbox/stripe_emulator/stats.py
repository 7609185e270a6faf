"""Counters served by ``GET /_emulator/stats``."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class Stats:
    """Requests by endpoint and status, 429s, faults (by kind; errors also by phase), in-flight
    peak, idempotent replays (and how many of them replayed a saved failure)."""

    def __init__(self) -> None:
        self.reset(in_flight=0)

    def reset(self, in_flight: int) -> None:
        """Zero every counter (requests still running stay counted as in flight)."""
        self.by_endpoint: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.requests_total = 0
        self.rate_limited_total = 0
        self.rate_limited_by_reason: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.fault_phases: Counter[str] = Counter()
        self.idempotent_replays = 0
        self.idempotent_failure_replays = 0
        self.in_flight = in_flight
        self.peak_in_flight = in_flight

    def begin(self) -> None:
        """A request arrived."""
        self.requests_total += 1
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def end(self, endpoint: str, status: str) -> None:
        """A request finished with ``status`` (an HTTP status, or ``dropped``)."""
        self.in_flight -= 1
        self.by_endpoint[endpoint][status] += 1

    def count_fault(self, kind: str, phase: str | None = None) -> None:
        """An injected fault of ``kind`` (a status, ``dropped``, ``slow``...); errors also count
        by ``phase`` (``before_execution``, ``after_execution``, ``after_commit``)."""
        self.faults[kind] += 1
        if phase is not None:
            self.fault_phases[phase] += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return {
            "requests_total": self.requests_total,
            "by_endpoint": {ep: dict(c) for ep, c in sorted(self.by_endpoint.items())},
            "rate_limited_total": self.rate_limited_total,
            "rate_limited_by_reason": dict(self.rate_limited_by_reason),
            "faults": dict(self.faults),
            "fault_phases": dict(self.fault_phases),
            "idempotent_replays": self.idempotent_replays,
            "idempotent_failure_replays": self.idempotent_failure_replays,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }
