"""Injected faults: errors, dropped connections, answers slower than the client waits.

**Random faults.** A fault is drawn per API request from the configured rates (optionally only for
the operations in ``fault_operations``). A drop of a POST comes before the request runs, or, for
the fraction ``drop_after_commit``, after the commit: the object exists, the client never hears of
it, and only an idempotent retry avoids a duplicate. A slow answer commits first, then waits
``slow_response_s`` (or until the client hangs up).

**When an injected error happens** (``fault_phase`` for the random 500s and 503s; every scripted
fault names its own phase). Stripe's API v1 saves the first result of an idempotency key once the
endpoint has started executing, failures included. https://docs.stripe.com/idempotency: "Stripe's
idempotency works by saving the resulting status code and body of the first request made for any
given idempotency key, regardless of whether it succeeds or fails. Subsequent requests with the
same key return the same result, including 500 errors." and "We save results only after the
execution of an endpoint begins." https://docs.stripe.com/api/idempotent_requests: "For API v1,
Stripe saves the status code and body of the first request made with a given idempotency key after
endpoint execution begins. Retries with the same key return the saved response, including 500
errors." So the phase decides what a retry with the same key sees:

- ``before_execution`` (the default): the error comes before the endpoint runs, with
  ``Stripe-Should-Retry: true``. Nothing was done and nothing is saved, so a retry with the same
  key runs the request. Such an error comes before parameter validation, as a 503 from Stripe's
  edge would.
- ``after_execution``: the endpoint began (the parameters passed validation), failed without
  writing anything, and its error is saved under the key: every retry with that key gets the
  same status and body back, with ``Idempotent-Replayed: true``, until the key expires
  (``idempotency_ttl_s``, 24 hours). Only a new key runs the request again.
- ``after_commit``: the write happened (the object exists, its events were recorded), then the
  endpoint failed and that error is saved and replayed for the key: the caller must look at
  Stripe's actual state to learn what happened, since the key will only ever answer the error.

A request whose parameters fail validation never reaches an after-execution fault (its 400 is
returned and not saved, and a scripted fault waiting for it stays armed).

**Scripted faults** (:class:`ScriptedFaults`, ``POST /_emulator/faults``) make the next ``count``
requests matching a method, a path (a concrete one such as ``/v1/prices/price_123``, or an
operation's template such as ``/v1/prices/{id}``) and/or an idempotency key fail with a given
status in a given phase: a deterministic way for a test to get, say, a 500 saved after commit on
one specific ``POST /v1/prices``. A request matching an armed scripted fault gets no random fault
(and takes no random draw).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .config import FAULT_PHASES, EmulatorConfig
from .errors import ApiError

BEFORE_EXECUTION, AFTER_EXECUTION, AFTER_COMMIT = FAULT_PHASES


class Fault(enum.Enum):
    """The kinds of injected fault."""

    ERROR_500 = "500"
    ERROR_503 = "503"
    DROP = "dropped"
    DROP_AFTER_COMMIT = "dropped_after_commit"
    SLOW = "slow"


def choose_fault(
    config: EmulatorConfig, rng: random.Random, operation: str, method: str
) -> Fault | None:
    """Draw the fault (if any) for one request to ``operation``."""
    if not (
        config.fault_500_rate
        or config.fault_503_rate
        or config.fault_drop_rate
        or config.fault_slow_rate
    ):
        return None
    if config.fault_operations and operation not in config.fault_operations:
        return None
    draw = rng.random()
    for rate, fault in (
        (config.fault_500_rate, Fault.ERROR_500),
        (config.fault_503_rate, Fault.ERROR_503),
        (config.fault_drop_rate, Fault.DROP),
        (config.fault_slow_rate, Fault.SLOW),
    ):
        if draw < rate:
            if fault is Fault.DROP and method == "POST" and rng.random() < config.drop_after_commit:
                return Fault.DROP_AFTER_COMMIT
            return fault
        draw -= rate
    return None


def fault_error(fault: Fault, phase: str = BEFORE_EXECUTION) -> ApiError:
    """The error response for an injected 500 or 503 happening in ``phase``."""
    status = 503 if fault is Fault.ERROR_503 else 500
    return injected_error(status, phase)


def injected_error(
    status: int, phase: str, code: str | None = None, message: str | None = None
) -> ApiError:
    """An injected error with ``status``. Before execution a 5xx says ``Stripe-Should-Retry:
    true`` (nothing happened); after execution it does not (a retry with the same key replays)."""
    if message is None:
        if status == 503:
            message = (
                "The Stripe API is temporarily unavailable (injected by the emulator). "
                "Please retry your request."
            )
        elif status >= 500:
            message = "An unknown error occurred (injected by the emulator)."
        else:
            message = f"Request failed with status {status} (injected by the emulator)."
    if status == 429 and code is None:
        code = "rate_limit"
    retry = status >= 500 and phase == BEFORE_EXECUTION
    return ApiError(
        status,
        message,
        type="api_error" if status >= 500 else "invalid_request_error",
        code=code,
        headers={"Stripe-Should-Retry": "true"} if retry else None,
    )


@dataclass
class ScriptedFault:
    """One armed fault: which requests it hits, how they fail, and how many more it will hit."""

    id: int
    status: int
    phase: str
    remaining: int
    method: str | None = None
    path: str | None = None
    idempotency_key: str | None = None
    code: str | None = None
    message: str | None = None

    def matches(self, method: str, path: str, template: str, key: str | None) -> bool:
        """Whether a request (``template`` is its operation's path, e.g. ``/v1/prices/{id}``)
        is one this fault hits."""
        return (
            (self.method is None or self.method == method)
            and (self.path is None or self.path in (path, template))
            and (self.idempotency_key is None or self.idempotency_key == key)
        )

    def error(self) -> ApiError:
        """The error a hit request gets."""
        return injected_error(self.status, self.phase, self.code, self.message)


class ScriptedFaults:
    """The armed scripted faults, oldest first (the first that matches a request is used)."""

    _FIELDS = frozenset(
        ("status", "phase", "count", "method", "path", "idempotency_key", "code", "message")
    )

    def __init__(self) -> None:
        self._faults: list[ScriptedFault] = []
        self._ids = itertools.count(1)

    def add(self, spec: Mapping[str, Any]) -> ScriptedFault:
        """Arm a fault from a JSON-like ``spec``; raise ValueError naming what is wrong.

        ``phase`` (one of :data:`~.config.FAULT_PHASES`) is required; ``status`` (400-599) defaults
        to 500, ``count`` to 1; at least one of ``path`` and ``idempotency_key`` must be given;
        ``method`` (default: any), ``code`` and ``message`` (of the error body) are optional.
        """
        unknown = sorted(set(spec) - self._FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        phase = spec.get("phase")
        if phase not in FAULT_PHASES:
            raise ValueError(f"phase: must be one of {FAULT_PHASES}, got {phase!r}")
        status = spec.get("status", 500)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ValueError(f"status: must be an HTTP error status (400-599), got {status!r}")
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"count: must be an integer >= 1, got {count!r}")
        strings = {}
        for name in ("method", "path", "idempotency_key", "code", "message"):
            value = spec.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
            strings[name] = value
        if strings["path"] is None and strings["idempotency_key"] is None:
            raise ValueError("give a path, an idempotency_key or both to say which requests fail")
        if strings["method"] is not None:
            strings["method"] = strings["method"].upper()
        fault = ScriptedFault(
            id=next(self._ids), status=status, phase=phase, remaining=count, **strings
        )
        self._faults.append(fault)
        return fault

    def find(
        self, phases: tuple[str, ...], method: str, path: str, template: str, key: str | None
    ) -> ScriptedFault | None:
        """The oldest armed fault of one of ``phases`` matching the request, if any."""
        for fault in self._faults:
            if fault.phase in phases and fault.matches(method, path, template, key):
                return fault
        return None

    def take(
        self, phases: tuple[str, ...], method: str, path: str, template: str, key: str | None
    ) -> ScriptedFault | None:
        """Like :meth:`find`, and use up one hit of the fault found."""
        fault = self.find(phases, method, path, template, key)
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
        return fault

    def snapshot(self) -> list[dict[str, Any]]:
        """The armed faults as JSON-ready dicts, oldest first."""
        return [asdict(f) for f in self._faults]

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def wait_for_disconnect(receive: Receive, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the client to hang up; return whether it did."""

    async def _wait() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    try:
        await asyncio.wait_for(_wait(), timeout_s)
    except TimeoutError:
        return False
    return True


async def drop_connection(send: Any, receive: Receive) -> None:
    """Close the client's TCP connection without sending any response.

    Uses the transport of uvicorn's request cycle (``send`` is its bound method); the app then
    returns without a response, which uvicorn accepts once it has seen the disconnect.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("cannot drop the connection: the server's transport is not reachable")
    transport.close()
    await wait_for_disconnect(receive, 2.0)
