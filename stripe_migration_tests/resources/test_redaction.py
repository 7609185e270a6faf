"""Redaction: every secret shape and every configured secret value hidden, in our errors and in
stripe-python's own log lines during a run."""

import logging

import dagster as dg
import pytest

from stripe_migration.resources.redaction import redact, register_secret
from stripe_migration.resources.stripe.errors import StripeApiError, StripeAuthError
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration_tests.resources.stripe_helpers import create, resource, unlimited


def test_redact_hides_every_key_shape() -> None:
    text = "a sk_test_abc123 b rk_live_XYZ c pk_test_q d whsec_123 e sk_test_****1234"
    assert redact(text) == "a *** b *** c *** d *** e ***"


def test_keys_with_dashes_and_underscores_are_hidden_whole() -> None:
    # secrets.token_urlsafe, as the sandbox makes its keys, uses '-' and '_'.
    text = "a whsec_Ab3-xY_9zz b sk_test_Ab-c_D e sb_secret_x-Y_z f"
    assert redact(text) == "a *** b *** e *** f"


def test_a_registered_secret_is_hidden_whatever_its_shape() -> None:
    secret = "eyJhbGciOi.CONFIGURED-value_42"
    assert redact(f"key={secret};") == f"key={secret};"  # no known shape: only its value tells
    register_secret(secret)
    assert redact(f"got {secret}, then {secret}!") == "got ***, then ***!"
    register_secret("short")  # too short to replace safely: ordinary text stays
    assert redact("a short text") == "a short text"


def test_passwords_and_bearer_tokens_are_hidden() -> None:
    text = "postgresql://app:hunter2@db/x Bearer tok.en password=pw x"
    assert redact(text) == "postgresql://app:***@db/x Bearer *** password=*** x"


def test_no_key_in_any_log_output_of_a_run(emulator, caplog, capfd, monkeypatch) -> None:
    unlimited(emulator)
    emulator.control.configure(fault_500_rate=0.2, fault_drop_rate=0.1, seed=3)
    monkeypatch.setenv("STRIPE_SECRET_KEY", emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    caplog.set_level(logging.DEBUG)
    wrong = "sk_test_wrongWrongWrong9876"

    @dg.asset
    def products_in_stripe(context: dg.AssetExecutionContext, stripe_api: StripeResource):
        context.log.info(f"resource: {stripe_api!r} / {stripe_api}")
        api = stripe_api.get_client()
        for n in range(5):
            create(api, n)
        with pytest.raises(StripeApiError):
            api.retrieve_product("prod_missing")
        return dg.MaterializeResult(metadata=stripe_api.stats_metadata())

    res = StripeResource(
        secret_key=dg.EnvVar("STRIPE_SECRET_KEY"),
        api_base=dg.EnvVar("STRIPE_API_BASE"),
        retry_attempts=8,
        retry_initial_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    result = dg.materialize([products_in_stripe], resources={"stripe_api": res})
    assert result.success
    metadata = result.asset_materializations_for_node("products_in_stripe")[0].metadata
    assert metadata["stripe_requests_create"].value >= 5

    with pytest.raises(StripeAuthError) as caught:
        resource(emulator, secret_key=wrong).get_client().retrieve_account()
    logging.getLogger("test").error("failed: %s %r", caught.value, caught.value)

    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, repr(metadata), repr(res)])
    assert "Request to Stripe api" in everything  # stripe-python's own logging was captured
    for key in (emulator.secret_key, wrong):
        assert key not in everything
        assert "****" + key[-4:] not in everything  # not even Stripe's masked form
