"""Idempotency, rate limits, faults, latency, search lag, webhooks and control endpoints."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stripe

from stripe_migration.sandbox.stripe_emulator import start_emulator


def _wait_until(condition: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.02)


# -- idempotency -------------------------------------------------------------------------------


def test_idempotent_replay(stripe_client: stripe.StripeClient, emulator) -> None:
    params = {"name": "Once", "default_price_data": {"currency": "usd", "unit_amount": 10}}
    first = stripe_client.v1.products.create(params=params, options={"idempotency_key": "k-1"})
    again = stripe_client.v1.products.create(params=params, options={"idempotency_key": "k-1"})
    assert again.id == first.id and again.default_price == first.default_price
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(emulator.control.objects("product")) == 1
    assert len(emulator.control.objects("price")) == 1
    assert emulator.control.stats()["idempotent_replays"] == 1


def test_idempotency_key_reused_with_other_params(stripe_client: stripe.StripeClient) -> None:
    stripe_client.v1.products.create(params={"name": "A"}, options={"idempotency_key": "k-2"})
    with pytest.raises(stripe.IdempotencyError) as err:
        stripe_client.v1.products.create(params={"name": "B"}, options={"idempotency_key": "k-2"})
    assert err.value.http_status == 400
    assert err.value.json_body["error"]["type"] == "idempotency_error"
    product = stripe_client.v1.products.list().data[0]
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.products.update(
            product.id, params={"name": "A"}, options={"idempotency_key": "k-2"}
        )


def test_validation_errors_are_not_saved_for_replay(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.products.create(params={"nme": "typo"}, options={"idempotency_key": "k-3"})
    fixed = stripe_client.v1.products.create(
        params={"name": "ok"}, options={"idempotency_key": "k-3"}
    )
    assert fixed.name == "ok"


def test_concurrent_requests_with_one_key_run_once(emulator) -> None:
    # Latency is the simulated processing time, during which the first request holds the key.
    emulator.control.configure(latency_ms=300)
    client = emulator.client()

    def create(_: int) -> str:
        return client.v1.products.create(
            params={"name": "Concurrent"}, options={"idempotency_key": "k-same"}
        ).id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(create, range(4)))
    assert len(set(ids)) == 1
    assert len(emulator.control.objects("product")) == 1
    assert emulator.control.stats()["idempotent_replays"] == 3


def test_concurrent_key_use_can_be_a_409_like_stripe(emulator) -> None:
    emulator.control.configure(latency_ms=300, idempotency_in_progress="conflict")
    client = emulator.client()

    def create(_: int) -> str:
        try:
            client.v1.products.create(
                params={"name": "Concurrent"}, options={"idempotency_key": "k-409"}
            )
            return "created"
        except stripe.APIError as exc:
            assert exc.http_status == 409
            return exc.json_body["error"]["code"]

    with ThreadPoolExecutor(3) as pool:
        outcomes = sorted(pool.map(create, range(3)))
    assert outcomes == ["created", "idempotency_key_in_use", "idempotency_key_in_use"]
    assert len(emulator.control.objects("product")) == 1


def test_idempotency_keys_expire(stripe_client: stripe.StripeClient, emulator) -> None:
    emulator.control.configure(idempotency_ttl_s=0.2)
    first = stripe_client.v1.products.create(
        params={"name": "A"}, options={"idempotency_key": "k-4"}
    )
    time.sleep(0.3)  # longer than the 0.2 s TTL set above: the key has expired
    second = stripe_client.v1.products.create(
        params={"name": "A"}, options={"idempotency_key": "k-4"}
    )
    assert second.id != first.id


# -- rate limits -------------------------------------------------------------------------------


def test_global_rate_limit_gives_429(emulator) -> None:
    emulator.control.configure(global_rate_per_s=2, endpoint_rate_per_s=None)
    client = emulator.client()
    outcomes = []
    for _ in range(12):
        try:
            client.v1.products.list()
            outcomes.append("ok")
        except stripe.RateLimitError as exc:
            assert exc.http_status == 429
            assert exc.json_body["error"]["code"] == "rate_limit"
            assert exc.json_body["error"]["type"] == "invalid_request_error"
            assert exc.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
            assert "Stripe-Should-Retry" not in exc.headers
            outcomes.append("429")
    assert outcomes[:2] == ["ok", "ok"]  # a full bucket admits one second's worth at once
    assert outcomes.count("429") >= 6  # refills at 2/s: a slow machine lets a few more through
    stats = emulator.control.stats()
    assert stats["rate_limited_total"] == outcomes.count("429")
    assert stats["by_endpoint"]["GET /v1/products"]["429"] == outcomes.count("429")


def test_a_full_bucket_admits_the_configured_burst_then_refuses(emulator) -> None:
    assert emulator.control.config()["rate_burst_s"] == 1.0  # the documented default
    # Counted, not timed: at 1/s a volley of a few requests refills well under one more.
    config = emulator.control.configure(
        global_rate_per_s=None, endpoint_rate_per_s=1, rate_burst_s=6
    )
    burst = round(config["endpoint_rate_per_s"] * config["rate_burst_s"])
    client = emulator.client()
    outcomes = []
    for _ in range(burst + 4):
        try:
            client.v1.products.list()
            outcomes.append("ok")
        except stripe.RateLimitError as exc:
            assert exc.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
            outcomes.append("429")
    assert outcomes[:burst] == ["ok"] * burst
    # Right after the burst: refused, give or take the one request the refill may have added.
    assert outcomes[burst:].count("429") >= 3, outcomes
    assert emulator.control.stats()["rate_limited_total"] == outcomes.count("429")


def test_each_endpoint_has_its_own_budget(emulator) -> None:
    emulator.control.configure(
        global_rate_per_s=None, endpoint_rates_per_s={"POST /v1/products": 1}
    )
    client = emulator.client()
    first = client.v1.products.create(params={"name": "a"})
    with pytest.raises(stripe.RateLimitError) as err:
        client.v1.products.create(params={"name": "b"})
    assert err.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    # POST /v1/products/{id} is another endpoint, with its own budget.
    assert client.v1.products.update(first.id, params={"name": "a2"}).name == "a2"


def test_search_has_its_stricter_limit(emulator) -> None:
    emulator.control.configure(global_rate_per_s=None, search_rate_per_s=1)
    client = emulator.client()
    client.v1.products.search(params={"query": "active:'true'"})
    with pytest.raises(stripe.RateLimitError):  # both search endpoints share the search budget
        client.v1.prices.search(params={"query": "active:'true'"})
    client.v1.products.list()  # lists are not searches


def test_max_in_flight_refuses_the_excess(emulator) -> None:
    emulator.control.configure(
        max_in_flight=2, latency_ms=300, global_rate_per_s=None, endpoint_rate_per_s=None
    )
    client = emulator.client()

    def call(_: int) -> str:
        try:
            client.v1.products.list()
            return "ok"
        except stripe.RateLimitError as exc:
            return exc.headers["Stripe-Rate-Limited-Reason"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert "global-concurrency" in results and "ok" in results
    assert emulator.control.stats()["peak_in_flight"] >= 3


# -- faults and latency ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(emulator, status: int) -> None:
    emulator.control.configure(**{f"fault_{status}_rate": 1.0})
    with pytest.raises(stripe.APIError) as err:
        emulator.client().v1.products.create(params={"name": "x"})
    assert err.value.http_status == status
    assert err.value.json_body["error"]["type"] == "api_error"
    assert err.value.headers["Stripe-Should-Retry"] == "true"
    assert emulator.control.objects("product") == []
    assert emulator.control.stats()["faults"] == {str(status): 1}


def test_client_retries_recover_from_injected_errors(emulator) -> None:
    # With this seed the draws fail two requests, never twice in a row (keeps backoff short).
    emulator.control.configure(fault_503_rate=0.5, seed=10)
    client = emulator.client(max_network_retries=3)
    for i in range(4):
        client.v1.products.create(params={"name": f"p{i}"})
    assert len(emulator.control.objects("product")) == 4
    assert emulator.control.stats()["faults"] == {"503": 2}


def test_dropped_connection_before_commit(emulator) -> None:
    emulator.control.configure(fault_drop_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        emulator.client().v1.products.create(params={"name": "x"})
    assert emulator.control.objects("product") == []
    assert emulator.control.stats()["by_endpoint"]["POST /v1/products"] == {"dropped": 1}


def test_dropped_connection_after_commit_and_idempotent_retry(emulator) -> None:
    emulator.control.configure(
        fault_drop_rate=1.0, drop_after_commit=1.0, fault_operations=["POST /v1/products"]
    )
    client = emulator.client()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k-drop"})
    stored = emulator.control.objects("product")
    assert len(stored) == 1  # committed although the client never heard back
    emulator.control.configure(fault_drop_rate=0.0)
    retried = client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "k-drop"})
    assert retried.id == stored[0]["id"]
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(emulator.control.objects("product")) == 1


def test_answer_slower_than_client_timeout(emulator) -> None:
    emulator.control.configure(fault_slow_rate=1.0, slow_response_s=5.0)
    client = emulator.client(http_client=stripe.RequestsClient(timeout=0.3))
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.products.create(params={"name": "slow"})
    assert time.monotonic() - started < 3.0
    assert [p["name"] for p in emulator.control.objects("product")] == ["slow"]
    # The server stops waiting once the client has hung up.
    _wait_until(lambda: emulator.control.stats()["in_flight"] == 0, timeout_s=3.0)


def test_latency_is_simulated(emulator) -> None:
    emulator.control.configure(latency_ms=150, latency_jitter_ms=20)
    client = emulator.client()
    started = time.monotonic()
    client.v1.products.list()
    assert time.monotonic() - started >= 0.13


# -- search lag --------------------------------------------------------------------------------


def test_search_lag(emulator) -> None:
    emulator.control.configure(
        search_lag_s=0.5, search_rate_per_s=None, global_rate_per_s=None, endpoint_rate_per_s=None
    )
    client = emulator.client()
    created_at = time.monotonic()
    product = client.v1.products.create(params={"name": "Lagging", "metadata": {"v": "one"}})
    assert client.v1.products.search(params={"query": "metadata['v']:'one'"}).data == []
    assert client.v1.products.retrieve(product.id).name == "Lagging"  # reads are immediate
    _wait_until(lambda: client.v1.products.search(params={"query": "metadata['v']:'one'"}).data)
    assert time.monotonic() - created_at >= 0.5

    client.v1.products.update(product.id, params={"metadata": {"v": "two"}})
    assert client.v1.products.search(params={"query": "metadata['v']:'two'"}).data == []
    stale = client.v1.products.search(params={"query": "metadata['v']:'one'"}).data
    assert [p.id for p in stale] == [product.id]
    _wait_until(lambda: client.v1.products.search(params={"query": "metadata['v']:'two'"}).data)


# -- webhooks ----------------------------------------------------------------------------------


class _Receiver(http.server.ThreadingHTTPServer):
    def __init__(self, fail_first: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, str]] = []
        self.fail_first = fail_first
        self.calls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/webhook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.calls += 1
        if self.server.calls <= self.server.fail_first:
            self.send_response(500)
        else:
            self.server.received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[_Receiver]:
    server = _Receiver(fail_first=getattr(request, "param", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhooks_are_signed_like_stripe(emulator, receiver: _Receiver) -> None:
    emulator.control.configure(webhook_url=receiver.url)
    client = emulator.client()
    product = client.v1.products.create(params={"name": "Hooked"})
    body, signature = _wait_until(lambda: receiver.received and receiver.received[0])
    event = stripe.Webhook.construct_event(body, signature, emulator.webhook_secret)
    assert event.type == "product.created"
    assert event.data.object.id == product.id
    assert event.pending_webhooks == 1
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            body.replace("Hooked", "Hacked"), signature, emulator.webhook_secret
        )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, signature, "whsec_wrong")


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_failed_webhook_deliveries_are_retried(emulator, receiver: _Receiver) -> None:
    emulator.control.configure(
        webhook_url=receiver.url, webhook_retry_delay_s=0.05, webhook_max_attempts=3
    )
    emulator.client().v1.products.create(params={"name": "Retried"})
    _wait_until(lambda: emulator.control.stats()["webhooks"]["delivered"] == 1)
    assert receiver.calls == 3
    assert json.loads(receiver.received[0][0])["type"] == "product.created"


# -- control endpoints and process -------------------------------------------------------------


def test_stats_reset_and_config(stripe_client: stripe.StripeClient, emulator) -> None:
    stripe_client.v1.products.create(params={"name": "x"})
    stripe_client.v1.products.list()
    stats = emulator.control.stats()
    assert stats["by_endpoint"]["POST /v1/products"] == {"200": 1}
    assert stats["by_endpoint"]["GET /v1/products"] == {"200": 1}
    assert stats["requests_total"] == 2 and stats["peak_in_flight"] >= 1

    config = emulator.control.configure(latency_ms=5)
    assert config["latency_ms"] == 5
    assert all(emulator.secret_key not in str(v) for v in config.values())  # keys are redacted
    with pytest.raises(RuntimeError, match="latency_ms"):
        emulator.control.configure(latency_ms=-1)
    with pytest.raises(RuntimeError, match="no_such_setting"):
        emulator.control.configure(no_such_setting=1)

    emulator.control.reset()
    assert emulator.control.config()["latency_ms"] == 0
    assert emulator.control.objects("product") == []
    assert emulator.control.stats()["requests_total"] == 0


def test_start_and_stop_leave_no_process(tmp_path) -> None:
    process = start_emulator(log_path=tmp_path / "log.txt", search_lag_s=0)
    try:
        client = stripe.StripeClient(process.secret_key, base_addresses={"api": process.url})
        assert client.v1.products.list().data == []
    finally:
        process.stop()
    assert not process.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
