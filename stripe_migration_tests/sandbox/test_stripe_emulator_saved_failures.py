"""Saved failures: the emulator keeps the first result of an idempotency key once execution began,
errors included, and replays it as Stripe does (https://docs.stripe.com/idempotency).

Every test talks to the emulator through the official ``stripe`` client over real HTTP.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe


def _product(client: stripe.StripeClient) -> str:
    return client.v1.products.create(params={"name": "Base"}).id


def _create_price(client: stripe.StripeClient, product: str, key: str, amount: int = 500):
    return client.v1.prices.create(
        params={"product": product, "currency": "usd", "unit_amount": amount},
        options={"idempotency_key": key},
    )


def _failure(call) -> stripe.StripeError:
    with pytest.raises(stripe.StripeError) as caught:
        call()
    return caught.value


def test_a_500_after_execution_is_saved_and_replayed_for_its_key(stripe_client, emulator) -> None:
    product = _product(stripe_client)
    armed = emulator.control.fail_next("POST", "/v1/prices", status=500, phase="after_execution")
    assert armed["remaining"] == 1 and armed["phase"] == "after_execution"

    first = _failure(lambda: _create_price(stripe_client, product, "k-price"))
    assert isinstance(first, stripe.APIError) and first.http_status == 500
    assert "Idempotent-Replayed" not in first.headers
    assert "Stripe-Should-Retry" not in first.headers  # retrying the key cannot help
    assert emulator.control.objects("price") == []  # the write did not happen
    assert emulator.control.scripted_faults() == []  # used up

    again = _failure(lambda: _create_price(stripe_client, product, "k-price"))
    assert again.http_status == 500
    assert again.http_body == first.http_body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.request_id == first.request_id  # the original Request-Id
    assert again.headers["Original-Request"] == first.request_id
    assert emulator.control.objects("price") == []

    price = _create_price(stripe_client, product, "k-price-2")  # a new key runs the request
    assert price.unit_amount == 500
    stats = emulator.control.stats()
    assert stats["idempotent_replays"] == 1 and stats["idempotent_failure_replays"] == 1
    assert stats["fault_phases"] == {"after_execution": 1}


def test_after_commit_the_object_exists_while_the_key_replays_the_failure(
    stripe_client, emulator
) -> None:
    product = _product(stripe_client)
    emulator.control.fail_next("POST", "/v1/prices", status=500, phase="after_commit")

    first = _failure(lambda: _create_price(stripe_client, product, "k-commit", 777))
    assert first.http_status == 500
    stored = emulator.control.objects("price")
    assert [p["unit_amount"] for p in stored] == [777]  # committed before the error
    assert any(
        e["type"] == "price.created" and e["data"]["object"]["id"] == stored[0]["id"]
        for e in emulator.control.objects("event")
    )

    for _ in range(2):  # the key only ever answers the saved 500
        replay = _failure(lambda: _create_price(stripe_client, product, "k-commit", 777))
        assert replay.http_status == 500 and replay.http_body == first.http_body
        assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(emulator.control.objects("price")) == 1

    # A new key runs the create again: a duplicate, unless the caller checked Stripe's state.
    _create_price(stripe_client, product, "k-commit-2", 777)
    assert len(emulator.control.objects("price")) == 2


def test_before_execution_saves_nothing(stripe_client, emulator) -> None:
    product = _product(stripe_client)
    emulator.control.fail_next("POST", "/v1/prices", status=503, phase="before_execution")

    first = _failure(lambda: _create_price(stripe_client, product, "k-early"))
    assert first.http_status == 503
    assert first.headers["Stripe-Should-Retry"] == "true"
    assert emulator.control.objects("price") == []

    price = _create_price(stripe_client, product, "k-early")  # the same key runs the request
    assert "Idempotent-Replayed" not in price.last_response.headers
    assert [p["id"] for p in emulator.control.objects("price")] == [price.id]
    assert emulator.control.stats()["idempotent_replays"] == 0


def test_a_validation_error_is_not_saved_and_leaves_the_fault_armed(
    stripe_client, emulator
) -> None:
    product = _product(stripe_client)
    emulator.control.fail_next("POST", "/v1/prices", status=500, phase="after_execution")

    bad = _failure(
        lambda: stripe_client.v1.prices.create(
            params={"product": product, "currency": "usd", "unit_amount": 5, "colour": "blue"},
            options={"idempotency_key": "k-valid"},
        )
    )
    assert isinstance(bad, stripe.InvalidRequestError) and bad.param == "colour"
    assert [f["remaining"] for f in emulator.control.scripted_faults()] == [1]

    # Nothing was saved for the key (other parameters are no idempotency_error), and this request
    # passes validation, so execution begins and the armed 500 is saved.
    first = _failure(lambda: _create_price(stripe_client, product, "k-valid"))
    assert first.http_status == 500 and "Idempotent-Replayed" not in first.headers
    replay = _failure(lambda: _create_price(stripe_client, product, "k-valid"))
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_business_error_is_saved_and_replayed_with_its_request_id(stripe_client, emulator):
    stripe_client.v1.products.create(
        params={"id": "prod_taken", "name": "A"}, options={"idempotency_key": "k-a"}
    )

    def create_again() -> None:
        stripe_client.v1.products.create(
            params={"id": "prod_taken", "name": "A"}, options={"idempotency_key": "k-b"}
        )

    first = _failure(create_again)
    assert first.http_status == 400 and first.code == "resource_already_exists"
    replay = _failure(create_again)
    assert replay.code == "resource_already_exists" and replay.http_body == first.http_body
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.request_id == first.request_id
    assert emulator.control.stats()["idempotent_failure_replays"] == 1


def test_a_success_replay_carries_the_original_request_id(stripe_client) -> None:
    params = {"name": "Once"}
    first = stripe_client.v1.products.create(params=params, options={"idempotency_key": "k-ok"})
    again = stripe_client.v1.products.create(params=params, options={"idempotency_key": "k-ok"})
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.request_id == first.last_response.request_id


def test_a_scripted_fault_can_target_one_idempotency_key(stripe_client, emulator) -> None:
    product = _product(stripe_client)
    emulator.control.fail_next(
        idempotency_key="k-target", status=402, code="card_declined", phase="after_execution"
    )
    other = _create_price(stripe_client, product, "k-other")  # another key: untouched
    assert other.unit_amount == 500

    first = _failure(lambda: _create_price(stripe_client, product, "k-target", 600))
    assert first.http_status == 402 and first.code == "card_declined"
    replay = _failure(lambda: _create_price(stripe_client, product, "k-target", 600))
    assert replay.code == "card_declined" and replay.headers["Idempotent-Replayed"] == "true"


def test_a_path_template_matches_every_request_to_the_operation(stripe_client, emulator) -> None:
    product = stripe_client.v1.products.create(params={"name": "P"})
    emulator.control.fail_next("POST", "/v1/products/{id}", count=2, phase="after_commit")
    for n in (1, 2):
        err = _failure(
            lambda n=n: stripe_client.v1.products.update(
                product.id, params={"description": f"d{n}"}, options={"idempotency_key": f"u{n}"}
            )
        )
        assert err.http_status == 500
        stored = emulator.control.objects("product")[0]
        assert stored["description"] == f"d{n}"  # each update was committed
    assert emulator.control.scripted_faults() == []
    updated = stripe_client.v1.products.update(product.id, params={"description": "d3"})
    assert updated.description == "d3"


def test_the_random_faults_phase_is_a_setting(stripe_client, emulator) -> None:
    emulator.control.configure(
        fault_500_rate=1.0, fault_phase="after_commit", fault_operations=["POST /v1/products"]
    )
    first = _failure(
        lambda: stripe_client.v1.products.create(
            params={"name": "R"}, options={"idempotency_key": "k-random"}
        )
    )
    assert first.http_status == 500
    assert len(emulator.control.objects("product")) == 1
    emulator.control.configure(fault_500_rate=0.0)
    replay = _failure(
        lambda: stripe_client.v1.products.create(
            params={"name": "R"}, options={"idempotency_key": "k-random"}
        )
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    stats = emulator.control.stats()
    assert stats["faults"] == {"500": 1} and stats["fault_phases"] == {"after_commit": 1}


def test_a_request_waiting_on_a_failing_key_gets_the_saved_failure(emulator) -> None:
    # Latency is the processing time during which the first request holds the key.
    emulator.control.configure(latency_ms=300)
    client = emulator.client()
    emulator.control.fail_next("POST", "/v1/products", status=500, phase="after_execution")

    def create(_: int) -> tuple[int | None, str | None]:
        try:
            client.v1.products.create(params={"name": "C"}, options={"idempotency_key": "k-c"})
        except stripe.APIError as err:
            return err.http_status, err.headers.get("Idempotent-Replayed")
        return 200, None

    with ThreadPoolExecutor(3) as pool:
        outcomes = Counter(pool.map(create, range(3)))
    assert outcomes == {(500, None): 1, (500, "true"): 2}  # one ran, two waited and replayed
    assert emulator.control.objects("product") == []


def test_faults_and_their_phase_are_checked_and_cleared(emulator) -> None:
    control = emulator.control
    with pytest.raises(RuntimeError, match="phase"):
        control.fail_next("POST", "/v1/prices", phase="sometime")
    with pytest.raises(RuntimeError, match="path, an idempotency_key"):
        control.fail_next("POST", phase="after_commit")
    with pytest.raises(RuntimeError, match="status"):
        control.fail_next("POST", "/v1/prices", status=200, phase="after_commit")
    with pytest.raises(RuntimeError, match="fault_phase"):
        control.configure(fault_phase="later")

    control.fail_next("POST", "/v1/prices", phase="after_commit", count=3)
    assert [(f["path"], f["remaining"]) for f in control.scripted_faults()] == [("/v1/prices", 3)]
    control.clear_faults()
    assert control.scripted_faults() == []
    control.fail_next("POST", "/v1/prices", phase="after_commit")
    control.reset()
    assert control.scripted_faults() == []
