"""One planned action applied to Stripe: the calls each action makes, and what a replayed failure costs.

No Dagster here; :mod:`stripe_migration.catalog.apply` runs these on worker threads, in batches.

Why a resumed run never duplicates anything:
- a new product is created with a **custom id derived from the CMS id**, so Stripe itself refuses
  a second one (``resource_already_exists``); the product is then adopted and planned against its
  actual state. A new product born through its price (the second way, see
  :mod:`stripe_migration.catalog.create_paths`) gets Stripe's own id instead; its first price
  holds the lookup key ``cms_<id>``, never transferred, so Stripe refuses a second such price, and
  the product that price belongs to is adopted the same way (completed first when a kill left it
  between its two calls);
- a new price (the one write with neither a custom id nor a naturally repeatable effect) carries
  an idempotency key spanning runs: CMS id, amount, currency and the price it replaces;
- the other writes (updates, archive, default-price switch, deactivation) set values, so repeating
  them is harmless; their keys include the run id, so a retry inside a run is replayed while a later
  run never receives a stale 24-hour replay (an edit A→B→A in one day is applied each time).
Stripe's search index lags by up to a minute, so nothing here relies on search.

Stripe also saves *failures* once a request began executing (a 500 included) and replays them for
the key's 24 hours (docs.stripe.com/idempotency). Repeating the key then gets the same failure, so:
a write that is harmless to repeat is sent again under a new key; a new price is first looked for
in Stripe (the failed request may have created it), and only when it is not there is it sent again
under the key's next *generation*, which is recorded in ``products.price_key_generation`` before
the request leaves, so a resumed run uses the same new key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import stripe

from stripe_migration.catalog import stripe_payloads as payloads
from stripe_migration.catalog.actions import (
    Action,
    PlannedAction,
    StripeProductState,
)
from stripe_migration.catalog.hashing import product_content
from stripe_migration.catalog.plan import plan_product
from stripe_migration.catalog.stripe_state import plain, priced_for
from stripe_migration.catalog.sync_results import (
    FatalApplyError,
    RecordKeyGeneration,
    StripeWriter,
    SyncResult,
    default_price_id,
    error_text,
    synced_result,
    version_of,
)
from stripe_migration.resources.stripe.errors import IdempotentReplayedError, LiveModeRefused

#: New keys tried for one write after Stripe replayed a saved failure for its key.
MAX_KEY_GENERATIONS = 3


def _create(
    api: StripeWriter,
    item: PlannedAction,
    run_id: str,
    record_generation: RecordKeyGeneration | None = None,
) -> SyncResult:
    product = item.product or {}
    params = payloads.product_create_params(product)
    key = payloads.product_create_key(str(item.cms_id), run_id, item.content_hash)
    try:
        # the custom id makes a second create harmless: Stripe refuses it as existing
        created = plain(
            _resend_on_replayed_failure(
                lambda k: api.create_product(params, idempotency_key=k), key
            )
        )
        return synced_result(item, created["id"], default_price_id(created), created_product=True)
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "code", None) != "resource_already_exists":
            raise
    # An earlier run created it and was killed before its checkpoint (and the idempotency key
    # expired or the content changed since): adopt it, and bring it up to date by planning
    # against its actual state.
    existing = plain(api.retrieve_product(params["id"]))
    catch_up = plan_product(product, StripeProductState.from_stripe(existing), resync=True)
    if catch_up.writes == 0:
        result = synced_result(item, existing["id"], default_price_id(existing))
    else:
        result = apply_one(api, catch_up, run_id, record_generation)
    return replace(result, action=item.action.value, created_product=True)


def _create_by_price(
    api: StripeWriter,
    item: PlannedAction,
    run_id: str,
    record_generation: RecordKeyGeneration | None = None,
) -> SyncResult:
    """The second way: the price with ``product_data``, then the product completed (content and
    default price). A lookup key already held means an earlier attempt made the product: adopt it.
    """
    product = item.product or {}
    cms_id = str(item.cms_id)
    params = payloads.price_with_new_product_params(product)
    key = payloads.price_with_new_product_key(cms_id, run_id, item.content_hash)
    try:
        # a resend after a replayed failure is safe: the lookup key refuses a second price
        price = plain(
            _resend_on_replayed_failure(lambda k: api.create_price(params, idempotency_key=k), key)
        )
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "param", None) != "lookup_key":
            raise
        held = _price_holding_lookup_key(api, cms_id)
        if held is None:
            raise
        return _adopt_by_price(api, item, held, run_id, record_generation)
    product_id = str(price["product"])
    try:
        _complete(api, item, product_id, str(price["id"]), run_id)
    except (stripe.InvalidRequestError, stripe.PermissionError) as exc:
        # Half-made in Stripe: record the product, so that no later run makes a second one.
        return SyncResult(
            id=cms_id,
            sync_status="failed",
            action=item.action.value,
            synced_version=version_of(item),
            stripe_product_id=product_id,
            sync_error=error_text(exc),
            created_product=True,
            created_by_price=True,
            refused=True,
        )
    return synced_result(
        item, product_id, str(price["id"]), created_product=True, created_by_price=True
    )


def _complete(
    api: StripeWriter, item: PlannedAction, product_id: str, price_id: str, run_id: str
) -> Mapping[str, Any]:
    """Give a product born through ``price_id`` its full content and that price as its default."""
    params = payloads.product_completion_params(
        item.product or {}, price_id, item.unset_metadata_keys
    )
    key = payloads.product_completion_key(str(item.cms_id), run_id, price_id, item.content_hash)
    return plain(
        _resend_on_replayed_failure(
            lambda k: api.update_product(product_id, params, idempotency_key=k), key
        )
    )


def _price_holding_lookup_key(api: StripeWriter, cms_id: str) -> Mapping[str, Any] | None:
    """The price holding the CMS product's lookup key, if any (a list filter, never search)."""
    key = payloads.price_lookup_key(cms_id)
    return next(iter(map(plain, api.list_prices(lookup_keys=[key], limit=1))), None)


def _adopt_by_price(
    api: StripeWriter,
    item: PlannedAction,
    price: Mapping[str, Any],
    run_id: str,
    record_generation: RecordKeyGeneration | None,
) -> SyncResult:
    """Adopt the product an earlier attempt made through ``price``: complete it if a kill left it
    without a default price, then bring it up to date against its actual state."""
    product_id = str(price["product"])
    existing = plain(api.retrieve_product(product_id))
    state = StripeProductState.from_stripe(existing)
    if existing.get("default_price") is None and price.get("active"):
        # the completion answers with the product as it now is, that price its default
        completed = _complete(api, item, product_id, str(price["id"]), run_id)
        state = StripeProductState.from_stripe(completed, default_price=price)
    catch_up = plan_product(item.product or {}, state, resync=True)
    if catch_up.writes == 0:
        result = synced_result(item, product_id, state.default_price_id)
    else:
        result = apply_one(api, catch_up, run_id, record_generation)
    return replace(result, action=item.action.value, created_product=True, created_by_price=True)


def _resend_on_replayed_failure(send: Callable[[str], Any], key: str) -> Any:
    """Send a write that is harmless to repeat; when Stripe replays a saved server error for its
    key (it would for 24 hours), send it again under a new key."""
    for generation in range(MAX_KEY_GENERATIONS + 1):
        try:
            return send(payloads.with_generation(key, generation))
        except IdempotentReplayedError as exc:
            if exc.http_status < 500 or generation == MAX_KEY_GENERATIONS:
                raise
    raise AssertionError("unreachable")


def _with_known_metadata(api: StripeWriter, item: PlannedAction) -> PlannedAction:
    """``item`` with the metadata keys to unset, read from Stripe when they were not recorded
    (a row synced before the keys were): Stripe merges metadata, so a removed key must be sent."""
    if not item.metadata_keys_unknown or item.stripe_product_id is None:
        return item
    current = plain(api.retrieve_product(item.stripe_product_id))
    wanted = product_content(item.product or {})["metadata"]
    unset = tuple(sorted(k for k in (current.get("metadata") or {}) if k not in wanted))
    return replace(item, unset_metadata_keys=unset, metadata_keys_unknown=False)


def _send_content(api: StripeWriter, item: PlannedAction, key: str) -> Mapping[str, Any]:
    """Send ``item``'s full content (and the metadata keys to unset) to its Stripe product under
    ``key``, resent under a new key after a replayed failure; the product Stripe returns."""
    params = payloads.product_update_params(item.product or {}, item.unset_metadata_keys)
    return plain(
        _resend_on_replayed_failure(
            lambda k: api.update_product(item.stripe_product_id, params, idempotency_key=k), key
        )
    )


def _update(api: StripeWriter, item: PlannedAction, run_id: str) -> SyncResult:
    """Send the full content (an archive's too: ``active=false`` with it, since the checkpoint
    records the content hash, so an edit made with the deactivation must reach Stripe as well);
    a half-made product's update completes it with its default price."""
    item = _with_known_metadata(api, item)
    if item.completes_product and item.stripe_price_id:
        done = _complete(api, item, str(item.stripe_product_id), item.stripe_price_id, run_id)
        return synced_result(item, done["id"], item.stripe_price_id)
    make_key = (
        payloads.product_archive_key
        if item.action is Action.ARCHIVE
        else payloads.product_update_key
    )
    updated = _send_content(api, item, make_key(str(item.cms_id), run_id, item.content_hash))
    if item.action is Action.ARCHIVE:  # an archived product keeps its recorded price
        return synced_result(item, updated["id"], item.stripe_price_id)
    return synced_result(item, updated["id"], item.stripe_price_id or default_price_id(updated))


def _price_of_ours_for(api: StripeWriter, item: PlannedAction) -> Mapping[str, Any] | None:
    """An active price of this CMS product with the CMS amount and currency, if Stripe has one
    (a create whose answer was lost or replaced by a saved failure)."""
    for price in map(plain, api.list_prices(product=item.stripe_product_id, active=True)):
        if (
            priced_for(price, str(item.cms_id))
            and price.get("unit_amount") == item.unit_amount
            and price.get("currency") == item.currency
        ):
            return price
    return None


def _create_price(
    api: StripeWriter, item: PlannedAction, record_generation: RecordKeyGeneration | None
) -> Mapping[str, Any]:
    """The reprice's new price, under the row's current key generation; after a replayed saved
    failure, the price Stripe already has, or a create under the next generation (recorded first)."""
    params = payloads.price_create_params(item.product or {}, str(item.stripe_product_id))
    generation = item.price_key_generation
    while True:
        key = payloads.price_create_key(
            str(item.cms_id), item.unit_amount, item.currency, item.stripe_price_id, generation
        )
        try:
            return plain(api.create_price(params, idempotency_key=key))
        except IdempotentReplayedError as exc:
            if (
                exc.http_status < 500
                or generation - item.price_key_generation >= MAX_KEY_GENERATIONS
            ):
                raise
        existing = _price_of_ours_for(api, item)
        if existing is not None:
            return existing
        generation += 1
        if record_generation is not None:
            record_generation(str(item.cms_id), generation)


def _reprice(
    api: StripeWriter,
    item: PlannedAction,
    update_params: dict | None,
    run_id: str,
    record_generation: RecordKeyGeneration | None = None,
) -> str:
    """New price, switched to as the default (with any product update), then every other active
    price of the product deactivated: the replaced one (made by us or, as a new default, in the
    dashboard), and any a killed run left behind. A product of ours has one active price.

    The price create is the one write that neither a custom id nor its nature makes safe to
    repeat, so its key spans runs: a resumed run replays it (within Stripe's 24 h) instead of
    creating a second price. The price being replaced is part of the key, so each transition
    (even back to an earlier amount) is a new key.
    """
    old = item.stripe_price_id
    new_price = _create_price(api, item, record_generation)
    switch = {**(update_params or {}), "default_price": new_price["id"]}
    _resend_on_replayed_failure(
        lambda k: api.update_product(item.stripe_product_id, switch, idempotency_key=k),
        payloads.default_price_switch_key(
            str(item.cms_id), run_id, new_price["id"], item.content_hash
        ),
    )
    # Not only the recorded price: a run killed after its price create left that price active
    # (when the CMS price changed again before the resume, that price has another key, so nothing
    # replayed it), and a default price set in the dashboard carries no CMS id at all.
    stale = {old} if old else set()
    stale.update(
        price["id"]
        for price in map(plain, api.list_prices(product=item.stripe_product_id, active=True))
    )
    for price_id in sorted(stale - {new_price["id"]}):
        _deactivate_price(api, item, run_id, price_id)
    return new_price["id"]


def _deactivate_price(api: StripeWriter, item: PlannedAction, run_id: str, price_id: str) -> None:
    _resend_on_replayed_failure(
        lambda k: api.update_price(price_id, payloads.deactivate_price_params(), idempotency_key=k),
        payloads.price_deactivate_key(str(item.cms_id), run_id, price_id),
    )


def _retire_strays(api: StripeWriter, item: PlannedAction, run_id: str) -> None:
    """Deactivate the prices a killed run left active beside the default price, and give the CMS
    lookup key back to the default price when one of them had taken it."""
    for price_id in item.stray_price_ids:
        _deactivate_price(api, item, run_id, price_id)
    if item.reclaim_lookup_key and item.stripe_price_id:
        price_id = item.stripe_price_id
        _resend_on_replayed_failure(
            lambda k: api.update_price(
                price_id, payloads.lookup_key_params(str(item.cms_id)), idempotency_key=k
            ),
            payloads.lookup_key_reclaim_key(str(item.cms_id), run_id, price_id),
        )


def _archive_deleted(api: StripeWriter, item: PlannedAction, run_id: str) -> SyncResult:
    """Archive the Stripe product of a deleted CMS row: the recorded one, else the custom id a
    create of ours would have given it. Nothing in Stripe is nothing to archive."""
    candidates = dict.fromkeys(
        i for i in (item.stripe_product_id, payloads.custom_product_id(str(item.cms_id))) if i
    )
    archived: str | None = None
    for product_id in candidates:
        key = payloads.archive_deleted_key(str(item.cms_id), run_id, product_id)
        try:
            _resend_on_replayed_failure(
                lambda k, pid=product_id: api.update_product(
                    pid, {"active": False}, idempotency_key=k
                ),
                key,
            )
        except stripe.InvalidRequestError as exc:
            if getattr(exc, "code", None) != "resource_missing":
                raise
            continue
        archived = product_id
        break
    return SyncResult(
        id=str(item.cms_id),
        sync_status="archived",
        action=item.action.value,
        synced_version=None,
        stripe_product_id=archived,
    )


def apply_one(
    api: StripeWriter,
    item: PlannedAction,
    run_id: str,
    record_generation: RecordKeyGeneration | None = None,
    *,
    by_price: bool = False,
) -> SyncResult:
    """Apply one planned action; a per-product refusal becomes a failed result, not an exception.

    ``run_id`` scopes the idempotency keys of writes that are safe to repeat (see the module doc);
    ``record_generation`` records a new price key generation before it is used; ``by_price``
    creates a new product the second way (through its price).
    """
    try:
        if item.action is Action.CREATE:
            if by_price:
                return _create_by_price(api, item, run_id, record_generation)
            return _create(api, item, run_id, record_generation)
        if item.action is Action.ARCHIVE_DELETED:
            return _archive_deleted(api, item, run_id)
        if item.action in (Action.REPRICE, Action.UPDATE_AND_REPRICE):
            # the reprice deactivates every other active price of ours, strays included
            update = None
            if item.action is Action.UPDATE_AND_REPRICE:
                item = _with_known_metadata(api, item)
                update = payloads.product_update_params(
                    item.product or {}, item.unset_metadata_keys
                )
            price_id = _reprice(api, item, update, run_id, record_generation)
            return synced_result(item, str(item.stripe_product_id), price_id)
        if item.action in (Action.UPDATE, Action.ARCHIVE):
            result = _update(api, item, run_id)
        elif item.action is Action.RETIRE_PRICES:
            result = synced_result(item, item.stripe_product_id, item.stripe_price_id)
        else:
            raise ValueError(f"nothing to apply for action {item.action.value}")
        _retire_strays(api, item, run_id)
        return result
    except FatalApplyError:
        raise
    except (stripe.AuthenticationError, LiveModeRefused) as exc:
        raise FatalApplyError(str(exc)) from None
    except (stripe.InvalidRequestError, stripe.CardError, stripe.PermissionError) as exc:
        return SyncResult(
            id=str(item.cms_id),
            sync_status="failed",
            action=item.action.value,
            synced_version=version_of(item),
            sync_error=error_text(exc),
            refused=True,
        )
