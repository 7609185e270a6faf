"""Retries of failed requests, shared by the Stripe and Supabase clients: the settings their
resources expose, the :class:`RetryPolicy` that applies them with tenacity (exponential backoff
with jitter, the last error re-raised), and :class:`RetryingClient`, the clients' common base."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)


class RetryStats(Protocol):
    """What :class:`RetryingClient` needs of a client's statistics: a retries counter."""

    def add(self, *, retries: int = 0) -> None:
        """Add to the counters."""


S = TypeVar("S", bound=RetryStats)


def retry_attempts_field(default: int, *, per: str) -> Any:
    """The ``retry_attempts`` setting of a resource: attempts per ``per`` (a call, a request),
    the first included."""
    return Field(default=default, ge=1, description=f"Attempts per {per}, the first included.")


def retry_initial_delay_field(default: float) -> Any:
    """The ``retry_initial_delay_s`` setting of a resource: the wait before the first retry."""
    return Field(
        default=default,
        gt=0,
        description="Wait before the first retry (plus up to as much jitter).",
    )


def retry_max_delay_field(default: float, *, between: str = "attempts") -> Any:
    """The ``retry_max_delay_s`` setting of a resource: the longest wait between ``between``."""
    return Field(default=default, gt=0, description=f"Longest wait between {between}.")


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries: at most ``attempts`` attempts (the first included), waiting
    ``initial_delay_s`` before the first retry and ``multiplier`` times longer before each next
    one, never more than ``max_delay_s``, each wait plus up to ``initial_delay_s`` of jitter."""

    attempts: int
    initial_delay_s: float
    max_delay_s: float
    multiplier: float = 2
    sleep: Callable[[float], None] = time.sleep

    def retrying(
        self,
        is_retryable: Callable[[BaseException], bool],
        before_sleep: Callable[[RetryCallState], None],
    ) -> Retrying:
        """A tenacity ``Retrying`` that retries the errors ``is_retryable`` accepts, calls
        ``before_sleep`` before each wait, and re-raises the last error when it gives up."""
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.initial_delay_s,
                exp_base=self.multiplier,
                max=self.max_delay_s,
                jitter=self.initial_delay_s,
            ),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )


class RetryingClient(Generic[S]):
    """Base of an API client that retries with a :class:`RetryPolicy` and counts its requests
    and retries in ``stats``. A subclass logs each retry in :meth:`_log_retry`."""

    def __init__(self, retry_policy: RetryPolicy, stats: S) -> None:
        self.retry_policy = retry_policy
        self.stats = stats

    def _retrying(self, error_type: type[Exception]) -> Retrying:
        """The policy's ``Retrying`` for the ``error_type`` errors marked ``retryable``; each retry
        is counted and logged."""
        return self.retry_policy.retrying(
            lambda e: isinstance(e, error_type) and getattr(e, "retryable", False),
            self._before_sleep,
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.add(retries=1)
        self._log_retry(state.outcome.exception() if state.outcome else None, state)

    def _log_retry(self, err: BaseException | None, state: RetryCallState) -> None:
        """Log the retry that ``state`` is about to wait for, after ``err``."""
        raise NotImplementedError
