"""Every Stripe request the migration sends: its parameters and its idempotency key, built here only.

Parameter names follow ``POST /v1/products``, ``POST /v1/products/{id}``, ``POST /v1/prices`` and
``POST /v1/prices/{price}`` in Stripe's OpenAPI description. What each action sends (the calls
themselves are made by :mod:`stripe_migration.catalog.writes`):

- ``create``: one ``POST /v1/products`` with the content, ``default_price_data`` (currency,
  unit_amount, metadata ``cms_id``) and the custom id ``cms_<id>``: a new product costs one write,
  and a second product for the same CMS row is impossible. ``default_price_data`` has no
  ``lookup_key`` parameter in the API, so that first price carries none.
- ``create`` through the price (the second path, :mod:`stripe_migration.catalog.create_paths`
  chooses which new products take it): ``POST /v1/prices`` with ``product_data`` (name, active,
  metadata: all the API takes there) and the lookup key ``cms_<id>`` *without*
  ``transfer_lookup_key``, then ``POST /v1/products/{id}`` with the full content and
  ``default_price``: two writes, on two endpoints other than the first path's. Stripe refuses a
  second price with a lookup key an active price holds, so that key does for this path what the
  custom id does for the first (``product_data[id]`` is deprecated in the API: not used).
- ``update`` / ``archive``: one ``POST /v1/products/{id}`` with the full content (``active=false``
  for an archive). Cleared fields are sent as ``""`` (Stripe's "unset"); metadata keys to remove are
  sent with an empty value.
- ``reprice``: ``POST /v1/prices`` (``lookup_key`` ``cms_<id>`` moved with
  ``transfer_lookup_key=true``), then ``POST /v1/products/{id}`` with ``default_price`` (and the
  content, for ``update_and_reprice``), then ``POST /v1/prices/{old}`` with ``active=false``: a
  product's default price cannot be archived, so the switch comes first.
- ``archive_deleted``: ``POST /v1/products/{id}`` with ``active=false`` alone.

Keys. A new price is the one write that neither a custom id nor its nature makes safe to repeat,
so its key spans runs (:func:`price_create_key`: CMS id, amount, currency, the price it replaces,
and the row's key generation). Every other write sets values, so repeating it is harmless; its key
includes the run id (a retry inside a run replays, a later run never receives a stale 24-hour
replay, so an edit A→B→A in one day is applied each time). After Stripe replays a saved failure,
:func:`with_generation` gives a write its next key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from stripe_migration.catalog.fields import CMS_ID_METADATA_KEY
from stripe_migration.catalog.hashing import product_content

#: ``POST /v1/prices`` ``lookup_key.maxLength``.
MAX_LOOKUP_KEY_CHARS = 200
#: Stripe's limit on the ``Idempotency-Key`` header.
MAX_IDEMPOTENCY_KEY_CHARS = 255
#: Prefix of our idempotency keys, so they are recognisable in Stripe's request logs.
IDEMPOTENCY_PREFIX = "stripe-migration"


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
    parameters do (the ``*_key`` functions below choose it for each write of the migration).
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


def price_with_new_product_params(product: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /v1/prices`` params creating the product with its first price (``product_data``):
    the price holds the CMS lookup key, never transferred, so Stripe refuses a second one."""
    content = product_content(product)
    cms_id = _cms_id(product)
    return {
        "currency": str(product["currency"]),
        "unit_amount": int(product["unit_amount"]),
        "lookup_key": price_lookup_key(cms_id),
        "metadata": {CMS_ID_METADATA_KEY: cms_id},
        "product_data": {
            "name": content["name"],
            "active": content["active"],
            "metadata": dict(content["metadata"]),
        },
    }


def product_completion_params(
    product: Mapping[str, Any], price_id: str, unset_metadata_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """``POST /v1/products/{id}`` params completing a product born through its price: the full
    content (description and images, which ``product_data`` cannot carry) and ``default_price``."""
    return product_update_params(product, unset_metadata_keys, default_price=price_id)


def lookup_key_params(cms_id: str) -> dict[str, Any]:
    """``POST /v1/prices/{price}`` params giving an existing price the CMS lookup key."""
    return {"lookup_key": price_lookup_key(cms_id), "transfer_lookup_key": True}


def deactivate_price_params() -> dict[str, Any]:
    """``POST /v1/prices/{price}`` params archiving a replaced price."""
    return {"active": False}


# -- idempotency keys of the migration's writes ---------------------------------------------------


def product_create_key(cms_id: str, run_id: str, content_hash: str | None) -> str:
    """``POST /v1/products`` of a new product (the custom id already refuses a second one)."""
    return idempotency_key("product.create", cms_id, run_id, content_hash)


def price_with_new_product_key(cms_id: str, run_id: str, content_hash: str | None) -> str:
    """``POST /v1/prices`` with ``product_data`` (the lookup key already refuses a second one)."""
    return idempotency_key("price.create_product", cms_id, run_id, content_hash)


def product_completion_key(
    cms_id: str, run_id: str, price_id: str, content_hash: str | None
) -> str:
    """``POST /v1/products/{id}`` completing a product born through ``price_id``."""
    return idempotency_key("product.complete", cms_id, run_id, price_id, content_hash)


def product_update_key(cms_id: str, run_id: str, content_hash: str | None) -> str:
    """``POST /v1/products/{id}`` with the full content."""
    return idempotency_key("product.update", cms_id, run_id, content_hash)


def product_archive_key(cms_id: str, run_id: str, content_hash: str | None) -> str:
    """``POST /v1/products/{id}`` with the full content and ``active=false``."""
    return idempotency_key("product.archive", cms_id, run_id, content_hash)


def archive_deleted_key(cms_id: str, run_id: str, product_id: str) -> str:
    """``POST /v1/products/{id}`` ``active=false`` for a row deleted from the CMS."""
    return idempotency_key("product.archive_deleted", cms_id, run_id, product_id)


def price_create_key(
    cms_id: str,
    unit_amount: int | None,
    currency: str | None,
    replaced_price_id: str | None,
    generation: int = 0,
) -> str:
    """``POST /v1/prices`` of a reprice: the same key in every run for the same transition (a
    resumed run replays it within Stripe's 24 hours instead of creating a second price); the
    price being replaced is part of it, so 10 → 20 → 10 makes a new price each time. A
    ``generation`` above 0 (recorded in ``products.price_key_generation``) is a new key for the
    same transition, used once Stripe replays a saved failure for the previous one."""
    tail = (f"g{generation}",) if generation else ()
    return idempotency_key("price.create", cms_id, unit_amount, currency, replaced_price_id, *tail)


def default_price_switch_key(
    cms_id: str, run_id: str, new_price_id: str, content_hash: str | None
) -> str:
    """``POST /v1/products/{id}`` ``default_price`` (with the content for update_and_reprice)."""
    return idempotency_key("product.default_price", cms_id, run_id, new_price_id, content_hash)


def price_deactivate_key(cms_id: str, run_id: str, price_id: str) -> str:
    """``POST /v1/prices/{price}`` ``active=false`` of a replaced or stray price."""
    return idempotency_key("price.deactivate", cms_id, run_id, price_id)


def lookup_key_reclaim_key(cms_id: str, run_id: str, price_id: str) -> str:
    """``POST /v1/prices/{price}`` giving the CMS lookup key back to the default price."""
    return idempotency_key("price.lookup_key", cms_id, run_id, price_id)


def with_generation(key: str, generation: int) -> str:
    """``key`` for its ``generation``-th resend after Stripe replayed a saved failure of it (a
    write that is harmless to repeat); generation 0 is ``key`` itself."""
    return key if generation == 0 else f"{key}:g{generation}"
