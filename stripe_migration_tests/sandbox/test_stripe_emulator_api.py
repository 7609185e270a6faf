"""The emulator's products, prices, events and account, through the official stripe client."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import stripe

from stripe_migration.sandbox.stripe_emulator.validation import api_subset


def _spec_object(kind: str) -> dict:
    return api_subset()["objects"][kind]


def _assert_shaped_like_spec(obj: dict, kind: str) -> None:
    spec = _spec_object(kind)
    assert set(obj) <= set(spec["properties"]), set(obj) - set(spec["properties"])
    assert set(spec["required"]) <= set(obj)
    assert obj["object"] == kind
    if kind != "account":
        assert obj["livemode"] is False


def test_account_is_retrievable(stripe_client: stripe.StripeClient, emulator) -> None:
    account = stripe_client.v1.accounts.retrieve_current()
    assert account.id.startswith("acct_")
    assert account.id == emulator.control.config()["account_id"]
    _assert_shaped_like_spec(account.to_dict(), "account")
    emulator.control.configure(account_id="acct_1OtherLocalAcct")
    assert stripe_client.v1.accounts.retrieve_current().id == "acct_1OtherLocalAcct"


def test_product_with_default_price_records_events(
    stripe_client: stripe.StripeClient, emulator
) -> None:
    product = stripe_client.v1.products.create(
        params={
            "name": "T-shirt",
            "description": "Grey cotton",
            "images": ["https://example.com/a.png", "https://example.com/b.png"],
            "metadata": {"supabase_id": "42"},
            "default_price_data": {"currency": "EUR", "unit_amount": 1999},
        }
    )
    assert product.id.startswith("prod_")
    assert product.images == ["https://example.com/a.png", "https://example.com/b.png"]
    _assert_shaped_like_spec(product.to_dict(), "product")
    price = stripe_client.v1.prices.retrieve(product.default_price)
    assert (price.product, price.currency, price.unit_amount) == (product.id, "eur", 1999)
    assert price.unit_amount_decimal == Decimal("1999") and price.type == "one_time"
    _assert_shaped_like_spec(price.to_dict(), "price")

    events = stripe_client.v1.events.list()
    assert [e.type for e in events.data] == ["price.created", "product.created"]
    assert events.data[1].data.object.id == product.id
    assert events.data[0].request.idempotency_key  # stripe-python sends one with every POST
    _assert_shaped_like_spec(events.data[0].to_dict(), "event")
    stored = emulator.control.objects("product")
    assert [p["id"] for p in stored] == [product.id]
    assert stored[0]["metadata"] == {"supabase_id": "42"}


def test_product_custom_id_and_duplicate(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"id": "sku-123", "name": "Mug"})
    assert product.id == "sku-123"
    assert stripe_client.v1.products.retrieve("sku-123").name == "Mug"
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.create(params={"id": "sku-123", "name": "Other"})
    assert err.value.http_status == 400
    assert (err.value.code, err.value.param) == ("resource_already_exists", "id")


def test_missing_product_is_404(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.retrieve("prod_nope")
    assert err.value.http_status == 404
    assert err.value.code == "resource_missing"


def test_product_update_records_previous_attributes(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(
        params={"name": "Old", "metadata": {"a": "1", "b": "2"}, "url": "https://x.example"}
    )
    updated = stripe_client.v1.products.update(
        product.id, params={"name": "New", "metadata": {"a": "", "c": "3"}, "url": ""}
    )
    assert updated.name == "New"
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}
    assert updated.url is None
    event = stripe_client.v1.events.list(params={"type": "product.updated"}).data[0]
    assert event.data.object.name == "New"
    previous = event.data.previous_attributes.to_dict()
    assert previous["name"] == "Old"
    assert previous["metadata"] == {"a": "1", "c": None}
    assert previous["url"] == "https://x.example"

    # An update that changes nothing records no event.
    stripe_client.v1.products.update(product.id, params={"name": "New"})
    assert len(stripe_client.v1.events.list(params={"type": "product.updated"}).data) == 1


def test_product_list_pagination_and_filters(stripe_client: stripe.StripeClient) -> None:
    ids = [stripe_client.v1.products.create(params={"name": f"P{i}"}).id for i in range(5)]
    stripe_client.v1.products.update(ids[0], params={"active": False})
    newest_first = list(reversed(ids))

    page = stripe_client.v1.products.list(params={"limit": 2})
    assert [p.id for p in page.data] == newest_first[:2] and page.has_more
    page2 = stripe_client.v1.products.list(params={"limit": 2, "starting_after": page.data[-1].id})
    assert [p.id for p in page2.data] == newest_first[2:4]
    back = stripe_client.v1.products.list(params={"limit": 2, "ending_before": newest_first[3]})
    assert [p.id for p in back.data] == newest_first[1:3] and back.has_more
    every = [p.id for p in stripe_client.v1.products.list(params={"limit": 2}).auto_paging_iter()]
    assert every == newest_first

    active = stripe_client.v1.products.list(params={"active": True, "limit": 100})
    assert ids[0] not in [p.id for p in active.data] and len(active.data) == 4
    chosen = stripe_client.v1.products.list(params={"ids": [ids[1], ids[3]]})
    assert {p.id for p in chosen.data} == {ids[1], ids[3]}
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.list(params={"limit": 101})
    assert err.value.param == "limit"


def test_product_search(stripe_client: stripe.StripeClient) -> None:
    for i in range(5):
        stripe_client.v1.products.create(
            params={"name": f"Item {i}", "metadata": {"batch": "b1" if i < 4 else "b2"}}
        )
    first = stripe_client.v1.products.list(params={"limit": 1}).data[0]
    stripe_client.v1.products.update(first.id, params={"active": False})

    query = "metadata['batch']:'b1' AND active:'true'"
    page = stripe_client.v1.products.search(params={"query": query, "limit": 2})
    assert page.object == "search_result" and page.has_more and page.next_page
    found = [
        p
        for p in stripe_client.v1.products.search(
            params={"query": query, "limit": 2}
        ).auto_paging_iter()
    ]
    assert len(found) == 4
    assert all(p.metadata["batch"] == "b1" and p.active for p in found)
    assert len(stripe_client.v1.products.search(params={"query": "name~'Item'"}).data) == 5

    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.search(params={"query": "colour:'red'"})
    assert err.value.param == "query"


def test_expand_default_price(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(
        params={"name": "X", "default_price_data": {"currency": "usd", "unit_amount": 5}}
    )
    got = stripe_client.v1.products.retrieve(product.id, params={"expand": ["default_price"]})
    assert got.default_price.object == "price" and got.default_price.unit_amount == 5
    listed = stripe_client.v1.products.list(params={"expand": ["data.default_price"]})
    assert listed.data[0].default_price.id == product.default_price
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.retrieve(product.id, params={"expand": ["images"]})
    assert err.value.param == "expand"


def test_prices_create_update_list_search(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"name": "Plan"})
    monthly = stripe_client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
            "lookup_key": "plan_monthly",
            "metadata": {"tier": "basic"},
        }
    )
    assert monthly.type == "recurring" and monthly.recurring.interval_count == 1
    once = stripe_client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount_decimal": "12.5"}
    )
    assert once.unit_amount is None and once.unit_amount_decimal == Decimal("12.5")

    updated = stripe_client.v1.prices.update(
        monthly.id,
        params={"nickname": "Monthly", "metadata": {"tier": "gold"}, "tax_behavior": "exclusive"},
    )
    assert (updated.nickname, updated.metadata["tier"], updated.tax_behavior) == (
        "Monthly",
        "gold",
        "exclusive",
    )
    event = stripe_client.v1.events.list(params={"type": "price.updated"}).data[0]
    assert event.data.previous_attributes.to_dict() == {
        "metadata": {"tier": "basic"},
        "nickname": None,
        "tax_behavior": "unspecified",
    }

    by_product = stripe_client.v1.prices.list(params={"product": product.id})
    assert {p.id for p in by_product.data} == {monthly.id, once.id}
    by_key = stripe_client.v1.prices.list(params={"lookup_keys": ["plan_monthly"]})
    assert [p.id for p in by_key.data] == [monthly.id]
    recurring = stripe_client.v1.prices.list(params={"type": "recurring"})
    assert [p.id for p in recurring.data] == [monthly.id]
    found = stripe_client.v1.prices.search(params={"query": "lookup_key:'plan_monthly'"})
    assert [p.id for p in found.data] == [monthly.id]
    expanded = stripe_client.v1.prices.retrieve(monthly.id, params={"expand": ["product"]})
    assert expanded.product.name == "Plan"


def test_lookup_key_is_unique_unless_transferred(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"name": "P"})
    base = {"product": product.id, "currency": "usd"}
    first = stripe_client.v1.prices.create(params={**base, "unit_amount": 1, "lookup_key": "k"})
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.create(params={**base, "unit_amount": 2, "lookup_key": "k"})
    assert err.value.param == "lookup_key"
    second = stripe_client.v1.prices.create(
        params={**base, "unit_amount": 2, "lookup_key": "k", "transfer_lookup_key": True}
    )
    assert second.lookup_key == "k"
    assert stripe_client.v1.prices.retrieve(first.id).lookup_key is None
    third = stripe_client.v1.prices.create(params={**base, "unit_amount": 3})
    stripe_client.v1.prices.update(
        third.id, params={"lookup_key": "k", "transfer_lookup_key": True}
    )
    keyed = stripe_client.v1.prices.list(params={"lookup_keys": ["k"]})
    assert [p.id for p in keyed.data] == [third.id]


def test_a_price_with_product_data_and_a_held_lookup_key_creates_nothing(
    stripe_client: stripe.StripeClient,
) -> None:
    """The guard of the migration's second way of creating a product: Stripe refuses a second
    price with the lookup key, and the refused request leaves no product behind."""
    params = {
        "currency": "usd",
        "unit_amount": 5,
        "lookup_key": "cms_guard",
        "product_data": {"name": "Born by its price", "metadata": {"cms_id": "guard"}},
    }
    first = stripe_client.v1.prices.create(params=params)
    assert first.product.startswith("prod_")
    products = len(stripe_client.v1.products.list(params={"limit": 100}).data)
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.create(params=params)
    assert err.value.param == "lookup_key"
    assert len(stripe_client.v1.products.list(params={"limit": 100}).data) == products
    held = stripe_client.v1.prices.list(
        params={"lookup_keys": ["cms_guard"], "expand": ["data.product"]}
    )
    assert [p.id for p in held.data] == [first.id]
    assert held.data[0].product.id == first.product
    assert held.data[0].product.default_price is None  # product_data sets no default price


def test_default_price_cannot_be_archived(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(
        params={"name": "P", "default_price_data": {"currency": "usd", "unit_amount": 100}}
    )
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.update(product.default_price, params={"active": False})
    assert err.value.param == "active"
    assert stripe_client.v1.prices.retrieve(product.default_price).active is True

    other = stripe_client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 200}
    )
    stripe_client.v1.products.update(product.id, params={"default_price": other.id})
    archived = stripe_client.v1.prices.update(product.default_price, params={"active": False})
    assert archived.active is False


def test_prices_are_immutable_apart_from_documented_fields(
    stripe_client: stripe.StripeClient,
) -> None:
    product = stripe_client.v1.products.create(params={"name": "P"})
    price = stripe_client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 100,
            "tax_behavior": "inclusive",
        }
    )
    for field, value in [("unit_amount", 200), ("currency", "eur"), ("product", product.id)]:
        with pytest.raises(stripe.InvalidRequestError) as err:
            stripe_client.v1.prices.update(price.id, params={field: value})
        assert (err.value.code, err.value.param) == ("parameter_unknown", field)
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.update(price.id, params={"tax_behavior": "exclusive"})
    assert err.value.param == "tax_behavior"
    assert stripe_client.v1.prices.retrieve(price.id).unit_amount == 100


def test_price_requires_an_amount_and_a_known_product(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"name": "P"})
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.create(params={"product": product.id, "currency": "usd"})
    assert (err.value.code, err.value.param) == ("parameter_missing", "unit_amount")
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.create(
            params={"product": "prod_missing", "currency": "usd", "unit_amount": 1}
        )
    assert (err.value.code, err.value.param) == ("resource_missing", "product")
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.prices.create(
            params={"product": product.id, "currency": "usd", "unit_amount": -5}
        )
    assert err.value.param == "unit_amount"
    inline = stripe_client.v1.prices.create(
        params={"product_data": {"name": "Inline"}, "currency": "usd", "unit_amount": 7}
    )
    assert stripe_client.v1.products.retrieve(inline.product).name == "Inline"


def test_events_filters_and_retrieve(stripe_client: stripe.StripeClient) -> None:
    start = int(time.time())
    product = stripe_client.v1.products.create(params={"name": "P"})
    stripe_client.v1.products.update(product.id, params={"name": "Q"})
    stripe_client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 1}
    )
    every = stripe_client.v1.events.list()
    assert [e.type for e in every.data] == ["price.created", "product.updated", "product.created"]
    products_only = stripe_client.v1.events.list(params={"type": "product.*"})
    assert [e.type for e in products_only.data] == ["product.updated", "product.created"]
    recent = stripe_client.v1.events.list(params={"created": {"gte": start}})
    assert len(recent.data) == 3
    assert stripe_client.v1.events.list(params={"created": {"gt": start + 3600}}).data == []
    page = stripe_client.v1.events.list(params={"limit": 1, "starting_after": every.data[0].id})
    assert [e.id for e in page.data] == [every.data[1].id] and page.has_more
    one = stripe_client.v1.events.retrieve(every.data[2].id)
    assert one.type == "product.created" and one.data.object.name == "P"
