"""Client-side rate limiting for Stripe: one account-wide bucket, one bucket per endpoint, a cap on
requests in flight, and an adaptive layer that backs off on 429s and climbs back on successes.

Stripe limits an account as a whole (live 100 requests/s, sandbox 25/s) and, separately, every
named operation ("endpoint": method + path template, e.g. ``POST /v1/products`` and
``POST /v1/products/{id}`` are two endpoints). A request goes out only when the
global bucket *and* its endpoint's bucket both hold a token, so a mix of creates and updates can use
the whole global budget while no single endpoint is exceeded.

Why our own bucket rather than ``pyrate-limiter`` or ``limits`` (both looked at):

- A request needs a token from two buckets at once. Both libraries acquire from one bucket per
  call; acquiring the global token and then waiting for the endpoint's wastes global budget (or
  holds it while other endpoints starve). Here both are checked and taken under one lock.
- The adaptive layer changes rates at run time. ``pyrate-limiter`` fixes a bucket's rates when it
  is built (a sliding-window log of timestamps), ``limits`` parses a rate per call but has no
  blocking wait and reads the wall clock, so a fake clock cannot drive it in tests.
- The whole thing is a classic token bucket (about 40 lines) with an injectable clock, which the
  tests drive deterministically.

Tokens are only taken at the moment a request may go out (no reservations in the future), so a
thread waiting for a busy endpoint never holds back requests to other endpoints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class Clock(Protocol):
    """Time source of a :class:`RateLimiter`; tests inject a fake one."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` (nothing when it is not positive)."""
        if seconds > 0:
            time.sleep(seconds)


class LimitScope(Enum):
    """Which limit a 429 says was exceeded."""

    GLOBAL = "global"
    ENDPOINT = "endpoint"
    UNKNOWN = "unknown"


@dataclass
class TokenBucket:
    """A token bucket whose rate can change while it runs. Not thread-safe on its own: the
    :class:`RateLimiter` holds its lock around every call.

    ``rate`` is the current refill rate (tokens per second), at most ``max_rate``; ``capacity`` is
    the largest burst. The bucket starts full.
    """

    name: str
    max_rate: float
    capacity: float = 1.0
    min_rate: float = 0.0
    rate: float = field(init=False)
    tokens: float = field(init=False)
    updated_at: float | None = field(default=None, init=False)
    # Bumped at every cut: a 429 only cuts the rate when the request was let through at the
    # current rate, so a burst of 429s from requests already in flight counts as one signal.
    generation: int = field(default=0, init=False)
    successes_in_a_row: int = field(default=0, init=False)
    granted: int = field(default=0, init=False)
    rate_limited: int = field(default=0, init=False)
    cuts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.max_rate <= 0:
            raise ValueError(f"bucket {self.name!r}: max_rate must be > 0, got {self.max_rate}")
        if self.capacity < 1:
            raise ValueError(f"bucket {self.name!r}: capacity must be >= 1, got {self.capacity}")
        if self.min_rate <= 0:
            self.min_rate = self.max_rate / 16
        self.min_rate = min(self.min_rate, self.max_rate)
        self.rate = self.max_rate
        self.tokens = self.capacity

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last refill, at the current rate."""
        if self.updated_at is not None and now > self.updated_at:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate)
        if self.updated_at is None or now > self.updated_at:
            self.updated_at = now

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0 when one is there now)."""
        self.refill(now)
        # The epsilon keeps float rounding from turning "exactly on time" into another tiny wait.
        return 0.0 if self.tokens >= 1.0 - 1e-9 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        """Take one token; the caller has checked :meth:`wait_s` is 0."""
        self.refill(now)
        self.tokens -= 1.0
        self.granted += 1

    def set_rate(self, now: float, rate: float) -> None:
        """Change the rate, clamped to ``[min_rate, max_rate]``; tokens earned so far are kept."""
        self.refill(now)
        self.rate = max(self.min_rate, min(self.max_rate, rate))


@dataclass(frozen=True)
class Permit:
    """Leave to send one request: which endpoint, and the bucket generations it was granted at."""

    endpoint: str
    global_generation: int
    endpoint_generation: int
    granted_at: float


@dataclass(frozen=True)
class LimiterStats:
    """A snapshot of a :class:`RateLimiter`'s counters (numbers only, safe for metadata)."""

    granted: int
    rate_wait_s: float
    in_flight_wait_s: float
    rate_limited: int
    global_cuts: int
    endpoint_cuts: int
    global_rate: float
    first_grant_at: float | None
    last_grant_at: float | None
    endpoint_rates: Mapping[str, float]
    endpoint_granted: Mapping[str, int]

    @property
    def granted_per_s(self) -> float:
        """Requests let through per second between the first and the last grant."""
        if self.first_grant_at is None or self.last_grant_at is None or self.granted < 2:
            return 0.0
        span = self.last_grant_at - self.first_grant_at
        return (self.granted - 1) / span if span > 0 else 0.0


class RateLimiter:
    """An account-wide token bucket plus one bucket per endpoint, shared by all threads, with a cap
    on requests in flight. See the module docstring.

    Args:
        global_rate: maximum requests per second for the whole account (this process's share).
        endpoint_rate: maximum requests per second of any one endpoint.
        max_in_flight: most requests between :meth:`slot` entry and exit at once (None: no cap).
        burst: capacity of every bucket (1 = strictly paced; Stripe's limiter tolerates no burst
            we could count on).
        cut_factor: the rate of the bucket a 429 names is multiplied by this.
        unsure_cut_factor: when a 429 does not say which limit, both buckets are multiplied by this.
        recover_after: this many successes in a row raise a bucket's rate by ``recover_factor``,
            never above its maximum.
        min_rate_fraction: cuts never take a bucket below ``max_rate * min_rate_fraction``.
        clock: time source (tests pass a fake one).
    """

    def __init__(
        self,
        global_rate: float,
        endpoint_rate: float,
        *,
        max_in_flight: int | None = None,
        burst: float = 1.0,
        cut_factor: float = 0.5,
        unsure_cut_factor: float = 0.75,
        recover_after: int = 10,
        recover_factor: float = 1.25,
        min_rate_fraction: float = 1 / 16,
        clock: Clock | None = None,
    ) -> None:
        if not 0 < cut_factor < 1 or not 0 < unsure_cut_factor < 1:
            raise ValueError("cut_factor and unsure_cut_factor must be between 0 and 1")
        if recover_factor <= 1 or recover_after < 1:
            raise ValueError("recover_factor must be > 1 and recover_after >= 1")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if not 0 < min_rate_fraction <= 1:
            raise ValueError("min_rate_fraction must be in (0, 1]")
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._burst = burst
        self._min_fraction = min_rate_fraction
        self._endpoint_rate = endpoint_rate
        self._cut_factor = cut_factor
        self._unsure_cut_factor = unsure_cut_factor
        self._recover_after = recover_after
        self._recover_factor = recover_factor
        self._global = self._new_bucket("global", global_rate)
        self._endpoints: dict[str, TokenBucket] = {}
        self._new_bucket("default endpoint", endpoint_rate)  # validates the default rate
        self.max_in_flight = max_in_flight
        self._in_flight = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self._rate_wait_s = 0.0
        self._in_flight_wait_s = 0.0
        self._first_grant_at: float | None = None
        self._last_grant_at: float | None = None

    def _new_bucket(self, name: str, rate: float) -> TokenBucket:
        return TokenBucket(
            name=name,
            max_rate=rate,
            capacity=self._burst,
            min_rate=rate * self._min_fraction,
        )

    def _bucket(self, endpoint: str) -> TokenBucket:
        bucket = self._endpoints.get(endpoint)
        if bucket is None:
            bucket = self._new_bucket(endpoint, self._endpoint_rate)
            self._endpoints[endpoint] = bucket
        return bucket

    def try_acquire(self, endpoint: str) -> Permit | float:
        """Take a token from the global bucket and ``endpoint``'s if both have one, and return the
        :class:`Permit`; otherwise take nothing and return the seconds to wait before trying again.
        """
        with self._lock:
            now = self._clock.monotonic()
            bucket = self._bucket(endpoint)
            wait = max(self._global.wait_s(now), bucket.wait_s(now))
            if wait > 0:
                return wait
            self._global.take(now)
            bucket.take(now)
            if self._first_grant_at is None:
                self._first_grant_at = now
            self._last_grant_at = now
            return Permit(endpoint, self._global.generation, bucket.generation, now)

    def acquire(self, endpoint: str) -> Permit:
        """Block until a request to ``endpoint`` may go out under both buckets and return its
        :class:`Permit` (does not take an in-flight place: see :meth:`slot`)."""
        waited = 0.0
        while True:
            result = self.try_acquire(endpoint)
            if isinstance(result, Permit):
                if waited:
                    with self._lock:
                        self._rate_wait_s += waited
                return result
            start = self._clock.monotonic()
            self._clock.sleep(result)
            waited += self._clock.monotonic() - start

    @contextmanager
    def slot(self, endpoint: str) -> Iterator[Permit]:
        """Hold one in-flight place and a rate permit for ``endpoint`` while the body sends one
        request. The in-flight place is taken first, so a permit is never wasted waiting for it."""
        if self._in_flight is not None:
            start = self._clock.monotonic()
            self._in_flight.acquire()
            waited = self._clock.monotonic() - start
            if waited > 0:
                with self._lock:
                    self._in_flight_wait_s += waited
        try:
            yield self.acquire(endpoint)
        finally:
            if self._in_flight is not None:
                self._in_flight.release()

    def record_success(self, permit: Permit) -> None:
        """Count a success; after ``recover_after`` in a row a bucket's rate climbs back."""
        with self._lock:
            now = self._clock.monotonic()
            for bucket, generation in (
                (self._global, permit.global_generation),
                (self._bucket(permit.endpoint), permit.endpoint_generation),
            ):
                if generation != bucket.generation or bucket.rate >= bucket.max_rate:
                    continue
                bucket.successes_in_a_row += 1
                if bucket.successes_in_a_row >= self._recover_after:
                    bucket.set_rate(now, bucket.rate * self._recover_factor)
                    bucket.successes_in_a_row = 0

    def record_rate_limited(self, permit: Permit, scope: LimitScope) -> None:
        """Count a 429 and cut the rate of the bucket it names (both, less, when unsure).

        Only a request let through at a bucket's current rate cuts it again, so the 429s of many
        requests already in flight count as one signal."""
        with self._lock:
            now = self._clock.monotonic()
            endpoint_bucket = self._bucket(permit.endpoint)
            endpoint_bucket.rate_limited += 1
            if scope is LimitScope.GLOBAL:
                targets = [(self._global, permit.global_generation, self._cut_factor)]
            elif scope is LimitScope.ENDPOINT:
                targets = [(endpoint_bucket, permit.endpoint_generation, self._cut_factor)]
            else:
                targets = [
                    (self._global, permit.global_generation, self._unsure_cut_factor),
                    (endpoint_bucket, permit.endpoint_generation, self._unsure_cut_factor),
                ]
            for bucket, generation, factor in targets:
                bucket.successes_in_a_row = 0
                if generation != bucket.generation:
                    continue
                bucket.set_rate(now, bucket.rate * factor)
                bucket.generation += 1
                bucket.cuts += 1

    def rate(self, endpoint: str | None = None) -> float:
        """The current rate of the global bucket, or of ``endpoint``'s."""
        with self._lock:
            return (self._global if endpoint is None else self._bucket(endpoint)).rate

    def stats(self) -> LimiterStats:
        """A snapshot of the counters."""
        with self._lock:
            return LimiterStats(
                granted=self._global.granted,
                rate_wait_s=self._rate_wait_s,
                in_flight_wait_s=self._in_flight_wait_s,
                rate_limited=sum(b.rate_limited for b in self._endpoints.values()),
                global_cuts=self._global.cuts,
                endpoint_cuts=sum(b.cuts for b in self._endpoints.values()),
                global_rate=self._global.rate,
                first_grant_at=self._first_grant_at,
                last_grant_at=self._last_grant_at,
                endpoint_rates={n: b.rate for n, b in self._endpoints.items()},
                endpoint_granted={n: b.granted for n, b in self._endpoints.items() if b.granted},
            )
