"""The Stripe resource: one ``stripe.StripeClient`` per resource, behind a rate limiter, with
retries, idempotency keys, a live-mode guard and per-step statistics.

Every call goes through :meth:`StripeApi._call`:

1. a write with a live key (``sk_live_``/``rk_live_``) is refused unless ``allow_live`` is set,
   before anything reaches the network (:class:`LiveModeRefused`);
2. the :class:`~stripe_migration.resources.rate_limit.RateLimiter` lets it out (global bucket,
   the endpoint's bucket, a place among the requests in flight);
3. tenacity retries it, with exponential backoff and jitter, on connection errors, timeouts, 409,
   429 (including ``lock_timeout``) and 5xx; a ``Stripe-Should-Retry`` header overrides that
   judgement; 400/402/403/404 are never retried; a 401 raises :class:`StripeAuthError` at once.
   A failure answered with ``Idempotent-Replayed: true`` is Stripe replaying the saved result of
   the key's first request (Stripe saves it, 500s included, once the endpoint began executing, and
   replays it for 24 hours: https://docs.stripe.com/idempotency), so it is never retried: it
   raises :class:`IdempotentReplayedError` after that one request.
   stripe-python's own retries are off (``max_network_retries=0``), so a call is retried once, here;
4. every POST carries the caller's ``Idempotency-Key``, derived from what the write does
   (``stripe_migration.catalog.stripe_payloads.idempotency_key(operation, cms_id, content_hash)``),
   so a retried or repeated create never makes a second object.

Keys never appear in messages, logs, reprs or metadata: errors carry a redacted message, the
resource's repr leaves the key out, and stripe-python's logger gets a redacting filter.

**Several runs at once.** Stripe's limits hold for the account, not the process. Steps that call
Stripe run in the Dagster pool ``stripe_api``; set ``pool_limit`` to that pool's limit (from
``dagster.yaml``) and each step takes ``1/pool_limit`` of every rate and of ``max_in_flight``, so
all the steps together stay within the configured account rate.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import dagster as dg
import stripe
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from stripe_migration.resources.rate_limit import LimitScope, Permit, RateLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The API version requests are pinned to: the one stripe-python 16.1 is generated for, so the
#: objects it returns match its types. Change it together with the library.
STRIPE_API_VERSION = "2026-10-28.endive"

_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+|\bwhsec_[A-Za-z0-9*]+")
_API_VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_SECRET_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
_MAX_IDEMPOTENCY_KEY = 255

KeyMode = Literal["test", "live", "restricted test", "restricted live"]
CallKind = Literal["create", "update", "read", "list", "search"]


# ---------------------------------------------------------------------------------------------
# Errors


class StripeApiError(Exception):
    """A Stripe call failed (after its retries, when it was worth retrying).

    ``str()`` is a redacted message naming the endpoint, HTTP status, Stripe error type/code and
    param. An error that came back from Stripe is also an instance of stripe-python's own class
    (``stripe.InvalidRequestError``, ``stripe.APIConnectionError``...), with its ``code``,
    ``param``, ``user_message`` and ``error`` (redacted), so either kind of ``except`` catches it.
    """

    endpoint: str
    http_status: int | None
    error_type: str | None
    code: str | None
    param: str | None
    request_id: str | None
    retryable: bool
    attempts: int

    #: The attributes a pickled error keeps (subclasses add theirs).
    _FIELDS: tuple[str, ...] = (
        "endpoint",
        "http_status",
        "error_type",
        "code",
        "param",
        "request_id",
        "retryable",
        "attempts",
    )

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        http_status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        Exception.__init__(self, redact(message))
        self._set(
            redact(message),
            endpoint=endpoint,
            http_status=http_status,
            error_type=error_type,
            code=code,
            param=param,
            request_id=request_id,
            retryable=retryable,
            attempts=attempts,
        )

    def _set(self, text: str, **fields: Any) -> None:
        self._text = text
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The mixed classes of from_stripe are made at run time and cannot be pickled by name;
        # a pickled error comes back as the plain class of ours it was made from.
        plain = next(
            c
            for c in type(self).__mro__
            if issubclass(c, StripeApiError) and "_mixed" not in vars(c)
        )
        fields = {name: getattr(self, name, None) for name in plain._FIELDS}
        return (_restore_error, (plain, self._text, fields))

    @classmethod
    def from_stripe(cls, err: stripe.StripeError, message: str, **fields: Any) -> StripeApiError:
        """Wrap ``err`` in a class that is both ``cls`` and ``type(err)``, with every string
        stripe-python kept (message, body, error object) redacted."""
        mixed = _mixed_class(cls, type(err))
        wrapped = mixed.__new__(mixed)
        wrapped.__dict__.update(err.__dict__)
        Exception.__init__(wrapped, redact(message))
        wrapped._message = redact(err._message) if err._message else err._message
        wrapped.http_body = redact(err.http_body) if err.http_body else err.http_body
        wrapped.json_body = _redact_json(err.json_body)
        wrapped.error = wrapped._construct_error_object()
        wrapped._set(redact(message), **fields)
        return wrapped


def _restore_error(cls: type[StripeApiError], text: str, fields: dict[str, Any]) -> StripeApiError:
    return cls(text, **fields)


_mixed_classes: dict[tuple[type, type], type] = {}
_mixed_lock = threading.Lock()


def _mixed_class(ours: type[StripeApiError], theirs: type[stripe.StripeError]) -> type:
    with _mixed_lock:
        mixed = _mixed_classes.get((ours, theirs))
        if mixed is None:
            mixed = type(theirs.__name__, (ours, theirs), {"__module__": __name__, "_mixed": True})
            _mixed_classes[(ours, theirs)] = mixed
        return mixed


def _redact_json(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


class StripeAuthError(StripeApiError):
    """Stripe refused the key (401). Stops the run: no call can succeed with this key. Also a
    ``stripe.AuthenticationError`` when it came from Stripe."""


class IdempotentReplayedError(StripeApiError):
    """Stripe answered with the saved failure of this idempotency key (``Idempotent-Replayed:
    true``): the key's first request failed after the endpoint began executing, and Stripe gives
    that same status and body to every request with the key for 24 hours. Retrying with the same
    key is pointless, so the call stops after the one request that got the replay.

    The failed first request may or may not have written something (a 500 can come after the
    commit), so a caller that must get the write done checks Stripe's actual state (retrieve or
    list what the write would have made) and only then sends the write again under a new key.

    Attributes, besides :class:`StripeApiError`'s:

    - ``http_status``: the saved status (e.g. 500, or 400 for a saved business error);
    - ``code`` / ``error_type``: the saved error's code (may be None) and type (``api_error``...);
    - ``error_message``: the saved error's message (redacted), or None;
    - ``idempotency_key``: the key that replays it (redacted like every string here);
    - ``request_id``: the ``Request-Id`` of the answer (the emulator's replays send the first
      request's; quote it to Stripe's support).

    Also an instance of stripe-python's class for the saved status (``stripe.APIError`` for a
    500, ``stripe.InvalidRequestError`` for a 400...), like every error from Stripe; catch it
    before those: ``except IdempotentReplayedError as err: ...``. Picklable (as this class).
    """

    idempotency_key: str
    error_message: str | None

    _FIELDS = (*StripeApiError._FIELDS, "idempotency_key", "error_message")

    def __init__(
        self,
        message: str,
        *,
        idempotency_key: str = "",
        error_message: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, **fields)
        self.idempotency_key = redact(idempotency_key)
        self.error_message = redact(error_message) if error_message else error_message


class LiveModeRefused(StripeApiError):
    """A write with a live-mode key while ``allow_live`` is off; nothing was sent. Not a
    stripe-python error (there was no request): treat it as fatal for the run."""


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


def redact(text: str) -> str:
    """Replace anything shaped like a Stripe key or webhook secret in ``text`` with ``***``."""
    return _KEY_PATTERN.sub("***", text)


class _RedactingFilter(logging.Filter):
    """Redacts keys from the records of stripe-python's logger (it logs URLs and bodies)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_filter_lock = threading.Lock()


def _install_stripe_log_filter() -> None:
    with _filter_lock:
        stripe_logger = logging.getLogger("stripe")
        if not any(isinstance(f, _RedactingFilter) for f in stripe_logger.filters):
            stripe_logger.addFilter(_RedactingFilter())


# ---------------------------------------------------------------------------------------------
# Statistics


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
            self.request_seconds = 0.0
            self.first_request_at: float | None = None
            self.last_response_at: float | None = None

    def record_request(
        self, endpoint: str, kind: str, status: str, started: float, ended: float
    ) -> None:
        """Count one HTTP request and its outcome (a status code or an error name)."""
        with self._lock:
            self.by_kind[kind] += 1
            self.by_endpoint_status[(endpoint, status)] += 1
            self.request_seconds += ended - started
            if self.first_request_at is None or started < self.first_request_at:
                self.first_request_at = started
            if self.last_response_at is None or ended > self.last_response_at:
                self.last_response_at = ended

    def record_call(self, failed: bool) -> None:
        """Count one finished call (with all its attempts)."""
        with self._lock:
            self.calls += 1
            self.calls_failed += int(failed)

    def record_retry(self) -> None:
        """Count one retry."""
        with self._lock:
            self.retries += 1

    def record_rate_limited(self, lock_timeout: bool) -> None:
        """Count one 429 (``lock_timeout`` ones separately too)."""
        with self._lock:
            self.rate_limited += 1
            self.lock_timeouts += int(lock_timeout)

    def record_replayed_failure(self) -> None:
        """Count one failure Stripe replayed for an idempotency key (not retried)."""
        with self._lock:
            self.replayed_failures += 1

    def record_refused_live(self) -> None:
        """Count one write refused by the live-mode guard."""
        with self._lock:
            self.refused_live += 1

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


# ---------------------------------------------------------------------------------------------
# The API wrapper


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


def _error_type(err: stripe.StripeError) -> str | None:
    body = err.json_body if isinstance(err.json_body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    return inner.get("type")


def _is_replayed(err: stripe.StripeError) -> bool:
    """Whether Stripe answered with the saved result of the idempotency key's first request."""
    return _headers(err).get("idempotent-replayed", "").lower() == "true"


def _is_retryable(err: stripe.StripeError) -> bool:
    should_retry = _headers(err).get("stripe-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    if isinstance(err, stripe.APIConnectionError):
        return bool(getattr(err, "should_retry", False))
    status = err.http_status or 0
    return status in (409, 429) or status >= 500


class StripeApi:
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
        retry_attempts: int = 5,
        retry_initial_delay_s: float = 1.0,
        retry_multiplier: float = 2.0,
        retry_max_delay_s: float = 30.0,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.limiter = limiter
        self.key_mode = key_mode
        self.allow_live = allow_live
        self.retry_attempts = retry_attempts
        self._wait = wait_exponential_jitter(
            multiplier=retry_initial_delay_s,
            exp_base=retry_multiplier,
            max=retry_max_delay_s,
            jitter=retry_initial_delay_s,
        )
        self.page_size = page_size
        self._sleep = sleep
        self.stats = StripeStats()

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
                self.stats.record_refused_live()
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

        retrying = Retrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, StripeApiError) and e.retryable),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except StripeApiError as err:
            err.attempts = retrying.statistics.get("attempt_number", 1)
            self.stats.record_call(failed=True)
            raise
        self.stats.record_call(failed=False)
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
        error_type = _error_type(err)
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
        if idempotency_key and status is not None and _is_replayed(err):
            # The key's first request failed once executing; Stripe replays that for 24 hours.
            self.stats.record_replayed_failure()
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
            scope = limit_scope(err)
            self.stats.record_rate_limited(lock_timeout=scope is None)
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
            err, message, retryable=_is_retryable(err), attempts=1, **common
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.record_retry()
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "%s; retry %d/%d in %.2f s",
            err,
            state.attempt_number,
            self.retry_attempts - 1,
            wait,
        )

    def _pages(
        self,
        endpoint: str,
        kind: CallKind,
        fetch: Callable[[dict[str, Any], stripe.RequestOptions], Any],
        params: Mapping[str, Any],
        cursor: Literal["starting_after", "page"],
    ) -> Iterator[Any]:
        page_params: dict[str, Any] = {"limit": self.page_size, **params}
        while True:
            page = self._call(endpoint, kind, functools.partial(fetch, dict(page_params)))
            yield from page.data
            if not page.has_more or not page.data:
                return
            if cursor == "page":
                page_params["page"] = page.next_page
            else:
                page_params["starting_after"] = page.data[-1].id

    # -- products ------------------------------------------------------------------------------

    def create_product(self, params: Mapping[str, Any], *, idempotency_key: str) -> stripe.Product:
        """Create a product (``default_price_data`` creates its price in the same call)."""
        return self._call(
            "POST /v1/products",
            "create",
            lambda o: self._client.v1.products.create(dict(params), o),  # type: ignore[arg-type]
            idempotency_key=idempotency_key,
        )

    def update_product(
        self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> stripe.Product:
        """Update a product's fields."""
        return self._call(
            "POST /v1/products/{id}",
            "update",
            lambda o: self._client.v1.products.update(product_id, dict(params), o),  # type: ignore[arg-type]
            idempotency_key=idempotency_key,
        )

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
        return self._pages(
            "GET /v1/products",
            "list",
            lambda p, o: self._client.v1.products.list(p, o),  # type: ignore[arg-type]
            params,
            "starting_after",
        )

    def search_products(self, query: str, **params: Any) -> Iterator[stripe.Product]:
        """Every product matching a search ``query`` (``metadata['cms_id']:'...'``). Search lags
        behind writes (up to a minute on Stripe): never use it to check a write just made."""
        return self._pages(
            "GET /v1/products/search",
            "search",
            lambda p, o: self._client.v1.products.search(p, o),  # type: ignore[arg-type]
            {"query": query, **params},
            "page",
        )

    # -- prices --------------------------------------------------------------------------------

    def create_price(self, params: Mapping[str, Any], *, idempotency_key: str) -> stripe.Price:
        """Create a price."""
        return self._call(
            "POST /v1/prices",
            "create",
            lambda o: self._client.v1.prices.create(dict(params), o),  # type: ignore[arg-type]
            idempotency_key=idempotency_key,
        )

    def update_price(
        self, price_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> stripe.Price:
        """Update what Stripe lets change on a price (active, metadata, nickname, lookup_key...)."""
        return self._call(
            "POST /v1/prices/{id}",
            "update",
            lambda o: self._client.v1.prices.update(price_id, dict(params), o),  # type: ignore[arg-type]
            idempotency_key=idempotency_key,
        )

    def retrieve_price(self, price_id: str) -> stripe.Price:
        """Fetch one price."""
        return self._call(
            "GET /v1/prices/{id}",
            "read",
            lambda o: self._client.v1.prices.retrieve(price_id, None, o),
        )

    def list_prices(self, **params: Any) -> Iterator[stripe.Price]:
        """Every price matching ``params`` (``product``, ``active``, ``lookup_keys``...)."""
        return self._pages(
            "GET /v1/prices",
            "list",
            lambda p, o: self._client.v1.prices.list(p, o),  # type: ignore[arg-type]
            params,
            "starting_after",
        )

    def search_prices(self, query: str, **params: Any) -> Iterator[stripe.Price]:
        """Every price matching a search ``query``; lags behind writes like product search."""
        return self._pages(
            "GET /v1/prices/search",
            "search",
            lambda p, o: self._client.v1.prices.search(p, o),  # type: ignore[arg-type]
            {"query": query, **params},
            "page",
        )

    # -- events and account --------------------------------------------------------------------

    def list_events(self, **params: Any) -> Iterator[stripe.Event]:
        """Every event matching ``params`` (``type``, ``types``, ``created={"gte": ...}``), newest
        first as Stripe returns them."""
        return self._pages(
            "GET /v1/events",
            "list",
            lambda p, o: self._client.v1.events.list(p, o),  # type: ignore[arg-type]
            params,
            "starting_after",
        )

    def retrieve_event(self, event_id: str) -> stripe.Event:
        """Fetch one event."""
        return self._call(
            "GET /v1/events/{id}",
            "read",
            lambda o: self._client.v1.events.retrieve(event_id, None, o),
        )

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


def stripe_api_base_from_env(environ: Mapping[str, str] | None = None) -> dg.EnvVar | None:
    """The ``api_base`` to build :class:`StripeResource` with, where Definitions are assembled:
    ``dg.EnvVar("STRIPE_API_BASE")`` when that variable is set (the local emulator), else None
    (Stripe itself). The value is read when a run starts, not here."""
    env = os.environ if environ is None else environ
    return dg.EnvVar("STRIPE_API_BASE") if env.get("STRIPE_API_BASE") else None


# ---------------------------------------------------------------------------------------------
# The Dagster resource


class StripeResource(dg.ConfigurableResource):
    """Stripe, as the assets use it. Build it where Definitions are assembled::

        StripeResource(
            secret_key=dg.EnvVar("STRIPE_SECRET_KEY"),
            api_base=stripe_api_base_from_env(),  # the local emulator when STRIPE_API_BASE is set
        )

    An asset calls :meth:`get_client` for the shared :class:`StripeApi`, and puts
    :meth:`stats_metadata` into its ``MaterializeResult`` (call ``get_client().reset_stats()``
    first when several steps share one resource in a process).

    The defaults suit a sandbox account (25 requests/s). For a live account, where Stripe allows
    100/s account-wide and 25/s per endpoint, set ``max_requests_per_second=100`` (or a little
    less, to leave room for the live traffic of your shop) and ``allow_live=True``.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    secret_key: str = Field(
        repr=False,
        description="Stripe secret (sk_...) or restricted (rk_...) key; set it from "
        "dg.EnvVar('STRIPE_SECRET_KEY'). Never shown in logs or errors.",
    )
    api_base: str | None = Field(
        default=None,
        description="Base URL of the API, e.g. the local emulator's (STRIPE_API_BASE). "
        "None: Stripe itself (https://api.stripe.com).",
    )
    api_version: str = Field(
        default=STRIPE_API_VERSION,
        description="Stripe-Version sent with every request; pinned to the version the "
        "installed stripe-python is generated for.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for one HTTP response."
    )
    max_requests_per_second: float = Field(
        default=25.0,
        gt=0,
        description="Account-wide request rate (all endpoints together). Stripe allows 25/s in "
        "a sandbox and 100/s in live mode.",
    )
    max_endpoint_requests_per_second: float = Field(
        default=25.0, gt=0, description="Rate of any single endpoint (Stripe: 25/s)."
    )
    search_requests_per_second: float = Field(
        default=20.0, gt=0, description="Rate of each search endpoint (Stripe: 20/s)."
    )
    max_in_flight: int = Field(
        default=32,
        ge=1,
        description="Most requests waiting for Stripe at once (across the step's threads).",
    )
    pool_limit: int = Field(
        default=1,
        ge=1,
        description="The limit of the Dagster pool 'stripe_api' (dagster.yaml): how many steps "
        "may call Stripe at once. Each step takes 1/pool_limit of every rate and of "
        "max_in_flight, so together they stay within the account's limits.",
    )
    retry_attempts: int = Field(
        default=5, ge=1, description="Attempts per call, the first included."
    )
    retry_initial_delay_s: float = Field(
        default=1.0, gt=0, description="Wait before the first retry (plus up to as much jitter)."
    )
    retry_multiplier: float = Field(
        default=2.0, ge=1, description="Each retry waits this many times longer than the last."
    )
    retry_max_delay_s: float = Field(
        default=30.0, gt=0, description="Longest wait between two attempts."
    )
    allow_live: bool = Field(
        default=False,
        description="Allow writes with a live-mode key (sk_live_/rk_live_). Off: every write "
        "with such a key is refused before anything is sent.",
    )

    _api: StripeApi | None = PrivateAttr(default=None)
    _api_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("secret_key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):  # resolved, and checked again, when the run starts
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("secret_key is empty: set STRIPE_SECRET_KEY")
        if value.startswith(("pk_test_", "pk_live_")):
            raise ValueError(
                "secret_key is a publishable key (pk_...): the API needs a secret (sk_...) or "
                "restricted (rk_...) key"
            )
        if not value.startswith(_SECRET_PREFIXES):
            raise ValueError(
                "secret_key does not look like a Stripe key: expected it to start with "
                "sk_test_, sk_live_, rk_test_ or rk_live_"
            )
        return value

    @field_validator("api_base", mode="before")
    @classmethod
    def _check_api_base(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):
            return value
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError(f"api_base must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _check_api_version(cls, value: str) -> str:
        if not _API_VERSION_PATTERN.match(value):
            raise ValueError(
                f"api_version must look like '2026-10-28.endive' (date.release), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_retry_delays(self) -> StripeResource:
        if self.retry_max_delay_s < self.retry_initial_delay_s:
            raise ValueError(
                "retry_max_delay_s must be >= retry_initial_delay_s "
                f"({self.retry_max_delay_s} < {self.retry_initial_delay_s})"
            )
        return self

    def __repr__(self) -> str:
        return (
            f"StripeResource(api_base={self.api_base!r}, "
            f"max_requests_per_second={self.max_requests_per_second}, "
            f"pool_limit={self.pool_limit}, allow_live={self.allow_live})"
        )

    __str__ = __repr__

    @property
    def step_rates(self) -> dict[str, float]:
        """The rates one step uses: the configured ones divided by ``pool_limit``."""
        share = 1 / self.pool_limit
        return {
            "global": self.max_requests_per_second * share,
            "endpoint": self.max_endpoint_requests_per_second * share,
            "search": self.search_requests_per_second * share,
            "max_in_flight": max(1, math.floor(self.max_in_flight * share)),
        }

    def _build(self) -> StripeApi:
        _install_stripe_log_filter()
        mode = key_mode(self.secret_key)
        if mode is None:  # only reachable if validation was bypassed
            raise ValueError("secret_key does not look like a Stripe secret or restricted key")
        rates = self.step_rates
        limiter = RateLimiter(
            global_rate=rates["global"],
            endpoint_rate=rates["endpoint"],
            endpoint_rates={
                "GET /v1/products/search": rates["search"],
                "GET /v1/prices/search": rates["search"],
            },
            max_in_flight=int(rates["max_in_flight"]),
        )
        client = stripe.StripeClient(
            self.secret_key,
            stripe_version=self.api_version,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=0,
            # Thread-safe: requests sessions are kept per thread by stripe's RequestsClient.
            http_client=stripe.RequestsClient(timeout=self.request_timeout_s),
        )
        return StripeApi(
            client,
            limiter,
            key_mode=mode,
            allow_live=self.allow_live,
            retry_attempts=self.retry_attempts,
            retry_initial_delay_s=self.retry_initial_delay_s,
            retry_multiplier=self.retry_multiplier,
            retry_max_delay_s=self.retry_max_delay_s,
        )

    def get_client(self) -> StripeApi:
        """The resource's :class:`StripeApi` (built on first use, then shared by all threads)."""
        with self._api_lock:
            if self._api is None:
                self._api = self._build()
            return self._api

    def stats_metadata(self) -> dict[str, float | int]:
        """The client's counters as Dagster metadata (empty before the first call)."""
        return self._api.stats_metadata() if self._api is not None else {}

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the HTTP session when the step ends."""
        if self._api is not None:
            self._api.close()
