"""Rolling a migration run back: undo what the run did, in Stripe and to the rows' sync state, and
nothing else.

No Dagster here. A run's backup (``products_backup``) holds each row it read as it was before it
wrote anything. For each backed-up row:

- **Deleted since**: never re-inserted (its tombstone in ``products_deleted`` is the next
  migration's). A Stripe product the run created for it (the backup had none; the tombstone
  records one, and the run as the last to sync the row) is archived.
- **Last synced by this run** (``products.synced_run_id``): its sync columns come back from the
  backup through the SQL function ``restore_sync_state``, which writes nothing else and only rows
  the run is still the last to have written. In Stripe:

  - a product the run created (the backup had no Stripe product, the row has one) is archived
    (``active=false``), never deleted; one born through its price (Stripe's own id) leaves the
    row marked, so the next run finds it by its lookup key and adopts it;
  - a price the run put in place on an existing product: the backup's price is reactivated, made
    the default again, given the lookup key ``cms_<cms id>`` back, and the run's price is
    deactivated; the row's price key generation moves on, so the next new price of the row is
    not a 24-hour replay of the run's (now inactive) one;
  - content the run sent to an existing product: the backup's content is sent back only when the
    backup row was in sync with Stripe (its recorded content hash is the hash of its content);
    otherwise what Stripe had before is unknown, and the content is left and reported.

- **Synced again by a later run, or last synced before schema 1.4.0** (``synced_run_id`` NULL):
  left as it is and counted as kept, with the reason. A product the run created that a later run
  adopted or updated is not archived: it is reported (``<cms id>: product <id> was synced again by
  run <X>``).

Editor-owned columns (name, description, price, currency, images, active, metadata) are never
written. The restored rows are in scope for the next migration (their recorded version and hashes
predate the editors' edits), which then sends the CMS's *current* content: a rollback undoes a
run, it does not take the catalogue back to how it was. A Stripe refusal for one row leaves that
row as the run left it (its sync state still describes Stripe), the others are rolled back, and
the errors are returned; rolling back again retries them (every write has an idempotency key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from stripe_migration.catalog.columns import SYNC_COLUMNS
from stripe_migration.catalog.hashing import content_hash, product_content
from stripe_migration.catalog.schema import validate_products
from stripe_migration.catalog.stripe_payloads import (
    custom_product_id,
    idempotency_key,
    lookup_key_params,
    product_update_params,
)

#: The sync columns ``restore_sync_state`` takes back from a backup (besides ``id``): all but the
#: webhooks' ``stripe_drift``, an interrupted run's mark ``sync_run_id`` (which it clears) and
#: ``price_key_generation`` (which only moves on).
RESTORED_COLUMNS: tuple[str, ...] = tuple(
    column
    for column in SYNC_COLUMNS
    if column not in ("stripe_drift", "sync_run_id", "price_key_generation")
)
#: What a rollback reads of a row now.
CURRENT_COLUMNS = (
    "id",
    "stripe_product_id",
    "stripe_price_id",
    "sync_content_hash",
    "synced_run_id",
    "synced_metadata_keys",
    "price_key_generation",
)
#: Backed-up rows handled together: one read of their rows, one restore.
CHUNK_ROWS = 200
#: Threads calling Stripe (the client's rate limiter sets the pace).
DEFAULT_WORKERS = 8


class RollbackStore(Protocol):
    """The Supabase calls a rollback needs (implemented by SupabaseResource's client)."""

    def iter_pages(
        self,
        table: str,
        columns: Any = "*",
        *,
        filters: Any = None,
        key: str = "id",
        page_size: int | None = None,
    ) -> Iterator[list[dict]]: ...
    def read_table(
        self, table: str, columns: Any = "*", *, filters: Any = None, key: str = "id"
    ) -> list[dict]: ...
    def update(
        self, table: str, values: Mapping[str, Any], filters: Any, *, return_rows: bool = True
    ) -> list[dict]: ...
    def rpc(self, function: str, params: Mapping[str, Any] | None = None) -> Any: ...


class RollbackStripe(Protocol):
    """The Stripe calls a rollback needs."""

    def update_product(
        self, product_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> Any: ...
    def update_price(
        self, price_id: str, params: Mapping[str, Any], *, idempotency_key: str
    ) -> Any: ...
    def retrieve_product(self, product_id: str) -> Any: ...


@dataclass
class RollbackResult:
    """What a rollback of one run did."""

    run_id: str
    rows_backed_up: int = 0
    #: rows whose sync state came back from the backup
    rows_restored: int = 0
    #: ``<cms id>: <why>`` for every backed-up row left as it is
    kept: list[str] = field(default_factory=list)
    #: Stripe products archived
    products_archived: list[str] = field(default_factory=list)
    #: Stripe products whose default price is the backup's again
    prices_restored: list[str] = field(default_factory=list)
    #: Stripe products whose content is the backup's again
    contents_restored: list[str] = field(default_factory=list)
    #: ``<cms id>: <why>`` for content the run sent that could not be taken back
    contents_left: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rows_kept(self) -> int:
        """Backed-up rows left as they are."""
        return len(self.kept)


@dataclass
class RowUndo:
    """What rolling back one backed-up row takes (see :func:`plan_row_undo`)."""

    cms_id: str
    #: the sync state to give back (a ``restore_sync_state`` element), or None to leave the row
    restore: dict[str, Any] | None = None
    kept: str | None = None
    archive: str | None = None
    #: (product, the backup's price, the run's price)
    price: tuple[str, str, str] | None = None
    #: (product, the backup row as validated) for content to send back
    content: tuple[str, Mapping[str, Any]] | None = None
    content_left: str | None = None
    #: the metadata keys the run sent (None: not recorded, read them from Stripe)
    sent_metadata_keys: list[str] | None = None
    price_key_generation: int = 0

    @property
    def stripe_writes(self) -> bool:
        """Whether undoing this row calls Stripe."""
        return bool(self.archive or self.price or self.content)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def backup_in_sync(backup: Mapping[str, Any], product: Mapping[str, Any] | None) -> bool:
    """Whether the backed-up row's content is what its sync state says Stripe had: its recorded
    content hash is the hash of its validated content (``product``; None when it is invalid)."""
    recorded = backup.get("sync_content_hash")
    return product is not None and recorded is not None and recorded == content_hash(product)


def plan_row_undo(
    run_id: str,
    backup: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    tombstone: Mapping[str, Any] | None,
    product: Mapping[str, Any] | None,
) -> RowUndo:
    """What undoing run ``run_id`` takes for one row: ``backup`` is the row as the run's backup
    holds it, ``current`` the row now (None: deleted), ``tombstone`` its ``products_deleted`` row
    if deleted, ``product`` the backup row as validated (None when invalid)."""
    cms_id = str(backup["id"])
    undo = RowUndo(cms_id)
    before_product = _text(backup.get("stripe_product_id"))

    if current is None:
        undo.kept = f"{cms_id}: deleted since the run: not re-inserted"
        known = _text((tombstone or {}).get("stripe_product_id"))
        if before_product is not None or known is None:
            return undo
        writer = _text(((tombstone or {}).get("row_data") or {}).get("synced_run_id"))
        if writer != run_id:
            undo.kept += (
                f"; product {known} was synced again by run {writer}"
                if writer
                else f"; product {known} was last synced before schema 1.4.0"
            ) + " (the next migration archives the products of deleted rows)"
        elif tombstone and tombstone.get("archived_at"):
            undo.kept += f"; product {known} already archived by run {tombstone['archived_run_id']}"
        else:
            undo.kept += f"; the product the run created for it, {known}, is archived"
            undo.archive = known
        return undo

    now_product = _text(current.get("stripe_product_id"))
    writer = _text(current.get("synced_run_id"))
    created = before_product is None and now_product is not None
    if writer != run_id:
        if "synced_run_id" in backup and writer == _text(backup.get("synced_run_id")):
            undo.kept = f"{cms_id}: not written by this run (or already rolled back)"
        elif writer is None:
            undo.kept = f"{cms_id}: last synced before schema 1.4.0 (no run recorded): left"
        elif created:
            undo.kept = f"{cms_id}: product {now_product} was synced again by run {writer}"
        else:
            undo.kept = f"{cms_id}: synced again by run {writer}"
        return undo

    undo.restore = {"id": cms_id, **{column: backup.get(column) for column in RESTORED_COLUMNS}}
    if created:
        undo.archive = now_product
        return undo
    if now_product is None or now_product != before_product:
        if now_product is not None:
            undo.content_left = (
                f"{cms_id}: the run recorded product {now_product} instead of {before_product}: "
                "left in Stripe"
            )
        return undo
    before_price = _text(backup.get("stripe_price_id"))
    now_price = _text(current.get("stripe_price_id"))
    if before_price and now_price and before_price != now_price:
        undo.price = (now_product, before_price, now_price)
        undo.price_key_generation = int(current.get("price_key_generation") or 0)
    if current.get("sync_content_hash") != backup.get("sync_content_hash"):
        if product is not None and backup_in_sync(backup, product):
            undo.content = (now_product, product)
            sent = current.get("synced_metadata_keys")
            undo.sent_metadata_keys = [str(k) for k in sent] if isinstance(sent, list) else None
        else:
            undo.content_left = (
                f"{cms_id}: content the run sent to {now_product} left in Stripe (the backup "
                "row was not in sync with Stripe, so what Stripe had before is unknown); the "
                "next migration sends the CMS's current content"
            )
    return undo


def _metadata_keys(product: Any) -> list[str]:
    metadata = product.get("metadata") if hasattr(product, "get") else None
    return [str(k) for k in (metadata or {})]


def undo_in_stripe(api: RollbackStripe, run_id: str, undo: RowUndo, attempt: str = "") -> list[str]:
    """Make the Stripe writes of ``undo`` (for the rollback of ``run_id``); returns what was
    done, raises with what failed.

    Every write sets a value, so repeating it is harmless. Its idempotency key holds the run
    rolled back and ``attempt`` (the rollback's own run id): the client's retries within this
    rollback are replayed, while rolling back again after a failure uses new keys, so it never
    gets a failure Stripe saved for the first attempt's key (a 500 is replayed for 24 hours).
    """
    done = []
    cms_id = undo.cms_id
    runs = (run_id, attempt)  # the first parts of every key's fingerprint
    step = ""
    try:
        if undo.archive:
            step = f"archiving {undo.archive}"
            api.update_product(
                undo.archive,
                {"active": False},
                idempotency_key=idempotency_key("rollback.archive", cms_id, *runs, undo.archive),
            )
            done.append("archived")
        if undo.content:
            product_id, product = undo.content
            sent = undo.sent_metadata_keys
            if sent is None:
                step = f"reading {product_id}'s metadata keys"
                sent = _metadata_keys(api.retrieve_product(product_id))
            wanted = product_content(product)["metadata"]
            unset = sorted(k for k in set(sent) if k not in wanted)
            step = f"sending the backup's content to {product_id}"
            api.update_product(
                product_id,
                product_update_params(product, unset),
                idempotency_key=idempotency_key(
                    "rollback.content",
                    cms_id,
                    *runs,
                    product_id,
                    content_hash(product),
                    ",".join(unset),
                ),
            )
            done.append("content")
        if undo.price:
            product_id, old, new = undo.price
            fingerprint = (*runs, product_id, old, new)

            def write(
                call: Callable[..., Any], object_id: str, params: Mapping[str, Any], purpose: str
            ) -> None:
                key = idempotency_key(purpose, cms_id, *fingerprint)
                call(object_id, params, idempotency_key=key)

            step = f"reactivating price {old}"
            write(api.update_price, old, {"active": True}, "rollback.price.activate")
            step = f"making {old} the default price of {product_id}"
            write(api.update_product, product_id, {"default_price": old}, "rollback.default_price")
            step = f"giving {old} the lookup key"
            write(api.update_price, old, lookup_key_params(cms_id), "rollback.price.lookup_key")
            step = f"deactivating the run's price {new}"
            write(api.update_price, new, {"active": False}, "rollback.price.deactivate")
            done.append("price")
    except Exception as exc:
        raise RuntimeError(f"{cms_id}: {step} failed: {type(exc).__name__}: {exc}") from exc
    return done


def _validated(backups: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The backed-up rows that pass validation, as validated products, by CMS id."""
    result = validate_products([b["row_data"] for b in backups])
    return {str(p["id"]): p for p in result.valid.to_dict("records")}


def _restored_ids(answer: Any) -> set[str]:
    ids = set()
    for item in answer or []:
        value = item.get("restore_sync_state") if isinstance(item, Mapping) else item
        ids.add(str(value))
    return ids


def _rollback_chunk(
    store: RollbackStore,
    api: RollbackStripe,
    run_id: str,
    backups: Sequence[Mapping[str, Any]],
    result: RollbackResult,
    pool: ThreadPoolExecutor,
    attempt: str,
) -> None:
    ids = [str(b["product_id"]) for b in backups]
    current = {
        str(row["id"]): row
        for row in store.read_table("products", CURRENT_COLUMNS, filters=[("id", "in", ids)])
    }
    gone = [cms_id for cms_id in ids if cms_id not in current]
    tombstones = (
        {
            str(row["id"]): row
            for row in store.read_table(
                "products_deleted",
                "id,stripe_product_id,row_data,archived_at,archived_run_id",
                filters=[("id", "in", gone)],
            )
        }
        if gone
        else {}
    )
    products = _validated(backups)
    undos = []
    for backup in backups:
        cms_id = str(backup["product_id"])
        row = {**backup["row_data"], "id": cms_id}
        undos.append(
            plan_row_undo(
                run_id, row, current.get(cms_id), tombstones.get(cms_id), products.get(cms_id)
            )
        )

    failed: set[str] = set()
    writes = [u for u in undos if u.stripe_writes]
    for undo, outcome in zip(
        writes, pool.map(lambda u: _attempt(api, run_id, u, attempt), writes), strict=True
    ):
        if isinstance(outcome, str):
            result.errors.append(outcome)
            failed.add(undo.cms_id)
            continue
        if "archived" in outcome and undo.archive:
            result.products_archived.append(undo.archive)
        if "price" in outcome and undo.price:
            result.prices_restored.append(undo.price[0])
            # The run's price create may be replayed for 24 hours under the same key, and that
            # price is inactive now: the row's next new price takes the next key generation.
            store.update(
                "products",
                {"price_key_generation": undo.price_key_generation + 1},
                [("id", "eq", undo.cms_id), ("synced_run_id", "eq", run_id)],
                return_rows=False,
            )
        if "content" in outcome and undo.content:
            result.contents_restored.append(undo.content[0])

    for undo in undos:
        if undo.kept:
            result.kept.append(undo.kept)
        if undo.content_left:
            result.contents_left.append(undo.content_left)
    states = [u.restore for u in undos if u.restore is not None and u.cms_id not in failed]
    if not states:
        return
    restored = _restored_ids(store.rpc("restore_sync_state", {"states": states, "run_id": run_id}))
    result.rows_restored += len(restored)
    # A product born through its price has Stripe's own id, which the restored row no longer
    # records: a mark makes the next run look it up (by its lookup key) and adopt it, as the
    # custom id does for the others, instead of creating a second one.
    by_price = [
        u.cms_id
        for u in undos
        if u.archive and u.cms_id in restored and u.archive != custom_product_id(u.cms_id)
    ]
    if by_price:
        store.update(
            "products",
            {"sync_run_id": f"rollback of {run_id}"},
            [("id", "in", by_price)],
            return_rows=False,
        )
    for state in states:
        if str(state["id"]) not in restored:
            result.kept.append(
                f"{state['id']}: another run synced it during the rollback: left as it is"
            )


def _attempt(api: RollbackStripe, run_id: str, undo: RowUndo, attempt: str) -> list[str] | str:
    try:
        return undo_in_stripe(api, run_id, undo, attempt)
    except RuntimeError as exc:  # one refusal must not leave the other rows half restored
        return str(exc)


def rollback_run(
    store: RollbackStore,
    api: RollbackStripe,
    run_id: str,
    *,
    attempt: str = "",
    workers: int = DEFAULT_WORKERS,
) -> RollbackResult:
    """Roll back the migration run ``run_id`` (a root run id, under which its backup is
    recorded); ``attempt`` names this rollback (its own run id) in the idempotency keys. Safe to
    run again: what was rolled back is then "not written by this run", and rows whose Stripe
    writes failed are tried again."""
    result = RollbackResult(run_id=run_id)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rollback") as pool:
        for page in store.iter_pages(
            "products_backup",
            "product_id,row_data",
            filters=[("run_id", "eq", run_id)],
            key="product_id",
            page_size=CHUNK_ROWS,
        ):
            result.rows_backed_up += len(page)
            _rollback_chunk(store, api, run_id, page, result, pool, attempt)
    return result
