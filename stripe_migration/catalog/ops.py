"""The catalogue's two plain ops: rolling back migration runs, and checking the connections."""

import dagster as dg
from pydantic import Field

from stripe_migration.catalog.rollback import DEFAULT_WORKERS, rollback_run
from stripe_migration.db.dagster_runs import (
    RunLookupError,
    all_migration_runs,
    migration_runs,
    resolve_migration_run,
)
from stripe_migration.db.migrations import latest_version, version_key
from stripe_migration.resources.stripe.client import key_mode
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration.resources.supabase.resource import SupabaseResource


class RollbackConfig(dg.Config):
    """Which migration runs to roll back."""

    run_id: str | None = Field(
        default=None,
        description="A migration run to roll back: its id, or the first characters of it (the "
        "8 the UI shows); a re-executed run's id names its first run. Empty, with run_ids "
        "empty too: every migration run with a backup, newest first.",
    )
    run_ids: list[str] = Field(
        default_factory=list,
        description="Several migration runs (ids or prefixes), rolled back newest first.",
    )
    workers: int = Field(
        default=DEFAULT_WORKERS,
        ge=1,
        description="Threads calling Stripe (the rate limiter sets the pace).",
    )


def _markdown_list(lines: list[str], limit: int = 200) -> dg.MetadataValue:
    shown = [f"- {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"- ... and {len(lines) - limit} more")
    return dg.MetadataValue.md("\n".join(shown) if shown else "none")


@dg.op(tags={"kind": "stripe"}, pool="stripe_api")
def rollback_migrations(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    stripe: StripeResource,
    supabase: SupabaseResource,
) -> dg.Output:
    """Undo migration runs, newest first: in Stripe what each did (products it created archived,
    prices it put in place switched back, content it sent taken back when known), and on the rows
    it was the last to sync, their sync state from its backup. Editors' columns are never
    written; rows deleted since stay deleted; rows a later run synced are kept and reported."""
    wanted = [*config.run_ids, *([config.run_id] if config.run_id else [])]
    if wanted:
        every = all_migration_runs(context.instance)
        try:
            resolved = {
                m.run_id: m
                for m in (resolve_migration_run(context.instance, w, every) for w in wanted)
            }
        except RunLookupError as exc:
            raise dg.Failure(description=str(exc)) from None
        runs = sorted(resolved.values(), key=lambda m: m.started_at or 0.0, reverse=True)
    else:
        runs = migration_runs(context.instance)
    store, api = supabase.get_client(), stripe.get_client()
    results = []
    for run in runs:
        context.log.info(f"rolling back {run.describe()} (run {run.run_id})")
        result = rollback_run(
            store, api, run.run_id, attempt=context.run_id, workers=config.workers
        )
        results.append(result)
        context.log.info(
            f"run {run.short_id}: {result.rows_restored} rows restored, {result.rows_kept} kept, "
            f"{len(result.products_archived)} Stripe products archived, "
            f"{len(result.prices_restored)} prices and {len(result.contents_restored)} contents "
            f"restored ({result.rows_backed_up} rows backed up)"
        )
        for line in result.kept[:20]:
            context.log.info(f"kept: {line}")
        if len(result.kept) > 20:
            context.log.info(f"kept: ... and {len(result.kept) - 20} more (see the metadata)")
        for line in result.contents_left[:20]:
            context.log.info(f"content left: {line}")
    kept = [line for r in results for line in r.kept]
    left = [line for r in results for line in r.contents_left]
    errors = [e for r in results for e in r.errors]
    metadata = {
        "runs": len(runs),
        "run_ids": dg.MetadataValue.text(",".join(r.run_id for r in runs)),
        "rows_restored": sum(r.rows_restored for r in results),
        "rows_kept": len(kept),
        "products_archived": sum(len(r.products_archived) for r in results),
        "prices_restored": sum(len(r.prices_restored) for r in results),
        "contents_restored": sum(len(r.contents_restored) for r in results),
        "contents_left": len(left),
        "kept": _markdown_list(kept),
        "content_left": _markdown_list(left),
    }
    if errors:
        raise dg.Failure(
            description=f"{len(errors)} row(s) could not be rolled back in Stripe and were left as "
            f"the run left them (roll back again to retry them); the other rows were rolled back. "
            f"First: {errors[0]}",
            metadata={**metadata, "errors": _markdown_list(errors, 100)},
        )
    return dg.Output(None, metadata=metadata)


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
