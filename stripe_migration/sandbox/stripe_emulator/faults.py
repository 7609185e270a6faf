"""Injected faults: 500 and 503 errors, dropped connections, answers slower than the client waits.

A fault is drawn per API request from the configured rates (optionally only for the operations in
``fault_operations``). Errors and plain drops happen before the request runs, so nothing is
committed and a retry is safe (Stripe sends ``Stripe-Should-Retry: true`` in that case). A drop of
a POST can instead come after the commit (``drop_after_commit``, a fraction of the drops): the
object exists, the client never hears of it, and only an idempotent retry avoids a duplicate. A
slow answer also commits first, then waits ``slow_response_s`` (or until the client hangs up).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable
from typing import Any

from .config import EmulatorConfig
from .errors import ApiError


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


def fault_error(fault: Fault) -> ApiError:
    """The error response for an injected 500 or 503."""
    retry = {"Stripe-Should-Retry": "true"}
    if fault is Fault.ERROR_503:
        return ApiError(
            503,
            "The Stripe API is temporarily unavailable (injected by the emulator). "
            "Please retry your request.",
            type="api_error",
            headers=retry,
        )
    return ApiError(
        500,
        "An unknown error occurred (injected by the emulator).",
        type="api_error",
        headers=retry,
    )


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
