"""The Stripe and Supabase resources as the environment configures them (where Definitions are built).

Secrets and URLs are passed as ``dg.EnvVar`` and read when a run starts; the tuning numbers of
:data:`~stripe_migration.settings.STRIPE_ENV` are read here, when the code location loads, by
:func:`~stripe_migration.settings.read_env`; unset ones keep the resources' defaults (settings.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from stripe_migration.resources.stripe.resource import StripeResource, stripe_api_base_from_env
from stripe_migration.resources.supabase.resource import SupabaseResource, supabase_url_from_env
from stripe_migration.settings import STRIPE_ENV, read_env


def stripe_resource_from_env(environ: Mapping[str, str] | None = None) -> StripeResource:
    """The StripeResource: key from STRIPE_SECRET_KEY, emulator from STRIPE_API_BASE, tuning
    numbers from the variables in :data:`~stripe_migration.settings.STRIPE_ENV` when set."""
    return StripeResource(
        secret_key=dg.EnvVar("STRIPE_SECRET_KEY"),
        api_base=stripe_api_base_from_env(environ),
        **read_env(STRIPE_ENV, environ),
    )


def supabase_resource_from_env(environ: Mapping[str, str] | None = None) -> SupabaseResource:
    """The SupabaseResource: SUPABASE_URL (or the seed's VITE_SUPABASE_URL) and
    SUPABASE_SERVICE_ROLE_KEY."""
    return SupabaseResource(
        url=supabase_url_from_env(environ),
        service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY"),
    )
