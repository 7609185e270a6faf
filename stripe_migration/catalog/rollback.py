"""Rolling a migration run back: archive in Stripe what it created, restore the CMS rows.

The backup of a run holds its rows as they were before it wrote anything (editors' edits
included), so restoring it only undoes the run's sync bookkeeping; the rows it synced are in scope
again. Products the run created are archived (``active=false``), never deleted. Updates and new
prices the run made to products that already existed stay in Stripe: a forced resync after the
rollback realigns them with the CMS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stripe_migration.catalog.stripe_payloads import idempotency_key

#: Columns PostgreSQL computes; a restore must not send them.
GENERATED_COLUMNS = frozenset({"needs_sync", "sync_partition"})


class RollbackStore(Protocol):
    """The Supabase calls a rollback needs (implemented by SupabaseResource's client)."""

    def read_table(
        self, table: str, columns: Any = "*", *, filters: Any = None, key: str = "id"
    ) -> list[dict]: ...
    def upsert(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, on_conflict: str = "id"
    ) -> int: ...


class RollbackStripe(Protocol):
    """The Stripe call a rollback needs."""

    def update_product(
        self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> Any: ...


@dataclass
class RollbackResult:
    """What a rollback did."""

    run_id: str
    rows_restored: int = 0
    products_archived: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def created_by_run(
    backups: Sequence[Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """CMS id → Stripe product id of the products a run created: the backup had no Stripe product,
    the row has one now."""
    created = {}
    for backup in backups:
        before = backup["row_data"]
        now = current.get(str(backup["product_id"]))
        if now and not before.get("stripe_product_id") and now.get("stripe_product_id"):
            created[str(backup["product_id"])] = str(now["stripe_product_id"])
    return created


def restorable_row(row_data: Mapping[str, Any]) -> dict[str, Any]:
    """A backed-up row as an upsert of the ``products`` table (without generated columns)."""
    return {k: v for k, v in row_data.items() if k not in GENERATED_COLUMNS}


def rollback_run(store: RollbackStore, api: RollbackStripe, run_id: str) -> RollbackResult:
    """Roll back the migration run ``run_id``; safe to run twice."""
    result = RollbackResult(run_id=run_id)
    backups = store.read_table(
        "products_backup", "*", filters=[("run_id", "eq", run_id)], key="product_id"
    )
    if not backups:
        return result
    ids = [str(b["product_id"]) for b in backups]
    current: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        for row in store.read_table(
            "products", "id,stripe_product_id", filters=[("id", "in", chunk)]
        ):
            current[str(row["id"])] = row

    for cms_id, product_id in created_by_run(backups, current).items():
        try:
            api.update_product(
                product_id,
                {"active": False},
                idempotency_key=idempotency_key("rollback.archive", cms_id, run_id, product_id),
            )
            result.products_archived.append(product_id)
        except Exception as exc:  # one refusal must not leave the CMS half restored
            result.errors.append(f"{cms_id}: archiving {product_id} failed: {exc}")

    rows = [restorable_row(b["row_data"]) for b in backups]
    # Rows have the same columns (one backup), as one upsert per chunk requires.
    result.rows_restored = store.upsert("products", json.loads(json.dumps(rows)), on_conflict="id")
    return result
