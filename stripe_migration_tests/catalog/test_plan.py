"""The catalogue plan: one action per product from the sync state, or from Stripe on a resync."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from stripe_migration.catalog.actions import (
    Action,
    PlannedAction,
    StripeProductState,
    sync_state_after,
)
from stripe_migration.catalog.plan import (
    build_plan,
    plan_product,
    plan_table,
    planned_writes,
    summarize,
)
from stripe_migration.catalog.schema import validate_products, validate_row

ID = "7d1c1f4e-3b0a-4a57-8a43-1f0f9a0b2c11"


def cms(**overrides: Any) -> dict[str, Any]:
    """A CMS row with its sync columns (never synced by default)."""
    base: dict[str, Any] = {
        "id": ID,
        "name": "Walnut Cutting Board",
        "description": "Oiled by hand.",
        "price": "49.99",
        "currency": "usd",
        "images": ["https://images.example.com/board.jpg"],
        "active": True,
        "metadata": {"sku": "SKU-7"},
        "stripe_product_id": None,
        "stripe_price_id": None,
        "sync_status": "pending",
        "sync_content_hash": None,
        "synced_unit_amount": None,
        "synced_currency": None,
    }
    base.update(overrides)
    return base


def validated(**overrides: Any) -> dict[str, Any]:
    product, reasons = validate_row(cms(**overrides))
    assert product is not None, reasons
    return product


def record(planned: PlannedAction, **ids: str) -> dict[str, Any]:
    """The validated product with the sync columns written back after ``planned`` was applied."""
    assert planned.product is not None
    return {**planned.product, **sync_state_after(planned, **ids)}


def synced_row(edit: dict[str, Any] | None = None, **base: Any) -> dict[str, Any]:
    """The CMS row ``cms(**base)`` created by a previous run, then edited with ``edit``."""
    first = plan_product(validated(**base))
    assert first.action is Action.CREATE
    state = sync_state_after(first, stripe_product_id="prod_1", stripe_price_id="price_1")
    return cms(**{**base, **state, **(edit or {})})


def synced(edit: dict[str, Any] | None = None, **base: Any) -> dict[str, Any]:
    """:func:`synced_row`, validated."""
    return validated(**synced_row(edit, **base))


def stripe_state(**overrides: Any) -> StripeProductState:
    """Stripe's copy of :func:`validated`, as the migration would have created it."""
    product = validated()
    fields: dict[str, Any] = {
        "product_id": "prod_1",
        "name": product["name"],
        "description": product["description"],
        "images": tuple(product["images"]),
        "metadata": dict(product["metadata"]),
        "active": True,
        "default_price_id": "price_1",
        "unit_amount": 4999,
        "currency": "usd",
    }
    fields.update(overrides)
    return StripeProductState(**fields)


def test_new_active_product_is_created() -> None:
    planned = plan_product(validated())
    assert planned.action is Action.CREATE
    assert planned.reasons == ("new: 49.99 usd",)
    assert planned.writes == 1


def test_inactive_product_never_synced_is_left_alone() -> None:
    planned = plan_product(validated(active=False))
    assert planned.action is Action.UNCHANGED
    assert "never synced" in planned.reasons[0]
    assert not planned.needs_writeback
    assert sync_state_after(planned) == {}


def test_synced_product_is_unchanged() -> None:
    planned = plan_product(synced())
    assert planned.action is Action.UNCHANGED
    assert planned.reasons == ()
    assert not planned.needs_writeback


@pytest.mark.parametrize(
    ("edit", "action", "reason"),
    [
        ({"name": "Oak Cutting Board"}, Action.UPDATE, "content changed"),
        ({"images": []}, Action.UPDATE, "content changed"),
        ({"metadata": {"sku": "SKU-8"}}, Action.UPDATE, "content changed"),
        ({"description": None}, Action.UPDATE, "content changed"),
        ({"price": "59.99"}, Action.REPRICE, "price: 49.99 usd → 59.99 usd"),
        ({"currency": "eur", "price": "49,99"}, Action.REPRICE, "price: 49.99 usd → 49.99 eur"),
        ({"name": "Oak", "price": "1"}, Action.UPDATE_AND_REPRICE, "price: 49.99 usd → 1.00 usd"),
        ({"stripe_price_id": None}, Action.REPRICE, "no price recorded"),
        ({"active": False}, Action.ARCHIVE, "deactivated in the CMS"),
    ],
)
def test_changes_since_last_sync(edit: dict[str, Any], action: Action, reason: str) -> None:
    planned = plan_product(synced(edit))
    assert planned.action is action
    assert any(reason in r for r in planned.reasons), planned.reasons
    assert planned.stripe_product_id == "prod_1"


def test_formatting_only_price_edit_is_not_a_change() -> None:
    assert plan_product(synced({"price": " $49.99 "})).action is Action.UNCHANGED


def test_archive_defers_a_price_change_and_keeps_the_old_price_recorded() -> None:
    planned = plan_product(synced({"active": False, "price": "99"}))
    assert planned.action is Action.ARCHIVE
    assert "price change deferred: the product is inactive" in planned.reasons
    state = sync_state_after(planned)
    assert state["sync_status"] == "archived"
    assert (state["synced_unit_amount"], state["synced_currency"]) == (4999, "usd")


def test_archived_product_stays_unchanged_then_reactivation_updates() -> None:
    archive = plan_product(synced({"active": False}))
    after = {**synced_row({"active": False}), **sync_state_after(archive)}
    assert plan_product(validated(**after)).action is Action.UNCHANGED
    assert plan_product(validated(**{**after, "name": "Renamed"})).action is Action.UPDATE
    reactivated = plan_product(validated(**{**after, "active": True}))
    assert reactivated.action is Action.UPDATE
    assert reactivated.reasons == ("reactivated in the CMS",)
    assert sync_state_after(reactivated)["sync_status"] == "synced"


def test_applied_actions_plan_as_unchanged_next_time() -> None:
    """Write-back is the checkpoint: after it, the same CMS data needs no write."""
    for edit in ({"name": "X"}, {"price": "10"}, {"name": "Y", "price": "11"}, {"active": False}):
        planned = plan_product(synced(edit))
        new_price = "price_2" if planned.creates_price else None
        after = record(planned, **({"stripe_price_id": new_price} if new_price else {}))
        again = plan_product(after)
        assert again.action is Action.UNCHANGED, (edit, again)
        assert not again.needs_writeback


def test_failed_row_that_is_now_fine_is_written_back() -> None:
    planned = plan_product(synced({"sync_status": "failed"}))
    assert planned.action is Action.UNCHANGED
    assert planned.needs_writeback
    assert sync_state_after(planned)["sync_status"] == "synced"


def test_invalid_rows_become_invalid_actions() -> None:
    result = validate_products([cms(), cms(id="bad", price="12.5.0")])
    plan = build_plan(result.valid, result.invalid)
    assert [p.action for p in plan] == [Action.CREATE, Action.INVALID]
    assert plan[1].cms_id == "bad"
    assert plan[1].reasons == ('price: "12.5.0" is not a number',)
    assert sync_state_after(plan[1]) == {
        "sync_status": "failed",
        "sync_error": 'price: "12.5.0" is not a number',
    }


def test_plan_from_a_dataframe_with_missing_sync_values() -> None:
    frame = pd.DataFrame([synced_row(), cms(id="new")])
    result = validate_products(frame)
    plan = build_plan(result.valid)
    assert [p.action for p in plan] == [Action.UNCHANGED, Action.CREATE]


_PRODUCT_DRIFT = {
    "in_sync": False,
    "product": {
        "in_sync": False,
        "archived": False,
        "differences": {"name": {"stripe": "Edited", "cms": "Walnut Cutting Board"}},
    },
}
_PRICE_DRIFT = {
    "in_sync": False,
    "price": {"in_sync": False, "differences": {"unit_amount": {"stripe": 100, "cms": 4999}}},
}


@pytest.mark.parametrize(
    ("drift", "action", "reason"),
    [
        (_PRODUCT_DRIFT, Action.UPDATE, "product drift in Stripe: name"),
        (_PRICE_DRIFT, Action.REPRICE, "price drift in Stripe: unit_amount"),
        ({**_PRODUCT_DRIFT, **_PRICE_DRIFT}, Action.UPDATE_AND_REPRICE, "product drift"),
        (
            {"in_sync": False, "product": {"in_sync": False, "archived": True}},
            Action.UPDATE,
            "archived",
        ),
        ("something odd", Action.UPDATE, "drift recorded in Stripe"),
        ({"in_sync": True, "product": {"in_sync": True}}, Action.UNCHANGED, None),
    ],
)
def test_drift_recorded_by_webhooks_is_repaired(
    drift: object, action: Action, reason: str | None
) -> None:
    planned = plan_product(synced({"stripe_drift": drift}))
    assert planned.action is action
    if reason:
        assert any(reason in r for r in planned.reasons), planned.reasons
    assert not any(r.startswith("price: ") for r in planned.reasons)  # the amount did not change


def test_price_drift_on_an_archived_product_waits() -> None:
    archive = plan_product(synced({"active": False}))
    after = {
        **synced_row({"active": False}),
        **sync_state_after(archive),
        "stripe_drift": _PRICE_DRIFT,
    }
    assert plan_product(validated(**after)).action is Action.UNCHANGED


# Forced resync: Stripe's actual state decides.


def test_resync_matching_stripe_is_unchanged() -> None:
    planned = plan_product(synced(), stripe_state(), resync=True)
    assert planned.action is Action.UNCHANGED
    assert not planned.adopt


@pytest.mark.parametrize(
    ("stripe_edit", "action", "change"),
    [
        ({"name": "Edited in dashboard"}, Action.UPDATE, 'name: "Edited in dashboard" →'),
        ({"description": None}, Action.UPDATE, "description changed"),
        ({"images": ()}, Action.UPDATE, "images: 0 → 1 URLs"),
        ({"active": False}, Action.UPDATE, "active: false → true"),
        ({"unit_amount": 100}, Action.REPRICE, "price in Stripe: 1.00 usd → 49.99 usd"),
        ({"default_price_id": None, "unit_amount": None}, Action.REPRICE, "price in Stripe: none"),
        ({"name": "x", "currency": "eur"}, Action.UPDATE_AND_REPRICE, "price in Stripe"),
    ],
)
def test_resync_repairs_edits_made_in_stripe(
    stripe_edit: dict[str, Any], action: Action, change: str
) -> None:
    planned = plan_product(synced(), stripe_state(**stripe_edit), resync=True)
    assert planned.action is action
    assert any(change in r for r in planned.reasons), planned.reasons


def test_resync_unsets_metadata_added_in_stripe() -> None:
    product = validated()
    state = stripe_state(metadata={**product["metadata"], "note": "x", "sku": "other"})
    planned = plan_product(synced(), state, resync=True)
    assert planned.action is Action.UPDATE
    assert planned.unset_metadata_keys == ("note",)
    assert "metadata: changed sku; removed note" in planned.reasons


def test_resync_ignores_stripe_edits_not_made_by_us_in_the_hash() -> None:
    # Recorded hash is stale but Stripe matches the CMS: nothing to send.
    planned = plan_product(synced({"sync_content_hash": "stale"}), stripe_state(), resync=True)
    assert planned.action is Action.UNCHANGED


def test_resync_adopts_a_product_a_killed_run_created() -> None:
    planned = plan_product(validated(), stripe_state(), resync=True)
    assert planned.action is Action.UNCHANGED
    assert planned.adopt and planned.needs_writeback
    assert planned.stripe_product_id == "prod_1"
    assert "adopting Stripe product prod_1 (recorded: none)" in planned.reasons
    after = sync_state_after(planned)
    assert after["stripe_product_id"] == "prod_1"
    assert after["stripe_price_id"] == "price_1"


def test_resync_creates_what_stripe_does_not_have() -> None:
    planned = plan_product(synced(), None, resync=True)
    assert planned.action is Action.CREATE
    assert "recorded product prod_1 not found in Stripe" in planned.reasons[0]
    assert plan_product(validated(active=False), None, resync=True).action is Action.UNCHANGED


def test_resync_archives_an_inactive_product_active_in_stripe() -> None:
    planned = plan_product(synced({"active": False}), stripe_state(unit_amount=1), resync=True)
    assert planned.action is Action.ARCHIVE
    assert planned.reasons[0] == "active: true → false"
    assert "price change deferred: the product is inactive" in planned.reasons
    assert sync_state_after(planned)["synced_unit_amount"] == 1
    archived = stripe_state(active=False)
    assert plan_product(synced({"active": False}), archived, resync=True).action is Action.UNCHANGED


def test_build_plan_resync_uses_the_state_by_cms_id() -> None:
    result = validate_products([synced_row(), cms(id="other")])
    plan = build_plan(
        result.valid, stripe_state={ID: stripe_state(name="drift")}, force_resync=True
    )
    assert [p.action for p in plan] == [Action.UPDATE, Action.CREATE]


def test_state_from_stripe_objects() -> None:
    product = {
        "id": "prod_9",
        "name": "N",
        "description": "",
        "images": ["https://x.example.com/a.jpg"],
        "metadata": {"cms_id": ID},
        "active": True,
        "default_price": {"id": "price_9", "unit_amount": 500, "currency": "eur"},
    }
    state = StripeProductState.from_stripe(product)
    assert (state.default_price_id, state.unit_amount, state.currency) == ("price_9", 500, "eur")
    assert state.description is None
    by_id = StripeProductState.from_stripe({**product, "default_price": "price_9"})
    assert (by_id.default_price_id, by_id.unit_amount) == ("price_9", None)


def test_summary_and_table() -> None:
    result = validate_products(
        [synced_row(), synced_row({"name": "New name"}, id="b"), cms(id="c", price="x")]
    )
    plan = build_plan(result.valid, result.invalid)
    counts = summarize(plan)
    assert counts == {
        "create": 0,
        "update": 1,
        "reprice": 0,
        "update_and_reprice": 0,
        "archive": 0,
        "archive_deleted": 0,
        "retire_prices": 0,
        "unchanged": 1,
        "invalid": 1,
    }
    assert planned_writes(plan) == 1
    table = plan_table(plan, limit=10)
    assert [row["action"] for row in table] == ["update", "invalid"]
    assert table[0]["price"] == "49.99 usd"
    assert set(table[0]) == {"cms_id", "action", "name", "price", "stripe_product_id", "changes"}
    assert len(plan_table(plan, limit=1)) == 1
    assert len(plan_table(plan, limit=10, include_unchanged=True)) == 3


def test_dry_run_of_a_synced_catalogue_plans_zero_writes() -> None:
    rows = [synced_row(id=f"id-{i}", metadata={"sku": f"S{i}"}) for i in range(20)]
    assert planned_writes(build_plan(validate_products(rows).valid)) == 0


def test_a_row_left_mid_apply_is_planned_against_stripe_even_when_reverted() -> None:
    """A run updated Stripe (the name) and was killed before its checkpoint; the editor then
    reverted the row. The record says unchanged, Stripe says otherwise: Stripe wins."""
    row = synced_row({"sync_run_id": "killed-run"})
    state = {ID: stripe_state(name="Edited by the killed run")}
    [gone] = build_plan(validate_products([row]).valid)  # no product in Stripe at all
    assert gone.action is Action.CREATE
    [planned] = build_plan(validate_products([row]).valid, stripe_state=state)
    assert planned.action is Action.UPDATE
    assert planned.interrupted and planned.needs_writeback
    [unmarked] = build_plan(validate_products([synced_row()]).valid, stripe_state=state)
    assert unmarked.action is Action.UNCHANGED and not unmarked.interrupted


def test_stray_prices_of_a_killed_reprice_are_retired() -> None:
    row = synced_row({"sync_run_id": "killed-run"})
    strays = stripe_state(stray_price_ids=("price_left",), stray_holds_lookup_key=True)
    [planned] = build_plan(validate_products([row]).valid, stripe_state={ID: strays})
    assert planned.action is Action.RETIRE_PRICES
    assert planned.stray_price_ids == ("price_left",) and planned.reclaim_lookup_key
    assert planned.writes == 2  # the stray deactivated, the lookup key back on the default
    assert "left active by an interrupted run: price_left" in planned.reasons
    assert sync_state_after(planned)["stripe_price_id"] == "price_1"

    # a reprice deactivates the strays itself and its new price takes the lookup key
    repriced = synced_row({"sync_run_id": "killed-run", "price": "59.99"})
    [planned] = build_plan(validate_products([repriced]).valid, stripe_state={ID: strays})
    assert planned.action is Action.REPRICE and not planned.reclaim_lookup_key
    assert planned.writes == 3 + 1


def test_a_marked_row_without_a_change_still_clears_its_mark() -> None:
    [planned] = build_plan(
        validate_products([synced_row({"sync_run_id": "killed-run"})]).valid,
        stripe_state={ID: stripe_state()},
    )
    assert planned.action is Action.UNCHANGED and planned.writes == 0
    assert planned.needs_writeback
