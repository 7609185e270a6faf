"""The emulator's pure parts: form decoding, schema checks, search queries, limits, signatures."""

from __future__ import annotations

import pytest
import stripe

from stripe_migration.sandbox.stripe_emulator.config import EmulatorConfig, redact_key
from stripe_migration.sandbox.stripe_emulator.errors import ApiError
from stripe_migration.sandbox.stripe_emulator.forms import decode
from stripe_migration.sandbox.stripe_emulator.limits import RateLimiter
from stripe_migration.sandbox.stripe_emulator.search import compile_query
from stripe_migration.sandbox.stripe_emulator.validation import SpecValidator
from stripe_migration.sandbox.stripe_emulator.webhooks import sign


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("name=a&metadata[k]=v&metadata[x]=", {"name": "a", "metadata": {"k": "v", "x": ""}}),
        ("images[0]=u&images[1]=w", {"images": {"0": "u", "1": "w"}}),
        ("expand[]=a&expand[]=b", {"expand": ["a", "b"]}),
        ("created[gte]=1&created[lt]=2", {"created": {"gte": "1", "lt": "2"}}),
        ("tiers[0][up_to]=inf", {"tiers": {"0": {"up_to": "inf"}}}),
        ("", {}),
    ],
)
def test_decode_nested_form(raw: str, expected: dict) -> None:
    assert decode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "param"),
    [("metadata[a[b]]=v", "metadata"), ("a=1&a[b]=2", "a"), ("[x]=1", "[x]"), ("a[b]c=1", "a")],
)
def test_decode_refuses_malformed_keys(raw: str, param: str) -> None:
    with pytest.raises(ApiError) as err:
        decode(raw)
    assert (err.value.status, err.value.param) == (400, param)


def test_validator_converts_types() -> None:
    params = decode(
        "name=n&active=false&images[1]=b&images[0]=a&package_dimensions[height]=1.5"
        "&package_dimensions[length]=1&package_dimensions[weight]=2&package_dimensions[width]=3"
        "&default_price_data[currency]=EUR&default_price_data[unit_amount]=12"
    )
    checked = SpecValidator().validate("POST /v1/products", params)
    assert checked["active"] is False
    assert checked["images"] == ["a", "b"]
    assert checked["package_dimensions"]["height"] == 1.5
    assert checked["default_price_data"] == {"currency": "eur", "unit_amount": 12}


def test_validator_allows_unset_only_where_the_schema_does() -> None:
    validator = SpecValidator()
    assert validator.validate("POST /v1/products/{id}", decode("description=&url="))["url"] == ""
    with pytest.raises(ApiError) as err:
        validator.validate("POST /v1/products/{id}", decode("name="))
    assert (err.value.code, err.value.param) == ("parameter_invalid_empty", "name")


PRODUCT = {
    "active": True,
    "created": 100,
    "name": "Blue Shirt",
    "description": None,
    "metadata": {"sku": "A-1", "batch": "7"},
}


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("metadata['sku']:'A-1'", True),
        ("metadata['sku']:'A-1' AND active:'true'", True),
        ("metadata['sku']:'A-1' AND active:'false'", False),
        ("active:'false' OR name:'blue shirt'", True),
        ('metadata["batch"]:"7"', True),
        ("-metadata['sku']:'A-1'", False),
        ("metadata['missing']:null", True),
        ("name~'shir'", True),
        ("created>99 AND created<=100", True),
        ("created>100", False),
        ("description:'x'", False),
    ],
)
def test_search_queries(query: str, matches: bool) -> None:
    assert compile_query(query, "product")(PRODUCT) is matches


@pytest.mark.parametrize(
    "query",
    [
        "",
        "colour:'red'",
        "name:unquoted",
        "name~'ab'",
        "a:'1' AND",
        "name:'a' AND active:'true' OR created>1",
        "metadata.sku:'x'",
        "active:'maybe'",
    ],
)
def test_bad_search_queries_are_400_on_query(query: str) -> None:
    with pytest.raises(ApiError) as err:
        compile_query(query, "product")
    assert (err.value.status, err.value.param) == (400, "query")


def _refusals(rate_per_s: float, limit: float, seconds: float) -> int:
    config = EmulatorConfig(global_rate_per_s=limit, endpoint_rate_per_s=None)
    limiter = RateLimiter(config, now=0.0)
    refused = 0
    step = 1.0 / rate_per_s
    for i in range(int(seconds * rate_per_s)):
        if limiter.admit("GET /v1/products", False, now=i * step) is not None:
            refused += 1
    return refused


def test_rate_limit_is_exact_at_the_limit_and_refuses_the_excess() -> None:
    assert _refusals(rate_per_s=25, limit=25, seconds=60) == 0
    # At twice the rate, half the requests beyond the first second's burst are refused.
    refused = _refusals(rate_per_s=50, limit=25, seconds=60)
    assert abs(refused - (50 * 60 - 25 * 60 - 25)) <= 2


def test_endpoint_and_search_limits_are_separate_buckets() -> None:
    config = EmulatorConfig(
        global_rate_per_s=None, endpoint_rates_per_s={"POST /v1/products": 1}, search_rate_per_s=1
    )
    limiter = RateLimiter(config, now=0.0)
    assert limiter.admit("POST /v1/products", False, now=0.0) is None
    assert limiter.admit("POST /v1/products", False, now=0.1) == "endpoint-rate"
    assert limiter.admit("POST /v1/products/{id}", False, now=0.1) is None
    assert limiter.admit("GET /v1/products/search", True, now=0.1) is None
    assert limiter.admit("GET /v1/prices/search", True, now=0.2) == "resource-specific"
    assert limiter.admit("POST /v1/products", False, now=1.2) is None


def test_signature_verifies_with_stripe_library() -> None:
    payload = '{"id": "evt_1", "object": "event", "type": "product.created", "data": {}}'
    header = sign(payload, "whsec_test")
    event = stripe.Webhook.construct_event(payload, header, "whsec_test")
    assert event.id == "evt_1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"global_rate_per_s": 0}, "global_rate_per_s"),
        ({"fault_500_rate": 1.5}, "fault_500_rate"),
        ({"fault_500_rate": 0.6, "fault_503_rate": 0.6}, "fault rates"),
        ({"secret_keys": []}, "secret_keys"),
        ({"webhook_url": "ftp://x"}, "webhook_url"),
        ({"idempotency_in_progress": "maybe"}, "idempotency_in_progress"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_config_names_the_setting(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EmulatorConfig().updated(changes)


def test_config_repr_and_public_dict_hide_secrets() -> None:
    config = EmulatorConfig(
        secret_keys=("sk_test_abcdefghijklmnop",), webhook_secret="whsec_zzzz9999"
    )
    assert "abcdefghijkl" not in repr(config)
    assert config.public_dict()["secret_keys"] == ["sk_test_****mnop"]
    assert "zzzz" not in str(config.public_dict())
    assert redact_key("sk_live_0123456789") == "sk_live_****6789"
