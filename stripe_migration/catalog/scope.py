"""What a run works on besides the rows it read: the deleted rows to archive, and its plan
re-checked against the rows' sync state once the run holds the ``stripe_api`` pool."""

from __future__ import annotations

from typing import Any

from stripe_migration.catalog.actions import Deletion, PlannedAction
from stripe_migration.catalog.plan import (
    bookkeeping,
    interrupted,
    needs_stripe_state,
    plan_product,
    with_bookkeeping,
)
from stripe_migration.catalog.stripe_state import (
    fetch_stray_prices,
    fetch_stripe_state,
    find_products_without_rows,
)


def pending_deletions(
    db: Any, buckets: list[int], *, api: Any = None, force: bool = False
) -> list[Deletion]:
    """The deleted CMS rows of these buckets whose Stripe product is still to archive (pending
    tombstones); on a forced resync (``api`` given) also the active Stripe products carrying a
    CMS id that no row has, made before deletions were tracked."""
    tombstones = db.read_table(
        "products_deleted",
        "id,stripe_product_id,row_data",
        filters=[("sync_partition", "in", buckets), ("archived_at", "is", None)],
    )
    deletions = [Deletion.from_tombstone(row) for row in tombstones]
    if force and api is not None:
        known = {d.cms_id for d in deletions}

        def without_rows(cms_ids: list[str]) -> dict[str, int]:
            rows = db.rpc("cms_ids_without_row", {"ids": cms_ids})
            return {str(r["id"]): int(r["sync_partition"]) for r in rows or []}

        deletions += [
            d
            for d in find_products_without_rows(api, without_rows, set(buckets))
            if d.cms_id not in known
        ]
    return deletions


def refresh_plan(
    plan: list[PlannedAction],
    fresh: dict[str, dict[str, Any]],
    *,
    force: bool,
    api: Any,
) -> tuple[list[PlannedAction], int]:
    """The plan with every write re-planned whose row another run synced (or a killed run left
    marked) since the plan was made; writes of rows deleted since are dropped (their tombstone is
    the next run's). Returns the plan and how many writes changed."""
    out: list[PlannedAction] = []
    changed: list[tuple[int, dict[str, Any]]] = []
    for item in plan:
        if item.writes == 0 or item.product is None:
            out.append(item)
            continue
        row = fresh.get(str(item.cms_id))
        if row is None:
            continue
        if bookkeeping(row) == bookkeeping(item.product):
            out.append(item)
            continue
        changed.append((len(out), with_bookkeeping(item.product, row)))
        out.append(item)
    if not changed:
        return out, len(plan) - len(out)
    resync = [product for _, product in changed if force or needs_stripe_state(product)]
    state = fetch_stripe_state(api, resync) if resync else {}
    marked = [str(p["id"]) for p in resync if interrupted(p)]
    if marked:
        state = fetch_stray_prices(api, state, marked)
    for index, product in changed:
        resynced = force or needs_stripe_state(product)
        out[index] = plan_product(product, state.get(str(product["id"])), resync=resynced)
    return out, len(changed) + len(plan) - len(out)
