"""Verification of a migration against the CMS and against Stripe, after the fact.

These checks query both systems again rather than trusting what the run reported, so they also
catch drift made outside the migration. They are blocking: a failure means the data is wrong.

A row an editor changed after the run started (its ``updated_at`` is later than the start of
the run, or of the run a re-execution resumes, and differs from the version the run synced) is
not compared with the CMS: the run applied the version it read, and the edit is the next run's
work (the row stays in scope by its ``updated_at``). Stripe is compared with what the run
recorded instead (the content hash and the price it sent), and the row is listed as "edited
during the run".
"""

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from stripe_migration.catalog.actions import Action, StripeProductState
from stripe_migration.catalog.hashing import content_hash
from stripe_migration.catalog.partitions import catalog_partitions, partition_buckets
from stripe_migration.catalog.plan import plan_product
from stripe_migration.catalog.schema import validate_products
from stripe_migration.catalog.stripe_state import fetch_stripe_state, plain
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration.resources.supabase.resource import SupabaseResource

_ASSET = dg.AssetKey("stripe_products")
#: Most offending rows shown in a check's metadata.
MAX_LISTED = 50


def _spec(name: str, description: str) -> dg.AssetCheckSpec:
    # Not partitioned: Dagster records a check over a partition range as one evaluation plus a
    # skipped one per partition, which the UI shows as "0 / 3 passed". The check reads its
    # partitions from the run's tags instead (see _run_buckets).
    return dg.AssetCheckSpec(name, asset=_ASSET, blocking=True, description=description)


def _run_buckets(context: dg.AssetCheckExecutionContext) -> list[int]:
    """The catalogue buckets of the run: its partition, its partition range, or all of them."""
    tags = context.run.tags
    if "dagster/partition" in tags:
        return partition_buckets([tags["dagster/partition"]])
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start and end:
        keys = catalog_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
        return partition_buckets(keys)
    return partition_buckets(catalog_partitions.get_partition_keys())


def _cms_read_after(context: dg.AssetCheckExecutionContext) -> datetime | None:
    """A time before the run's plan read the CMS: the start of its root run. A re-execution
    from failure applies the plan its parent read, so its own start would count an edit made
    between the kill and the re-execution as applied (found by the kill sequence, seed
    560200637). An earlier bound is safe: a row edited after it is compared with what the
    run recorded sending instead."""
    record = context.instance.get_run_record_by_id(context.run.root_run_id or context.run.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else None


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def edited_during_run(row: dict[str, Any], started_at: datetime | None) -> bool:
    """Whether an editor changed ``row`` after the run started, since the version it synced."""
    updated = _timestamp(row.get("updated_at"))
    if started_at is None or updated is None or updated <= started_at:
        return False
    return _timestamp(row.get("synced_version")) != updated


def matches_recorded_sync(row: dict[str, Any], state: StripeProductState | None) -> str | None:
    """Compare Stripe with what the last sync of ``row`` sent (its content hash and price);
    None when they agree, else the difference."""
    if state is None:
        return "no Stripe product"
    sent = {
        "name": state.name,
        "description": state.description,
        "images": list(state.images),
        "metadata": dict(state.metadata),
        "active": state.active,
    }
    if content_hash(sent) != row.get("sync_content_hash"):
        return "Stripe product differs from the version the run synced"
    if row.get("active") and (state.unit_amount, state.currency) != (
        row.get("synced_unit_amount"),
        row.get("synced_currency"),
    ):
        return "Stripe price differs from the price the run synced"
    return None


def _table(rows: list[dict[str, str]]) -> dg.MetadataValue:
    columns = list(rows[0]) if rows else ["cms_id", "problem"]
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in rows[:MAX_LISTED]],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def _problems_result(
    check_name: str,
    problems: list[dict[str, str]],
    counts: dict[str, int],
    **more: Any,
) -> dg.AssetCheckResult:
    """The result of a check that passes when it found no ``problems``: ``counts``, then the
    problems as a table under ``rows``, then ``more`` metadata."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not problems,
        metadata={**counts, "rows": _table(problems), **more},
    )


@dg.multi_asset_check(
    specs=[
        _spec(
            "every_valid_product_has_stripe_ids",
            "Every active CMS row that did not fail has a Stripe product id and price id.",
        ),
        _spec(
            "stripe_matches_cms",
            "Every synced Stripe product has the CMS's name, description, images, active flag and "
            "metadata (with the CMS id), and its default price the CMS amount and currency.",
        ),
        _spec(
            "one_stripe_product_per_cms_id",
            "No two Stripe products carry the same CMS id.",
        ),
    ],
)
def catalog_verification(
    context: dg.AssetCheckExecutionContext, stripe: StripeResource, supabase: SupabaseResource
):
    """Re-read the partitions' CMS rows and their Stripe products, and compare them.

    Page by page (the gateway's 1,000 rows, their Stripe products 100 at a time): a catalogue of
    100,000 products and its Stripe state never sit in memory whole (that took ~450 MiB more).
    """
    buckets = _run_buckets(context)
    db, api = supabase.get_client(), stripe.get_client()
    started_at = _cms_read_after(context)
    rows_checked = compared = 0
    missing: list[dict[str, str]] = []
    mismatches: list[dict[str, str]] = []
    edited: list[dict[str, str]] = []
    cms_ids: set[str] = set()
    for page in db.iter_pages("products", "*", filters=[("sync_partition", "in", buckets)]):
        rows_checked += len(page)
        cms_ids.update(str(r["id"]) for r in page)
        later = [r for r in page if edited_during_run(r, started_at)]
        edited += [
            {"cms_id": str(r["id"]), "problem": "edited during the run, in scope for the next one"}
            for r in later
        ]
        rows = [r for r in page if not edited_during_run(r, started_at)]
        recorded = [r for r in later if r["stripe_product_id"] and r["sync_content_hash"]]
        if recorded:
            recorded_state = fetch_stripe_state(api, recorded)
            for r in recorded:
                problem = matches_recorded_sync(r, recorded_state.get(str(r["id"])))
                if problem:
                    mismatches.append({"cms_id": str(r["id"]), "problem": problem})
        missing.extend(
            {
                "cms_id": str(r["id"]),
                "problem": "no Stripe product id"
                if not r["stripe_product_id"]
                else "no Stripe price id",
            }
            for r in rows
            if r["active"]
            and r["sync_status"] != "failed"
            and not (r["stripe_product_id"] and r["stripe_price_id"])
        )
        synced = [
            r for r in rows if r["sync_status"] in ("synced", "archived") and r["stripe_product_id"]
        ]
        if not synced:
            continue
        validated = validate_products(synced).valid.to_dict("records")
        state = fetch_stripe_state(api, validated)
        compared += len(validated)
        for product in validated:
            planned = plan_product(product, state.get(str(product["id"])), resync=True)
            if planned.action is not Action.UNCHANGED:
                mismatches.append(
                    {"cms_id": str(product["id"]), "problem": "; ".join(planned.reasons)}
                )
    yield _problems_result(
        "every_valid_product_has_stripe_ids",
        missing,
        {"rows_checked": rows_checked, "rows_missing_ids": len(missing)},
    )
    yield _problems_result(
        "stripe_matches_cms",
        mismatches,
        {"products_compared": compared, "mismatches": len(mismatches)},
        edited_during_run=len(edited),
        edited_rows=_table(edited),
    )

    listed = (plain(product) for product in api.list_products(limit=100))
    owners = Counter(
        product["metadata"].get("cms_id")
        for product in listed
        if product["metadata"].get("cms_id") in cms_ids
    )
    duplicates = [
        {"cms_id": cms_id, "problem": f"{n} Stripe products"}
        for cms_id, n in owners.items()
        if n > 1
    ]
    yield _problems_result(
        "one_stripe_product_per_cms_id",
        duplicates,
        {
            "stripe_products_with_cms_ids": sum(owners.values()),
            "duplicated_cms_ids": len(duplicates),
        },
    )
