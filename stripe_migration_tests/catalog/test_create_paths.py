"""New products over Stripe's two creating endpoints: the share chosen from the limits (pure), and
both ways end to end on the sandbox (Dagster, the gateway, the emulator through stripe-python)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import stripe

from stripe_migration.catalog.actions import Action
from stripe_migration.catalog.create_paths import (
    BY_PRICE,
    BY_PRODUCT,
    COMPLETE,
    CreatePaths,
    best_share,
    other_calls,
    plan_seconds,
)
from stripe_migration.catalog.stripe_payloads import custom_product_id, price_lookup_key
from stripe_migration.sandbox.sample_data import generate_products, insert_products

pytestmark = pytest.mark.timeout(240)


def _rate(endpoint_rate: float):
    return lambda endpoint: endpoint_rate


# -- the share, from the limits (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("global_rate", "share", "products_per_s"),
    [(25.0, 0.0, 25.0), (100.0, 0.5, 50.0), (60.0, 7 / 17, 42.5), (200.0, 0.5, 50.0)],
)
def test_the_share_by_the_price_makes_the_most_products_per_second(
    global_rate: float, share: float, products_per_s: float
) -> None:
    got = best_share(1000, {}, global_rate, _rate(25.0))
    assert got == pytest.approx(share)
    seconds = plan_seconds(1000, got * 1000, {}, global_rate, _rate(25.0))
    assert 1000 / seconds == pytest.approx(products_per_s)
    # No other share does better.
    for k in range(0, 1001, 50):
        assert plan_seconds(1000, k, {}, global_rate, _rate(25.0)) >= seconds - 1e-9


def test_the_share_counts_the_calls_updates_and_reprices_make_on_the_same_endpoints() -> None:
    others = other_calls([Action.UPDATE] * 500 + [Action.REPRICE] * 100 + [Action.UNCHANGED] * 9)
    assert others == {
        COMPLETE: 600,
        BY_PRICE: 100,
        "POST /v1/prices/{id}": 100,
        "GET /v1/prices": 100,
    }
    alone = best_share(1000, {}, 100.0, _rate(25.0))
    crowded = best_share(1000, others, 100.0, _rate(25.0))
    assert crowded < alone
    best = plan_seconds(1000, crowded * 1000, others, 100.0, _rate(25.0))
    for k in range(0, 1001, 25):
        assert plan_seconds(1000, k, others, 100.0, _rate(25.0)) >= best - 1e-9


def test_nothing_to_create_or_one_endpoint_per_second_less_takes_no_second_way() -> None:
    assert best_share(0, {}, 100.0, _rate(25.0)) == 0.0
    # At the sandbox's 25/s for the account, two calls per product can only be slower.
    assert best_share(5000, {COMPLETE: 10}, 25.0, _rate(25.0)) == 0.0


def test_the_chooser_follows_the_limiter_when_a_429_halves_a_bucket() -> None:
    rates = {"global": 100.0, BY_PRODUCT: 25.0, BY_PRICE: 25.0, COMPLETE: 25.0}
    paths = CreatePaths(
        400, {}, lambda: (rates["global"], {k: v for k, v in rates.items() if k != "global"})
    )
    first = [paths.by_price() for _ in range(200)]
    assert sum(first) == 100  # an even split at G=100, E=25
    rates[BY_PRICE] = 12.5  # a 429 on POST /v1/prices halved its bucket
    second = [paths.by_price() for _ in range(200)]
    # best share now: (400 - k) / 25 = k / 12.5 -> k = 400/3, a third in all
    assert paths.counts.share == pytest.approx(1 / 3)
    assert sum(first) + sum(second) == pytest.approx(400 / 3, abs=1)
    assert sum(second) < sum(first)
    assert "by POST /v1/prices" in paths.summary() and "from the limits" in paths.summary()


def test_a_fixed_share_is_kept_exactly_and_checked() -> None:
    paths = CreatePaths(10, {}, lambda: (25.0, {}), fixed_share=0.3)
    assert sum(paths.by_price() for _ in range(10)) == 3
    with pytest.raises(ValueError, match="0-1"):
        CreatePaths(10, {}, lambda: (25.0, {}), fixed_share=1.5)


class PriceWayStripe:
    """An in-memory Stripe for the second way: prices with ``product_data`` (refusing a held lookup
    key, as Stripe does) and product updates."""

    def __init__(self) -> None:
        self.products: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def create_price(self, params: dict, *, idempotency_key: str) -> dict:
        self.calls.append("POST /v1/prices")
        key = params.get("lookup_key")
        if any(p["lookup_key"] == key for p in self.prices.values()):
            raise stripe.InvalidRequestError("lookup key in use", param="lookup_key")
        product_id = f"prod_{len(self.products)}"
        self.products[product_id] = {
            "id": product_id,
            **params["product_data"],
            "default_price": None,
            "images": [],
        }
        price = {"id": f"price_{len(self.prices)}", "product": product_id, "active": True, **params}
        self.prices[price["id"]] = price
        return price

    def update_product(self, product_id: str, params: dict, *, idempotency_key: str) -> dict:
        self.calls.append("POST /v1/products/{id}")
        self.products[product_id].update(params)
        return self.products[product_id]

    def retrieve_product(self, product_id: str) -> dict:
        self.calls.append("GET /v1/products/{id}")
        product = dict(self.products[product_id])
        product["default_price"] = self.prices.get(product["default_price"] or "")
        return product

    def list_prices(self, **params: Any) -> list[dict]:
        self.calls.append("GET /v1/prices")
        keys = set(params.get("lookup_keys") or ())
        return [p for p in self.prices.values() if p["lookup_key"] in keys]


def test_the_second_way_costs_two_writes_and_a_resend_adopts_instead_of_duplicating() -> None:
    from stripe_migration.catalog.plan import build_plan
    from stripe_migration.catalog.schema import validate_products
    from stripe_migration.catalog.writes import apply_one

    rows = validate_products(generate_products(1, seed=5, bad_fraction=0.0)).valid
    [item] = build_plan(rows)
    api = PriceWayStripe()
    first = apply_one(api, item, "run-1", by_price=True)
    assert api.calls == ["POST /v1/prices", "POST /v1/products/{id}"]
    assert (first.sync_status, first.created_by_price) == ("synced", True)
    product = api.products[first.stripe_product_id]
    assert product["default_price"] == first.stripe_price_id
    assert product["description"] == (item.product["description"] or "")
    # The answer was lost (a kill before the checkpoint): a resend is refused for the lookup
    # key, and the product is found and adopted; nothing is created twice.
    api.calls.clear()
    again = apply_one(api, item, "run-2", by_price=True)
    assert (again.stripe_product_id, again.stripe_price_id) == (
        first.stripe_product_id,
        first.stripe_price_id,
    )
    assert len(api.products) == 1 and len(api.prices) == 1
    assert api.calls == ["POST /v1/prices", "GET /v1/prices", "GET /v1/products/{id}"]


# -- both ways on the sandbox ---------------------------------------------------------------------


def _split(share: float) -> dict[str, Any]:
    return {"ops": {"stripe_catalog": {"config": {"share_by_price": share}}}}


def _seed(migration, n: int, seed: int = 21) -> list[dict[str, Any]]:
    rows = generate_products(n, seed=seed, bad_fraction=0.0)
    insert_products(migration.database_url, rows)
    return rows


def _by_cms_id(migration) -> dict[str, list[dict[str, Any]]]:
    owners: dict[str, list[dict[str, Any]]] = {}
    for product in migration.emulator.control.objects("product"):
        owners.setdefault(product["metadata"]["cms_id"], []).append(product)
    return owners


def _assert_complete_and_unique(migration) -> dict[str, dict[str, Any]]:
    """One product per row, with the row's full content and its price as its only active one."""
    owners = _by_cms_id(migration)
    assert max(map(len, owners.values())) == 1, {k: v for k, v in owners.items() if len(v) > 1}
    prices = migration.emulator.control.objects("price")
    rows = {str(r["id"]): r for r in migration.rows()}
    for cms_id, (product,) in owners.items():
        row = rows[cms_id]
        assert row["sync_status"] == "synced", (cms_id, row["sync_error"])
        assert product["id"] == row["stripe_product_id"]
        assert product["default_price"] == row["stripe_price_id"], cms_id
        assert product["name"] == row["name"]
        assert (product["description"] or None) == (row["description"] or None), cms_id
        active = [p["id"] for p in prices if p["product"] == product["id"] and p["active"]]
        assert active == [product["default_price"]], cms_id
    return rows


@pytest.mark.slow  # two runs on the sandbox; the fast tier keeps the pure tests above and below
def test_an_even_split_creates_every_product_whole_and_once(migration) -> None:
    rows = _seed(migration, 40)
    result = migration.run(run_config=_split(0.5))
    assert result.success, result.all_events
    _assert_complete_and_unique(migration)
    products = migration.emulator.control.objects("product")
    by_price = [p for p in products if p["id"] != custom_product_id(p["metadata"]["cms_id"])]
    assert len(by_price) == 20 and len(products) == len(rows)
    prices = {p["id"]: p for p in migration.emulator.control.objects("price")}
    # The second way's first price holds the CMS lookup key (the first way's holds none).
    for product in by_price:
        key = prices[product["default_price"]]["lookup_key"]
        assert key == price_lookup_key(product["metadata"]["cms_id"])
    # 20 products by one call, 20 by two.
    assert migration.writes() == 20 + 2 * 20
    stats = result.asset_materializations_for_node("stripe_catalog")[0].metadata
    assert (stats["created_by_product"].value, stats["created_by_price"].value) == (20, 20)
    assert "20 by POST /v1/products, 20 by POST /v1/prices" in stats["create_paths"].value
    report = result.asset_materializations_for_node("migration_report")[0].metadata
    assert report["created_by_price"].value == 20 and report["created"].value == 40
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks.values()), checks

    # The next run has nothing to do, whichever way the products were born.
    writes = migration.writes()
    assert migration.run(run_config=_split(0.5)).success
    assert migration.writes() == writes


@pytest.mark.slow  # two runs on the sandbox; the fast tier keeps the even split
@pytest.mark.parametrize("share", [0.0, 1.0])
def test_a_product_left_half_made_by_a_kill_is_completed_not_duplicated(
    migration, stripe_client: stripe.StripeClient, share: float
) -> None:
    """A run killed between the price (product_data) and the completion leaves the row marked:
    the next run finds the product by its lookup key and completes it, whatever way it creates
    the others. On the second way, a create whose answer was lost is refused for the lookup key
    and the product adopted (completed) instead."""
    _seed(migration, 6)
    rows = migration.rows()
    half, lost = str(rows[0]["id"]), str(rows[1]["id"])
    for cms_id in (half, lost) if share else (half,):
        row = next(r for r in rows if str(r["id"]) == cms_id)
        stripe_client.v1.prices.create(
            params={
                "currency": row["currency"].lower(),
                "unit_amount": 4321,
                "lookup_key": price_lookup_key(cms_id),
                "metadata": {"cms_id": cms_id},
                "product_data": {"name": "half-made", "metadata": {"cms_id": cms_id}},
            }
        )
    migration.execute("UPDATE products SET sync_run_id = 'killed' WHERE id = %s", (half,))
    result = migration.run(run_config=_split(share))
    assert result.success, result.all_events
    rows = _assert_complete_and_unique(migration)
    assert not rows[half]["stripe_product_id"].startswith("cms_")
    assert rows[lost]["stripe_product_id"].startswith("cms_") is not bool(share)
    stats = result.asset_materializations_for_node("stripe_catalog")[0].metadata
    created = (stats["created_by_product"].value, stats["created_by_price"].value)
    assert created == ((5, 0) if share == 0.0 else (0, 5))
    plan = result.asset_materializations_for_node("catalog_plan")[0].metadata
    assert "half-made" in plan["changes"].value


@pytest.mark.slow  # a run and an audit on the sandbox
def test_a_half_made_product_is_named_by_the_audit(
    migration, stripe_client: stripe.StripeClient
) -> None:
    _seed(migration, 4)
    assert migration.run().success
    row = migration.rows()[0]
    cms_id = str(row["id"])
    stripe_client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 999,
            "lookup_key": "stray_key",
            "metadata": {"cms_id": cms_id},
            "product_data": {"name": "half-made", "metadata": {"cms_id": cms_id}},
        }
    )
    audit = migration.run("audit_catalog")
    check = next(
        e
        for e in audit.get_asset_check_evaluations()
        if e.check_name == "one_stripe_product_per_cms_id"
    )
    assert not check.passed
    assert "half-made" in str(check.metadata["rows"].value)


@pytest.mark.slow  # three runs and a rollback
def test_a_rollback_archives_products_born_by_the_price_and_the_next_run_adopts_them(
    migration,
) -> None:
    _seed(migration, 12)
    first = migration.run(run_config=_split(1.0))
    assert first.success
    born = {p["id"] for p in migration.emulator.control.objects("product")}
    assert not any(pid.startswith("cms_") for pid in born)
    rollback = migration.run(
        "rollback_catalog",
        run_config={"ops": {"rollback_migrations": {"config": {"run_id": first.run_id}}}},
    )
    assert rollback.success
    assert all(not p["active"] for p in migration.emulator.control.objects("product"))
    assert all(r["stripe_product_id"] is None for r in migration.rows())
    # Whatever way the next run would create them, it adopts the archived products instead.
    again = migration.run(run_config=_split(0.0))
    assert again.success, again.all_events
    _assert_complete_and_unique(migration)
    assert {p["id"] for p in migration.emulator.control.objects("product")} == born
    assert Counter(p["active"] for p in migration.emulator.control.objects("product")) == {True: 12}


@pytest.mark.slow  # two runs on the sandbox
def test_a_forced_resync_repairs_a_product_born_by_its_price(
    migration, stripe_client: stripe.StripeClient
) -> None:
    _seed(migration, 6)
    assert migration.run(run_config=_split(1.0)).success
    row = migration.rows()[0]
    product_id = row["stripe_product_id"]
    stripe_client.v1.products.update(product_id, params={"name": "edited in the dashboard"})
    writes = migration.writes()
    resync = migration.run(force_resync=True, run_config=_split(1.0))
    assert resync.success, resync.all_events
    assert migration.writes() == writes + 1  # one update; nothing created
    _assert_complete_and_unique(migration)
