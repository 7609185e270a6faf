"""StripeResource: the pinned API version, settings validated at load, each step's share of the
pool, the api_base from the environment, one client per resource."""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest

from stripe_migration.resources.stripe.resource import (
    STRIPE_API_VERSION,
    StripeResource,
    stripe_api_base_from_env,
)


def test_the_pinned_api_version_is_the_librarys() -> None:
    from stripe._api_version import _ApiVersion

    assert _ApiVersion.CURRENT == STRIPE_API_VERSION


def test_each_step_takes_its_share_of_the_pool() -> None:
    res = StripeResource(
        secret_key="sk_test_x", max_requests_per_second=100, max_in_flight=32, pool_limit=4
    )
    assert res.step_rates == {"global": 25.0, "endpoint": 6.25, "max_in_flight": 8}
    assert res.get_client().limiter.rate() == 25.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(secret_key="pk_test_abcdef"), "publishable key"),
        (dict(secret_key="nonsense_abcdef"), "does not look like a Stripe key"),
        (dict(secret_key=""), "STRIPE_SECRET_KEY"),
        (dict(max_requests_per_second=0), "greater than 0"),
        (dict(api_base="localhost:12111"), "http"),
        (dict(api_version="latest"), "api_version"),
        (dict(retry_initial_delay_s=5, retry_max_delay_s=1), "retry_max_delay_s"),
    ],
)
def test_bad_settings_fail_at_load_without_echoing_the_key(settings, message) -> None:
    full = dict(secret_key="sk_test_fine")
    full.update(settings)
    with pytest.raises(ValueError, match=message) as caught:
        StripeResource(**full)
    assert "abcdef" not in str(caught.value)


def test_api_base_comes_from_the_environment_only_when_set() -> None:
    assert stripe_api_base_from_env({}) is None
    assert stripe_api_base_from_env({"STRIPE_API_BASE": "http://x"}) == dg.EnvVar("STRIPE_API_BASE")


def test_one_client_per_resource_shared_by_threads() -> None:
    res = StripeResource(secret_key="sk_test_x")
    with ThreadPoolExecutor(8) as pool:
        clients = set(map(id, pool.map(lambda _: res.get_client(), range(32))))
    assert len(clients) == 1
