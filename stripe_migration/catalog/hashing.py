"""Stable fingerprints of what the migration sends to Stripe, for change detection and idempotency.

:func:`content_hash` covers the Stripe *product* fields (name, description, images, metadata, active);
the price is tracked separately by amount and currency (:func:`price_key`), because a price change
means a new Price object while a content change is a product update. The hash is stored in
``products.sync_content_hash`` after a successful write, so a row whose hash still matches needs no
call at all.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Mapping
from typing import Any

#: Bumped when the canonical form changes; part of every hash so old and new never compare equal.
HASH_VERSION = 1

#: The product fields the hash covers, in the form they are sent to Stripe.
PRODUCT_CONTENT_FIELDS: tuple[str, ...] = ("name", "description", "images", "metadata", "active")


def product_content(product: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Stripe product content of a validated product, in canonical form.

    ``product`` is a validated row (see :mod:`stripe_migration.catalog.schema`): ``metadata`` is
    already the dict of strings sent to Stripe (including ``cms_id``), ``description`` is None when
    empty. Images keep their order (Stripe shows the first one); metadata keys are sorted.
    """
    metadata = product.get("metadata") or {}
    description = product.get("description")
    return {
        "name": product["name"],
        # Empty and missing are the same to Stripe; pandas may hold a missing value as NaN.
        "description": description if isinstance(description, str) and description else None,
        "images": [str(url) for url in (product.get("images") or [])],
        "metadata": {str(k): str(v) for k, v in sorted(metadata.items())},
        "active": bool(product.get("active", True)),
    }


def canonical_json(value: Any) -> str:
    """Return ``value`` as compact JSON with sorted keys: equal data gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(product: Mapping[str, Any]) -> str:
    """Return the sha256 (hex) of the canonical JSON of :func:`product_content` of ``product``."""
    document = {"v": HASH_VERSION, **product_content(product)}
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def price_key(unit_amount: int, currency: str) -> str:
    """Return the price's identity for change detection: ``"1999:usd"``."""
    if isinstance(unit_amount, bool):
        raise TypeError("unit_amount must be an int, got bool")
    try:
        amount = operator.index(unit_amount)  # int and numpy integers, never floats
    except TypeError:
        raise TypeError(f"unit_amount must be an int, got {type(unit_amount).__name__}") from None
    return f"{amount}:{currency.strip().lower()}"
