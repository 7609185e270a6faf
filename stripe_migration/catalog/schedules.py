"""The catalogue's schedule: the audit, once a day (UTC)."""

import dagster as dg

from stripe_migration.catalog.jobs import audit_catalog

#: 04:45 UTC: after the events' archival (03:30), away from the hour when other jobs start.
AUDIT_CRON = "45 4 * * *"

catalog_audit_daily = dg.ScheduleDefinition(
    name="catalog_audit_daily",
    job=audit_catalog,
    cron_schedule=AUDIT_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Verify the whole catalogue against Stripe once a day (reads only: one list call "
    "per 100 products, twice). Its checks' results are on stripe_products' Checks tab.",
)
