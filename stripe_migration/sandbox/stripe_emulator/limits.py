"""Stripe-style rate limiting: token buckets per account, per endpoint and for search.

Each bucket holds ``rate * burst_s`` tokens (``burst_s`` is the config's ``rate_burst_s``, 1.0 s
by default; at least one token) and refills continuously at ``rate`` per second. So a client that
keeps to the rate is never refused, one that has been idle for ``burst_s`` may send
``rate * burst_s`` requests at once, and one above the rate is refused for the excess. A request
takes one token from every bucket that applies (global, its endpoint, search) and is only admitted
if all of them have one, so a refused request costs nothing.
"""

from __future__ import annotations

import time

from .config import EmulatorConfig


class TokenBucket:
    """A token bucket refilled continuously at ``rate`` tokens per second."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * burst_s)
        self.tokens = self.capacity
        self.updated = now

    def ready(self, now: float) -> bool:
        """Refill up to ``now`` and tell whether a token is available."""
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        return self.tokens >= 1.0

    def take(self) -> None:
        """Take one token (call after :meth:`ready` returned True)."""
        self.tokens -= 1.0


class RateLimiter:
    """The emulator's rate limits for one account; rebuilt when the config changes."""

    def __init__(self, config: EmulatorConfig, now: float | None = None) -> None:
        self.config = config
        now = time.monotonic() if now is None else now
        self._global = (
            TokenBucket(config.global_rate_per_s, config.rate_burst_s, now)
            if config.global_rate_per_s
            else None
        )
        self._search = (
            TokenBucket(config.search_rate_per_s, config.rate_burst_s, now)
            if config.search_rate_per_s
            else None
        )
        self._endpoints: dict[str, TokenBucket | None] = {}

    def _endpoint(self, operation: str, now: float) -> TokenBucket | None:
        try:
            return self._endpoints[operation]
        except KeyError:
            rate = self.config.endpoint_rates_per_s.get(operation, self.config.endpoint_rate_per_s)
            bucket = TokenBucket(rate, self.config.rate_burst_s, now) if rate else None
            self._endpoints[operation] = bucket
            return bucket

    def admit(self, operation: str, is_search: bool, now: float | None = None) -> str | None:
        """Take tokens for one request; return ``None`` if admitted, else the limiter's name."""
        now = time.monotonic() if now is None else now
        buckets: list[tuple[str, TokenBucket]] = []
        if self._global is not None:
            buckets.append(("global-rate", self._global))
        endpoint = self._endpoint(operation, now)
        if endpoint is not None:
            buckets.append(("endpoint-rate", endpoint))
        if is_search and self._search is not None:
            buckets.append(("resource-specific", self._search))
        for reason, bucket in buckets:
            if not bucket.ready(now):
                return reason
        for _, bucket in buckets:
            bucket.take()
        return None
