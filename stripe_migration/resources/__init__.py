"""The resources every asset uses: Stripe (rate-limited, retried, idempotent) and Supabase."""

from stripe_migration.resources.rate_limit import LimitScope, RateLimiter
from stripe_migration.resources.stripe_api import (
    STRIPE_API_VERSION,
    LiveModeRefused,
    StripeApi,
    StripeApiError,
    StripeAuthError,
    StripeResource,
    stripe_api_base_from_env,
)
from stripe_migration.resources.supabase_db import (
    SupabaseDb,
    SupabaseError,
    SupabaseResource,
    supabase_url_from_env,
)

__all__ = [
    "STRIPE_API_VERSION",
    "LimitScope",
    "LiveModeRefused",
    "RateLimiter",
    "StripeApi",
    "StripeApiError",
    "StripeAuthError",
    "StripeResource",
    "SupabaseDb",
    "SupabaseError",
    "SupabaseResource",
    "stripe_api_base_from_env",
    "supabase_url_from_env",
]
