"""The emulator's request pipeline: how one request to Stripe's v1 API is answered.

Each API request goes through these steps: route (404), authenticate (401), its
``Stripe-Version`` (400 for a version the emulator does not know, see :mod:`.versions`),
concurrency and rate limits (429), decode the form parameters, claim its ``Idempotency-Key`` (replay, or
``idempotency_error``, or wait for a running request with the same key), simulated latency (the
key stays held meanwhile, as while Stripe processes a request), injected faults of the
``before_execution`` phase (nothing saved), parameter checks against the OpenAPI schema (400, never
saved for replay), then execution: injected faults of the ``after_execution`` phase (the error is
the result) or the operation itself followed by those of the ``after_commit`` phase (the write
stands, the error is the result). From execution on, the result, success or error, is saved under
the key and replayed, as Stripe documents (https://docs.stripe.com/idempotency; see
:mod:`.idempotency` and :mod:`.faults`). A replay carries ``Idempotent-Replayed: true``,
``Original-Request`` and the first request's ``Request-Id``. Every answer names its API version in
``Stripe-Version``. The hot path is plain ASGI (no
per-request framework objects); the control endpoints use Starlette.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from .config import EmulatorConfig, redact_key
from .errors import ApiError
from .faults import (
    AFTER_COMMIT,
    AFTER_EXECUTION,
    BEFORE_EXECUTION,
    Fault,
    ScriptedFaults,
    choose_fault,
    drop_connection,
    fault_error,
    wait_for_disconnect,
)
from .forms import decode
from .idempotency import IdempotencyStore, SavedResult
from .limits import RateLimiter
from .operations import StripeState
from .state import RequestContext
from .stats import Stats
from .store import new_id
from .validation import SpecValidator
from .versions import request_version, response_version
from .webhooks import WebhookDispatcher, WebhookEndpoint

_EARLY = (BEFORE_EXECUTION,)
_LATE = (AFTER_EXECUTION, AFTER_COMMIT)
_RATE_LIMIT_MESSAGES = {
    "global-concurrency": "Too many concurrent requests. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits.",
}
_RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


@dataclass
class Reply:
    """A response to send: status, JSON body bytes, extra headers, and the ``Request-Id`` to send
    when it is not the request's own (a replay sends the first request's)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    request_id: str | None = None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Router:
    """Matches ``METHOD /path`` to an operation named like ``GET /v1/products/{id}``."""

    def __init__(self, operations: list[str]) -> None:
        self._static: dict[tuple[str, str], str] = {}
        self._dynamic: list[tuple[str, re.Pattern[str], str]] = []
        for op in operations:
            method, template = op.split(" ", 1)
            if "{" not in template:
                self._static[(method, template)] = op
            else:
                pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
                self._dynamic.append((method, re.compile(f"^{pattern}$"), op))

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """The operation and path parameters for a request, or None."""
        op = self._static.get((method, path))
        if op is not None:
            return op, {}
        for op_method, pattern, op in self._dynamic:
            if op_method == method:
                found = pattern.match(path)
                if found is not None:
                    return op, found.groupdict()
        return None


class Emulator:
    """One emulated Stripe account: its state, limits, faults, stats and webhook deliveries."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.initial_config = config
        self.config = config
        self.stats = Stats()
        self.limiter = RateLimiter(config)
        self.rng = random.Random(config.seed)
        self.idempotency = IdempotencyStore(config.idempotency_ttl_s, config.idempotency_max_keys)
        self.scripted_faults = ScriptedFaults()
        self.webhooks = WebhookDispatcher()
        self.state = StripeState(lambda: self.config, self._on_event)
        self.validator = SpecValidator()
        self.router = Router(list(self.state.handlers))

    # -- control -------------------------------------------------------------------------------

    def configure(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Apply setting changes now (raises ValueError naming a bad setting)."""
        self._apply(self.config.updated(changes))
        return self.config

    def _apply(self, config: EmulatorConfig) -> None:
        old = self.config
        self.config = config
        self.limiter = RateLimiter(config)
        if config.seed != old.seed:
            self.rng = random.Random(config.seed)
        self.idempotency.ttl_s = config.idempotency_ttl_s
        self.idempotency.max_keys = config.idempotency_max_keys

    def reset(self, keep_config: bool = False) -> None:
        """Forget all objects, events, idempotency keys, scripted faults and counters; restore
        the first config."""
        self.state.clear()
        self.idempotency.clear()
        self.scripted_faults.clear()
        self.webhooks.clear()
        self.stats.reset(in_flight=self.stats.in_flight)
        self._apply(self.config if keep_config else self.initial_config)
        self.limiter = RateLimiter(self.config)
        self.rng = random.Random(self.config.seed)

    def stats_snapshot(self) -> dict[str, Any]:
        """Counters for ``GET /_emulator/stats``."""
        out = self.stats.snapshot()
        out["webhooks"] = self.webhooks.snapshot()
        out["objects"] = {
            "product": len(self.state.products),
            "price": len(self.state.prices),
            "event": len(self.state.events),
        }
        out["idempotency_keys"] = len(self.idempotency)
        return out

    def _on_event(self, event: dict[str, Any]) -> None:
        endpoint = WebhookEndpoint.configured(self.config)
        if endpoint is not None:
            self.webhooks.enqueue(event, endpoint)

    # -- API -----------------------------------------------------------------------------------

    async def handle_api(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry for every non-control request."""
        self.stats.begin()
        label = "unknown"
        status = "500"
        try:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            body = b""
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    status = "client_gone"
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
            request_id = new_id("req_", 14)
            label, reply = await self._process(scope, receive, send, headers, body, request_id)
            if reply is None:
                status = "dropped"
                return
            status = str(reply.status)
            out_headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(reply.body)).encode()),
                (b"request-id", (reply.request_id or request_id).encode()),
                (
                    b"stripe-version",
                    response_version(
                        headers.get("stripe-version"), self.config.api_version
                    ).encode(),
                ),
                *reply.headers,
            ]
            await send(
                {"type": "http.response.start", "status": reply.status, "headers": out_headers}
            )
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            self.stats.end(label, status)

    @staticmethod
    def _error(exc: ApiError) -> Reply:
        headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        return Reply(exc.status, _dumps(exc.body()), headers)

    def _authenticate(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "").strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="Stripe"'}
        if not auth:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
                headers=challenge,
            )
        scheme, _, credential = auth.partition(" ")
        key = credential.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        given = key.encode()
        if not key or not any(
            hmac.compare_digest(given, k.encode()) for k in self.config.secret_keys
        ):
            shown = redact_key(key) if key else "(empty)"
            raise ApiError(401, f"Invalid API Key provided: {shown}", headers=challenge)

    def _admit(self, operation: str) -> None:
        config = self.config
        reason = None
        if config.max_in_flight is not None and self.stats.in_flight > config.max_in_flight:
            reason = "global-concurrency"
        else:
            reason = self.limiter.admit(operation, operation.endswith("/search"))
        if reason is not None:
            self.stats.rate_limited_total += 1
            self.stats.rate_limited_by_reason[reason] += 1
            raise ApiError(
                429,
                _RATE_LIMIT_MESSAGES.get(reason, _RATE_LIMIT_MESSAGE),
                code="rate_limit",
                headers={"Stripe-Rate-Limited-Reason": reason},
            )

    async def _process(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        headers: dict[str, str],
        body: bytes,
        request_id: str,
    ) -> tuple[str, Reply | None]:
        method = scope["method"]
        path = scope["path"]
        match = self.router.match(method, path)
        if match is None:
            return "unknown", self._error(
                ApiError(
                    404,
                    f"Unrecognized request URL ({method}: {path}). The Stripe emulator serves "
                    "account, products, prices and events only.",
                )
            )
        operation, path_params = match
        template = operation.split(" ", 1)[1]
        key = headers.get("idempotency-key") if method == "POST" else None
        claimed = False
        fault = None
        try:
            self._authenticate(headers)
            request_version(headers.get("stripe-version"), self.config.api_version)
            self._admit(operation)
            params = self._params(method, scope, headers, body)
            saved = None
            fingerprint = ""
            if key is not None:
                IdempotencyStore.check_key(key)
                fingerprint = json.dumps(params, sort_keys=True)
                saved = await self.idempotency.claim(
                    key, operation, path, fingerprint, self.config.idempotency_in_progress
                )
                claimed = saved is None
            # The simulated processing time: a running idempotency key stays held meanwhile.
            config = self.config
            delay_ms = config.latency_ms
            if config.latency_jitter_ms:
                delay_ms += self.rng.uniform(-config.latency_jitter_ms, config.latency_jitter_ms)
            if delay_ms > 0:
                await asyncio.sleep(delay_ms / 1000.0)
            if saved is not None:
                self.stats.idempotent_replays += 1
                if saved.status >= 400:
                    self.stats.idempotent_failure_replays += 1
                return operation, Reply(
                    saved.status,
                    saved.body,
                    [
                        (b"idempotency-key", saved.key.encode()),
                        (b"idempotent-replayed", b"true"),
                        (b"original-request", saved.request_id.encode()),
                    ],
                    request_id=saved.request_id,
                )
            # Faults before execution: nothing happens, nothing is saved under the key.
            scripted = self.scripted_faults.take(_EARLY, method, path, template, key)
            if scripted is not None:
                self.stats.count_fault(str(scripted.status), scripted.phase)
                raise scripted.error()
            late_error: tuple[str, ApiError] | None = None
            if self.scripted_faults.find(_LATE, method, path, template, key) is None:
                fault = choose_fault(config, self.rng, operation, method)
            if fault is not None:
                is_error = fault in (Fault.ERROR_500, Fault.ERROR_503)
                phase = config.fault_phase if is_error else None
                self.stats.count_fault(fault.value, phase)
                if phase == BEFORE_EXECUTION:
                    raise fault_error(fault)
                if phase is not None:
                    late_error = (phase, fault_error(fault, phase))
            if fault is Fault.DROP:
                await drop_connection(send, receive)
                return operation, None
            # Parameter errors raise here, before execution begins: never saved for replay.
            checked = self.validator.validate(operation, params)
            # Execution has begun: from here on the result is saved under the key.
            scripted = self.scripted_faults.take(_LATE, method, path, template, key)
            if scripted is not None:
                self.stats.count_fault(str(scripted.status), scripted.phase)
                late_error = (scripted.phase, scripted.error())
            ctx = RequestContext(request_id, key)
            if late_error is not None and late_error[0] == AFTER_EXECUTION:
                reply = self._error(late_error[1])
            else:
                reply = self._run(operation, checked, path_params, ctx)
                if late_error is not None:  # after the commit: the write (if any) stands
                    reply = self._error(late_error[1])
            if claimed and key is not None:
                self._save(key, operation, path, fingerprint, reply, request_id)
        except ApiError as exc:
            return operation, self._error(exc)
        finally:
            if claimed and key is not None:
                self.idempotency.release(key)
        if key is not None:
            reply.headers.append((b"idempotency-key", key.encode()))
        if fault is Fault.DROP_AFTER_COMMIT:
            await drop_connection(send, receive)
            return operation, None
        if fault is Fault.SLOW and await wait_for_disconnect(receive, config.slow_response_s):
            return operation, None
        return operation, reply

    @staticmethod
    def _params(
        method: str, scope: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        if method == "GET":
            return decode(scope["query_string"].decode("latin-1"))
        if headers.get("content-type", "").startswith("application/json"):
            raise ApiError(
                400,
                "Invalid request: Stripe's v1 API takes form-encoded parameters "
                "(application/x-www-form-urlencoded), not JSON.",
            )
        return decode(body.decode("utf-8", errors="replace"))

    def _run(
        self,
        operation: str,
        checked: dict[str, Any],
        path_params: dict[str, str],
        ctx: RequestContext,
    ) -> Reply:
        """Run an operation on checked parameters; its own errors are its result."""
        try:
            result = self.state.handlers[operation](checked, path_params, ctx)
        except ApiError as exc:
            return self._error(exc)
        return Reply(200, _dumps(result), [])

    def _save(
        self, key: str, operation: str, path: str, fingerprint: str, reply: Reply, request_id: str
    ) -> None:
        """Save the result of a request that began executing, for replay under ``key``."""
        self.idempotency.save(
            SavedResult(
                key=key,
                operation=operation,
                path=path,
                fingerprint=fingerprint,
                status=reply.status,
                body=reply.body,
                request_id=request_id,
                saved_at=time.monotonic(),
            ),
        )
