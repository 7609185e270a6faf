"""The catalogue's jobs: migrate, plan (the dry run), audit, roll back, and the preflight."""

import dagster as dg

from stripe_migration.catalog.checks import AUDIT_JOB, catalog_verification
from stripe_migration.catalog.ops import check_connections, rollback_migrations

migrate_catalog = dg.define_asset_job(
    "migrate_catalog",
    selection=dg.AssetSelection.groups("catalog"),
    description="Read, back up, validate, plan and apply the catalogue to Stripe, verify, report.",
)

plan_catalog = dg.define_asset_job(
    "plan_catalog",
    selection=dg.AssetSelection.assets("supabase_products", "validated_products", "catalog_plan"),
    description="The dry run: the plan alone, with no write call to Stripe and none to Supabase.",
)

audit_catalog = dg.define_asset_job(
    AUDIT_JOB,
    selection=dg.AssetSelection.checks(catalog_verification),
    description="The audit: the catalogue's verification over every row and every Stripe product "
    "(what a migration run verifies only for the rows it wrote); catches dashboard edits the "
    "webhooks did not report. Reads only.",
)


@dg.job(description="Roll back migration runs: one, several, or all of them, newest first.")
def rollback_catalog():
    """Undo what migration runs did in Stripe and to the rows' sync state, from their backups."""
    rollback_migrations()


@dg.job(description="Check Supabase (reachable, schema) and Stripe (key, account, mode).")
def preflight():
    """The checks to run before a migration."""
    check_connections()
