"""The emulated price operations: create, retrieve, update, list and search prices, lookup keys."""

from __future__ import annotations

import functools
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ApiError, invalid
from .state import (
    MAX_INTERVAL,
    MAX_LOOKUP_KEYS,
    Obj,
    Params,
    RequestContext,
    StripeStateBase,
    list_limit,
    param_name,
)
from .validation import UNSET, check_metadata


class PriceOperations(StripeStateBase):
    """``/v1/prices`` on the account's tables."""

    def _new_price(
        self, params: dict[str, Any], product_id: str, now: int, prefix: str = ""
    ) -> dict[str, Any]:
        name = functools.partial(param_name, prefix)
        metadata = check_metadata(params.get("metadata", {}), param=name("metadata"))
        scheme = params.get("billing_scheme", "per_unit")
        unit_amount = params.get("unit_amount")
        decimal_text = params.get("unit_amount_decimal")
        custom = params.get("custom_unit_amount")
        if unit_amount is not None and decimal_text is not None:
            raise invalid(
                "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                param=name("unit_amount_decimal"),
                code="parameters_exclusive",
            )
        amount_given = unit_amount is not None or decimal_text is not None
        if scheme == "tiered":
            if amount_given:
                raise invalid(
                    "unit_amount cannot be used with billing_scheme=tiered; use tiers.",
                    param=name("unit_amount"),
                )
            for needed in ("tiers", "tiers_mode"):
                if not params.get(needed):
                    raise invalid(
                        f"Missing required param: {name(needed)}.",
                        param=name(needed),
                        code="parameter_missing",
                    )
        elif params.get("tiers") or params.get("tiers_mode"):
            raise invalid(
                "tiers and tiers_mode can only be used with billing_scheme=tiered.",
                param=name("tiers"),
            )
        elif custom is not None and custom.get("enabled"):
            if amount_given:
                raise invalid(
                    "You may only specify one of these parameters: unit_amount, "
                    "custom_unit_amount.",
                    param=name("custom_unit_amount"),
                    code="parameters_exclusive",
                )
        elif not amount_given:
            raise invalid(
                f"Missing required param: {name('unit_amount')}.",
                param=name("unit_amount"),
                code="parameter_missing",
            )
        if unit_amount is not None:
            if unit_amount < 0:
                raise invalid(
                    f"Invalid non-negative integer: {unit_amount}", param=name("unit_amount")
                )
            decimal_text = str(unit_amount)
        elif decimal_text is not None:
            try:
                amount = Decimal(decimal_text)
            except InvalidOperation:
                raise invalid(
                    f"Invalid decimal: {decimal_text}", param=name("unit_amount_decimal")
                ) from None
            if amount < 0:
                raise invalid(
                    f"Invalid non-negative decimal: {decimal_text}",
                    param=name("unit_amount_decimal"),
                )
            if amount == amount.to_integral_value():
                unit_amount = int(amount)
            decimal_text = format(amount.normalize(), "f")
        recurring = params.get("recurring")
        if recurring is not None:
            count = recurring.get("interval_count", 1)
            limit = MAX_INTERVAL[recurring["interval"]]
            if not 1 <= count <= limit:
                raise invalid(
                    f"Invalid interval_count: the maximum billing interval is three years "
                    f"({limit} {recurring['interval']}s).",
                    param=name("recurring[interval_count]"),
                )
            recurring = {
                "interval": recurring["interval"],
                "interval_count": count,
                "meter": recurring.get("meter"),
                "trial_period_days": None,
                "usage_type": recurring.get("usage_type", "licensed"),
            }
        price_id = self.prices.new_id()
        extras = {}
        if params.get("tiers"):
            extras["tiers"] = [
                {
                    "flat_amount": t.get("flat_amount"),
                    "flat_amount_decimal": t.get("flat_amount_decimal"),
                    "unit_amount": t.get("unit_amount"),
                    "unit_amount_decimal": t.get("unit_amount_decimal"),
                    "up_to": None if t["up_to"] == "inf" else t["up_to"],
                }
                for t in params["tiers"]
            ]
        if params.get("currency_options"):
            extras["currency_options"] = params["currency_options"]
        if extras:
            self._price_extras[price_id] = extras
        return {
            "id": price_id,
            "object": "price",
            "active": params.get("active", True),
            "billing_scheme": scheme,
            "created": now,
            "currency": params["currency"],
            "custom_unit_amount": (
                {
                    "maximum": custom.get("maximum"),
                    "minimum": custom.get("minimum"),
                    "preset": custom.get("preset"),
                }
                if custom is not None and custom.get("enabled")
                else None
            ),
            "livemode": False,
            "lookup_key": params.get("lookup_key"),
            "metadata": metadata,
            "nickname": params.get("nickname"),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": params.get("tax_behavior", "unspecified"),
            "tiers_mode": params.get("tiers_mode"),
            "transform_quantity": params.get("transform_quantity"),
            "type": "recurring" if recurring is not None else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": decimal_text,
        }

    def _check_lookup_key(self, key: str, price_id: str | None, transfer: bool) -> str | None:
        """Return the price holding ``key`` that must give it up (None if free)."""
        owner = self._lookup_keys.get(key)
        if owner is None or owner == price_id:
            return None
        if not transfer:
            raise invalid(
                f"A price (`{owner}`) already uses that lookup key. Pass "
                "transfer_lookup_key=true to move it to this price.",
                param="lookup_key",
            )
        return owner

    def _transfer_lookup_key(self, owner: str, ctx: RequestContext) -> None:
        old = self.prices.get(owner)
        self._store_update(self.prices, old, {**old, "lookup_key": None}, ctx)

    def _commit_price(self, price: dict[str, Any], ctx: RequestContext) -> None:
        if price["lookup_key"] is not None:
            self._lookup_keys[price["lookup_key"]] = price["id"]
        self._put(self.prices, price)
        self._emit("price.created", price, ctx)

    def create_price(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``POST /v1/prices`` for an existing ``product`` or an inline ``product_data``."""
        product_id = params.get("product")
        product_data = params.get("product_data")
        if product_id is not None and product_data is not None:
            raise invalid(
                "You may only specify one of these parameters: product, product_data.",
                param="product_data",
                code="parameters_exclusive",
            )
        if product_id is None and product_data is None:
            raise invalid(
                "Missing required param: product.", param="product", code="parameter_missing"
            )
        now = int(time.time())
        new_product = None
        if product_id is not None:
            self.products.get(product_id, param="product", status=400)
        else:
            product_id = product_data.get("id") or self.products.new_id()
            if product_id in self.products:
                raise ApiError(
                    400,
                    f"Product already exists: '{product_id}'.",
                    code="resource_already_exists",
                    param="product_data[id]",
                )
            new_product = self._new_product(product_data, product_id, now, "product_data")
        owner = None
        if params.get("lookup_key") is not None:
            owner = self._check_lookup_key(
                params["lookup_key"], None, bool(params.get("transfer_lookup_key"))
            )
        price = self._new_price(params, product_id, now)
        if new_product is not None:
            self._put(self.products, new_product)
            self._emit("product.created", new_product, ctx)
        if owner is not None:
            self._transfer_lookup_key(owner, ctx)
        self._commit_price(price, ctx)
        return self._expand(price, "price", params.get("expand", []))

    def get_price(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/prices/{price}``."""
        price = self.prices.get(path["price"], param="price")
        return self._expand(price, "price", params.get("expand", []))

    def update_price(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``POST /v1/prices/{price}``: only the fields Stripe lets change (the schema enforces it)."""
        old = self.prices.get(path["price"], param="price")
        new = dict(old)
        owner = None
        if "active" in params:
            if params["active"] is False and old["active"]:
                product = self.products.find(old["product"])
                if product is not None and product["default_price"] == old["id"]:
                    raise invalid(
                        f"This price cannot be archived because it is the default price of its "
                        f"product ({old['product']}). Set another default price on the product "
                        "first.",
                        param="active",
                    )
            new["active"] = params["active"]
        if "lookup_key" in params:
            owner = self._check_lookup_key(
                params["lookup_key"], old["id"], bool(params.get("transfer_lookup_key"))
            )
            new["lookup_key"] = params["lookup_key"]
        if "metadata" in params:
            new["metadata"] = check_metadata(params["metadata"], existing=old["metadata"])
        if "nickname" in params:
            new["nickname"] = params["nickname"]
        if "tax_behavior" in params:
            wanted = params["tax_behavior"]
            if old["tax_behavior"] != "unspecified" and wanted != old["tax_behavior"]:
                raise invalid(
                    f"tax_behavior cannot be changed once it is set (it is "
                    f"'{old['tax_behavior']}').",
                    param="tax_behavior",
                )
            new["tax_behavior"] = wanted
        if "currency_options" in params:
            options = params["currency_options"]
            extras = dict(self._price_extras.get(old["id"], {}))
            extras["currency_options"] = None if options == UNSET else options
            self._price_extras[old["id"]] = extras
        if owner is not None:
            self._transfer_lookup_key(owner, ctx)
        if new["lookup_key"] != old["lookup_key"]:
            if self._lookup_keys.get(old["lookup_key"]) == old["id"]:
                del self._lookup_keys[old["lookup_key"]]
            if new["lookup_key"] is not None:
                self._lookup_keys[new["lookup_key"]] = new["id"]
        stored = self._store_update(self.prices, old, new, ctx)
        return self._expand(stored, "price", params.get("expand", []))

    def list_prices(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/prices``: ``product``, ``active``, ``currency``, ``type``, ``lookup_keys``..."""
        limit = list_limit(params)
        lookup_keys = params.get("lookup_keys")
        if lookup_keys is not None and len(lookup_keys) > MAX_LOOKUP_KEYS:
            raise invalid(
                f"You can pass at most {MAX_LOOKUP_KEYS} lookup_keys.", param="lookup_keys"
            )
        wanted_keys = set(lookup_keys) if lookup_keys is not None else None
        recurring = params.get("recurring") or {}
        return self._list_page(
            self.prices,
            limit,
            params,
            "/v1/prices",
            (lambda p: p["product"] == params["product"]) if "product" in params else None,
            (lambda p: p["active"] is params["active"]) if "active" in params else None,
            (lambda p: p["currency"] == params["currency"]) if "currency" in params else None,
            (lambda p: p["type"] == params["type"]) if "type" in params else None,
            (lambda p: p["lookup_key"] in wanted_keys) if wanted_keys is not None else None,
            (
                (
                    lambda p: (
                        p["recurring"] is not None
                        and all(p["recurring"].get(k) == v for k, v in recurring.items())
                    )
                )
                if recurring
                else None
            ),
        )

    def search_prices(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/prices/search`` (sees objects only ``search_lag_s`` after each write)."""
        return self._search(self.prices, "price", params, "/v1/prices/search")
