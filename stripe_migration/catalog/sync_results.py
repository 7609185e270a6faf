"""What applying one product leaves behind: the result the checkpoint writes back, and the errors.

Also the Stripe calls applying needs (:class:`StripeWriter`) and the results of the rows that need
no call at all (:func:`bookkeeping_results`). No Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import stripe

from stripe_migration.catalog.actions import Action, PlannedAction, sync_state_after

#: Records a new price key generation of a CMS row before it is used: (cms id, generation).
RecordKeyGeneration = Callable[[str, int], None]


class StripeWriter(Protocol):
    """The Stripe calls applying a plan needs (implemented by the StripeResource's API wrapper)."""

    def create_product(self, params: dict, *, idempotency_key: str) -> Mapping[str, Any]: ...
    def update_product(
        self, product_id: str, params: dict, *, idempotency_key: str
    ) -> Mapping[str, Any]: ...
    def retrieve_product(self, product_id: str) -> Mapping[str, Any]:
        """The product with its ``default_price`` expanded."""
        ...

    def create_price(self, params: dict, *, idempotency_key: str) -> Mapping[str, Any]: ...
    def update_price(
        self, price_id: str, params: dict, *, idempotency_key: str
    ) -> Mapping[str, Any]: ...
    def list_prices(self, **params: Any) -> Iterable[Mapping[str, Any]]: ...


class FatalApplyError(RuntimeError):
    """An error that stops the whole run (bad key, live mode refused); per-product errors don't."""


@dataclass(frozen=True)
class SyncResult:
    """What one product's sync left behind: the row written back to Supabase."""

    id: str
    sync_status: str  # 'synced' | 'archived' | 'failed'
    action: str
    synced_version: str | None
    stripe_product_id: str | None = None
    stripe_price_id: str | None = None
    sync_error: str | None = None
    sync_content_hash: str | None = None
    synced_unit_amount: int | None = None
    synced_currency: str | None = None
    synced_metadata_keys: list[str] | None = None
    created_product: bool = False
    #: True when the product was created through its price (``POST /v1/prices`` + completion).
    created_by_price: bool = False
    #: True when Stripe refused a valid row (the row is failed with Stripe's message).
    refused: bool = False

    @property
    def deleted(self) -> bool:
        """Whether this is the archive of a deleted row's product (a tombstone, not a row)."""
        return self.action == Action.ARCHIVE_DELETED.value

    def checkpoint_row(self) -> dict[str, Any]:
        """The JSON object ``apply_sync_results`` expects."""
        return {
            "id": self.id,
            "stripe_product_id": self.stripe_product_id,
            "stripe_price_id": self.stripe_price_id,
            "sync_status": self.sync_status,
            "sync_error": self.sync_error,
            "sync_content_hash": self.sync_content_hash,
            "synced_unit_amount": self.synced_unit_amount,
            "synced_currency": self.synced_currency,
            "synced_version": self.synced_version,
            "synced_metadata_keys": self.synced_metadata_keys,
        }


def error_text(exc: BaseException) -> str:
    """One line for a failed call: Stripe's message and the parameter it names, or the error."""
    if isinstance(exc, stripe.StripeError):
        error = exc.error
        param = getattr(exc, "param", None) or (error.param if error is not None else None)
        message = exc.user_message or str(exc)
        return f"Stripe refused: {message}" + (f" (param {param})" if param else "")
    return f"{type(exc).__name__}: {exc}"


def version_of(item: PlannedAction) -> str | None:
    value = (item.product or {}).get("updated_at")
    if value is None:
        return item.invalid_version
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def synced_result(
    item: PlannedAction,
    product_id: str | None = None,
    price_id: str | None = None,
    *,
    created_product: bool = False,
    created_by_price: bool = False,
) -> SyncResult:
    """The result of applying ``item``: the sync columns the plan says to record."""
    state = sync_state_after(item, stripe_product_id=product_id, stripe_price_id=price_id)
    return SyncResult(
        id=str(item.cms_id),
        action=item.action.value,
        synced_version=version_of(item),
        created_product=created_product,
        created_by_price=created_by_price,
        # nothing to record (an inactive row never synced) but an interrupted run's mark to clear
        sync_status=state.pop("sync_status", item.recorded_status or "pending"),
        **state,
    )


def default_price_id(product: Mapping[str, Any]) -> str | None:
    price = product.get("default_price")
    if isinstance(price, Mapping):
        return price.get("id")
    return price


def bookkeeping_results(plan: Sequence[PlannedAction]) -> list[SyncResult]:
    """Results for rows that need no Stripe call but a write-back: invalid rows (failed, with
    their reason) and unchanged ones. Every row a run looked at records the CMS version it saw
    (``synced_version``) and loses its drift mark and any interrupted run's mark, so it leaves
    the scope of the next run."""
    return [
        synced_result(item, item.stripe_product_id, item.stripe_price_id)
        for item in plan
        if item.writes == 0
        and item.cms_id
        and (item.action is Action.INVALID or item.status_after is not None or item.interrupted)
    ]
