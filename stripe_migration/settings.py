"""The tunable numbers of stripe_migration in one place, with their units in their names.

Each can be overridden from the environment (the README's configuration table lists them); the
Dagster run config of a job overrides them for that run.
"""

from __future__ import annotations

#: Stable hash buckets of the product id (the ``products.sync_partition`` column, 0-15).
#: Changing it means changing the generated column in sql/ too.
CATALOG_PARTITION_COUNT = 16

#: Products applied to Stripe between two checkpoints (the Supabase write-back).
DEFAULT_APPLY_BATCH_SIZE = 100
#: Worker threads calling Stripe inside one step; the rate limiter, not this, sets the pace.
DEFAULT_APPLY_WORKERS = 16
#: Seconds between two progress lines in the run log.
PROGRESS_LOG_INTERVAL_S = 5.0
#: Rows per Supabase page (at most the gateway's max rows) and per bulk write.
SUPABASE_PAGE_SIZE = 1000
SUPABASE_WRITE_CHUNK_SIZE = 500

#: Price limits in minor units (cents): Stripe's own minimum is 50 cents for most currencies.
MIN_UNIT_AMOUNT_CENTS = 50
#: Stripe's maximum, in any currency: "The amount value supports up to eight digits (e.g., a value
#: of 99999999 for a USD charge of $999,999.99)" (stripe-openapi-spec3.json: ``amount`` of the
#: ``payment_intent`` object and of ``POST /v1/payment_intents``; Stripe's currencies page,
#: https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts). ``POST /v1/prices``
#: gives ``unit_amount`` no maximum, but a price above this could never be charged.
MAX_UNIT_AMOUNT_CENTS = 99_999_999

#: Stripe's published limits: per account (live 100/s, sandbox 25/s) and per endpoint.
STRIPE_SANDBOX_REQUESTS_PER_SECOND = 25.0
STRIPE_LIVE_REQUESTS_PER_SECOND = 100.0
STRIPE_ENDPOINT_REQUESTS_PER_SECOND = 25.0
STRIPE_SEARCH_REQUESTS_PER_SECOND = 20.0

#: Run tag that turns a run (or a backfill's runs) into a forced resync.
FORCE_RESYNC_TAG = "stripe_migration/force_resync"
