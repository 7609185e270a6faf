"""How a failed Stripe answer is read: which rate limit a 429 hit."""

import stripe

from stripe_migration.resources.rate_limit import LimitScope
from stripe_migration.resources.stripe.classify import limit_scope


def test_the_429_reason_header_tells_the_scope() -> None:
    def err(reason: str | None, code: str | None = None) -> stripe.RateLimitError:
        headers = {"Stripe-Rate-Limited-Reason": reason} if reason else {}
        e = stripe.RateLimitError("Too many requests", http_status=429, headers=headers)
        e.code = code
        return e

    assert limit_scope(err("global-rate")) is LimitScope.GLOBAL
    assert limit_scope(err("global-concurrency")) is LimitScope.GLOBAL
    assert limit_scope(err("endpoint-rate")) is LimitScope.ENDPOINT
    assert limit_scope(err("resource-specific")) is LimitScope.ENDPOINT
    assert limit_scope(err(None)) is LimitScope.UNKNOWN
    assert limit_scope(err(None, code="lock_timeout")) is None
