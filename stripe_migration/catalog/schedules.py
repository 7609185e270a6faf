"""The catalogue's schedule: the audit, once a day (UTC)."""

from stripe_migration.catalog.jobs import audit_catalog
from stripe_migration.scheduling import running_schedule

#: 04:45 UTC: after the events' archival (03:30), away from the hour when other jobs start.
AUDIT_CRON = "45 4 * * *"

catalog_audit_daily = running_schedule(
    "catalog_audit_daily",
    audit_catalog,
    AUDIT_CRON,
    "Verify the whole catalogue against Stripe once a day (reads only: one list call "
    "per 100 products, twice). Its checks' results are on stripe_products' Checks tab.",
)
