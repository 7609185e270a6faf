"""The tunable numbers of stripe_migration, each defined once here, with its unit in its name.

The resources, assets and jobs take their defaults from these constants. The numbers listed in
:data:`STRIPE_ENV` and :data:`EVENTS_ENV` can also be set from the environment (the README's
configuration table): :func:`read_env` parses them, when Definitions are built, for
``resources/environment.py`` and ``events/policy.py``. The others change here (or, where a job
has run config for them, per run in the Launchpad).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# --- the catalogue ------------------------------------------------------------------------------

#: Stable hash buckets of the product id (the ``products.sync_partition`` column, 0-15).
#: Changing it means changing the generated column in sql/ too.
CATALOG_PARTITION_COUNT = 16

#: Products applied to Stripe between two checkpoints (the Supabase write-back).
DEFAULT_APPLY_BATCH_SIZE = 100
#: Worker threads calling Stripe inside one step; the rate limiter, not this, sets the pace.
DEFAULT_APPLY_WORKERS = 16
#: Seconds between two progress lines in the run log.
PROGRESS_LOG_INTERVAL_S = 5.0

#: Price limits in minor units (cents): Stripe's own minimum is 50 cents for most currencies.
MIN_UNIT_AMOUNT_CENTS = 50
#: Stripe's maximum, in any currency: "The amount value supports up to eight digits (e.g., a value
#: of 99999999 for a USD charge of $999,999.99)" (stripe-openapi-spec3.json: ``amount`` of the
#: ``payment_intent`` object and of ``POST /v1/payment_intents``; Stripe's currencies page,
#: https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts). ``POST /v1/prices``
#: gives ``unit_amount`` no maximum, but a price above this could never be charged.
MAX_UNIT_AMOUNT_CENTS = 99_999_999

#: Run tag that turns a run (or a backfill's runs) into a forced resync.
FORCE_RESYNC_TAG = "stripe_migration/force_resync"

#: Run tag: ``full`` makes a migration run verify every row of its partitions (and every Stripe
#: product carrying a CMS id), as forced resyncs and the daily audit do, not only the rows it wrote.
VERIFY_TAG = "stripe_migration/verify"

#: The variable that starts the catalogue sensor (continuous sync) by default: off unless set, as
#: every run it launches writes to the Stripe account the key opens; ``sandbox up`` sets it.
CATALOG_AUTO_SYNC_ENV = "STRIPE_CATALOG_AUTO_SYNC"
#: Seconds between two ticks of the catalogue sensor (one database query each), unless
#: ``STRIPE_CATALOG_SENSOR_INTERVAL_S`` says otherwise.
CATALOG_SENSOR_INTERVAL_S = 30
CATALOG_SENSOR_INTERVAL_ENV = "STRIPE_CATALOG_SENSOR_INTERVAL_S"
#: The same for the events' processing sensor (``STRIPE_EVENTS_SENSOR_INTERVAL_S``).
EVENTS_SENSOR_INTERVAL_S = 30
EVENTS_SENSOR_INTERVAL_ENV = "STRIPE_EVENTS_SENSOR_INTERVAL_S"

# --- Stripe (the StripeResource's defaults) -----------------------------------------------------

#: Stripe's published limits: per account (sandbox 25/s; live 100/s, set it with a live key) and
#: per endpoint. The account default is the sandbox's.
STRIPE_SANDBOX_REQUESTS_PER_SECOND = 25.0
STRIPE_ENDPOINT_REQUESTS_PER_SECOND = 25.0
#: Requests waiting for Stripe at once, across a step's threads.
STRIPE_MAX_IN_FLIGHT = 32
#: The limit of the Dagster pool ``stripe_api`` (``default_limit`` in dagster.yaml).
STRIPE_POOL_LIMIT = 1
#: Seconds to wait for one HTTP response from Stripe.
STRIPE_REQUEST_TIMEOUT_S = 30.0
#: Attempts per Stripe call, the first included; backoff: initial delay, times the multiplier
#: after each attempt, capped.
STRIPE_RETRY_ATTEMPTS = 5
STRIPE_RETRY_INITIAL_DELAY_S = 1.0
STRIPE_RETRY_MULTIPLIER = 2.0
STRIPE_RETRY_MAX_DELAY_S = 30.0
#: Objects per page when listing (Stripe's maximum ``limit``).
STRIPE_LIST_PAGE_SIZE = 100

# --- Supabase (the SupabaseResource's defaults) -------------------------------------------------

#: Rows per page of a read: at most the server's ``db-max-rows`` (1000 on Supabase).
SUPABASE_PAGE_SIZE = 1000
#: Rows per bulk upsert request.
SUPABASE_WRITE_CHUNK_SIZE = 500
#: Seconds to wait for a connection, and for one response.
SUPABASE_CONNECT_TIMEOUT_S = 10.0
SUPABASE_REQUEST_TIMEOUT_S = 30.0
#: Attempts per request, the first included; backoff from the initial delay, capped.
SUPABASE_RETRY_ATTEMPTS = 5
SUPABASE_RETRY_INITIAL_DELAY_S = 0.5
SUPABASE_RETRY_MAX_DELAY_S = 10.0

# --- webhook events (the EventPolicy's and EventsDatabaseResource's defaults) -------------------

#: Processing attempts before an event is dead (kept with its last error, never retried).
EVENTS_MAX_ATTEMPTS = 3
#: Seconds after an attempt started before a failed event may be tried again.
EVENTS_RETRY_DELAY_S = 300
#: Events created longer ago than this are moved to ``stripe_events_archive``.
EVENTS_RETENTION_DAYS = 180
#: Whether the daily schedule archives at all.
EVENTS_ARCHIVE_ENABLED = True
#: Events claimed by one processing run.
EVENTS_BATCH_SIZE = 100
#: Processing runs the sensor keeps queued or running at once; dagster.yaml's run queue holds
#: the same number as the tag limit of ``stripe_migration/events: process``.
EVENTS_MAX_CONCURRENT_BATCHES = 5
#: Events moved by one call of ``archive_old_events`` (one transaction, so locks stay short).
EVENTS_ARCHIVE_BATCH_SIZE = 1000
#: Gap filling lists Stripe's events from the newest stored one minus this many seconds.
EVENTS_GAP_FILL_OVERLAP_S = 3600
#: Seconds to wait for a connection to the events' PostgreSQL.
EVENTS_DB_CONNECT_TIMEOUT_S = 10

# --- what the environment can set ---------------------------------------------------------------


def _env_table(prefix: str, fields: Mapping[str, type]) -> dict[str, tuple[str, type]]:
    """Environment variable → (field, type) for ``fields`` (field name → type): each field's
    variable is ``prefix`` followed by the field's name in capitals."""
    return {prefix + field.upper(): (field, kind) for field, kind in fields.items()}


#: Environment variable → (StripeResource field, type): ``STRIPE_MAX_IN_FLIGHT`` sets
#: ``max_in_flight``, and so on.
STRIPE_ENV = _env_table(
    "STRIPE_",
    {
        "max_requests_per_second": float,
        "max_endpoint_requests_per_second": float,
        "max_in_flight": int,
        "pool_limit": int,
        "request_timeout_s": float,
        "retry_attempts": int,
        "allow_live": bool,
    },
)

#: Environment variable → (EventPolicy field, type): ``STRIPE_EVENTS_BATCH_SIZE`` sets
#: ``batch_size``, and so on.
EVENTS_ENV = _env_table(
    "STRIPE_EVENTS_",
    {
        "max_attempts": int,
        "retry_delay_s": int,
        "retention_days": int,
        "archive_enabled": bool,
        "batch_size": int,
        "max_concurrent_batches": int,
    },
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_KIND_NAMES = {int: "an integer", float: "a number"}


def _parse(name: str, raw: str, kind: type) -> Any:
    text = raw.strip().lower()
    if kind is bool:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{name}={raw!r}: expected true or false")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {_KIND_NAMES[kind]}") from None


def read_env(
    table: Mapping[str, tuple[str, type]], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The variables of ``table`` set (not empty) in ``environ`` (default: ``os.environ``), parsed,
    by field name. A value that does not parse raises ``ValueError`` naming the variable; ranges are
    checked by the resource the values configure."""
    env = os.environ if environ is None else environ
    return {
        field: _parse(name, env[name], kind)
        for name, (field, kind) in table.items()
        if env.get(name, "").strip()
    }


def catalog_auto_sync(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``STRIPE_CATALOG_AUTO_SYNC`` asks for the catalogue sensor to run (default: no)."""
    env = os.environ if environ is None else environ
    raw = env.get(CATALOG_AUTO_SYNC_ENV, "").strip()
    return bool(raw) and _parse(CATALOG_AUTO_SYNC_ENV, raw, bool)


def sensor_interval_s(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """Seconds between a sensor's ticks: the variable ``name`` (a whole number, at least 1), or
    ``default``. Read when the definitions load."""
    env = os.environ if environ is None else environ
    raw = env.get(name, "").strip()
    if not raw:
        return default
    seconds = _parse(name, raw, int)
    if seconds < 1:
        raise ValueError(f"{name}={raw!r}: expected a whole number of seconds, at least 1")
    return seconds
