"""The catalogue plan: for each product, the one thing to do in Stripe, and why. Pure logic.

Input: validated rows (from :func:`stripe_migration.catalog.schema.validate_products`, with the
Supabase sync-state columns), the invalid rows, and on a forced resync Stripe's actual state per
CMS id. Output: one :class:`PlannedAction` per product. A dry run is this plan alone.

Rules, from the Supabase sync state (normal run):

- no ``stripe_product_id`` → ``create`` if active; an inactive row never synced is ``unchanged``;
- ``content_hash`` differs from ``sync_content_hash`` → ``update``;
- ``(unit_amount, currency)`` differs from ``(synced_unit_amount, synced_currency)``, or no price id
  is recorded → ``reprice`` (both → ``update_and_reprice``);
- inactive in the CMS and not ``sync_status = 'archived'`` → ``archive`` (the update carries any
  content change too); the price of an inactive product is left alone until it is reactivated;
- drift recorded by the webhook handlers (``stripe_drift``) counts as a change: product drift →
  ``update`` (the full content is re-sent), price drift → ``reprice``;
- otherwise ``unchanged``; invalid rows → ``invalid`` with their reason.

On a forced resync the same decisions are taken against Stripe's actual state instead of the
recorded one (so edits made directly in Stripe are repaired, and a product a killed run created
but never recorded is adopted instead of created twice); metadata keys present in Stripe but not
in the CMS are unset. So is a row that an earlier run was applying when it was killed
(``sync_run_id`` still set): that run may have written what the record does not say, and the
editor may since have reverted the row to the recorded state. Its prices are listed too, and
active prices of ours other than the default (a killed reprice's new price) are deactivated:
``retire_prices`` when nothing else is to be done. A product a kill left half-made between the two
calls of a create through its price (no default price yet) is completed by an update.

Metadata: Stripe merges the metadata of an update into what the product has, so a key removed in
the CMS must be sent with an empty value. The checkpoint records the keys it sent
(``synced_metadata_keys``); a normal run unsets the recorded keys the CMS no longer has. A row
synced before those were recorded (NULL) is flagged ``metadata_keys_unknown`` when its product is
written: the apply reads the product's keys from Stripe first.

Deletions: a row deleted from the CMS leaves a tombstone (``products_deleted``); each pending one is
planned ``archive_deleted`` (its Stripe product is archived, never deleted). A forced resync also
plans it for Stripe products carrying a CMS id that no row has (see :func:`plan_deletion`).

After applying an action, :func:`sync_state_after` gives the sync columns to write back (the
checkpoint); planning again from them yields ``unchanged``. :func:`bookkeeping` and
:func:`with_bookkeeping` let a run that waited for the ``stripe_api`` pool re-plan rows another
run synced meanwhile.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from stripe_migration.catalog.actions import (
    Action,
    Deletion,
    PlannedAction,
    StripeProductState,
    is_missing,
    opt_int,
    opt_str,
)
from stripe_migration.catalog.columns import BOOKKEEPING_COLUMNS
from stripe_migration.catalog.hashing import product_content
from stripe_migration.catalog.prices import CURRENCIES, format_minor_units


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return "none"
    if currency.lower() in CURRENCIES:
        return f"{format_minor_units(amount, currency)} {currency.lower()}"
    return f"{amount} {currency}"


def _short(text: object, max_chars: int = 40) -> str:
    value = "" if text is None else str(text)
    value = value if len(value) <= max_chars else value[: max_chars - 3] + "..."
    return '"' + value + '"'


def _content_diff(
    expected: Mapping[str, Any], actual: StripeProductState
) -> tuple[list[str], tuple[str, ...]]:
    """Compare the content we send with Stripe's; return (changes, metadata keys to unset)."""
    changes: list[str] = []
    if expected["name"] != actual.name:
        changes.append(f"name: {_short(actual.name)} → {_short(expected['name'])}")
    if expected["description"] != (actual.description or None):
        changes.append("description changed")
    if list(expected["images"]) != list(actual.images):
        changes.append(f"images: {len(actual.images)} → {len(expected['images'])} URLs (or order)")
    want: Mapping[str, str] = expected["metadata"]
    have = {str(k): str(v) for k, v in actual.metadata.items()}
    added = sorted(k for k in want if k not in have)
    changed = sorted(k for k in want if k in have and have[k] != want[k])
    removed = tuple(sorted(k for k in have if k not in want))
    if added or changed or removed:
        parts = [
            f"{label} {', '.join(keys)}"
            for label, keys in (("added", added), ("changed", changed), ("removed", removed))
            if keys
        ]
        changes.append("metadata: " + "; ".join(parts))
    return changes, removed


def plan_product(
    product: Mapping[str, Any], stripe_state: StripeProductState | None = None, resync: bool = False
) -> PlannedAction:
    """Plan one validated product; with ``resync``, compare against ``stripe_state`` (None when
    Stripe has no product for this CMS id)."""
    if resync:
        return _plan_against_stripe(product, stripe_state)
    cms_id = str(product["id"])
    active = product_content(product)["active"]
    amount, currency = int(product["unit_amount"]), str(product["currency"])
    product_id = opt_str(product.get("stripe_product_id"))
    price_id = opt_str(product.get("stripe_price_id"))
    status = opt_str(product.get("sync_status"))
    synced_amount = opt_int(product.get("synced_unit_amount"))
    synced_currency = opt_str(product.get("synced_currency"))

    recorded_keys = _recorded_keys(product.get("synced_metadata_keys"))
    unset = (
        tuple(sorted(set(recorded_keys) - set(product_content(product)["metadata"])))
        if recorded_keys is not None
        else ()
    )

    def planned(action: Action, reasons: Iterable[str]) -> PlannedAction:
        writes_product = action in (Action.UPDATE, Action.UPDATE_AND_REPRICE, Action.ARCHIVE)
        return PlannedAction(
            cms_id, action, tuple(reasons), product, product_id, price_id,
            unset_metadata_keys=unset if writes_product else (),
            stripe_unit_amount=synced_amount, stripe_currency=synced_currency,
            recorded_status=status,
            metadata_keys_unknown=writes_product and recorded_keys is None,
        )  # fmt: skip

    if product_id is None:
        if not active:
            return planned(Action.UNCHANGED, ["inactive in the CMS and never synced"])
        return planned(Action.CREATE, [f"new: {_money(amount, currency)}"])

    hash_changed = product["content_hash"] != opt_str(product.get("sync_content_hash"))
    product_drift, price_drift = _drift(product.get("stripe_drift"))
    amount_changed = price_id is None or (amount, currency) != (synced_amount, synced_currency)
    content_changed = hash_changed or product_drift is not None
    price_changed = amount_changed or price_drift is not None
    reasons: list[str] = []
    if hash_changed:
        reactivated = active and status == "archived"
        reasons.append(
            "reactivated in the CMS" if reactivated else "content changed since the last sync"
        )
    if product_drift is not None:
        reasons.append(product_drift)
    if not active:
        if price_changed:
            reasons.append("price change deferred: the product is inactive")
        if status != "archived":
            return planned(Action.ARCHIVE, ["deactivated in the CMS", *reasons])
        return planned(Action.UPDATE if content_changed else Action.UNCHANGED, reasons)
    if price_drift is not None:
        reasons.append(price_drift)
    if amount_changed:
        reasons.append(
            f"price: {_money(synced_amount, synced_currency)} → {_money(amount, currency)}"
            if price_id
            else f"no price recorded: {_money(amount, currency)}"
        )
    return planned(_combine(content_changed, price_changed), reasons)


def _recorded_keys(value: object) -> list[str] | None:
    """``products.synced_metadata_keys``: the keys last sent to Stripe, None when unknown."""
    if isinstance(value, str):  # jsonb handed over as its JSON text
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list | tuple):
        return None
    return [str(key) for key in value]


def _drift(value: object) -> tuple[str | None, str | None]:
    """Read ``products.stripe_drift`` (written by the webhook handlers): reasons for a product
    drift and a price drift, None where Stripe agrees. Unreadable drift counts as product drift."""
    if is_missing(value) or not value:
        return None, None
    if not isinstance(value, Mapping):
        return "drift recorded in Stripe", None
    if value.get("in_sync") is True:
        return None, None
    reasons: list[str | None] = []
    for kind in ("product", "price"):
        section = value.get(kind)
        if not isinstance(section, Mapping) or section.get("in_sync") is True:
            reasons.append(None)
            continue
        differences = section.get("differences")
        fields = sorted(map(str, differences)) if isinstance(differences, Mapping) else []
        fields += [flag for flag in ("archived", "deleted") if section.get(flag)]
        reasons.append(f"{kind} drift in Stripe: {', '.join(fields) or 'changed'}")
    product_reason, price_reason = reasons
    if product_reason is None and price_reason is None:
        return "drift recorded in Stripe", None
    return product_reason, price_reason


def _combine(update: bool, reprice: bool) -> Action:
    if update and reprice:
        return Action.UPDATE_AND_REPRICE
    if update:
        return Action.UPDATE
    if reprice:
        return Action.REPRICE
    return Action.UNCHANGED


def _plan_against_stripe(
    product: Mapping[str, Any], state: StripeProductState | None
) -> PlannedAction:
    cms_id = str(product["id"])
    content = product_content(product)
    active = content["active"]
    amount, currency = int(product["unit_amount"]), str(product["currency"])
    recorded = opt_str(product.get("stripe_product_id"))
    status = opt_str(product.get("sync_status"))
    if state is None:
        if not active:
            return PlannedAction(
                cms_id, Action.UNCHANGED, ("inactive in the CMS and not in Stripe",), product,
                recorded_status=status, interrupted=interrupted(product),
                compared_with_stripe=True,
            )  # fmt: skip
        why = f"recorded product {recorded} not found in Stripe" if recorded else "not in Stripe"
        return PlannedAction(
            cms_id, Action.CREATE, (f"{why}: new {_money(amount, currency)}",), product,
            recorded_status=status, interrupted=interrupted(product),
        )  # fmt: skip

    adopt = recorded != state.product_id
    changes, unset = _content_diff(content, state)
    price_changed = state.default_price_id is None or (amount, currency) != (
        state.unit_amount,
        state.currency,
    )

    def planned(action: Action, reasons: Iterable[str]) -> PlannedAction:
        adopting = (
            [f"adopting Stripe product {state.product_id} (recorded: {recorded or 'none'})"]
            if adopt
            else []
        )
        strays = state.stray_price_ids
        retiring = [f"left active by an interrupted run: {', '.join(strays)}"] if strays else []
        if action is Action.UNCHANGED and strays:
            action = Action.RETIRE_PRICES
        return PlannedAction(
            cms_id, action, (*adopting, *reasons, *retiring), product, state.product_id,
            state.default_price_id, unset if action is not Action.REPRICE else (), adopt,
            state.unit_amount, state.currency, status, interrupted=interrupted(product),
            stray_price_ids=strays, compared_with_stripe=True,
            completes_product=state.default_price_unset
            and action in (Action.UPDATE, Action.ARCHIVE),
            # a reprice's new price takes the lookup key over itself
            reclaim_lookup_key=state.stray_holds_lookup_key
            and action not in (Action.REPRICE, Action.UPDATE_AND_REPRICE)
            and state.default_price_id is not None,
        )  # fmt: skip

    if state.default_price_unset:
        # born through its price, then killed before its completion: the update completes it
        changes.insert(0, "left half-made by an interrupted create: completed")
    if not active:
        notes = ["price change deferred: the product is inactive"] if price_changed else []
        if state.active:
            return planned(Action.ARCHIVE, ["active: true → false", *changes, *notes])
        return planned(Action.UPDATE if changes else Action.UNCHANGED, [*changes, *notes])
    if not state.active:
        changes.append("active: false → true")
    content_changed = bool(changes)
    if price_changed:
        changes.append(
            f"price in Stripe: {_money(state.unit_amount, state.currency)} → "
            f"{_money(amount, currency)}"
        )
    return planned(_combine(content_changed, price_changed), changes)


def _rows(rows: pd.DataFrame | Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    if rows is None:
        return []
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    return list(rows)


def inactive_unrecorded(product: Mapping[str, Any]) -> bool:
    """Whether ``product`` is inactive with no Stripe product recorded: Stripe may still hold one
    (a rollback archived what a run created, a create was never recorded), which the record alone
    cannot tell, so such a row is planned against Stripe's state (and recorded as archived, so it
    leaves the scope until it is edited)."""
    return (
        not product_content(product)["active"] and opt_str(product.get("stripe_product_id")) is None
    )


def needs_stripe_state(product: Mapping[str, Any]) -> bool:
    """Whether even a normal run plans ``product`` against Stripe's actual state: a killed run's
    mark (:func:`interrupted`), or an inactive row without a recorded product."""
    return interrupted(product) or inactive_unrecorded(product)


def interrupted(product: Mapping[str, Any]) -> bool:
    """Whether an earlier run was killed while applying this row (its ``sync_run_id`` mark is
    still set): the recorded sync state may not say what that run wrote to Stripe."""
    return opt_str(product.get("sync_run_id")) is not None


def plan_deletion(deletion: Deletion) -> PlannedAction:
    """Archive the Stripe product of a CMS row that was deleted (never delete it: orders and
    subscriptions may refer to it)."""
    if deletion.found_in_stripe:
        why = "in Stripe and active, but no CMS row has this id (deleted before deletions were tracked)"
    else:
        why = "deleted from the CMS"
    label = f" ({_short(deletion.name)})" if deletion.name else ""
    return PlannedAction(
        deletion.cms_id,
        Action.ARCHIVE_DELETED,
        (why + label,),
        stripe_product_id=deletion.stripe_product_id,
    )


def build_plan(
    valid: pd.DataFrame | Iterable[Mapping[str, Any]],
    invalid: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    stripe_state: Mapping[str, StripeProductState] | None = None,
    *,
    force_resync: bool = False,
    deleted: Iterable[Deletion] = (),
) -> list[PlannedAction]:
    """Plan every product: valid rows in their order, then the invalid ones, then the deleted.

    Rows are planned against Stripe's actual state (``stripe_state``: CMS id →
    :class:`StripeProductState`) on a ``force_resync``, and rows an interrupted run left marked
    always; a CMS id missing from ``stripe_state`` means Stripe has no product for that row.
    Every other row is planned from its recorded sync state. Each of ``deleted`` is archived.
    """
    state = stripe_state or {}
    plan = [
        plan_product(row, state.get(str(row["id"])), resync=force_resync or needs_stripe_state(row))
        for row in _rows(valid)
    ]
    for row in _rows(invalid):
        cms_id = opt_str(row.get("id"))
        version = row.get("updated_at")
        plan.append(
            PlannedAction(
                cms_id,
                Action.INVALID,
                (str(row.get("reason") or "invalid"),),
                invalid_version=None if is_missing(version) else _version_text(version),
            )
        )
    plan.extend(plan_deletion(deletion) for deletion in deleted)
    return plan


def _version_text(value: Any) -> str:
    """A CMS version (``updated_at``) as the checkpoint stores it: ISO text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def bookkeeping(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The sync state of a row, comparable between a validated row and a freshly read one."""
    keys = _recorded_keys(row.get("synced_metadata_keys"))
    drift = row.get("stripe_drift")
    return (
        opt_str(row.get("stripe_product_id")),
        opt_str(row.get("stripe_price_id")),
        opt_str(row.get("sync_status")),
        opt_str(row.get("sync_content_hash")),
        opt_int(row.get("synced_unit_amount")),
        opt_str(row.get("synced_currency")),
        opt_str(row.get("synced_version")),
        None if is_missing(drift) else json.dumps(drift, sort_keys=True, default=str),
        opt_str(row.get("sync_run_id")),
        None if keys is None else tuple(keys),
        opt_int(row.get("price_key_generation")) or 0,
    )


def with_bookkeeping(product: Mapping[str, Any], fresh: Mapping[str, Any]) -> dict[str, Any]:
    """``product`` (a validated row, the CMS version this run read) with the sync state of
    ``fresh`` (the row as read again)."""
    return {**product, **{column: fresh.get(column) for column in BOOKKEEPING_COLUMNS}}


def summarize(plan: Sequence[PlannedAction]) -> dict[str, int]:
    """Counts per action (every action present, zeros included), for numeric metadata."""
    counts = Counter(item.action for item in plan)
    return {action.value: counts.get(action, 0) for action in Action}


def planned_writes(plan: Sequence[PlannedAction]) -> int:
    """Stripe write calls the plan is expected to make (0 for a plan with nothing to do)."""
    return sum(item.writes for item in plan)


def plan_table(
    plan: Sequence[PlannedAction], limit: int = 100, include_unchanged: bool = False
) -> list[dict[str, Any]]:
    """The plan as table rows for metadata: cms_id, action, name, price, stripe id, changes.

    Unchanged products are left out unless asked for; at most ``limit`` rows, changes first in
    plan order.
    """
    rows: list[dict[str, Any]] = []
    for item in plan:
        if item.action is Action.UNCHANGED and not include_unchanged:
            continue
        if len(rows) >= limit:
            break
        product = item.product or {}
        changes = "; ".join(item.reasons)
        rows.append(
            {
                "cms_id": item.cms_id or "",
                "action": item.action.value,
                "name": str(product.get("name") or "")[:80],
                "price": _money(item.unit_amount, item.currency) if item.product else "",
                "stripe_product_id": item.stripe_product_id or "",
                "changes": changes if len(changes) <= 300 else changes[:297] + "...",
            }
        )
    return rows
