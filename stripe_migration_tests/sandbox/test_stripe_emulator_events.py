"""``GET /v1/events`` through the official client: paging both ways and every filter."""

from __future__ import annotations

import time

import pytest
import stripe


def _products(client: stripe.StripeClient, count: int) -> list[str]:
    """Create ``count`` products; return the ids of their ``product.created`` events, newest
    first (the order Stripe lists them in)."""
    for i in range(count):
        client.v1.products.create(params={"name": f"P{i}"})
    return [e.id for e in client.v1.events.list(params={"limit": 100}).data]


def _ids(page: stripe.ListObject) -> list[str]:
    return [e.id for e in page.data]


def test_pages_forward_with_limit_and_starting_after(stripe_client: stripe.StripeClient) -> None:
    newest_first = _products(stripe_client, 5)
    assert len(newest_first) == 5
    first = stripe_client.v1.events.list(params={"limit": 2})
    assert _ids(first) == newest_first[:2] and first.has_more is True
    second = stripe_client.v1.events.list(params={"limit": 2, "starting_after": newest_first[1]})
    assert _ids(second) == newest_first[2:4] and second.has_more is True
    last = stripe_client.v1.events.list(params={"limit": 2, "starting_after": newest_first[3]})
    assert _ids(last) == newest_first[4:] and last.has_more is False
    # The default page is 10 events; a full list of fewer has nothing more.
    every = stripe_client.v1.events.list()
    assert _ids(every) == newest_first and every.has_more is False
    walked = stripe_client.v1.events.list(params={"limit": 2}).auto_paging_iter()
    assert [e.id for e in walked] == newest_first


def test_pages_back_with_ending_before(stripe_client: stripe.StripeClient) -> None:
    newest_first = _products(stripe_client, 5)
    # The page just newer than the cursor, still newest first; has_more: newer ones remain.
    back = stripe_client.v1.events.list(params={"limit": 2, "ending_before": newest_first[4]})
    assert _ids(back) == newest_first[2:4] and back.has_more is True
    top = stripe_client.v1.events.list(params={"limit": 2, "ending_before": newest_first[2]})
    assert _ids(top) == newest_first[:2] and top.has_more is False
    nothing = stripe_client.v1.events.list(params={"ending_before": newest_first[0]})
    assert nothing.data == [] and nothing.has_more is False


@pytest.mark.parametrize("limit", [0, 101])
def test_limit_is_between_1_and_100(stripe_client: stripe.StripeClient, limit: int) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.events.list(params={"limit": limit})
    assert (err.value.http_status, err.value.param) == (400, "limit")


def test_type_and_types_filters(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"name": "P"})
    stripe_client.v1.products.update(product.id, params={"name": "Q"})
    price = stripe_client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 1}
    )
    stripe_client.v1.prices.update(price.id, params={"nickname": "n"})

    def types(**params: object) -> list[str]:
        return [e.type for e in stripe_client.v1.events.list(params=params).data]

    assert types(type="product.updated") == ["product.updated"]
    assert types(type="price.*") == ["price.updated", "price.created"]
    assert types(types=["product.created", "price.updated"]) == [
        "price.updated",
        "product.created",
    ]
    # ``types`` takes exact event names (https://docs.stripe.com/api/events/list): no wildcards.
    assert types(types=["product.*"]) == []
    page = stripe_client.v1.events.list(params={"types": ["product.created", "product.updated"]})
    paged = stripe_client.v1.events.list(
        params={"types": ["product.created", "product.updated"], "limit": 1}
    )
    assert _ids(paged) == _ids(page)[:1] and paged.has_more is True
    rest = stripe_client.v1.events.list(
        params={"types": ["product.created", "product.updated"], "starting_after": paged.data[0].id}
    )
    assert [e.type for e in rest.data] == ["product.created"] and rest.has_more is False

    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.events.list(params={"type": "price.*", "types": ["price.created"]})
    assert (err.value.code, err.value.param) == ("parameters_exclusive", "types")
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.events.list(params={"types": [f"t{i}.created" for i in range(21)]})
    assert err.value.param == "types"


def test_created_filters(stripe_client: stripe.StripeClient) -> None:
    early = stripe_client.v1.products.create(params={"name": "early"})
    # Wait for the clock to reach the next second so the two events have different ``created``.
    while int(time.time()) <= early.created:
        time.sleep(0.05)
    late = stripe_client.v1.products.create(params={"name": "late"})
    events = {e.data.object.id: e for e in stripe_client.v1.events.list().data}
    t1, t2 = events[early.id].created, events[late.id].created
    assert t1 < t2

    def objects(created: object) -> list[str]:
        page = stripe_client.v1.events.list(params={"created": created})
        return [e.data.object.id for e in page.data]

    assert objects({"gte": t2}) == [late.id]
    assert objects({"gt": t1}) == [late.id]
    assert objects({"lt": t2}) == [early.id]
    assert objects({"lte": t1}) == [early.id]
    assert objects({"gte": t1, "lte": t2}) == [late.id, early.id]
    assert objects({"gt": t1, "lt": t2}) == []
    assert objects(t1) == [early.id]
    window = stripe_client.v1.events.list(params={"created": {"gte": t1}, "limit": 1})
    assert window.data[0].data.object.id == late.id and window.has_more is True
