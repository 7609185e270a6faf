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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from stripe_migration.catalog.actions import Action, StripeProductState
from stripe_migration.catalog.hashing import content_hash
from stripe_migration.catalog.partitions import catalog_partitions, partition_buckets
from stripe_migration.catalog.plan import plan_product
from stripe_migration.catalog.run_tags import asks_full_verification, forces_resync
from stripe_migration.catalog.schema import validate_products
from stripe_migration.catalog.stripe_state import fetch_stripe_state, plain
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration.resources.supabase.resource import SupabaseResource

_ASSET = dg.AssetKey("stripe_products")
#: The job that runs these checks alone, on a schedule (the daily audit).
AUDIT_JOB = "audit_catalog"
#: The "run start" of an audit: any edit is later.
AUDIT_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: CMS ids per ``id=in.(...)`` query (a URL of ~8 KB).
IDS_PER_QUERY = 200
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


@dataclass
class _Findings:
    """What the verification found, row by row, as it reads the pages."""

    rows_checked: int = 0
    compared: int = 0
    missing: list[dict[str, str]] = field(default_factory=list)
    mismatches: list[dict[str, str]] = field(default_factory=list)
    edited: list[dict[str, str]] = field(default_factory=list)

    def find_missing(self, page: list[dict[str, Any]], started_at: datetime | None) -> None:
        """Active rows of ``page`` that did not fail yet lack a Stripe id (rows an editor
        changed during the run aside: they are the next run's work)."""
        self.missing.extend(
            {
                "cms_id": str(r["id"]),
                "problem": "no Stripe product id"
                if not r["stripe_product_id"]
                else "no Stripe price id",
            }
            for r in page
            if not edited_during_run(r, started_at)
            and r["active"]
            and r["sync_status"] != "failed"
            and not (r["stripe_product_id"] and r["stripe_price_id"])
        )

    def compare(self, api: Any, page: list[dict[str, Any]], started_at: datetime | None) -> None:
        """Compare the synced rows of ``page`` with their Stripe products (rows an editor
        changed during the run with what the run recorded sending)."""
        self.rows_checked += len(page)
        later = [r for r in page if edited_during_run(r, started_at)]
        self.edited += [
            {"cms_id": str(r["id"]), "problem": "edited since the version synced, in scope"}
            for r in later
        ]
        recorded = [r for r in later if r["stripe_product_id"] and r["sync_content_hash"]]
        if recorded:
            recorded_state = fetch_stripe_state(api, recorded)
            for r in recorded:
                problem = matches_recorded_sync(r, recorded_state.get(str(r["id"])))
                if problem:
                    self.mismatches.append({"cms_id": str(r["id"]), "problem": problem})
        synced = [
            r
            for r in page
            if not edited_during_run(r, started_at)
            and r["sync_status"] in ("synced", "archived")
            and r["stripe_product_id"]
        ]
        if not synced:
            return
        validated = validate_products(synced).valid.to_dict("records")
        state = fetch_stripe_state(api, validated)
        self.compared += len(validated)
        for product in validated:
            planned = plan_product(product, state.get(str(product["id"])), resync=True)
            if planned.action is not Action.UNCHANGED:
                self.mismatches.append(
                    {"cms_id": str(product["id"]), "problem": "; ".join(planned.reasons)}
                )


def is_audit(run: dg.DagsterRun) -> bool:
    """Whether the run verifies without migrating: the audit job, or the checks executed alone
    from the UI (an empty asset selection means the whole job)."""
    if run.job_name == AUDIT_JOB:
        return True
    if run.asset_selection:
        return _ASSET not in run.asset_selection
    return bool(run.asset_check_selection)


def verifies_whole_catalogue(run: dg.DagsterRun) -> bool:
    """Whether a run's verification reads every row of its partitions and every Stripe product
    carrying a CMS id: a forced resync, a run tagged ``stripe_migration/verify=full``
    (``migrate --verify-all``), or an audit. Any other migration run verifies what it wrote:
    its cost follows the change, not the catalogue."""
    return forces_resync(run.tags) or asks_full_verification(run.tags) or is_audit(run)


def _duplicates_among(owners: Mapping[str, set[str]]) -> list[dict[str, str]]:
    return [
        {"cms_id": cms_id, "problem": f"{len(ids)} Stripe products: {', '.join(sorted(ids))}"}
        for cms_id, ids in sorted(owners.items())
        if len(ids) > 1
    ]


def half_made(product: Mapping[str, Any], cms_id: str) -> dict[str, str] | None:
    """A problem row when ``product`` has no default price: born through its price by a run
    killed before completing it (the next run completes it; one left after a run is a bug)."""
    if product.get("default_price"):
        return None
    return {
        "cms_id": cms_id,
        "problem": f"product {product['id']} is half-made: no default price, description or "
        "images yet (a create through its price interrupted before its completion)",
    }


def duplicated_cms_ids(api: Any, cms_ids: set[str]) -> tuple[int, list[dict[str, str]]]:
    """Every Stripe product (one list call per 100) by the CMS id in its metadata: how many
    carry one of ``cms_ids``, and the ids more than one product carries or whose product is
    half-made."""
    owners: dict[str, set[str]] = {}
    unfinished: list[dict[str, str]] = []
    for product in map(plain, api.list_products(limit=100)):
        cms_id = product["metadata"].get("cms_id")
        if cms_id in cms_ids:
            owners.setdefault(cms_id, set()).add(product["id"])
            if problem := half_made(product, cms_id):
                unfinished.append(problem)
    return sum(map(len, owners.values())), _duplicates_among(owners) + unfinished


def duplicates_created_since(
    api: Any, db: Any, since: datetime | None, buckets: list[int]
) -> tuple[int, list[dict[str, str]]]:
    """The products created since ``since`` (a list filter on ``created``: what a run may have
    created), each with the product its CMS row records: how many carry a CMS id of ``buckets``,
    and the CMS ids that two products carry (a second product made for a row that had one, or
    two made in the run). Products created before were checked by the run that made them and
    are by the daily audit."""
    # No slack for clock skew: every second of it would list the products of the runs before
    # (a whole first migration, minutes later). A product a host clock running ahead would
    # miss is the daily audit's.
    params: dict[str, Any] = {"limit": 100}
    if since is not None:
        params["created"] = {"gte": int(since.timestamp())}
    created: dict[str, set[str]] = {}
    unfinished: dict[str, dict[str, str]] = {}
    for product in map(plain, api.list_products(**params)):
        cms_id = (product.get("metadata") or {}).get("cms_id")
        if cms_id:
            created.setdefault(str(cms_id), set()).add(str(product["id"]))
            if problem := half_made(product, str(cms_id)):
                unfinished[str(cms_id)] = problem
    if not created:
        return 0, []
    ids = sorted(created)
    rows = [
        row
        for start in range(0, len(ids), IDS_PER_QUERY)
        for row in db.read_table(
            "products",
            "id,sync_partition,stripe_product_id",
            filters=[
                ("id", "in", ids[start : start + IDS_PER_QUERY]),
                ("sync_partition", "in", buckets),
            ],
        )
    ]
    owners = {}
    for row in rows:
        cms_id = str(row["id"])
        recorded = {row["stripe_product_id"]} if row["stripe_product_id"] else set()
        owners[cms_id] = created[cms_id] | recorded
    left = [unfinished[cms_id] for cms_id in sorted(owners) if cms_id in unfinished]
    return sum(map(len, (created[i] for i in owners))), _duplicates_among(owners) + left


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
            "No two Stripe products carry the same CMS id, and none is left half-made (created "
            "through its price without its completion).",
        ),
    ],
)
def catalog_verification(
    context: dg.AssetCheckExecutionContext, stripe: StripeResource, supabase: SupabaseResource
):
    """Re-read CMS rows and their Stripe products, and compare them.

    A migration run verifies what it wrote: the rows it synced (``synced_run_id``, read back by
    id, 100 per list call), the rows of its partitions still without a Stripe id (one filtered
    query), and the products created since it started (one list call filtered on ``created``).
    A forced resync, ``migrate --verify-all``, the daily audit (``audit_catalog``) and the checks
    run alone read every row of the partitions and every Stripe product instead, page by page
    (the gateway's 1,000 rows, their products 100 at a time): a catalogue of 100,000 products
    and its Stripe state never sit in memory whole.
    """
    buckets = _run_buckets(context)
    db, api = supabase.get_client(), stripe.get_client()
    # An audit read no CMS version: every row edited since its last sync is pending work (the
    # sensor's or the next run's), compared with what its last sync sent, not a mismatch.
    started_at = AUDIT_EPOCH if is_audit(context.run) else _cms_read_after(context)
    full = verifies_whole_catalogue(context.run)
    in_buckets: list[tuple[str, str, Any]] = [("sync_partition", "in", buckets)]
    found = _Findings()
    if full:
        cms_ids: set[str] = set()
        for page in db.iter_pages("products", "*", filters=in_buckets):
            cms_ids.update(str(r["id"]) for r in page)
            found.compare(api, page, started_at)
            found.find_missing(page, started_at)
        with_cms_ids, duplicates = duplicated_cms_ids(api, cms_ids)
    else:
        migration = context.run.root_run_id or context.run.run_id
        written = [*in_buckets, ("synced_run_id", "eq", migration)]
        for page in db.iter_pages("products", "*", filters=written):
            found.compare(api, page, started_at)
        unfinished = [*in_buckets, ("active", "is", True), ("stripe_price_id", "is", None)]
        for page in db.iter_pages("products", "*", filters=unfinished):
            found.find_missing(page, started_at)
        # A run that wrote no row created no product (each creation is checkpointed with its
        # row before the step succeeds): nothing to list.
        with_cms_ids, duplicates = (
            duplicates_created_since(api, db, started_at, buckets)
            if found.rows_checked
            else (0, [])
        )
    scope = "every row of the partitions" if full else "the rows the run wrote"
    yield _problems_result(
        "every_valid_product_has_stripe_ids",
        found.missing,
        {"rows_missing_ids": len(found.missing)},
    )
    yield _problems_result(
        "stripe_matches_cms",
        found.mismatches,
        {"products_compared": found.compared, "mismatches": len(found.mismatches)},
        rows_checked=found.rows_checked,
        scope=scope,
        edited_during_run=len(found.edited),
        edited_rows=_table(found.edited),
    )
    yield _problems_result(
        "one_stripe_product_per_cms_id",
        duplicates,
        {
            "stripe_products_with_cms_ids": with_cms_ids,
            "duplicated_cms_ids": len(duplicates),
        },
        scope="every Stripe product" if full else "the products created since the run started",
    )
