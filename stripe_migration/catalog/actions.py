"""What the migration can do with one product (the actions), and what it records once done.

Pure data, no Dagster: :class:`Action`, the :class:`PlannedAction` the plan gives each product with
its reasons and what applying it needs, the :class:`StripeProductState` a forced resync compares
with, the :class:`Deletion` of a CMS row, and :func:`sync_state_after`, the sync columns the
checkpoint writes once an action is applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from stripe_migration.catalog.hashing import product_content


class Action(StrEnum):
    """What the migration does with one product."""

    CREATE = "create"
    UPDATE = "update"
    REPRICE = "reprice"
    UPDATE_AND_REPRICE = "update_and_reprice"
    ARCHIVE = "archive"
    ARCHIVE_DELETED = "archive_deleted"
    RETIRE_PRICES = "retire_prices"
    UNCHANGED = "unchanged"
    INVALID = "invalid"


#: Stripe write calls each action costs (create: product and price in one call; reprice: new price,
#: default price switch, old price deactivated; update_and_reprice folds the update into the switch;
#: archive_deleted: the deleted row's product archived). A reprice also lists the product's active
#: prices (one read). Retiring stray prices costs one write per price (see ``PlannedAction.writes``).
WRITES_PER_ACTION: Mapping[Action, int] = {
    Action.CREATE: 1,
    Action.UPDATE: 1,
    Action.REPRICE: 3,
    Action.UPDATE_AND_REPRICE: 3,
    Action.ARCHIVE: 1,
    Action.ARCHIVE_DELETED: 1,
    Action.RETIRE_PRICES: 0,
    Action.UNCHANGED: 0,
    Action.INVALID: 0,
}


@dataclass(frozen=True)
class StripeProductState:
    """A Stripe product as it is, with its default price, for the forced resync."""

    product_id: str
    name: str | None
    description: str | None
    images: tuple[str, ...]
    metadata: Mapping[str, str]
    active: bool
    default_price_id: str | None = None
    unit_amount: int | None = None
    currency: str | None = None
    #: Active prices of this CMS product other than the default (left by a killed reprice); only
    #: known when the product's prices were listed (see ``stripe_state.fetch_stray_prices``).
    stray_price_ids: tuple[str, ...] = ()
    #: Whether one of those holds the CMS lookup key, which then goes back to the default price.
    stray_holds_lookup_key: bool = False
    #: True for a product born through its price whose completion a kill prevented: it has no
    #: default price yet; ``default_price_id`` is then the price that made it (which holds the
    #: CMS lookup key), the one to make its default.
    default_price_unset: bool = False

    @classmethod
    def from_stripe(
        cls, product: Mapping[str, Any], default_price: Mapping[str, Any] | None = None
    ) -> StripeProductState:
        """Build from Stripe's product object (as a dict) and its default price object.

        ``product["default_price"]`` may be an id or the expanded price; ``default_price`` wins.
        """
        price = default_price
        raw_default = product.get("default_price")
        if price is None and isinstance(raw_default, Mapping):
            price = raw_default
        price_id = (
            price.get("id") if price else raw_default if isinstance(raw_default, str) else None
        )
        return cls(
            product_id=str(product["id"]),
            name=product.get("name"),
            description=product.get("description") or None,
            images=tuple(product.get("images") or ()),
            metadata=dict(product.get("metadata") or {}),
            active=bool(product.get("active", True)),
            default_price_id=price_id,
            unit_amount=price.get("unit_amount") if price else None,
            currency=price.get("currency") if price else None,
        )


@dataclass(frozen=True)
class PlannedAction:
    """One product's planned action, with the reasons (the changes) and what applying it needs."""

    cms_id: str | None
    action: Action
    reasons: tuple[str, ...]
    product: Mapping[str, Any] | None = None
    stripe_product_id: str | None = None
    stripe_price_id: str | None = None
    unset_metadata_keys: tuple[str, ...] = field(default=())
    #: True when a forced resync found the product in Stripe under another id than the recorded one
    #: (or none recorded): the ids must be written back even if nothing else is done.
    adopt: bool = False
    #: The default price Stripe has now, as far as known (recorded state, or Stripe's on a resync).
    stripe_unit_amount: int | None = None
    stripe_currency: str | None = None
    #: ``sync_status`` as recorded in Supabase before this run.
    recorded_status: str | None = None
    #: Set when an earlier run was killed while applying this row: its mark must be cleared even
    #: when nothing is written.
    interrupted: bool = False
    #: Active prices of ours beside the default, to deactivate (see ``StripeProductState``).
    stray_price_ids: tuple[str, ...] = ()
    #: Whether the CMS lookup key goes back to the default price once the strays are retired.
    reclaim_lookup_key: bool = False
    #: True when the product is written but the metadata keys Stripe holds are not known (a row
    #: synced before they were recorded): the apply reads them first, to unset the removed ones.
    metadata_keys_unknown: bool = False
    #: True when the plan compared the row with Stripe's actual state (forced resync, interrupted).
    compared_with_stripe: bool = False
    #: The CMS version (``updated_at``) of a row refused by the validation, which has no
    #: ``product``: recorded like a synced row's, so that only an edit makes it work again.
    invalid_version: str | None = None
    #: True when the product was born through its price and never completed: the update sends
    #: the full content with ``stripe_price_id`` as the default price.
    completes_product: bool = False

    @property
    def updates_product(self) -> bool:
        """True when the product object itself is written (content, active flag)."""
        return self.action in (Action.UPDATE, Action.UPDATE_AND_REPRICE, Action.ARCHIVE)

    @property
    def creates_price(self) -> bool:
        """True when a new price replaces the default price."""
        return self.action in (Action.REPRICE, Action.UPDATE_AND_REPRICE)

    @property
    def content_hash(self) -> str | None:
        """The hash to record once applied."""
        return self.product["content_hash"] if self.product else None

    @property
    def unit_amount(self) -> int | None:
        """The CMS price in minor units."""
        return int(self.product["unit_amount"]) if self.product else None

    @property
    def currency(self) -> str | None:
        """The CMS currency."""
        return self.product["currency"] if self.product else None

    @property
    def active(self) -> bool:
        """Whether the product is active in the CMS."""
        return bool(self.product and product_content(self.product)["active"])

    @property
    def price_key_generation(self) -> int:
        """The generation of the idempotency key of this row's next new price (see apply)."""
        return opt_int((self.product or {}).get("price_key_generation")) or 0

    @property
    def metadata_keys_after(self) -> list[str] | None:
        """The metadata keys Stripe holds once applied, to record; None when not known (the
        product was not written and not compared with Stripe)."""
        if self.product is None or self.action is Action.INVALID:
            return None
        if self.updates_product or self.action is Action.CREATE or self.compared_with_stripe:
            return sorted(product_content(self.product)["metadata"])
        return None

    @property
    def status_after(self) -> str | None:
        """The ``sync_status`` once applied: failed, archived, synced, or None (never synced)."""
        if self.action is Action.INVALID:
            return "failed"
        if self.action is Action.ARCHIVE_DELETED:
            return "archived"
        if self.action is not Action.CREATE and self.stripe_product_id is None:
            # inactive, and Stripe was asked: nothing to create until it is reactivated
            return "archived" if self.compared_with_stripe and not self.active else None
        return "synced" if self.active else "archived"

    @property
    def needs_writeback(self) -> bool:
        """Whether Supabase must be told anything about this product after the run."""
        if self.action is not Action.UNCHANGED or self.interrupted:
            return True
        return self.adopt or (
            self.status_after is not None and self.status_after != self.recorded_status
        )

    @property
    def writes(self) -> int:
        """Stripe write calls this action is expected to make."""
        retiring = len(self.stray_price_ids) + (1 if self.reclaim_lookup_key else 0)
        return WRITES_PER_ACTION[self.action] + retiring


def sync_state_after(
    planned: PlannedAction,
    *,
    stripe_product_id: str | None = None,
    stripe_price_id: str | None = None,
) -> dict[str, Any]:
    """The ``products`` sync columns to write once ``planned`` has been applied (the checkpoint).

    ``stripe_product_id`` / ``stripe_price_id`` are the ids Stripe returned (a create's product and
    default price, a reprice's new price); others default to the planned ones. Empty when there is
    nothing to record (an inactive product never synced). ``synced_at`` is the writer's ``now()``.
    """
    if planned.action is Action.INVALID:
        return {"sync_status": "failed", "sync_error": "; ".join(planned.reasons)}
    status = planned.status_after
    if status is None:
        return {}
    if (
        planned.action in (Action.CREATE, Action.REPRICE, Action.UPDATE_AND_REPRICE)
        or planned.active
    ):
        amount, currency = planned.unit_amount, planned.currency
    else:  # an inactive product keeps its old price until it is reactivated
        amount, currency = planned.stripe_unit_amount, planned.stripe_currency
    return {
        "stripe_product_id": stripe_product_id or planned.stripe_product_id,
        "stripe_price_id": stripe_price_id or planned.stripe_price_id,
        "sync_status": status,
        "sync_error": None,
        "sync_content_hash": planned.content_hash,
        "synced_unit_amount": amount,
        "synced_currency": currency,
        "synced_metadata_keys": planned.metadata_keys_after,
    }


def is_missing(value: object) -> bool:
    """Whether a cell is empty: None, pandas' NA/NaT, or NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def opt_str(value: object) -> str | None:
    """A cell as text, None when empty."""
    return None if is_missing(value) or value == "" else str(value)


def opt_int(value: object) -> int | None:
    """A cell as an int, None when empty."""
    return None if is_missing(value) else int(value)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Deletion:
    """A CMS product that no longer has a row, whose Stripe product must be archived: a pending
    tombstone of ``products_deleted``, or (on a forced resync) a Stripe product carrying a CMS id
    that no row has."""

    cms_id: str
    #: The recorded Stripe product; None means the custom id ``cms_<id>`` (a create that was
    #: never recorded may have made it).
    stripe_product_id: str | None
    name: str | None = None
    #: True for a Stripe product found by the forced resync, with no tombstone.
    found_in_stripe: bool = False

    @classmethod
    def from_tombstone(cls, row: Mapping[str, Any]) -> Deletion:
        """From a ``products_deleted`` row."""
        data = row.get("row_data") if isinstance(row.get("row_data"), Mapping) else {}
        return cls(
            cms_id=str(row["id"]),
            stripe_product_id=opt_str(row.get("stripe_product_id")),
            name=opt_str(data.get("name")),
        )
