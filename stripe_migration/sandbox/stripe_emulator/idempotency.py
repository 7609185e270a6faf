"""Stripe's idempotency keys: replay the first result, refuse reuse with other parameters.

As on Stripe's API v1, the status code and body of the first request made with a key are saved
once the endpoint has started executing, whether it succeeded or failed, and every later request
with the key gets them back (with ``Idempotent-Replayed: true``, ``Original-Request`` and the
original ``Request-Id``) until the key expires after ``ttl_s`` (Stripe: 24 hours). Stripe
(https://docs.stripe.com/idempotency): "Stripe's idempotency works by saving the resulting status
code and body of the first request made for any given idempotency key, regardless of whether it
succeeds or fails. Subsequent requests with the same key return the same result, including 500
errors." and "We save results only after the execution of an endpoint begins." The same page goes
on: when the parameters fail validation, or the request conflicts with another one running
concurrently, nothing is saved and the request can be retried.

Saved, then: successes, errors raised by the operation itself (``resource_already_exists``, a
default price that cannot be archived...), and injected errors of the ``after_execution`` and
``after_commit`` phases (:mod:`.faults`). Not saved: requests refused before execution
(authentication, rate limits, parameter validation against the OpenAPI schema, a key reused with
other parameters, injected errors of the ``before_execution`` phase, dropped connections before the
commit) and the 409 of a concurrent request. Two requests with the same key never run at once: the
second waits for the first and then replays it (``mode="wait"``), or gets Stripe's 409
``idempotency_key_in_use`` (``mode="conflict"``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from .errors import ApiError

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class SavedResult:
    """The first response given for an idempotency key."""

    key: str
    operation: str
    path: str
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    saved_at: float


class IdempotencyStore:
    """Saved results by key, oldest first, with the keys whose first request is still running."""

    def __init__(self, ttl_s: float, max_keys: int) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._saved: OrderedDict[str, SavedResult] = OrderedDict()
        self._running: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._saved)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        while self._saved:
            key, first = next(iter(self._saved.items()))
            if first.saved_at >= cutoff and len(self._saved) <= self.max_keys:
                break
            del self._saved[key]

    @staticmethod
    def check_key(key: str) -> None:
        """Refuse keys Stripe refuses."""
        if len(key) > MAX_KEY_LENGTH:
            raise ApiError(
                400,
                f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters long.",
                param="Idempotency-Key",
            )

    async def claim(
        self, key: str, operation: str, path: str, fingerprint: str, mode: str
    ) -> SavedResult | None:
        """Return the saved result to replay, or ``None`` once this request may run the key.

        Raises ``idempotency_error`` if the key was used for another endpoint or other parameters.
        After ``None``, the caller must call :meth:`release` (after :meth:`save` if it ran).
        """
        while True:
            self._expire()
            saved = self._saved.get(key)
            if saved is not None:
                if saved.operation != operation or saved.path != path:
                    raise ApiError(
                        400,
                        "Keys for idempotent requests can only be used for the same endpoint they "
                        f"were first used for ('{saved.operation.split()[0]} {saved.path}' vs "
                        f"'{operation.split()[0]} {path}'). Try using a key other than '{key}' if "
                        "you meant to execute a different request.",
                        type="idempotency_error",
                    )
                if saved.fingerprint != fingerprint:
                    raise ApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{key}' if you "
                        "meant to execute a different request.",
                        type="idempotency_error",
                    )
                return saved
            running = self._running.get(key)
            if running is None:
                self._running[key] = asyncio.get_running_loop().create_future()
                return None
            if mode == "conflict":
                raise ApiError(
                    409,
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): {key}. Please try again later.",
                    code="idempotency_key_in_use",
                )
            await asyncio.shield(running)

    def save(self, result: SavedResult) -> None:
        """Remember the first result for ``result.key``."""
        self._saved[result.key] = result
        self._saved.move_to_end(result.key)
        self._expire()

    def release(self, key: str) -> None:
        """Let requests waiting on ``key`` proceed (to replay, or to run if nothing was saved)."""
        running = self._running.pop(key, None)
        if running is not None and not running.done():
            running.set_result(None)

    def clear(self) -> None:
        """Forget every key (waiting requests are released)."""
        self._saved.clear()
        for key in list(self._running):
            self.release(key)
