"""The catalogue's jobs: migrate, plan (the dry run), roll back, and the preflight."""

import dagster as dg
from pydantic import Field

from stripe_migration.catalog.partitions import catalog_partitions
from stripe_migration.catalog.rollback import rollback_run
from stripe_migration.db.migrations import latest_version, version_key
from stripe_migration.resources.stripe_api import StripeResource, key_mode
from stripe_migration.resources.supabase_db import SupabaseResource

migrate_catalog = dg.define_asset_job(
    "migrate_catalog",
    selection=dg.AssetSelection.groups("catalog"),
    partitions_def=catalog_partitions,
    description="Read, back up, validate, plan and apply the catalogue to Stripe, verify, report.",
)

plan_catalog = dg.define_asset_job(
    "plan_catalog",
    selection=dg.AssetSelection.assets("supabase_products", "validated_products", "catalog_plan"),
    partitions_def=catalog_partitions,
    description="The dry run: the plan alone, with no write call to Stripe and none to Supabase.",
)


class RollbackConfig(dg.Config):
    """Which migration to roll back."""

    run_id: str | None = Field(
        default=None,
        description="The migrate_catalog run to roll back (its first run, for a re-executed "
        "one). Empty: every migration, newest first.",
    )


@dg.op(tags={"kind": "stripe"}, pool="stripe_api")
def rollback_migrations(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    stripe: StripeResource,
    supabase: SupabaseResource,
) -> dg.Output:
    """Archive in Stripe the products the migration(s) created and restore the CMS rows from
    their backup."""
    if config.run_id:
        run_ids = [config.run_id]
    else:
        records = context.instance.get_run_records(dg.RunsFilter(job_name="migrate_catalog"))
        run_ids = [r.dagster_run.run_id for r in records if not r.dagster_run.parent_run_id]
    store, api = supabase.get_client(), stripe.get_client()
    restored, archived, errors = 0, 0, []
    for run_id in run_ids:
        result = rollback_run(store, api, run_id)
        context.log.info(
            f"run {run_id}: restored {result.rows_restored} rows, "
            f"archived {len(result.products_archived)} Stripe products"
        )
        restored += result.rows_restored
        archived += len(result.products_archived)
        errors += result.errors
    if errors:
        raise dg.Failure(
            description=f"{len(errors)} products could not be archived; the CMS rows were restored",
            metadata={"errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in errors[:100]))},
        )
    return dg.Output(
        None,
        metadata={"runs": len(run_ids), "rows_restored": restored, "products_archived": archived},
    )


@dg.job(description="Roll back one migration run, or all of them.")
def rollback_catalog():
    """Archive in Stripe what the migration created; restore the Supabase rows from the backup."""
    rollback_migrations()


@dg.op
def check_connections(
    context: dg.OpExecutionContext, stripe: StripeResource, supabase: SupabaseResource
) -> dg.Output:
    """Supabase reachable and at the latest schema; Stripe key valid, with its account and mode."""
    rows = supabase.get_client().read_table("schema_migrations", "version", key="version")
    versions = sorted((r["version"] for r in rows), key=version_key)
    current = versions[-1] if versions else None
    wanted = latest_version()
    if current != wanted:
        raise dg.Failure(
            description=f"Supabase schema is at {current or 'nothing'}, the pipeline needs {wanted}: "
            "run `stripe-migration db upgrade`"
        )
    account = stripe.get_client().retrieve_account()
    mode = key_mode(stripe.secret_key)
    context.log.info(f"Supabase schema {current}; Stripe account {account['id']} ({mode} key)")
    return dg.Output(
        None,
        metadata={
            "schema_version": current,
            "stripe_account": account["id"],
            "stripe_key_mode": str(mode),
            "stripe_livemode": bool(account.get("livemode", False))
            if hasattr(account, "get")
            else False,
        },
    )


@dg.job(description="Check Supabase (reachable, schema) and Stripe (key, account, mode).")
def preflight():
    """The checks to run before a migration."""
    check_connections()
