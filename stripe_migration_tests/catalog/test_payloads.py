"""Stripe request parameters per action: exact, minimal, and accepted by Stripe's OpenAPI spec."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from stripe_migration.catalog import stripe_payloads as payloads
from stripe_migration.catalog.actions import Action, PlannedAction, StripeProductState
from stripe_migration.catalog.plan import plan_product
from stripe_migration.catalog.schema import validate_row
from stripe_migration.catalog.stripe_payloads import (
    custom_product_id,
    deactivate_price_params,
    idempotency_key,
    lookup_key_params,
    price_create_key,
    price_create_params,
    price_lookup_key,
    product_create_params,
    product_update_params,
    with_generation,
)

ID = "5e0b3c1a-9f7d-4f0e-8a1b-2c3d4e5f6a7b"
_REPO = Path(__file__).resolve().parents[2]
#: The request schemas the emulator enforces, extracted from Stripe's OpenAPI description.
_SPEC_SUBSET = (
    _REPO / "stripe_migration" / "sandbox" / "stripe_emulator" / "data" / "stripe_api_subset.json"
)


def product(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": ID,
        "name": "Linen Apron",
        "description": "Stonewashed linen.",
        "price": "34.00",
        "currency": "eur",
        "images": [
            "https://images.example.com/apron-1.jpg",
            "https://images.example.com/apron-2.jpg",
        ],
        "active": True,
        "metadata": {"sku": "AP-1", "weight_g": 180},
    }
    row.update(overrides)
    validated, reasons = validate_row(row)
    assert validated is not None, reasons
    return validated


def planned(action: Action, **overrides: Any) -> PlannedAction:
    return PlannedAction(
        ID, action, (), product(**overrides), "prod_1", "price_old", stripe_unit_amount=3400,
        stripe_currency="eur",
    )  # fmt: skip


def test_create_params_are_exact() -> None:
    assert product_create_params(product()) == {
        "id": f"cms_{ID}",
        "name": "Linen Apron",
        "active": True,
        "description": "Stonewashed linen.",
        "images": [
            "https://images.example.com/apron-1.jpg",
            "https://images.example.com/apron-2.jpg",
        ],
        "metadata": {"cms_id": ID, "sku": "AP-1", "weight_g": "180"},
        "default_price_data": {"currency": "eur", "unit_amount": 3400, "metadata": {"cms_id": ID}},
    }


def test_create_params_leave_out_empty_fields() -> None:
    params = product_create_params(product(description="", images=[]))
    assert "description" not in params
    assert "images" not in params
    assert params["id"] == custom_product_id(ID) == f"cms_{ID}"
    assert "id" not in product_create_params(product(), custom_id=False)


def test_update_params_send_full_content_and_clear_with_empty_strings() -> None:
    params = product_update_params(
        product(description=None, images=[]), unset_metadata_keys=("note",)
    )
    assert params == {
        "name": "Linen Apron",
        "description": "",
        "images": "",
        "metadata": {"note": "", "cms_id": ID, "sku": "AP-1", "weight_g": "180"},
        "active": True,
    }
    assert product_update_params(product(active=False))["active"] is False
    assert (
        product_update_params(product(), default_price="price_new")["default_price"] == "price_new"
    )


def test_new_price_moves_the_lookup_key() -> None:
    assert price_create_params(product(price="40"), "prod_1") == {
        "product": "prod_1",
        "currency": "eur",
        "unit_amount": 4000,
        "lookup_key": f"cms_{ID}",
        "transfer_lookup_key": True,
        "metadata": {"cms_id": ID},
    }
    assert lookup_key_params(ID) == {"lookup_key": f"cms_{ID}", "transfer_lookup_key": True}
    with pytest.raises(ValueError, match="exceeds 200"):
        price_lookup_key("x" * 200)


def test_idempotency_keys_are_deterministic_and_follow_the_params() -> None:
    key = idempotency_key("product.create", ID, "hash-a", "3400:eur")
    assert key == idempotency_key("product.create", ID, "hash-a", "3400:eur")
    assert key.startswith(f"stripe-migration:product.create:{ID}:")
    assert len(key) <= 255
    assert key != idempotency_key("product.create", ID, "hash-b", "3400:eur")
    assert key != idempotency_key("product.update", ID, "hash-a", "3400:eur")
    assert key != idempotency_key("product.create", "other", "hash-a", "3400:eur")
    # Fingerprint parts are separated, not just concatenated; non-text parts are fine.
    assert idempotency_key("op", ID, "ab", "c") != idempotency_key("op", ID, "a", "bc")
    assert idempotency_key("op", ID, 3400, None) == idempotency_key("op", ID, "3400", "")


def test_price_create_key_spans_runs_and_differs_per_transition() -> None:
    """The one key without the run id: a resumed run replays the price create instead of
    creating a second price; 10 → 20 → 10 inside Stripe's key window is a new key each time."""
    key = price_create_key(ID, 3400, "eur", "price_10")
    assert key == price_create_key(ID, 3400, "eur", "price_10")
    assert key != price_create_key(ID, 3400, "eur", "price_20")
    assert key != price_create_key(ID, 3500, "eur", "price_10")
    assert key != price_create_key(ID, 3400, "usd", "price_10")
    # generation 0 is the key of every earlier version, so an upgrade replays what it sent
    assert key == idempotency_key("price.create", ID, 3400, "eur", "price_10")
    generations = {price_create_key(ID, 3400, "eur", "price_10", g) for g in range(4)}
    assert len(generations) == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda run, cms: payloads.product_create_key(cms, run, "hash"),
        lambda run, cms: payloads.product_update_key(cms, run, "hash"),
        lambda run, cms: payloads.product_archive_key(cms, run, "hash"),
        lambda run, cms: payloads.archive_deleted_key(cms, run, "prod_1"),
        lambda run, cms: payloads.default_price_switch_key(cms, run, "price_new", "hash"),
        lambda run, cms: payloads.price_deactivate_key(cms, run, "price_old"),
        lambda run, cms: payloads.lookup_key_reclaim_key(cms, run, "price_1"),
    ],
)
def test_keys_of_repeatable_writes_are_per_run(make) -> None:
    """Writes that set values: replayed inside a run, never a stale replay in a later run."""
    assert make("run-1", ID) == make("run-1", ID)
    assert make("run-1", ID) != make("run-2", ID)
    assert make("run-1", ID) != make("run-1", "other")
    assert make("run-1", ID).startswith("stripe-migration:product.") or make(
        "run-1", ID
    ).startswith("stripe-migration:price.")


def test_keys_of_different_writes_never_collide() -> None:
    keys = [
        payloads.product_create_key(ID, "r", "h"),
        payloads.product_update_key(ID, "r", "h"),
        payloads.product_archive_key(ID, "r", "h"),
    ]
    assert len(set(keys)) == 3


def test_a_resend_after_a_replayed_failure_gets_a_new_key() -> None:
    key = payloads.product_update_key(ID, "run-1", "hash")
    assert with_generation(key, 0) == key
    resends = [with_generation(key, g) for g in (1, 2, 3)]
    assert len({key, *resends}) == 4
    assert all(len(k) <= 255 for k in resends)


def test_resync_unset_keys_reach_the_update() -> None:
    state = StripeProductState(
        "prod_1", "Linen Apron", "Stonewashed linen.",
        ("https://images.example.com/apron-1.jpg", "https://images.example.com/apron-2.jpg"),
        {"cms_id": ID, "sku": "AP-1", "weight_g": "180", "promo": "x"}, True, "price_1", 3400, "eur",
    )  # fmt: skip
    action = plan_product(product(), state, resync=True)
    assert action.action is Action.UPDATE
    params = product_update_params(action.product, action.unset_metadata_keys)
    assert params["metadata"]["promo"] == ""


# The parameters against Stripe's OpenAPI description.


@cache
def _spec() -> dict[str, Any]:
    return json.loads(_SPEC_SUBSET.read_text())


def _body_schema(path: str) -> dict[str, Any]:
    return _spec()["operations"][f"POST {path}"]["body"]


def _problems(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    if "anyOf" in schema:
        options = [_problems(value, option, where) for option in schema["anyOf"]]
        return [] if any(not o for o in options) else options[0]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        found = [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in schema.get("properties", {}):
                found += _problems(item, schema["properties"][key], f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += _problems(item, schema["additionalProperties"], f"{where}[{key}]")
            else:
                found.append(f"{where}: unknown parameter {key}")
        return found
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [
            p for i, v in enumerate(value) for p in _problems(v, schema["items"], f"{where}[{i}]")
        ]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        if len(value) > schema.get("maxLength", len(value)):
            return [f"{where}: longer than {schema['maxLength']}"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: not a boolean"]
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: not an integer"]
    return []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/products", lambda: product_create_params(product())),
        (
            "/v1/products",
            lambda: product_create_params(product(), custom_id=False),
        ),
        ("/v1/products", lambda: product_create_params(product(name="n" * 5000, description=None))),
        ("/v1/products/{id}", lambda: product_update_params(product(images=[], description=None))),
        (
            "/v1/products/{id}",
            lambda: product_update_params(
                product(), unset_metadata_keys=("x",), default_price="price_1"
            ),
        ),
        ("/v1/products/{id}", lambda: {"default_price": "price_1"}),
        ("/v1/prices", lambda: price_create_params(product(), "prod_1")),
        ("/v1/prices/{price}", lambda: lookup_key_params(ID)),
        ("/v1/prices/{price}", deactivate_price_params),
    ],
)
def test_params_match_stripe_spec(path: str, params: Any) -> None:
    assert _problems(params(), _body_schema(path), path) == []


def test_spec_checker_catches_mistakes() -> None:
    schema = _body_schema("/v1/products")
    assert _problems({"name": "x", "lookup_key": "k"}, schema, "p") == [
        "p: unknown parameter lookup_key"
    ]
    assert _problems({"name": "x" * 5001}, schema, "p") == ["p.name: longer than 5000"]
    bad_price = {"name": "x", "default_price_data": {"unit_amount": 1}}
    assert _problems(bad_price, schema, "p") == ["p.default_price_data: missing currency"]
