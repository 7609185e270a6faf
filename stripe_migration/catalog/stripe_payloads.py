"""The exact Stripe request parameters for each planned action, and their idempotency keys.

Parameter names follow ``POST /v1/products``, ``POST /v1/products/{id}``, ``POST /v1/prices`` and
``POST /v1/prices/{price}`` in Stripe's OpenAPI description. What each action sends:

- ``create``: one ``POST /v1/products`` with the content, ``default_price_data`` (currency,
  unit_amount, metadata ``cms_id``) and the custom id ``cms_<id>``: a new product costs one write,
  and a second product for the same CMS row is impossible. ``default_price_data`` has no
  ``lookup_key`` parameter in the API, so that first price carries none; :func:`lookup_key_params`
  can assign it with one extra ``POST /v1/prices/{price}`` if wanted.
- ``update`` / ``archive``: one ``POST /v1/products/{id}`` with the full content (``active=false``
  for an archive). Cleared fields are sent as ``""`` (Stripe's "unset"); metadata keys to remove are
  sent with an empty value.
- ``reprice``: ``POST /v1/prices`` (``lookup_key`` ``cms_<id>`` moved with
  ``transfer_lookup_key=true``), then ``POST /v1/products/{id}`` with ``default_price`` (and the
  content, for ``update_and_reprice``), then ``POST /v1/prices/{old}`` with ``active=false``: a
  product's default price cannot be archived, so the switch comes first.

Every write carries an idempotency key built from the operation, the CMS id and a fingerprint of
the parameters (:func:`idempotency_key`): a retried call replays, a call with other parameters gets
another key (Stripe refuses a reused key with other parameters).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stripe_migration.catalog.hashing import content_hash, price_key, product_content
from stripe_migration.catalog.plan import Action, PlannedAction
from stripe_migration.catalog.schema import CMS_ID_METADATA_KEY

#: ``POST /v1/prices`` ``lookup_key.maxLength``.
MAX_LOOKUP_KEY_CHARS = 200
#: Stripe's limit on the ``Idempotency-Key`` header.
MAX_IDEMPOTENCY_KEY_CHARS = 255
#: Prefix of our idempotency keys, so they are recognisable in Stripe's request logs.
IDEMPOTENCY_PREFIX = "stripe-migration"


class Operation(StrEnum):
    """The Stripe write operations the migration makes."""

    PRODUCT_CREATE = "product.create"
    PRODUCT_UPDATE = "product.update"
    PRICE_CREATE = "price.create"
    PRICE_UPDATE = "price.update"


@dataclass(frozen=True)
class StripeRequest:
    """One Stripe write: the operation, the object it targets (None for a create), its params."""

    operation: Operation
    object_id: str | None
    params: Mapping[str, Any]
    idempotency_key: str


def price_lookup_key(cms_id: str) -> str:
    """Return the stable lookup key of a CMS product's current price: ``cms_<id>``."""
    key = f"cms_{cms_id}"
    if len(key) > MAX_LOOKUP_KEY_CHARS:
        raise ValueError(f"lookup key for CMS id {cms_id[:40]!r}... exceeds 200 characters")
    return key


def custom_product_id(cms_id: str) -> str:
    """Return the deterministic Stripe product id of a CMS product (``POST /v1/products`` ``id``).

    With it Stripe itself refuses a second product for the same CMS row
    (``resource_already_exists``), whatever the idempotency-key window.
    """
    return f"cms_{cms_id}"


def idempotency_key(operation: str, cms_id: object, *fingerprint: object) -> str:
    """Return a deterministic key for one write: operation, CMS id, digest of the fingerprint.

    The fingerprint (any values, compared as text; None as "") must change whenever the
    parameters do, e.g. the content hash and price key for a create (the ``*_request`` helpers
    below choose it).
    """
    parts = ["" if part is None else str(part) for part in fingerprint]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    key = f"{IDEMPOTENCY_PREFIX}:{operation}:{cms_id}:{digest}"
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValueError(f"idempotency key for CMS id {str(cms_id)[:40]!r}... is too long")
    return key


def _cms_id(product: Mapping[str, Any]) -> str:
    return str(product["id"])


def product_create_params(product: Mapping[str, Any], *, custom_id: bool = True) -> dict[str, Any]:
    """``POST /v1/products`` params: content plus ``default_price_data`` (one write).

    With ``custom_id`` (the default) the product gets the id :func:`custom_product_id`, so Stripe
    itself refuses a second product for the same CMS row.
    """
    content = product_content(product)
    params: dict[str, Any] = {"name": content["name"], "active": content["active"]}
    if custom_id:
        params["id"] = custom_product_id(_cms_id(product))
    if content["description"] is not None:
        params["description"] = content["description"]
    if content["images"]:
        params["images"] = list(content["images"])
    params["metadata"] = dict(content["metadata"])
    params["default_price_data"] = {
        "currency": str(product["currency"]),
        "unit_amount": int(product["unit_amount"]),
        "metadata": {CMS_ID_METADATA_KEY: _cms_id(product)},
    }
    return params


def product_update_params(
    product: Mapping[str, Any],
    unset_metadata_keys: Iterable[str] = (),
    *,
    default_price: str | None = None,
) -> dict[str, Any]:
    """``POST /v1/products/{id}`` params: the full content; ``""`` clears a field or metadata key."""
    content = product_content(product)
    metadata: dict[str, str] = {key: "" for key in unset_metadata_keys}
    metadata.update(content["metadata"])
    params: dict[str, Any] = {
        "name": content["name"],
        "description": content["description"] or "",
        "images": list(content["images"]) or "",
        "metadata": metadata,
        "active": content["active"],
    }
    if default_price is not None:
        params["default_price"] = default_price
    return params


def price_create_params(product: Mapping[str, Any], product_id: str) -> dict[str, Any]:
    """``POST /v1/prices`` params for a new default price, taking over the CMS lookup key."""
    cms_id = _cms_id(product)
    return {
        "product": product_id,
        "currency": str(product["currency"]),
        "unit_amount": int(product["unit_amount"]),
        "lookup_key": price_lookup_key(cms_id),
        "transfer_lookup_key": True,
        "metadata": {CMS_ID_METADATA_KEY: cms_id},
    }


def lookup_key_params(cms_id: str) -> dict[str, Any]:
    """``POST /v1/prices/{price}`` params giving an existing price the CMS lookup key."""
    return {"lookup_key": price_lookup_key(cms_id), "transfer_lookup_key": True}


def deactivate_price_params() -> dict[str, Any]:
    """``POST /v1/prices/{price}`` params archiving a replaced price."""
    return {"active": False}


def _require_product(planned: PlannedAction) -> Mapping[str, Any]:
    if planned.product is None or planned.cms_id is None:
        raise ValueError(f"action {planned.action} for {planned.cms_id} has no product to send")
    return planned.product


def product_create_request(planned: PlannedAction, *, custom_id: bool = True) -> StripeRequest:
    """The single write of a ``create``."""
    product = _require_product(planned)
    params = product_create_params(product, custom_id=custom_id)
    key = idempotency_key(
        Operation.PRODUCT_CREATE,
        _cms_id(product),
        content_hash(product),
        price_key(int(product["unit_amount"]), str(product["currency"])),
        params.get("id"),
    )
    return StripeRequest(Operation.PRODUCT_CREATE, None, params, key)


def product_update_request(
    planned: PlannedAction, *, default_price: str | None = None
) -> StripeRequest:
    """The product write of an ``update``, ``archive`` or (with ``default_price``) a reprice."""
    product = _require_product(planned)
    if planned.stripe_product_id is None:
        raise ValueError(f"action {planned.action} for {planned.cms_id} has no Stripe product id")
    params = product_update_params(
        product, unset_metadata_keys=planned.unset_metadata_keys, default_price=default_price
    )
    key = idempotency_key(
        Operation.PRODUCT_UPDATE,
        _cms_id(product),
        planned.stripe_product_id,
        content_hash(product),
        ",".join(planned.unset_metadata_keys),
        default_price or "",
    )
    return StripeRequest(Operation.PRODUCT_UPDATE, planned.stripe_product_id, params, key)


def price_create_request(planned: PlannedAction) -> StripeRequest:
    """The new price of a ``reprice`` / ``update_and_reprice``.

    The key includes the price being replaced, so going 10 → 20 → 10 within Stripe's 24-hour key
    window creates a new price instead of replaying the first one.
    """
    product = _require_product(planned)
    if planned.stripe_product_id is None:
        raise ValueError(f"action {planned.action} for {planned.cms_id} has no Stripe product id")
    params = price_create_params(product, planned.stripe_product_id)
    key = idempotency_key(
        Operation.PRICE_CREATE,
        _cms_id(product),
        planned.stripe_product_id,
        price_key(int(product["unit_amount"]), str(product["currency"])),
        planned.stripe_price_id or "",
    )
    return StripeRequest(Operation.PRICE_CREATE, None, params, key)


def price_deactivate_request(cms_id: str, price_id: str) -> StripeRequest:
    """Archive a replaced price (after the product's default price was switched away from it)."""
    key = idempotency_key(Operation.PRICE_UPDATE, cms_id, price_id, "active=false")
    return StripeRequest(Operation.PRICE_UPDATE, price_id, deactivate_price_params(), key)


def first_requests(planned: PlannedAction) -> list[StripeRequest]:
    """The writes that can be built before any response: all of them except a reprice's switch
    and deactivation, which need the new price id (see :func:`reprice_followups`)."""
    match planned.action:
        case Action.CREATE:
            return [product_create_request(planned)]
        case Action.UPDATE | Action.ARCHIVE:
            return [product_update_request(planned)]
        case Action.REPRICE | Action.UPDATE_AND_REPRICE:
            return [price_create_request(planned)]
        case _:
            return []


def reprice_followups(planned: PlannedAction, new_price_id: str) -> list[StripeRequest]:
    """After a reprice's new price exists: switch the default price (with the content for
    ``update_and_reprice``), then deactivate the old price if there was one."""
    if planned.action is Action.REPRICE:
        switch = StripeRequest(
            Operation.PRODUCT_UPDATE,
            planned.stripe_product_id,
            {"default_price": new_price_id},
            idempotency_key(
                Operation.PRODUCT_UPDATE,
                str(planned.cms_id),
                str(planned.stripe_product_id),
                "default_price",
                new_price_id,
            ),
        )
    elif planned.action is Action.UPDATE_AND_REPRICE:
        switch = product_update_request(planned, default_price=new_price_id)
    else:
        raise ValueError(f"action {planned.action} is not a reprice")
    requests = [switch]
    if planned.stripe_price_id and planned.stripe_price_id != new_price_id:
        requests.append(price_deactivate_request(str(planned.cms_id), planned.stripe_price_id))
    return requests
