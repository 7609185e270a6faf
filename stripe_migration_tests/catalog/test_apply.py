"""apply_plan's batching and stopping rules, with an in-memory Stripe (pure logic, no servers)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import stripe

from stripe_migration.catalog.apply import apply_plan
from stripe_migration.catalog.plan import build_plan
from stripe_migration.catalog.schema import validate_products
from stripe_migration.catalog.sync_results import FatalApplyError
from stripe_migration.sandbox.sample_data import generate_products


class MemoryStripe:
    """Creates products in a dict; fails every call after ``fail_after`` creates if set."""

    def __init__(self, fail_after: int | None = None, error: Exception | None = None) -> None:
        self.products: dict[str, dict[str, Any]] = {}
        self.fail_after = fail_after
        self.error = error or stripe.APIConnectionError("connection refused")
        self.lock = threading.Lock()

    def create_product(self, params: dict, *, idempotency_key: str) -> dict:
        with self.lock:
            if self.fail_after is not None and len(self.products) >= self.fail_after:
                raise self.error
            product = {**params, "default_price": f"price_{params['id']}"}
            self.products[params["id"]] = product
            return product

    def update_product(self, *args: Any, **kwargs: Any) -> dict:
        raise AssertionError("no update expected")

    retrieve_product = create_price = update_price = update_product


def _plan(n: int):
    rows = generate_products(n, seed=3, bad_fraction=0.0)
    result = validate_products(rows)
    return build_plan(result.valid, result.invalid)


def test_checkpoints_every_batch_and_records_every_create() -> None:
    plan = _plan(45)
    batches: list[list] = []
    stats = apply_plan(MemoryStripe(), plan, batches.append, run_id="r1", batch_size=10, workers=4)
    recorded = [r for batch in batches for r in batch]
    assert stats.done == len(plan) == len(recorded)
    assert all(len(batch) <= 10 + 8 for batch in batches)  # a batch plus the window in flight
    assert {r.sync_status for r in recorded} == {"synced"}
    assert len({r.stripe_product_id for r in recorded}) == len(plan)


def test_exhausted_retries_stop_the_run_after_checkpointing_what_finished() -> None:
    plan = _plan(60)
    api = MemoryStripe(fail_after=25)
    batches: list[list] = []
    with pytest.raises(FatalApplyError, match="run the migration again to resume"):
        apply_plan(api, plan, batches.append, run_id="r1", batch_size=10, workers=4)
    recorded = {r.stripe_product_id for batch in batches for r in batch}
    # Every product Stripe holds is recorded, so the next run has nothing to redo or adopt.
    assert recorded == set(api.products)
    assert len(recorded) == 25


def test_a_refused_product_is_its_own_failure_not_the_runs() -> None:
    plan = _plan(10)
    api = MemoryStripe(
        fail_after=0, error=stripe.InvalidRequestError("Invalid image URL", param="images")
    )
    batches: list[list] = []
    stats = apply_plan(api, plan, batches.append, run_id="r1", batch_size=5, workers=2)
    assert stats.failed == 10
    assert all("Invalid image URL" in reason and "images" in reason for _, reason in stats.failures)


def test_every_product_is_marked_before_its_first_stripe_call() -> None:
    """The mark is what tells the next run that this one was killed mid-apply: a product may
    reach Stripe only once its batch is marked."""
    plan = _plan(45)
    marked: list[str] = []
    created_unmarked: list[str] = []

    class Watching(MemoryStripe):
        def create_product(self, params: dict, *, idempotency_key: str) -> dict:
            cms_id = params["metadata"]["cms_id"]
            if cms_id not in marked:
                created_unmarked.append(cms_id)
            return super().create_product(params, idempotency_key=idempotency_key)

    def mark(ids: list[str]) -> None:
        assert len(ids) <= 10
        marked.extend(ids)

    apply_plan(Watching(), plan, lambda _: None, run_id="r1", batch_size=10, workers=4, mark=mark)
    assert created_unmarked == []
    assert sorted(marked) == sorted(str(item.cms_id) for item in plan)


class RecordingStripe:
    """Answers a reprice's calls and records each request: (call, object id, params, key)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, dict, str | None]] = []

    def create_price(self, params: dict, *, idempotency_key: str) -> dict:
        self.sent.append(("create_price", None, params, idempotency_key))
        return {"id": "price_new", **params}

    def update_product(self, product_id: str, params: dict, *, idempotency_key: str) -> dict:
        self.sent.append(("update_product", product_id, params, idempotency_key))
        return {"id": product_id}

    def update_price(self, price_id: str, params: dict, *, idempotency_key: str) -> dict:
        self.sent.append(("update_price", price_id, params, idempotency_key))
        return {"id": price_id}

    def list_prices(self, **params: Any) -> list[dict]:
        self.sent.append(("list_prices", None, params, None))
        return []


def test_a_reprice_sends_exactly_what_stripe_payloads_builds() -> None:
    """One place builds every request and its key: what the apply sends is what the payload
    module says, call by call (the keys' own rules are tested in test_payloads)."""
    from stripe_migration.catalog import stripe_payloads as payloads
    from stripe_migration.catalog.plan import plan_product
    from stripe_migration.catalog.writes import apply_one

    [row] = validate_products(generate_products(1, seed=4, bad_fraction=0.0)).valid.to_dict(
        "records"
    )
    synced = {
        **row,
        "stripe_product_id": "prod_1",
        "stripe_price_id": "price_old",
        "sync_status": "synced",
        "sync_content_hash": row["content_hash"],
        "synced_unit_amount": int(row["unit_amount"]) + 100,
        "synced_currency": row["currency"],
        "synced_version": row["updated_at"],
        "price_key_generation": 2,
    }
    item = plan_product(synced)
    assert item.action.value == "reprice"
    api = RecordingStripe()
    result = apply_one(api, item, "run-7")
    cms_id = str(row["id"])
    assert result.stripe_price_id == "price_new"
    assert api.sent == [
        (
            "create_price",
            None,
            payloads.price_create_params(synced, "prod_1"),
            payloads.price_create_key(
                cms_id, int(row["unit_amount"]), row["currency"], "price_old", 2
            ),
        ),
        (
            "update_product",
            "prod_1",
            {"default_price": "price_new"},
            payloads.default_price_switch_key(cms_id, "run-7", "price_new", row["content_hash"]),
        ),
        ("list_prices", None, {"product": "prod_1", "active": True}, None),
        (
            "update_price",
            "price_old",
            payloads.deactivate_price_params(),
            payloads.price_deactivate_key(cms_id, "run-7", "price_old"),
        ),
    ]
