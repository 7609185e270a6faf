"""The rate limiter, driven by a fake clock: pacing, the global/endpoint split, adaptive cuts and
recovery, the in-flight cap, and thread safety. No real sleeping."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from stripe_migration.resources.rate_limit import (
    LimitScope,
    Permit,
    RateLimiter,
    TokenBucket,
)


class FakeClock:
    """A clock that only moves when someone sleeps; safe to share between threads."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()
        self.slept = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(seconds, 0.0)
            self.slept += max(seconds, 0.0)


def limiter(clock: FakeClock, **kwargs) -> RateLimiter:
    defaults = dict(global_rate=100.0, endpoint_rate=25.0, clock=clock)
    defaults.update(kwargs)
    return RateLimiter(**defaults)


def test_one_endpoint_is_paced_at_its_rate() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=100.0, endpoint_rate=20.0)
    start = clock.monotonic()
    permits = [lim.acquire("POST /v1/products") for _ in range(101)]
    gaps = {round(b.granted_at - a.granted_at, 9) for a, b in itertools.pairwise(permits)}
    assert gaps == {0.05}
    assert clock.monotonic() - start == pytest.approx(100 / 20.0)


def test_a_mix_of_endpoints_uses_the_whole_global_budget() -> None:
    clock = FakeClock()
    lim = limiter(clock)  # 100/s global, 25/s per endpoint
    endpoints = [
        "POST /v1/products",
        "POST /v1/products/{id}",
        "GET /v1/products/{id}",
        "GET /v1/prices/{id}",
    ]
    start = clock.monotonic()
    for i in range(401):
        lim.acquire(endpoints[i % 4])
    assert clock.monotonic() - start == pytest.approx(400 / 100.0)
    stats = lim.stats()
    assert stats.granted == 401
    assert stats.granted_per_s == pytest.approx(100.0)
    assert sum(stats.endpoint_granted.values()) == 401


def test_the_global_bucket_caps_many_endpoints() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=10.0, endpoint_rate=25.0)
    start = clock.monotonic()
    for i in range(51):
        lim.acquire(f"GET /v1/thing{i % 5}")
    assert clock.monotonic() - start == pytest.approx(50 / 10.0)


def test_waiting_on_a_busy_endpoint_takes_nothing_from_the_global_bucket() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=100.0, endpoint_rate=1.0)
    assert isinstance(lim.try_acquire("POST /v1/products"), Permit)
    wait = lim.try_acquire("POST /v1/products")
    assert wait == pytest.approx(1.0)
    clock.sleep(0.01)  # one global token's worth
    assert isinstance(lim.try_acquire("GET /v1/products/{id}"), Permit)
    assert lim.stats().granted == 2


def test_a_burst_capacity_lets_that_many_through_at_once() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=10.0, endpoint_rate=10.0, burst=5)
    for _ in range(5):
        assert isinstance(lim.try_acquire("GET /v1/account"), Permit)
    assert lim.try_acquire("GET /v1/account") == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("scope", "global_rate", "endpoint_rate"),
    [
        (LimitScope.GLOBAL, 50.0, 25.0),
        (LimitScope.ENDPOINT, 100.0, 12.5),
        (LimitScope.UNKNOWN, 75.0, 18.75),
    ],
)
def test_a_429_cuts_the_bucket_it_names(scope, global_rate, endpoint_rate) -> None:
    lim = limiter(FakeClock())
    permit = lim.acquire("POST /v1/products")
    lim.record_rate_limited(permit, scope)
    assert lim.rate() == global_rate
    assert lim.rate("POST /v1/products") == endpoint_rate
    assert lim.rate("POST /v1/products/{id}") == 25.0
    assert lim.stats().rate_limited == 1


def test_429s_of_requests_already_in_flight_cut_only_once() -> None:
    lim = limiter(FakeClock())
    in_flight = [lim.acquire("POST /v1/products") for _ in range(8)]
    for permit in in_flight:
        lim.record_rate_limited(permit, LimitScope.ENDPOINT)
    assert lim.rate("POST /v1/products") == 12.5
    assert lim.stats().rate_limited == 8
    assert lim.stats().endpoint_cuts == 1
    # A request let through at the new rate that is refused again cuts again.
    lim.record_rate_limited(lim.acquire("POST /v1/products"), LimitScope.ENDPOINT)
    assert lim.rate("POST /v1/products") == 6.25


def test_cuts_stop_at_the_floor() -> None:
    lim = limiter(FakeClock(), min_rate_fraction=0.25)
    for _ in range(10):
        lim.record_rate_limited(lim.acquire("GET /v1/account"), LimitScope.GLOBAL)
    assert lim.rate() == 25.0


def test_successes_raise_the_rate_back_gradually_never_above_the_maximum() -> None:
    lim = limiter(FakeClock(), recover_after=10, recover_factor=1.25)
    lim.record_rate_limited(lim.acquire("POST /v1/products"), LimitScope.ENDPOINT)
    assert lim.rate("POST /v1/products") == 12.5
    seen = []
    for _ in range(60):
        lim.record_success(lim.acquire("POST /v1/products"))
        seen.append(lim.rate("POST /v1/products"))
    assert seen[8] == 12.5  # nine successes: not yet
    assert seen[9] == 15.625
    assert seen[19] == pytest.approx(19.53125)
    assert seen[29] == 24.4140625
    assert seen[39] == 25.0
    assert max(seen) == 25.0


def test_a_success_from_before_a_cut_does_not_count_towards_recovery() -> None:
    lim = limiter(FakeClock(), recover_after=1)
    old = lim.acquire("POST /v1/products")
    lim.record_rate_limited(lim.acquire("POST /v1/products"), LimitScope.ENDPOINT)
    lim.record_success(old)
    assert lim.rate("POST /v1/products") == 12.5
    lim.record_success(lim.acquire("POST /v1/products"))
    assert lim.rate("POST /v1/products") == 15.625


def test_a_slower_rate_paces_the_next_requests() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=20.0, endpoint_rate=20.0)
    lim.record_rate_limited(lim.acquire("GET /v1/account"), LimitScope.GLOBAL)
    start = clock.monotonic()
    for _ in range(10):
        lim.acquire("GET /v1/account")
    assert clock.monotonic() - start == pytest.approx(10 / 10.0)


def test_rate_wait_is_counted_in_stats() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=10.0, endpoint_rate=10.0)
    for _ in range(11):
        lim.acquire("GET /v1/account")
    assert lim.stats().rate_wait_s == pytest.approx(1.0)
    assert lim.stats().rate_wait_s == pytest.approx(clock.slept)


def test_threads_share_the_buckets_without_exceeding_them() -> None:
    clock = FakeClock()
    lim = limiter(clock, global_rate=50.0, endpoint_rate=20.0)
    endpoints = ["POST /v1/products", "POST /v1/products/{id}", "GET /v1/products/{id}"]

    def work(worker: int) -> list[Permit]:
        return [lim.acquire(endpoints[(worker + i) % 3]) for i in range(40)]

    with ThreadPoolExecutor(16) as pool:
        permits = [p for batch in pool.map(work, range(16)) for p in batch]

    assert len(permits) == 640
    by_bucket: dict[str, list[float]] = defaultdict(list)
    for p in permits:
        by_bucket["global"].append(p.granted_at)
        by_bucket[p.endpoint].append(p.granted_at)
    for name, times in by_bucket.items():
        times.sort()
        rate = 50.0 if name == "global" else 20.0
        smallest_gap = min(b - a for a, b in itertools.pairwise(times))
        assert smallest_gap >= 1 / rate - 1e-9, name
    assert lim.stats().granted == 640


def test_the_in_flight_cap_holds_across_threads() -> None:
    lim = RateLimiter(global_rate=1e6, endpoint_rate=1e6, max_in_flight=3)
    inside = 0
    peak = 0
    lock = threading.Lock()
    # Three at a time must meet inside, which proves the cap is reached, and the counter proves
    # it is never passed.
    barrier = threading.Barrier(3, timeout=10)

    def work(_: int) -> None:
        nonlocal inside, peak
        with lim.slot("GET /v1/account"):
            with lock:
                inside += 1
                peak = max(peak, inside)
            barrier.wait()
            with lock:
                inside -= 1

    with ThreadPoolExecutor(9) as pool:
        list(pool.map(work, range(9)))
    assert peak == 3
    assert lim.stats().granted == 9


def test_slot_releases_its_place_when_the_body_raises() -> None:
    lim = limiter(FakeClock(), max_in_flight=1)
    with pytest.raises(RuntimeError), lim.slot("GET /v1/account"):
        raise RuntimeError("boom")
    with lim.slot("GET /v1/account") as permit:
        assert permit.endpoint == "GET /v1/account"


def test_changing_the_rate_keeps_the_tokens_earned_so_far() -> None:
    bucket = TokenBucket("b", max_rate=10.0)
    bucket.take(0.0)
    bucket.refill(0.05)  # half a token at 10/s
    bucket.set_rate(0.05, 5.0)
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.wait_s(0.05) == pytest.approx(0.1)  # the other half at 5/s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(global_rate=0.0), "max_rate must be > 0"),
        (dict(endpoint_rate=-1.0), "max_rate must be > 0"),
        (dict(max_in_flight=0), "max_in_flight must be >= 1"),
        (dict(cut_factor=1.5), "cut_factor"),
        (dict(recover_factor=1.0), "recover_factor"),
        (dict(burst=0.5), "capacity must be >= 1"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        limiter(FakeClock(), **kwargs)
