"""The catalogue migration as software-defined assets: read, back up, validate, plan, apply, report.

Every asset but the report is partitioned by stable hash buckets of the product id (see
``partitions.py``); a run over several buckets is one run, and its report is one materialization. The Supabase write-back after every batch of Stripe calls is the
durable checkpoint, so any run can be killed and the next one resumes from it.
"""

import json
import time
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from stripe_migration.catalog import apply as applying
from stripe_migration.catalog.actions import Action, PlannedAction
from stripe_migration.catalog.columns import BOOKKEEPING_COLUMNS, PRODUCT_COLUMNS
from stripe_migration.catalog.create_paths import CreatePaths, limiter_rates, other_calls
from stripe_migration.catalog.partitions import (
    RANGE_END,
    RANGE_START,
    catalog_backfill_policy,
    catalog_partitions,
    partition_buckets,
)
from stripe_migration.catalog.plan import (
    build_plan,
    interrupted,
    needs_stripe_state,
    plan_table,
    summarize,
)
from stripe_migration.catalog.report import progress_line, render_report, report_metadata
from stripe_migration.catalog.run_tags import forces_resync
from stripe_migration.catalog.schema import (
    ValidationResult,
    pandera_failure_cases,
    validate_products,
)
from stripe_migration.catalog.scope import pending_deletions, refresh_plan
from stripe_migration.catalog.stripe_state import (
    fetch_stray_prices,
    fetch_stripe_state,
)
from stripe_migration.catalog.sync_results import FatalApplyError, SyncResult
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration.resources.supabase.resource import SupabaseResource
from stripe_migration.settings import (
    DEFAULT_APPLY_BATCH_SIZE,
    DEFAULT_APPLY_WORKERS,
    MAX_UNIT_AMOUNT_CENTS,
    MIN_UNIT_AMOUNT_CENTS,
    PROGRESS_LOG_INTERVAL_S,
)

GROUP = "catalog"
IO_MANAGER_KEY = "catalog_io_manager"

_partitioned = {
    "partitions_def": catalog_partitions,
    "backfill_policy": catalog_backfill_policy,
    "group_name": GROUP,
}


def is_force_resync(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> bool:
    """Whether this run is a forced resync (the run tag, set by the CLI or a backfill's tags)."""
    return forces_resync(context.run.tags)


def migration_run_id(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    """The id of the migration a run belongs to: its root run, so a re-execution from failure
    shares the backup and the rollback of the run it resumes."""
    return context.run.root_run_id or context.run_id


class ValidationConfig(dg.Config):
    """Tunable validation limits."""

    min_unit_amount_cents: int = Field(
        default=MIN_UNIT_AMOUNT_CENTS, description="Lowest price accepted, in minor units."
    )
    max_unit_amount_cents: int = Field(
        default=MAX_UNIT_AMOUNT_CENTS, description="Highest price accepted, in minor units."
    )


class ApplyConfig(dg.Config):
    """How the plan is applied to Stripe."""

    batch_size: int = Field(
        default=DEFAULT_APPLY_BATCH_SIZE,
        ge=1,
        description="Products between two checkpoints (the Supabase write-back).",
    )
    workers: int = Field(
        default=DEFAULT_APPLY_WORKERS,
        ge=1,
        description="Threads calling Stripe; the rate limiter sets the pace.",
    )
    share_by_price: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of new products created through POST /v1/prices (+ completion) "
        "rather than POST /v1/products; empty (the default): chosen from the rate limits, so "
        "that the plan finishes soonest.",
    )


@dg.asset(kinds={"supabase", "pandas"}, io_manager_key=IO_MANAGER_KEY, **_partitioned)
def supabase_products(context: dg.AssetExecutionContext, supabase: SupabaseResource) -> dg.Output:
    """The CMS product rows this run looks at: new, edited since their last sync, failed, or
    drifted in Stripe; on a forced resync, every row of the partitions."""
    force = is_force_resync(context)
    buckets = partition_buckets(context.partition_keys)
    filters: list[tuple[str, str, Any]] = [("sync_partition", "in", buckets)]
    if not force:
        filters.append(("needs_sync", "is", True))
    db = supabase.get_client()
    started = time.monotonic()
    rows = db.read_table("products", PRODUCT_COLUMNS, filters=filters)
    # dtype=object keeps each value as the JSON gave it: a nullable integer column stays ints and
    # None instead of floats and NaN, so the backup restores exactly what was read.
    frame = pd.DataFrame(rows, columns=list(PRODUCT_COLUMNS), dtype=object)
    return dg.Output(
        frame,
        metadata={
            "rows_in_scope": len(frame),
            "never_synced": int(frame["stripe_product_id"].isna().sum()),
            "previously_failed": int((frame["sync_status"] == "failed").sum()),
            "force_resync": force,
            "partitions": ",".join(context.partition_keys),
            "read_seconds": round(time.monotonic() - started, 3),
            **db.stats_metadata(),
        },
    )


@dg.asset(kinds={"supabase"}, **_partitioned)
def products_backup(
    context: dg.AssetExecutionContext, supabase: SupabaseResource, supabase_products: pd.DataFrame
) -> dg.MaterializeResult:
    """Snapshots of the rows in scope, taken before anything is written, in the
    ``products_backup`` table under the migration's run id; ``rollback_catalog`` restores them."""
    run_id = migration_run_id(context)
    records = json.loads(supabase_products.to_json(orient="records", date_format="iso"))
    rows = [{"run_id": run_id, "product_id": r["id"], "row_data": r} for r in records]
    # ignore_duplicates: a re-execution must not overwrite the snapshot taken before the first
    # write with rows the first attempt already changed.
    written = supabase.get_client().upsert(
        "products_backup", rows, on_conflict="run_id,product_id", ignore_duplicates=True
    )
    return dg.MaterializeResult(
        metadata={"rows_backed_up": written, "backup_run_id": dg.MetadataValue.text(run_id)}
    )


@dg.asset(
    kinds={"pandera", "pandas"},
    io_manager_key=IO_MANAGER_KEY,
    check_specs=[
        dg.AssetCheckSpec(
            "valid_rows_match_schema",
            asset="validated_products",
            blocking=True,
            description="The transformed rows satisfy the pandera model (types, ranges, lengths).",
        ),
        dg.AssetCheckSpec(
            "every_invalid_row_has_a_reason",
            asset="validated_products",
            description="Each refused row names the field and the value's problem.",
        ),
    ],
    **_partitioned,
)
def validated_products(
    context: dg.AssetExecutionContext, config: ValidationConfig, supabase_products: pd.DataFrame
):
    """The rows in scope, checked and transformed into what Stripe accepts (prices in integer
    minor units, lower-case currencies, string metadata with the CMS id), plus the refused rows
    with the reason for each."""
    result = validate_products(supabase_products, config)
    versions = dict(
        zip(supabase_products["id"].astype(str), supabase_products["updated_at"], strict=True)
    )
    valid = result.valid.copy()
    valid["updated_at"] = valid["id"].astype(str).map(versions)
    result = ValidationResult(valid=valid, invalid=result.invalid, rules=result.rules)

    reasons = result.invalid.head(200).rename(columns={"id": "cms_id"})
    yield dg.Output(
        result,
        metadata={
            "valid": len(result.valid),
            "invalid": len(result.invalid),
            "invalid_rows": dg.MetadataValue.md(
                reasons.to_markdown(index=False) if len(reasons) else "none"
            ),
        },
    )
    failures = pandera_failure_cases(result.valid, result.rules)
    yield dg.AssetCheckResult(
        check_name="valid_rows_match_schema",
        passed=failures.empty,
        metadata={
            "failure_cases": len(failures),
            "cases": dg.MetadataValue.table(
                records=[
                    dg.TableRecord({k: str(v) for k, v in row.items()})
                    for row in failures.head(100).to_dict("records")
                ],
                schema=dg.TableSchema(
                    columns=[dg.TableColumn(str(c), "string") for c in failures.columns]
                ),
            ),
        },
    )
    missing = (
        result.invalid["reason"].fillna("").str.strip().eq("").sum() if len(result.invalid) else 0
    )
    yield dg.AssetCheckResult(
        check_name="every_invalid_row_has_a_reason",
        passed=bool(missing == 0),
        metadata={"rows_without_reason": int(missing)},
    )


@dg.asset(kinds={"stripe"}, io_manager_key=IO_MANAGER_KEY, **_partitioned)
def catalog_plan(
    context: dg.AssetExecutionContext,
    stripe: StripeResource,
    supabase: SupabaseResource,
    validated_products: ValidationResult,
) -> dg.Output:
    """One action per product (create, update, reprice, archive, retire stray prices, unchanged
    or invalid), from the CMS sync state, or from Stripe's actual state on a forced resync, for
    rows a killed run left mid-apply and for inactive rows without a recorded product; plus the archive of every deleted row's Stripe product.
    Alone, this is the dry run: it makes no write call to Stripe or Supabase."""
    force = is_force_resync(context)
    rows = validated_products.valid.to_dict("records")
    marked = [row for row in rows if interrupted(row)]
    asked = [row for row in rows if needs_stripe_state(row)]
    stripe_state = None
    api = stripe.get_client() if force or asked else None
    if api is not None:
        stripe_state = fetch_stripe_state(api, rows if force else asked)
        stripe_state = fetch_stray_prices(api, stripe_state, [str(row["id"]) for row in marked])
    deletions = pending_deletions(
        supabase.get_client(),
        partition_buckets(context.partition_keys),
        api=api,
        force=force,
    )
    plan = build_plan(
        validated_products.valid,
        validated_products.invalid,
        stripe_state,
        force_resync=force,
        deleted=deletions,
    )
    counts = summarize(plan)
    changes = plan_table(plan, limit=200)
    return dg.Output(
        plan,
        metadata={
            **{f"plan_{action}": n for action, n in counts.items()},
            "planned_writes": sum(item.writes for item in plan),
            "force_resync": force,
            "left_by_interrupted_runs": len(marked),
            "changes": dg.MetadataValue.md(
                pd.DataFrame(changes).to_markdown(index=False) if changes else "nothing to change"
            ),
        },
    )


@dg.multi_asset(
    outs={
        "stripe_products": dg.AssetOut(
            kinds={"stripe"},
            io_manager_key=IO_MANAGER_KEY,
            description="The Stripe Products of the catalogue, one per valid CMS row, with the "
            "Stripe ids and sync state written back to Supabase.",
        ),
        "stripe_prices": dg.AssetOut(
            kinds={"stripe"},
            io_manager_key=IO_MANAGER_KEY,
            description="The Stripe Prices: each product's default price matches the CMS price; "
            "replaced prices are deactivated, never deleted.",
        ),
    },
    deps=["products_backup"],
    pool="stripe_api",
    can_subset=False,
    **_partitioned,
)
def stripe_catalog(
    context: dg.AssetExecutionContext,
    config: ApplyConfig,
    stripe: StripeResource,
    supabase: SupabaseResource,
    catalog_plan: list[PlannedAction],
):
    """Apply the plan to Stripe with a pool of worker threads, writing the sync state back to
    Supabase after every batch (the checkpoint a killed run resumes from).

    The plan was made before this step got its ``stripe_api`` pool slot: another run may have
    synced some rows while this one waited, so the rows are read again first and those whose sync
    state moved are re-planned (a stale plan would repeat that run's writes)."""
    api = stripe.get_client()
    api.reset_stats()
    db = supabase.get_client()
    owner = migration_run_id(context)
    force = is_force_resync(context)

    scope: list[tuple[str, str, Any]] = [
        ("sync_partition", "in", partition_buckets(context.partition_keys))
    ]
    if not force:
        scope.append(("needs_sync", "is", True))
    fresh = {
        str(row["id"]): row
        for page in db.iter_pages("products", ("id", *BOOKKEEPING_COLUMNS), filters=scope)
        for row in page
    }
    plan, replanned = refresh_plan(catalog_plan, fresh, force=force, api=api)
    if replanned:
        context.log.info(
            f"{replanned} planned writes changed while this run waited for the stripe_api pool "
            "(another run synced, or the rows were deleted): re-planned from their current state"
        )

    def checkpoint(results: list[SyncResult]) -> None:
        rows = [{**r.checkpoint_row(), "run_id": owner} for r in results if not r.deleted]
        if rows:
            db.rpc("apply_sync_results", {"results": rows})
        archived = [
            {"id": r.id, "stripe_product_id": r.stripe_product_id, "run_id": owner}
            for r in results
            if r.deleted and r.sync_status != "failed"
        ]
        if archived:
            db.rpc("record_deletions_archived", {"results": archived})

    def mark(cms_ids: list[str]) -> None:
        db.update(
            "products", {"sync_run_id": context.run_id}, [("id", "in", cms_ids)], return_rows=False
        )

    def record_generation(cms_id: str, generation: int) -> None:
        db.update(
            "products",
            {"price_key_generation": generation},
            [("id", "eq", cms_id)],
            return_rows=False,
        )

    def progress(stats: applying.ApplyStats) -> None:
        # The figures as structured data, for the command line's progress (bar or plain lines:
        # it reads this metadata, never the log line) and the run's event log. One observation
        # covers the run's whole partition range, so it names no partition.
        figures = {
            "done": stats.done,
            "total": stats.total,
            "failed": stats.failed,
            "invalid": stats.invalid,
            "products_per_second": round(stats.products_per_second, 2),
        }
        context.log_event(dg.AssetObservation(asset_key="stripe_products", metadata=figures))
        context.log.debug(progress_line(figures))

    paths = CreatePaths(
        sum(1 for item in plan if item.action is Action.CREATE),
        other_calls(item.action for item in plan if item.writes > 0),
        limiter_rates(api.limiter),
        fixed_share=config.share_by_price,
    )
    try:
        stats = applying.apply_plan(
            api,
            plan,
            checkpoint,
            run_id=context.run_id,
            batch_size=config.batch_size,
            workers=config.workers,
            progress=progress,
            progress_interval_s=PROGRESS_LOG_INTERVAL_S,
            mark=mark,
            record_generation=record_generation,
            paths=paths,
        )
    except FatalApplyError as exc:
        raise dg.Failure(description=str(exc), metadata=api.stats_metadata()) from None
    api_stats = api.stats_metadata()
    stats.api = dict(api_stats)
    if stats.created_by_product or stats.created_by_price:
        context.log.info(stats.create_paths)
    by_action = {
        f"applied_{a}": stats.by_action.get(a.value, 0)
        for a in Action
        if a.value not in ("unchanged", "invalid")
    }
    yield dg.Output(
        stats,
        output_name="stripe_products",
        metadata={
            "products_applied": stats.done,
            "products_failed": stats.failed,
            "products_per_second": round(stats.products_per_second, 2),
            "apply_seconds": round(stats.seconds, 3),
            **by_action,
            **{k: getattr(stats, k) for k in ("created_by_product", "created_by_price")},
            "create_paths": stats.create_paths,
            **api_stats,
        },
    )
    repriced = stats.by_action.get("reprice", 0) + stats.by_action.get("update_and_reprice", 0)
    yield dg.Output(
        {"new_prices": stats.by_action.get("create", 0) + repriced, "repriced": repriced},
        output_name="stripe_prices",
        metadata={
            "prices_created_with_products": stats.by_action.get("create", 0),
            "prices_replaced": repriced,
        },
    )


def _reported_run(context: dg.AssetExecutionContext) -> tuple[str, str, str]:
    """(run id, first, last partition) of the migration run the report is about: this run, or
    when the report runs alone (a backfill's second run), the newest to materialize products."""
    run = context.run
    if RANGE_START not in run.tags and "dagster/partition" not in run.tags:
        latest = context.instance.get_latest_materialization_event(dg.AssetKey("stripe_products"))
        if latest is None:
            raise dg.Failure(description="no migration run to report: materialize the catalogue")
        run = context.instance.get_run_by_id(latest.run_id)
    one = run.tags.get("dagster/partition")
    return run.run_id, run.tags.get(RANGE_START, one), run.tags.get(RANGE_END, one)


@dg.asset(
    kinds={"markdown"},
    check_specs=[
        dg.AssetCheckSpec(
            "stripe_accepted_every_valid_row",
            asset="migration_report",
            blocking=True,
            description="Stripe refused none of the rows that passed validation (a refused row "
            "is failed with Stripe's message in products.sync_error).",
        )
    ],
    deps=["catalog_plan", "stripe_products"],
    required_resource_keys={IO_MANAGER_KEY},
    group_name=GROUP,
)
def migration_report(context: dg.AssetExecutionContext):
    """What a migration run did, once per run (its figures plotted run over run): a Markdown
    report, and created, updated, repriced, archived, deleted rows' products archived, unchanged,
    invalid, refused by Stripe, failed with reasons, API calls, retries, 429s, duration and
    products per second, for the run's partitions together. Read from what the run stored. The run
    fails (after the report) when Stripe refused valid rows."""
    run_id, start, end = _reported_run(context)
    stored = getattr(context.resources, IO_MANAGER_KEY)
    catalog_plan = stored.load_stored(context.instance, dg.AssetKey("catalog_plan"), start, end)
    stripe_products = stored.load_stored(
        context.instance, dg.AssetKey("stripe_products"), start, end
    )
    yield dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(render_report(catalog_plan, stripe_products)),
            **report_metadata(catalog_plan, stripe_products),
            "migration_run": run_id,
            "partitions": start if start == end else f"{start}..{end}",
        }
    )
    refusals = stripe_products.refusals
    yield dg.AssetCheckResult(
        check_name="stripe_accepted_every_valid_row",
        passed=not refusals,
        metadata={
            "refused_by_stripe": len(refusals),
            "rows": dg.MetadataValue.table(
                records=[
                    dg.TableRecord({"cms_id": cms_id, "problem": reason})
                    for cms_id, reason in refusals[:50]
                ],
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn("cms_id", "string"),
                        dg.TableColumn("problem", "string"),
                    ]
                ),
            ),
        },
        description=(
            f"{len(refusals)} valid rows refused by Stripe" if refusals else "Stripe refused no row"
        ),
    )
