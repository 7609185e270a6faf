"""The resources as the environment configures them (where Definitions are assembled).

Secrets are passed as ``dg.EnvVar`` and read when a run starts; the optional tuning numbers below
are read here, when the code location loads, with the defaults of the resources themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from stripe_migration.resources.stripe_api import StripeResource, stripe_api_base_from_env
from stripe_migration.resources.supabase_db import SupabaseResource, supabase_url_from_env

#: Environment variable → (StripeResource field, type).
STRIPE_TUNING = {
    "STRIPE_MAX_REQUESTS_PER_SECOND": ("max_requests_per_second", float),
    "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": ("max_endpoint_requests_per_second", float),
    "STRIPE_SEARCH_REQUESTS_PER_SECOND": ("search_requests_per_second", float),
    "STRIPE_MAX_IN_FLIGHT": ("max_in_flight", int),
    "STRIPE_POOL_LIMIT": ("pool_limit", int),
    "STRIPE_REQUEST_TIMEOUT_S": ("request_timeout_s", float),
    "STRIPE_RETRY_ATTEMPTS": ("retry_attempts", int),
    "STRIPE_ALLOW_LIVE": ("allow_live", bool),
}


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}={raw!r}: expected true or false")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a {kind.__name__}") from None


def stripe_resource_from_env(environ: Mapping[str, str] | None = None) -> StripeResource:
    """The StripeResource: key from STRIPE_SECRET_KEY, emulator from STRIPE_API_BASE, tuning
    numbers from the variables in :data:`STRIPE_TUNING` when set."""
    env = os.environ if environ is None else environ
    tuning = {
        field: _parse(name, env[name], kind)
        for name, (field, kind) in STRIPE_TUNING.items()
        if env.get(name, "").strip()
    }
    return StripeResource(
        secret_key=dg.EnvVar("STRIPE_SECRET_KEY"),
        api_base=stripe_api_base_from_env(env),
        **tuning,
    )


def supabase_resource_from_env(environ: Mapping[str, str] | None = None) -> SupabaseResource:
    """The SupabaseResource: SUPABASE_URL (or the seed's VITE_SUPABASE_URL) and
    SUPABASE_SERVICE_ROLE_KEY."""
    return SupabaseResource(
        url=supabase_url_from_env(environ),
        service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY"),
    )
