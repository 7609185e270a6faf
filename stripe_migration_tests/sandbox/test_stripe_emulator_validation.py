"""Requests the emulator refuses as Stripe would: schema violations, documented limits, bad keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"name": "x", "colour": "red"}, "parameter_unknown", "colour"),
        (
            {"name": "x", "default_price_data": {"currency": "usd", "unit_amount": 1, "foo": 1}},
            "parameter_unknown",
            "default_price_data[foo]",
        ),
        (
            {"name": "x", "default_price_data": {"currency": "usd", "unit_amount": "12,50"}},
            "parameter_invalid_integer",
            "default_price_data[unit_amount]",
        ),
        ({"description": "no name"}, "parameter_missing", "name"),
        ({"name": ""}, "parameter_invalid_empty", "name"),
        ({"name": "x", "statement_descriptor": "A" * 23}, None, "statement_descriptor"),
        ({"name": "x", "unit_label": "u" * 13}, None, "unit_label"),
        ({"name": "x", "shippable": "maybe"}, None, "shippable"),
        (
            {"name": "x", "default_price_data": {"currency": "xyz", "unit_amount": 1}},
            None,
            "default_price_data[currency]",
        ),
        (
            {
                "name": "x",
                "default_price_data": {
                    "currency": "usd",
                    "unit_amount": 1,
                    "tax_behavior": "sometimes",
                },
            },
            None,
            "default_price_data[tax_behavior]",
        ),
        ({"name": "x", "metadata": "flat"}, None, "metadata"),
    ],
)
def test_spec_violations_name_the_param(
    stripe_client: stripe.StripeClient, emulator, params: dict[str, Any], code, param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.create(params=params)
    assert err.value.http_status == 400
    assert err.value.param == param
    assert err.value.code == code
    assert err.value.json_body["error"]["type"] == "invalid_request_error"
    assert err.value.user_message
    assert emulator.control.objects("product") == []
    assert emulator.control.objects("event") == []


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(51)}, "metadata"),
        ({"k" * 41: "v"}, "metadata"),
        ({"a[b]": "v"}, "metadata"),
        ({"k": "v" * 501}, "metadata[k]"),
    ],
)
def test_metadata_limits(stripe_client: stripe.StripeClient, metadata, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.create(params={"name": "x", "metadata": metadata})
    assert err.value.param == param


def test_metadata_limits_hold_at_the_boundary_and_after_merging(
    stripe_client: stripe.StripeClient,
) -> None:
    full = {f"{i:040d}": "v" * 500 for i in range(50)}
    product = stripe_client.v1.products.create(params={"name": "x", "metadata": full})
    assert len(product.metadata.to_dict()) == 50
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.update(product.id, params={"metadata": {"one_more": "v"}})
    assert err.value.param == "metadata"
    swapped = stripe_client.v1.products.update(
        product.id, params={"metadata": {f"{0:040d}": "", "one_more": "v"}}
    )
    assert len(swapped.metadata.to_dict()) == 50 and swapped.metadata["one_more"] == "v"


def test_at_most_eight_images(stripe_client: stripe.StripeClient) -> None:
    urls = [f"https://img.example.com/{i}.png" for i in range(9)]
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.create(params={"name": "x", "images": urls})
    assert err.value.param == "images"
    product = stripe_client.v1.products.create(params={"name": "x", "images": urls[:8]})
    assert len(product.images) == 8
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.products.update(product.id, params={"images": urls})
    assert err.value.param == "images"
    cleared = stripe_client.v1.products.update(product.id, params={"images": ""})
    assert cleared.images == []


def test_wrong_key_is_401(emulator) -> None:
    client = emulator.client(api_key="sk_test_not_the_right_key_1234")
    with pytest.raises(stripe.AuthenticationError) as err:
        client.v1.products.list()
    assert err.value.http_status == 401
    message = err.value.json_body["error"]["message"]
    assert "1234" in message and "not_the_right" not in message  # redacted like Stripe


def test_missing_key_is_401(emulator) -> None:
    response = httpx.get(f"{emulator.url}/v1/products", trust_env=False)
    assert response.status_code == 401
    assert "did not provide an API key" in response.json()["error"]["message"]


def test_live_key_is_accepted_and_objects_stay_test_mode(emulator) -> None:
    client = emulator.client(api_key=emulator.live_secret_key)
    product = client.v1.products.create(params={"name": "live"})
    assert product.livemode is False


def test_json_body_and_unknown_routes_are_refused(emulator) -> None:
    headers = {"Authorization": f"Bearer {emulator.secret_key}"}
    with httpx.Client(base_url=emulator.url, headers=headers, trust_env=False) as http:
        as_json = http.post("/v1/products", json={"name": "x"})
        assert as_json.status_code == 400
        assert "form-encoded" in as_json.json()["error"]["message"]
        unknown = http.get("/v1/customers")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["type"] == "invalid_request_error"
        form = http.post("/v1/products", data={"name": "x", "metadata[k]": "v"})
        assert form.status_code == 200 and form.json()["metadata"] == {"k": "v"}
        assert form.headers["request-id"].startswith("req_")
