"""What a failed Stripe answer means: whether to retry it, whether it is a replay of an
idempotency key's saved failure, and which rate limit a 429 hit."""

from __future__ import annotations

import stripe

from stripe_migration.resources.rate_limit import LimitScope


def _headers(err: stripe.StripeError) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (err.headers or {}).items()}


def limit_scope(err: stripe.StripeError) -> LimitScope | None:
    """Which limit a 429 says was hit: GLOBAL, ENDPOINT or UNKNOWN; None for ``lock_timeout``,
    which is contention on one object, not a rate problem."""
    if err.code == "lock_timeout":
        return None
    reason = _headers(err).get("stripe-rate-limited-reason", "").lower()
    if reason.startswith("global"):
        return LimitScope.GLOBAL
    if reason.startswith(("endpoint", "resource")):
        return LimitScope.ENDPOINT
    message = (err.user_message or "").lower()
    if "endpoint" in message or "search" in message:
        return LimitScope.ENDPOINT
    if "account" in message or "global" in message:
        return LimitScope.GLOBAL
    return LimitScope.UNKNOWN


def error_type(err: stripe.StripeError) -> str | None:
    """The ``type`` of the error object in Stripe's answer (``api_error``, ``invalid_request_error``...)."""
    body = err.json_body if isinstance(err.json_body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    return inner.get("type")


def is_replayed(err: stripe.StripeError) -> bool:
    """Whether Stripe answered with the saved result of the idempotency key's first request."""
    return _headers(err).get("idempotent-replayed", "").lower() == "true"


def is_retryable(err: stripe.StripeError) -> bool:
    """Whether the call is worth retrying: ``Stripe-Should-Retry`` when Stripe sent it, else
    connection errors stripe-python marks retryable, 409, 429 and 5xx."""
    should_retry = _headers(err).get("stripe-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    if isinstance(err, stripe.APIConnectionError):
        return bool(getattr(err, "should_retry", False))
    status = err.http_status or 0
    return status in (409, 429) or status >= 500
