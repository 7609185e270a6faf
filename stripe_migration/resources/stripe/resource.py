"""The Dagster resource for Stripe: typed, validated settings, and the :class:`StripeApi` it
builds from them on first use, with each step's share of the ``stripe_api`` pool's rates.

Keys never appear in messages, logs, reprs or metadata: the repr leaves the key out, the key is
registered for redaction before anything is sent, and stripe-python's logger gets a redacting
filter (:mod:`stripe_migration.resources.redaction`).

**Several runs at once.** Stripe's limits hold for the account, not the process. Steps that call
Stripe run in the Dagster pool ``stripe_api``; set ``pool_limit`` to that pool's limit (from
``dagster.yaml``) and each step takes ``1/pool_limit`` of every rate and of ``max_in_flight``, so
all the steps together stay within the configured account rate.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
import stripe
from pydantic import Field, field_validator

from stripe_migration import settings
from stripe_migration.resources.api_client_resource import ApiClientResource
from stripe_migration.resources.rate_limit import RateLimiter
from stripe_migration.resources.redaction import install_stripe_log_filter, register_secret
from stripe_migration.resources.retry import (
    retry_attempts_field,
    retry_initial_delay_field,
    retry_max_delay_field,
)
from stripe_migration.resources.setting_checks import checked_unless_env_var, required_text
from stripe_migration.resources.setting_fields import (
    at_least_one,
    rate_field,
    timeout_field,
)
from stripe_migration.resources.stripe.client import StripeApi, key_mode

#: The API version requests are pinned to: the one stripe-python 16.1 is generated for, so the
#: objects it returns match its types. Change it together with the library.
STRIPE_API_VERSION = "2026-10-28.endive"

_API_VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_SECRET_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")


def stripe_api_base_from_env(environ: Mapping[str, str] | None = None) -> dg.EnvVar | None:
    """The ``api_base`` to build :class:`StripeResource` with, where Definitions are assembled:
    ``dg.EnvVar("STRIPE_API_BASE")`` when that variable is set (the local emulator), else None
    (Stripe itself). The value is read when a run starts, not here."""
    env = os.environ if environ is None else environ
    return dg.EnvVar("STRIPE_API_BASE") if env.get("STRIPE_API_BASE") else None


def _checked_secret_key(value: Any) -> str:
    key = required_text(value, "secret_key", "STRIPE_SECRET_KEY")
    if key.startswith(("pk_test_", "pk_live_")):
        raise ValueError(
            "secret_key is a publishable key (pk_...): the API needs a secret (sk_...) or "
            "restricted (rk_...) key"
        )
    if not key.startswith(_SECRET_PREFIXES):
        raise ValueError(
            "secret_key does not look like a Stripe key: expected it to start with "
            "sk_test_, sk_live_, rk_test_ or rk_live_"
        )
    return key


def _checked_api_base(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"api_base must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


class StripeResource(ApiClientResource):
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
    # Stripe's limits: the account's (25/s in a sandbox, 100/s live) and every endpoint's (25/s).
    max_requests_per_second: float = rate_field(
        settings.STRIPE_SANDBOX_REQUESTS_PER_SECOND, "the whole account (all endpoints together)"
    )
    max_endpoint_requests_per_second: float = rate_field(
        settings.STRIPE_ENDPOINT_REQUESTS_PER_SECOND, "any one endpoint"
    )
    max_in_flight: int = at_least_one(
        settings.STRIPE_MAX_IN_FLIGHT,
        "Most requests waiting for Stripe at once (across the step's threads).",
    )
    pool_limit: int = at_least_one(
        settings.STRIPE_POOL_LIMIT,
        "The limit of the Dagster pool 'stripe_api' (dagster.yaml): how many steps "
        "may call Stripe at once. Each step takes 1/pool_limit of every rate and of "
        "max_in_flight, so together they stay within the account's limits.",
    )
    # How long one request may take, then how often and how patiently it is tried again.
    request_timeout_s: float = timeout_field(settings.STRIPE_REQUEST_TIMEOUT_S, "one HTTP response")
    retry_attempts: int = retry_attempts_field(settings.STRIPE_RETRY_ATTEMPTS, per="call")
    retry_initial_delay_s: float = retry_initial_delay_field(settings.STRIPE_RETRY_INITIAL_DELAY_S)
    retry_multiplier: float = at_least_one(
        settings.STRIPE_RETRY_MULTIPLIER, "Each retry waits this many times longer than the last."
    )
    retry_max_delay_s: float = retry_max_delay_field(
        settings.STRIPE_RETRY_MAX_DELAY_S, between="two attempts"
    )
    allow_live: bool = Field(
        default=False,
        description="Allow writes with a live-mode key (sk_live_/rk_live_). Off: every write "
        "with such a key is refused before anything is sent.",
    )

    _check_key = checked_unless_env_var("secret_key", _checked_secret_key)
    _check_api_base = checked_unless_env_var("api_base", _checked_api_base)

    @field_validator("api_version")
    @classmethod
    def _check_api_version(cls, value: str) -> str:
        if not _API_VERSION_PATTERN.match(value):
            raise ValueError(
                f"api_version must look like '2026-10-28.endive' (date.release), got {value!r}"
            )
        return value

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
            "max_in_flight": max(1, math.floor(self.max_in_flight * share)),
        }

    def _build(self) -> StripeApi:
        install_stripe_log_filter()
        register_secret(self.secret_key)
        mode = key_mode(self.secret_key)
        if mode is None:  # only reachable if validation was bypassed
            raise ValueError("secret_key does not look like a Stripe secret or restricted key")
        rates = self.step_rates
        limiter = RateLimiter(
            global_rate=rates["global"],
            endpoint_rate=rates["endpoint"],
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
            retry_policy=self._retry_policy(multiplier=self.retry_multiplier),
        )

    def get_client(self) -> StripeApi:
        """The resource's :class:`StripeApi` (built on first use, then shared by all threads)."""
        return self._shared_client(self._build)
