"""The Stripe client the assets call: each operation through the rate limiter, with retries,
the caller's idempotency key, a live-mode guard and statistics.

Every call goes through :meth:`StripeApi._call`:

1. a write with a live key (``sk_live_``/``rk_live_``) is refused unless ``allow_live`` is set,
   before anything reaches the network (:class:`~.errors.LiveModeRefused`);
2. the :class:`~stripe_migration.resources.rate_limit.RateLimiter` lets it out (global bucket,
   the endpoint's bucket, a place among the requests in flight);
3. tenacity retries it, with exponential backoff and jitter, on connection errors, timeouts, 409,
   429 (including ``lock_timeout``) and 5xx; a ``Stripe-Should-Retry`` header overrides that
   judgement; 400/402/403/404 are never retried; a 401 raises :class:`~.errors.StripeAuthError`
   at once (:mod:`.classify` reads the answers). A failure answered with ``Idempotent-Replayed:
   true`` is Stripe replaying the saved result of the key's first request (Stripe saves it, 500s
   included, once the endpoint began executing, and replays it for 24 hours:
   https://docs.stripe.com/idempotency), so it is never retried: it raises
   :class:`~.errors.IdempotentReplayedError` after that one request.
   stripe-python's own retries are off (``max_network_retries=0``), so a call is retried once, here;
4. every POST carries the caller's ``Idempotency-Key``, derived from what the write does
   (``stripe_migration.catalog.stripe_payloads``), so a retried or repeated create never makes a
   second object.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import stripe
from tenacity import RetryCallState

from stripe_migration import settings
from stripe_migration.resources.rate_limit import Permit, RateLimiter
from stripe_migration.resources.redaction import redact
from stripe_migration.resources.retry import RetryingClient, RetryPolicy
from stripe_migration.resources.stripe import classify
from stripe_migration.resources.stripe.errors import (
    IdempotentReplayedError,
    LiveModeRefused,
    StripeApiError,
    StripeAuthError,
)
from stripe_migration.resources.stripe.stats import StripeStats

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_IDEMPOTENCY_KEY = 255

KeyMode = Literal["test", "live", "restricted test", "restricted live"]
CallKind = Literal["create", "update", "read", "list"]


def key_mode(secret_key: str) -> KeyMode | None:
    """Return the mode of a Stripe key ("test", "live", "restricted test", "restricted live"),
    or None when it is not a secret or restricted key. Never returns any part of the key."""
    for prefix, mode in (
        ("sk_test_", "test"),
        ("sk_live_", "live"),
        ("rk_test_", "restricted test"),
        ("rk_live_", "restricted live"),
    ):
        if secret_key.startswith(prefix):
            return mode  # type: ignore[return-value]
    return None


class StripeApi(RetryingClient[StripeStats]):
    """The operations the migration and the events code need, each through the limiter, retries
    and idempotency keys. Thread-safe: one instance (and one ``StripeClient``) serves all the
    worker threads of a step. Get it from :meth:`StripeResource.get_client`."""

    def __init__(
        self,
        client: stripe.StripeClient,
        limiter: RateLimiter,
        *,
        key_mode: KeyMode,
        allow_live: bool = False,
        retry_policy: RetryPolicy,
        page_size: int = settings.STRIPE_LIST_PAGE_SIZE,
    ) -> None:
        super().__init__(retry_policy, StripeStats())
        self._client = client
        self.limiter = limiter
        self.key_mode = key_mode
        self.allow_live = allow_live
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"StripeApi(key_mode={self.key_mode!r}, allow_live={self.allow_live})"

    # -- the core ------------------------------------------------------------------------------

    def _call(
        self,
        endpoint: str,
        kind: CallKind,
        send: Callable[[stripe.RequestOptions], T],
        *,
        idempotency_key: str | None = None,
    ) -> T:
        write = endpoint.startswith("POST ")
        if write:
            if self.key_mode in ("live", "restricted live") and not self.allow_live:
                self.stats.add(refused_live=1)
                raise LiveModeRefused(
                    f"refused {endpoint}: the key is a {self.key_mode}-mode key and allow_live is "
                    "off. Set allow_live on StripeResource only when you mean to write to the "
                    "live account.",
                    endpoint=endpoint,
                )
            if not idempotency_key or len(idempotency_key) > _MAX_IDEMPOTENCY_KEY:
                raise ValueError(
                    f"{endpoint}: every POST needs an idempotency key of 1-255 characters "
                    "(see stripe_migration.catalog.stripe_payloads.idempotency_key)"
                )
        options: stripe.RequestOptions = {}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key

        def attempt() -> T:
            with self.limiter.slot(endpoint) as permit:
                started = time.monotonic()
                try:
                    result = send(options)
                except stripe.StripeError as err:
                    ended = time.monotonic()
                    raise self._failure(
                        endpoint, kind, err, permit, started, ended, idempotency_key
                    ) from None
                ended = time.monotonic()
                self.stats.record_request(endpoint, kind, "200", started, ended)
                self.limiter.record_success(permit)
                return result

        retrying = self._retrying(StripeApiError)
        try:
            result = retrying(attempt)
        except StripeApiError as err:
            err.attempts = retrying.statistics.get("attempt_number", 1)
            self.stats.add(calls=1, calls_failed=1)
            raise
        self.stats.add(calls=1)
        return result

    def _failure(
        self,
        endpoint: str,
        kind: CallKind,
        err: stripe.StripeError,
        permit: Permit,
        started: float,
        ended: float,
        idempotency_key: str | None = None,
    ) -> StripeApiError:
        status = err.http_status
        if isinstance(err, stripe.APIConnectionError):
            text = str(err).lower()
            label = "timeout" if "timeout" in text or "timed out" in text else "connection_error"
        else:
            label = str(status)
        self.stats.record_request(endpoint, kind, label, started, ended)
        error_type = classify.error_type(err)
        common = dict(
            endpoint=endpoint,
            http_status=status,
            error_type=error_type,
            code=err.code,
            param=getattr(err, "param", None),
            request_id=err.request_id,
        )
        if status == 401 or isinstance(err, stripe.AuthenticationError):
            return StripeAuthError.from_stripe(
                err,
                f"Stripe refused the {self.key_mode}-mode key on {endpoint} (HTTP 401): check "
                "STRIPE_SECRET_KEY; the run stops here.",
                retryable=False,
                attempts=1,
                **common,
            )
        if idempotency_key and status is not None and classify.is_replayed(err):
            # The key's first request failed once executing; Stripe replays that for 24 hours.
            self.stats.add(replayed_failures=1)
            error_type = common["error_type"]
            return IdempotentReplayedError.from_stripe(
                err,
                f"Stripe {endpoint}: HTTP {status} {error_type or 'error'}"
                + (f"/{err.code}" if err.code else "")
                + f" replayed for idempotency key {idempotency_key!r}: "
                f"{err.user_message or '(no message)'} (the key's first request failed after "
                "Stripe began executing it, and the key will answer the same for 24 hours; check "
                "Stripe's state, then use a new key)",
                retryable=False,
                attempts=1,
                idempotency_key=redact(idempotency_key),
                error_message=redact(err.user_message) if err.user_message else None,
                **common,
            )
        if status == 429:
            scope = classify.limit_scope(err)
            self.stats.add(rate_limited=1, lock_timeouts=int(scope is None))
            if scope is not None:
                self.limiter.record_rate_limited(permit, scope)
        param = common["param"]
        if isinstance(err, stripe.APIConnectionError):
            message = f"Stripe {endpoint}: {label.replace('_', ' ')} talking to Stripe"
        else:
            message = (
                f"Stripe {endpoint}: HTTP {status} {error_type or 'error'}"
                + (f"/{err.code}" if err.code else "")
                + (f" on param {param!r}" if param else "")
                + f": {err.user_message or '(no message)'}"
            )
        return StripeApiError.from_stripe(
            err, message, retryable=classify.is_retryable(err), attempts=1, **common
        )

    def _log_retry(self, err: BaseException | None, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "%s; retry %d/%d in %.2f s",
            err,
            state.attempt_number,
            self.retry_policy.attempts - 1,
            wait,
        )

    def _pages(
        self,
        endpoint: str,
        fetch: Callable[[dict[str, Any], stripe.RequestOptions], Any],
        params: Mapping[str, Any],
    ) -> Iterator[Any]:
        page_params: dict[str, Any] = {"limit": self.page_size, **params}
        while True:
            page = self._call(endpoint, "list", functools.partial(fetch, dict(page_params)))
            yield from page.data
            if not page.has_more or not page.data:
                return
            page_params["starting_after"] = page.data[-1].id

    def _service(self, objects: str) -> Any:
        """stripe-python's service of ``objects`` ("products", "prices", "events")."""
        return getattr(self._client.v1, objects)

    def _create(self, objects: str, params: Mapping[str, Any], idempotency_key: str) -> Any:
        """``POST /v1/<objects>``: create one object from ``params``."""
        return self._call(
            f"POST /v1/{objects}",
            "create",
            lambda o: self._service(objects).create(dict(params), o),
            idempotency_key=idempotency_key,
        )

    def _update(
        self, objects: str, object_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> Any:
        """``POST /v1/<objects>/{id}``: update ``object_id`` with ``params``."""
        return self._call(
            f"POST /v1/{objects}/{{id}}",
            "update",
            lambda o: self._service(objects).update(object_id, dict(params), o),
            idempotency_key=idempotency_key,
        )

    def _list(self, objects: str, params: Mapping[str, Any]) -> Iterator[Any]:
        """``GET /v1/<objects>``: every object matching ``params``, page after page."""
        return self._pages(
            f"GET /v1/{objects}", lambda p, o: self._service(objects).list(p, o), params
        )

    # -- writes (each with the caller's idempotency key) ---------------------------------------

    def create_product(self, params: Mapping[str, Any], *, idempotency_key: str) -> stripe.Product:
        """Create a product (``default_price_data`` creates its price in the same call)."""
        return self._create("products", params, idempotency_key)

    def create_price(self, params: Mapping[str, Any], *, idempotency_key: str) -> stripe.Price:
        """Create a price."""
        return self._create("prices", params, idempotency_key)

    def update_product(
        self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> stripe.Product:
        """Update a product's fields."""
        return self._update("products", product_id, params, idempotency_key)

    def update_price(
        self, price_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> stripe.Price:
        """Update what Stripe lets change on a price (active, metadata, nickname, lookup_key...)."""
        return self._update("prices", price_id, params, idempotency_key)

    # -- reads ---------------------------------------------------------------------------------

    def retrieve_product(
        self, product_id: str, *, expand: Sequence[str] = ("default_price",)
    ) -> stripe.Product:
        """Fetch one product, with its ``default_price`` expanded to the Price object by default
        (still one request); ``expand=()`` leaves the price id."""
        params = {"expand": list(expand)} if expand else None
        return self._call(
            "GET /v1/products/{id}",
            "read",
            lambda o: self._client.v1.products.retrieve(product_id, params, o),  # type: ignore[arg-type]
        )

    def list_products(self, **params: Any) -> Iterator[stripe.Product]:
        """Every product matching ``params`` (``active``, ``ids``...), page after page."""
        return self._list("products", params)

    def list_prices(self, **params: Any) -> Iterator[stripe.Price]:
        """Every price matching ``params`` (``product``, ``active``, ``lookup_keys``...)."""
        return self._list("prices", params)

    def list_events(self, **params: Any) -> Iterator[stripe.Event]:
        """Every event matching ``params`` (``type``, ``types``, ``created={"gte": ...}``), newest
        first as Stripe returns them."""
        return self._list("events", params)

    def retrieve_account(self) -> stripe.Account:
        """Fetch the account the key belongs to (a cheap check that the key works)."""
        return self._call(
            "GET /v1/account", "read", lambda o: self._client.v1.accounts.retrieve_current(None, o)
        )

    # -- statistics ----------------------------------------------------------------------------

    def stats_metadata(self) -> dict[str, float | int]:
        """The counters as a flat dict of numbers, ready for Dagster metadata."""
        stats = self.stats
        limiter = self.limiter.stats()
        out: dict[str, float | int] = {
            "stripe_calls": stats.calls,
            "stripe_calls_failed": stats.calls_failed,
            "stripe_requests": stats.requests,
            "stripe_retries": stats.retries,
            "stripe_429s": stats.rate_limited,
            "stripe_lock_timeouts": stats.lock_timeouts,
            "stripe_live_writes_refused": stats.refused_live,
            "stripe_replayed_failures": stats.replayed_failures,
            "stripe_requests_per_s": round(stats.requests_per_s(), 2),
            "stripe_limiter_wait_s": round(limiter.rate_wait_s, 3),
            "stripe_in_flight_wait_s": round(limiter.in_flight_wait_s, 3),
            "stripe_limiter_rate_per_s": round(limiter.global_rate, 2),
            "stripe_rate_cuts": limiter.global_cuts + limiter.endpoint_cuts,
        }
        with stats._lock:
            for kind, n in sorted(stats.by_kind.items()):
                out[f"stripe_requests_{kind}"] = n
            for (endpoint, status), n in sorted(stats.by_endpoint_status.items()):
                out[f"stripe_requests[{endpoint}][{status}]"] = n
        for status, n in sorted(self.stats.status_counts().items()):
            out[f"stripe_status_{status}"] = n
        return out

    def reset_stats(self) -> None:
        """Zero this client's request counters (the limiter keeps its learned rates)."""
        self.stats.reset()

    def close(self) -> None:
        """Close the HTTP session of the calling thread (others close when their thread ends)."""
        http_client = getattr(self._client._requestor, "_client", None)
        if http_client is not None:
            http_client.close()
