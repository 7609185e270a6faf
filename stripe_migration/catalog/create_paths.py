"""Which of Stripe's two ways of creating a product each new product takes, chosen by the rate limits.

Stripe limits the account as a whole (live: 100 requests/s) and every endpoint apart (25/s). A
new product can be born two ways:

- **by the product** (:data:`BY_PRODUCT`): ``POST /v1/products`` with its price inline, one call;
- **by the price** (:data:`BY_PRICE`): ``POST /v1/prices`` with ``product_data``, then
  ``POST /v1/products/{id}`` completing it (description, images, default price), two calls.

One endpoint caps the first way at its endpoint rate E. Sending a share of the new products the
second way adds up to E more per second, paid with two calls each out of the account's rate G.
:func:`best_share` finds the share that finishes the whole plan soonest, counting the calls the
plan's other actions make on the same endpoints (updates and reprices also use
``POST /v1/products/{id}`` and ``POST /v1/prices``). With nothing else in the plan: G=25, E=25
gives 0 (every product the first way, one call each); G=100, E=25 gives 1/2 (25 + 25 products/s
for 75 requests/s); G=60, E=25 gives 7/17 (25 + 17.5 products/s).

:class:`CreatePaths` applies the share while the plan runs: it reads the limiter's current rates
at each choice, so when a 429 halves a bucket the share follows. No Dagster here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from stripe_migration.catalog.actions import Action
from stripe_migration.resources.rate_limit import RateLimiter

BY_PRODUCT = "POST /v1/products"
BY_PRICE = "POST /v1/prices"
COMPLETE = "POST /v1/products/{id}"
PRICE_UPDATE = "POST /v1/prices/{id}"
PRICE_LIST = "GET /v1/prices"

#: The calls of one planned action, by endpoint (a create is counted apart: its path decides).
CALLS_BY_ACTION: Mapping[Action, Mapping[str, int]] = {
    Action.UPDATE: {COMPLETE: 1},
    Action.ARCHIVE: {COMPLETE: 1},
    Action.ARCHIVE_DELETED: {COMPLETE: 1},
    Action.REPRICE: {BY_PRICE: 1, COMPLETE: 1, PRICE_UPDATE: 1, PRICE_LIST: 1},
    Action.UPDATE_AND_REPRICE: {BY_PRICE: 1, COMPLETE: 1, PRICE_UPDATE: 1, PRICE_LIST: 1},
}

#: Rates: the account's, then each endpoint's (a missing endpoint has ``default_endpoint``).
RatesNow = Callable[[], tuple[float, Mapping[str, float]]]


def limiter_rates(limiter: RateLimiter) -> RatesNow:
    """The :data:`RatesNow` of a rate limiter: its current account and endpoint rates (lowered
    by 429s, climbing back on successes)."""
    endpoints = (BY_PRODUCT, BY_PRICE, COMPLETE, PRICE_UPDATE, PRICE_LIST)
    return lambda: (limiter.rate(), {e: limiter.rate(e) for e in endpoints})


def other_calls(actions: Iterable[Action]) -> dict[str, int]:
    """The calls, by endpoint, of every action but the creates."""
    calls: dict[str, int] = {}
    for action in actions:
        for endpoint, n in CALLS_BY_ACTION.get(action, {}).items():
            calls[endpoint] = calls.get(endpoint, 0) + n
    return calls


def plan_seconds(
    creates: int,
    by_price: float,
    others: Mapping[str, int],
    global_rate: float,
    endpoint_rate: Callable[[str], float],
) -> float:
    """The least time the limits allow for ``creates`` new products, ``by_price`` of them the
    second way, plus the ``others`` calls: the busiest endpoint, or the account."""
    load = dict(others)
    load[BY_PRODUCT] = load.get(BY_PRODUCT, 0) + creates - by_price
    load[BY_PRICE] = load.get(BY_PRICE, 0) + by_price
    load[COMPLETE] = load.get(COMPLETE, 0) + by_price
    busiest = max(n / endpoint_rate(endpoint) for endpoint, n in load.items())
    return max(busiest, sum(load.values()) / global_rate)


def best_share(
    creates: int,
    others: Mapping[str, int],
    global_rate: float,
    endpoint_rate: Callable[[str], float],
) -> float:
    """The share (0 to 1) of ``creates`` new products to create by the price so that the plan
    (with its ``others`` calls) finishes soonest. Ties go to the first way (one call each)."""
    if creates <= 0:
        return 0.0
    # The time is the largest of linear functions of the number k sent the second way: one falls
    # (the first way's endpoint), the others rise; its least value is at 0, at `creates`, or
    # where the falling one crosses a rising one.
    e_product, e_price, e_complete = map(endpoint_rate, (BY_PRODUCT, BY_PRICE, COMPLETE))
    base_product = others.get(BY_PRODUCT, 0) + creates
    candidates = {0.0, float(creates)}
    for rate, base in ((e_price, others.get(BY_PRICE, 0)), (e_complete, others.get(COMPLETE, 0))):
        # (base_product - k) / e_product == (base + k) / rate
        candidates.add((base_product * rate - base * e_product) / (rate + e_product))
    total_others = sum(others.values())
    # (base_product - k) / e_product == (creates + k + total_others) / global_rate
    candidates.add(
        (base_product * global_rate - (creates + total_others) * e_product)
        / (global_rate + e_product)
    )
    best_k, best_s = 0.0, plan_seconds(creates, 0.0, others, global_rate, endpoint_rate)
    for k in sorted(min(max(c, 0.0), float(creates)) for c in candidates):
        seconds = plan_seconds(creates, k, others, global_rate, endpoint_rate)
        if seconds < best_s * (1 - 1e-9):
            best_k, best_s = k, seconds
    return best_k / creates


@dataclass
class PathCounts:
    """New products sent each way so far, and the share last aimed at."""

    by_product: int = 0
    by_price: int = 0
    share: float = 0.0


class CreatePaths:
    """Chooses the way of each new product as the apply submits it, keeping the products sent by
    the price at the share :func:`best_share` gives for the limiter's current rates and the work
    left. Thread-safe.

    ``fixed_share`` (0 to 1) overrides the limits (a run config, for tests and benches)."""

    def __init__(
        self,
        creates: int,
        others: Mapping[str, int],
        rates: RatesNow,
        *,
        fixed_share: float | None = None,
    ) -> None:
        if fixed_share is not None and not 0.0 <= fixed_share <= 1.0:
            raise ValueError(f"the share of new products by the price must be 0-1: {fixed_share}")
        self._creates = creates
        self._others = dict(others)
        self._rates = rates
        self._fixed = fixed_share
        self._lock = threading.Lock()
        self.counts = PathCounts()
        self.counts.share = self._share()

    def _share(self) -> float:
        if self._fixed is not None:
            return self._fixed
        global_rate, endpoints = self._rates()
        default = min(endpoints.values(), default=global_rate)
        return best_share(
            self._creates, self._others, global_rate, lambda e: endpoints.get(e, default)
        )

    def by_price(self) -> bool:
        """Whether the next new product takes the second way (``POST /v1/prices``)."""
        share = self._share()
        with self._lock:
            counts = self.counts
            counts.share = share
            chosen = counts.by_product + counts.by_price + 1
            second = counts.by_price + 1 <= share * chosen + 1e-9
            if second:
                counts.by_price += 1
            else:
                counts.by_product += 1
            return second

    def summary(self) -> str:
        """One line for the log and the report: how many went each way, at what share."""
        c = self.counts
        return (
            f"new products: {c.by_product} by POST /v1/products, {c.by_price} by POST /v1/prices "
            f"+ completion (share {c.share:.2f}"
            + (", fixed by the run config)" if self._fixed is not None else ", from the limits)")
        )
