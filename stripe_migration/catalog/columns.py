"""The columns of the CMS ``products`` table that the catalogue code reads and writes, named once.

The editors own the content columns and ``updated_at``; the migration owns the sync columns, but
for ``stripe_drift``, which the webhook handlers record. Every narrower list of columns is built
from these, so a new sync column is added in one place.
"""

#: The product as the editors write it.
CONTENT_COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "description",
    "price",
    "currency",
    "images",
    "active",
    "metadata",
)

#: What the migration (and, for ``stripe_drift``, the webhook handlers) records about a row's sync
#: with Stripe.
SYNC_COLUMNS: tuple[str, ...] = (
    "stripe_product_id",
    "stripe_price_id",
    "sync_status",
    "sync_error",
    "synced_at",
    "sync_content_hash",
    "synced_unit_amount",
    "synced_currency",
    "synced_version",
    "stripe_drift",
    "sync_run_id",
    "synced_run_id",
    "synced_metadata_keys",
    "price_key_generation",
)

#: The CMS columns a run reads: the product itself, its sync state, and what a backup restores.
PRODUCT_COLUMNS: tuple[str, ...] = (*CONTENT_COLUMNS, "created_at", "updated_at", *SYNC_COLUMNS)

#: Sync-state columns of ``products`` carried through validation unchanged, for the plan.
SYNC_STATE_COLUMNS: tuple[str, ...] = (
    "stripe_product_id",
    "stripe_price_id",
    "sync_status",
    "sync_content_hash",
    "synced_unit_amount",
    "synced_currency",
)

#: CMS columns carried through unchanged for the write-back and the plan: the CMS version the sync
#: reflects (``updated_at`` → ``synced_version``), the drift recorded by the webhook handlers, and
#: the mark of a run killed while applying the row.
PASSTHROUGH_COLUMNS: tuple[str, ...] = (
    "updated_at",
    "synced_version",
    "stripe_drift",
    "sync_run_id",
    "synced_metadata_keys",
    "price_key_generation",
)

#: The ``products`` columns the sync writes (and an interrupted run's mark): what another run may
#: have changed while this one waited for the ``stripe_api`` pool. They are the columns validation
#: carries through but the editors' ``updated_at``.
BOOKKEEPING_COLUMNS: tuple[str, ...] = (
    *SYNC_STATE_COLUMNS,
    *(column for column in PASSTHROUGH_COLUMNS if column != "updated_at"),
)
