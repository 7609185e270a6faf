"""What Stripe actually holds for a set of CMS products: the input of a forced resync.

Products are looked up by id, never by search (Stripe's search index lags by up to a minute): the
id recorded in the CMS row and the custom id the migration gives every product it creates by the
product, 100 ids per list call (several at once), with the default price expanded in the same
call. A row a run may have created a product for by its price (Stripe's own id, see
:mod:`stripe_migration.catalog.create_paths`) and that neither id finds is looked up by the lookup
key its first price holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol

from stripe_migration.catalog.actions import Deletion, StripeProductState
from stripe_migration.catalog.fields import CMS_ID_METADATA_KEY
from stripe_migration.catalog.stripe_payloads import custom_product_id, price_lookup_key

#: Stripe's largest page, and the most ids one list call may filter on.
LIST_PAGE_SIZE = 100
#: The most lookup keys one ``GET /v1/prices`` may filter on.
LOOKUP_KEYS_PER_CALL = 10
#: List calls in flight at once.
FETCH_WORKERS = 8


class StripeReader(Protocol):
    """The Stripe calls a resync needs (implemented by the StripeResource's API wrapper)."""

    def list_products(self, **params: Any) -> Iterator[Mapping[str, Any]]: ...
    def list_prices(self, **params: Any) -> Iterator[Mapping[str, Any]]: ...


def plain(obj: Any) -> dict[str, Any]:
    """A Stripe object as a plain (recursive) dict; stripe-python's objects are not dicts."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dict(obj)


def priced_for(price: Mapping[str, Any], cms_id: str) -> bool:
    """Whether a Stripe price was created by the migration for the CMS product ``cms_id``."""
    return (price.get("metadata") or {}).get(CMS_ID_METADATA_KEY) == cms_id


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_stripe_state(
    api: StripeReader, rows: Iterable[Mapping[str, Any]]
) -> dict[str, StripeProductState]:
    """Stripe's state of each CMS row (by CMS id) that has a product in Stripe.

    ``rows`` need ``id`` and ``stripe_product_id``. A row whose recorded product is gone but whose
    custom-id product exists maps to the latter.
    """
    candidates: dict[str, list[str]] = {}  # Stripe product id -> CMS ids that may own it
    order: dict[str, list[str]] = {}  # CMS id -> its candidate product ids, preferred first
    rows_seen = list(rows)
    for row in rows_seen:
        cms_id = str(row["id"])
        recorded = row.get("stripe_product_id")
        ids = [i for i in (recorded, custom_product_id(cms_id)) if isinstance(i, str) and i]
        order[cms_id] = list(dict.fromkeys(ids))
        for product_id in order[cms_id]:
            candidates.setdefault(product_id, []).append(cms_id)

    def fetch(chunk: list[str]) -> list[dict[str, Any]]:
        return [
            plain(product)
            for product in api.list_products(
                ids=chunk, limit=LIST_PAGE_SIZE, expand=["data.default_price"]
            )
        ]

    # Several list calls at once: one at a time, each waits out Stripe's latency while the rate
    # limit would allow 25 a second (the client's limiter sets the pace).
    chunks = list(_chunks(sorted(candidates), LIST_PAGE_SIZE))
    found: dict[str, Mapping[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(FETCH_WORKERS, len(chunks)))) as pool:
        for products in pool.map(fetch, chunks):
            for product in products:
                found[product["id"]] = product

    state: dict[str, StripeProductState] = {}
    for cms_id, product_ids in order.items():
        for product_id in product_ids:
            if product_id in found:
                state[cms_id] = StripeProductState.from_stripe(found[product_id])
                break
    unfound = [str(row["id"]) for row in rows_seen if str(row["id"]) not in state and _tried(row)]
    state.update(fetch_by_lookup_key(api, unfound))
    return state


def _tried(row: Mapping[str, Any]) -> bool:
    """Whether a run may have made a Stripe product for ``row`` that the id lookup cannot find
    (one born through its price has Stripe's own id): a run's mark survives on it (a kill, or a
    rollback that archived such a product), or a run synced it once."""
    return any(
        isinstance(row.get(column), str) and row.get(column)
        for column in ("sync_run_id", "synced_run_id", "stripe_product_id")
    )


def fetch_by_lookup_key(api: StripeReader, cms_ids: Iterable[str]) -> dict[str, StripeProductState]:
    """Stripe's state of the products born through their price for ``cms_ids``: the product of
    the price holding each CMS lookup key (10 keys per list call, the API's most, with the
    product expanded). A product a kill left without its default price is described with that
    price as the default to set (``default_price_unset``)."""

    def fetch(chunk: list[str]) -> list[dict[str, Any]]:
        keys = [price_lookup_key(cms_id) for cms_id in chunk]
        return [
            plain(price)
            for price in api.list_prices(
                lookup_keys=keys, limit=LIST_PAGE_SIZE, expand=["data.product"]
            )
        ]

    wanted = list(dict.fromkeys(cms_ids))
    chunks = list(_chunks(wanted, LOOKUP_KEYS_PER_CALL))
    state: dict[str, StripeProductState] = {}
    if not chunks:
        return state
    by_key = {price_lookup_key(cms_id): cms_id for cms_id in wanted}
    with ThreadPoolExecutor(max_workers=max(1, min(FETCH_WORKERS, len(chunks)))) as pool:
        for prices in pool.map(fetch, chunks):
            for price in prices:
                cms_id = by_key.get(price.get("lookup_key") or "")
                product = price.get("product")
                if cms_id is None or not isinstance(product, Mapping):
                    continue
                default = product.get("default_price")
                if default is None and price.get("active"):
                    state[cms_id] = replace(
                        StripeProductState.from_stripe(product, default_price=price),
                        default_price_unset=True,
                    )
                elif default == price["id"]:
                    state[cms_id] = StripeProductState.from_stripe(product, default_price=price)
                else:
                    state[cms_id] = StripeProductState.from_stripe(product)
    return state


def fetch_stray_prices(
    api: StripeReader, state: Mapping[str, StripeProductState], cms_ids: Iterable[str]
) -> dict[str, StripeProductState]:
    """``state`` with the stray prices of ``cms_ids`` filled in: the product's active prices other
    than its default, which a run killed in the middle of a reprice leaves behind (its new price,
    or the replaced default, ours or set in the dashboard). One list call per product (only the
    rows an interrupted run left marked)."""

    def strays(cms_id: str) -> tuple[str, StripeProductState]:
        product = state[cms_id]
        found = [
            plain(price)
            for price in api.list_prices(
                product=product.product_id, active=True, limit=LIST_PAGE_SIZE
            )
        ]
        extra = [price for price in found if price["id"] != product.default_price_id]
        key = price_lookup_key(cms_id)
        return cms_id, replace(
            product,
            stray_price_ids=tuple(sorted(price["id"] for price in extra)),
            stray_holds_lookup_key=any(price.get("lookup_key") == key for price in extra),
        )

    wanted = [cms_id for cms_id in dict.fromkeys(cms_ids) if cms_id in state]
    updated = dict(state)
    if wanted:
        with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(wanted))) as pool:
            updated.update(pool.map(strays, wanted))
    return updated


def find_products_without_rows(
    api: StripeReader,
    without_rows: Callable[[list[str]], Mapping[str, int]],
    buckets: set[int],
) -> list[Deletion]:
    """Active Stripe products carrying a CMS id (metadata ``cms_id``) that no CMS row has, in the
    catalogue ``buckets``: products of rows deleted before deletions left tombstones.

    ``without_rows`` takes CMS ids and returns those without a row, with their bucket (the
    database function ``cms_ids_without_row``). Lists every active product: one call per 100.
    """
    owned: list[tuple[str, str, str | None]] = []  # (cms id, product id, name)
    for product in map(plain, api.list_products(active=True, limit=LIST_PAGE_SIZE)):
        cms_id = (product.get("metadata") or {}).get(CMS_ID_METADATA_KEY)
        if cms_id:
            owned.append((str(cms_id), str(product["id"]), product.get("name")))
    orphans: dict[str, int] = {}
    ids = sorted({cms_id for cms_id, _, _ in owned})
    for chunk in _chunks(ids, 500):
        orphans.update(without_rows(chunk))
    return [
        Deletion(cms_id, product_id, name, found_in_stripe=True)
        for cms_id, product_id, name in owned
        if cms_id in orphans and orphans[cms_id] in buckets
    ]
