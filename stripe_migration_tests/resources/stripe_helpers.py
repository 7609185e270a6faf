"""Helpers of the Stripe tests: a resource on the emulator with fast retries, sample writes with
their idempotency keys, and readings of the emulator's statistics."""

from stripe_migration.resources.stripe.client import StripeApi
from stripe_migration.resources.stripe.resource import StripeResource


def idempotency_key(operation: str, cms_id: str, content: str) -> str:
    """A deterministic key per write, as the catalogue code derives them (any such key will do)."""
    return f"test-{operation}-{cms_id}-{content}"


def resource(emulator, **overrides) -> StripeResource:
    """A resource on the emulator with short timeouts and retry delays, so faults stay cheap."""
    settings = dict(
        secret_key=emulator.secret_key,
        api_base=emulator.url,
        request_timeout_s=2.0,
        retry_initial_delay_s=0.02,
        retry_max_delay_s=0.2,
    )
    settings.update(overrides)
    return StripeResource(**settings)


def product_params(n: int, **extra) -> dict:
    params = {
        "name": f"Product {n}",
        "metadata": {"cms_id": f"cms-{n}"},
        "default_price_data": {"currency": "usd", "unit_amount": 1000 + n},
    }
    params.update(extra)
    return params


def create(api: StripeApi, n: int, content: str = "v1"):
    return api.create_product(
        product_params(n), idempotency_key=idempotency_key("create_product", f"cms-{n}", content)
    )


def requests_to(stats: dict, endpoint: str) -> int:
    return sum(stats["by_endpoint"].get(endpoint, {}).values())


def posts(stats: dict) -> int:
    return sum(sum(c.values()) for ep, c in stats["by_endpoint"].items() if ep.startswith("POST"))


def unlimited(emulator) -> None:
    emulator.control.configure(
        global_rate_per_s=None, endpoint_rate_per_s=None, search_rate_per_s=None
    )


def price_params(product_id: str, amount: int = 2500) -> dict:
    return {"product": product_id, "currency": "eur", "unit_amount": amount}
