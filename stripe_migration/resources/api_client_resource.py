"""What the Stripe and Supabase resources have in common: an API client built on first use and
shared by the threads of a step, its statistics, its connections closed when the step ends, and
retry settings checked to be in order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import dagster as dg
from pydantic import ConfigDict, PrivateAttr, model_validator

from stripe_migration.resources.retry import RetryPolicy

C = TypeVar("C")


class ApiClient(Protocol):
    """What :class:`ApiClientResource` needs of the client it builds."""

    def stats_metadata(self) -> Mapping[str, float | int]:
        """The client's counters as Dagster metadata."""

    def close(self) -> None:
        """Close the client's HTTP connections."""


class ApiClientResource(dg.ConfigurableResource):
    """Base of a resource whose API client retries failed requests.

    A subclass declares the fields ``retry_attempts``, ``retry_initial_delay_s`` and
    ``retry_max_delay_s`` with its own defaults (:mod:`stripe_migration.resources.retry` makes
    them), builds its client with :meth:`_retry_policy`, and returns it from ``get_client`` through
    :meth:`_shared_client`.
    """

    # A rejected secret must not be echoed in the validation error.
    model_config = ConfigDict(hide_input_in_errors=True)

    if TYPE_CHECKING:  # declared by each subclass, with its own defaults
        retry_attempts: int
        retry_initial_delay_s: float
        retry_max_delay_s: float

    _client: Any = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _check_retry_delays(self) -> ApiClientResource:
        if self.retry_max_delay_s < self.retry_initial_delay_s:
            raise ValueError(
                "retry_max_delay_s must be >= retry_initial_delay_s "
                f"({self.retry_max_delay_s} < {self.retry_initial_delay_s})"
            )
        return self

    def _retry_policy(self, multiplier: float = 2) -> RetryPolicy:
        """The retry settings as the client takes them; ``multiplier``: how many times longer each
        wait is than the last."""
        return RetryPolicy(
            attempts=self.retry_attempts,
            initial_delay_s=self.retry_initial_delay_s,
            max_delay_s=self.retry_max_delay_s,
            multiplier=multiplier,
        )

    def _shared_client(self, build: Callable[[], C]) -> C:
        """The client ``build`` makes on the first call; every later call, from any thread,
        returns that same client."""
        with self._client_lock:
            if self._client is None:
                self._client = build()
            return self._client

    def stats_metadata(self) -> Mapping[str, float | int]:
        """The client's counters as Dagster metadata (empty before the client is built)."""
        client: ApiClient | None = self._client
        return client.stats_metadata() if client is not None else {}

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the client's HTTP connections when the step ends."""
        client: ApiClient | None = self._client
        if client is not None:
            client.close()
