"""The emulator's API versions: what ``Stripe-Version`` it accepts, refuses and answers with."""

from __future__ import annotations

import httpx
import pytest
import stripe

from stripe_migration.sandbox.stripe_emulator.config import EmulatorConfig
from stripe_migration.sandbox.stripe_emulator.validation import api_subset
from stripe_migration.sandbox.stripe_emulator.versions import (
    API_VERSIONS,
    SPEC_API_VERSION,
    STRIPE_PYTHON_API_VERSION,
)


def test_the_known_versions_are_the_specs_and_stripe_pythons() -> None:
    # Fails when the shipped spec subset or the installed stripe-python moves to another version,
    # so the list (and the package docstring) are updated with it.
    assert api_subset()["source"]["api_version"] == SPEC_API_VERSION
    assert stripe.api_version == STRIPE_PYTHON_API_VERSION
    assert EmulatorConfig().api_version == SPEC_API_VERSION
    with pytest.raises(ValueError, match="api_version"):
        EmulatorConfig(api_version="2020-08-27")


def test_stripe_python_sends_its_pinned_version_and_the_answer_names_it(
    stripe_client: stripe.StripeClient,
) -> None:
    account = stripe_client.v1.accounts.retrieve_current()
    assert account.last_response.headers["Stripe-Version"] == STRIPE_PYTHON_API_VERSION


@pytest.mark.parametrize("version", API_VERSIONS)
def test_every_known_version_is_served_and_named_in_the_answer(emulator, version: str) -> None:
    client = emulator.client(stripe_version=version)
    product = client.v1.products.create(params={"name": "Versioned"})
    assert product.last_response.headers["Stripe-Version"] == version
    listed = client.v1.products.list()
    assert [p.id for p in listed.data] == [product.id]
    assert listed.last_response.headers["Stripe-Version"] == version


@pytest.mark.parametrize("version", ["2099-01-01.future", "2019-2-19", "latest", "2020-08-27"])
def test_an_unknown_version_is_refused_like_stripe(emulator, version: str) -> None:
    client = emulator.client(stripe_version=version)
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.products.create(params={"name": "Never stored"})
    assert err.value.http_status == 400
    assert err.value.user_message == f"Invalid Stripe API version: {version}"
    assert err.value.json_body["error"]["type"] == "invalid_request_error"
    assert err.value.code is None and err.value.param is None
    # Refused before anything ran, and the answer names the account's version, not the bad one.
    assert err.value.headers["Stripe-Version"] == SPEC_API_VERSION
    assert emulator.control.objects("product") == []
    assert emulator.control.objects("event") == []


def test_a_per_request_version_overrides_the_clients(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Invalid Stripe API version: 1999-01-01"):
        stripe_client.v1.products.list(options={"stripe_version": "1999-01-01"})
    listed = stripe_client.v1.products.list(options={"stripe_version": SPEC_API_VERSION})
    assert listed.last_response.headers["Stripe-Version"] == SPEC_API_VERSION


def test_without_the_header_the_account_default_applies(emulator) -> None:
    headers = {"Authorization": f"Bearer {emulator.secret_key}"}
    with httpx.Client(base_url=emulator.url, headers=headers, trust_env=False) as http:
        created = http.post("/v1/products", data={"name": "No header"})
        assert created.status_code == 200
        assert created.headers["stripe-version"] == SPEC_API_VERSION
        emulator.control.configure(api_version=STRIPE_PYTHON_API_VERSION)
        listed = http.get("/v1/products")
        assert listed.headers["stripe-version"] == STRIPE_PYTHON_API_VERSION
        http.post(f"/v1/products/{created.json()['id']}", data={"name": "Renamed"})
    events = {e["type"]: e["api_version"] for e in emulator.control.objects("event")}
    # An event names the account's default version when it was recorded.
    assert events == {
        "product.created": SPEC_API_VERSION,
        "product.updated": STRIPE_PYTHON_API_VERSION,
    }
    with pytest.raises(RuntimeError, match="api_version"):
        emulator.control.configure(api_version="2099-01-01")
