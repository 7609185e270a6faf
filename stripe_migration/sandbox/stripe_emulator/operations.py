"""The emulated API operations: account, products, prices, events (and their search).

Each operation takes parameters already checked against the OpenAPI schema
(:mod:`.validation`), applies the rules Stripe documents outside the schema, changes the tables
only once every check has passed, records the ``product.*``/``price.*`` events Stripe would, and
returns the response object.
"""

from __future__ import annotations

import base64
import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .config import EmulatorConfig
from .errors import ApiError, invalid
from .search import compile_query
from .store import Table
from .validation import UNSET, api_subset, check_metadata

MAX_IMAGES = 8
MAX_MARKETING_FEATURES = 15
MAX_LOOKUP_KEYS = 10
_MAX_INTERVAL = {"day": 1095, "week": 156, "month": 36, "year": 3}
_DESCRIPTOR_FORBIDDEN = set("<>\\\"'")
# Which fields of which object can be expanded, and to what kind of object.
_EXPANDABLE = {"product": {"default_price": "price"}, "price": {"product": "product"}}
_INCLUDABLE = {"price": ("tiers", "currency_options")}


Params = dict[str, Any]
Obj = dict[str, Any]


@dataclass(frozen=True)
class RequestContext:
    """What an event records about the request that caused it."""

    request_id: str
    idempotency_key: str | None


def _url_ok(value: str) -> bool:
    return bool(re.match(r"https?://[^\s/?#]+\.[^\s]*$|https?://(localhost|127\.0\.0\.1)", value))


def _limit(params: dict[str, Any]) -> int:
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid(f"Invalid limit: must be between 1 and 100 (got {limit}).", param="limit")
    return limit


def _created_predicate(created: Any) -> Callable[[dict[str, Any]], bool] | None:
    if created is None:
        return None
    if isinstance(created, int):
        return lambda obj: obj["created"] == created
    bounds = created
    return lambda obj: (
        ("gt" not in bounds or obj["created"] > bounds["gt"])
        and ("gte" not in bounds or obj["created"] >= bounds["gte"])
        and ("lt" not in bounds or obj["created"] < bounds["lt"])
        and ("lte" not in bounds or obj["created"] <= bounds["lte"])
    )


def _all(*predicates: Callable[[dict[str, Any]], bool] | None) -> Callable[[dict[str, Any]], bool]:
    active = [p for p in predicates if p is not None]
    return lambda obj: all(p(obj) for p in active)


def _previous_attributes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What ``data.previous_attributes`` holds for an update: the old values of changed fields."""
    previous: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if key == "metadata":
            keys = set(before or {}) | set(value or {})
            previous[key] = {
                k: (before or {}).get(k)
                for k in sorted(keys)
                if (before or {}).get(k) != (value or {}).get(k)
            }
        else:
            previous[key] = before
    return previous


class StripeState:
    """Products, prices and events of one emulated account, and the operations on them."""

    def __init__(
        self,
        config: Callable[[], EmulatorConfig],
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        self._config = config
        self._on_event = on_event
        self.products = Table("product")
        self.prices = Table("price")
        self.events = Table("event")
        self._lookup_keys: dict[str, str] = {}
        self._price_extras: dict[str, dict[str, Any]] = {}
        self.handlers: dict[str, Callable[[dict[str, Any], dict[str, str], RequestContext], Any]]
        self.handlers = {
            "GET /v1/account": self.get_account,
            "POST /v1/products": self.create_product,
            "GET /v1/products": self.list_products,
            "GET /v1/products/search": self.search_products,
            "GET /v1/products/{id}": self.get_product,
            "POST /v1/products/{id}": self.update_product,
            "POST /v1/prices": self.create_price,
            "GET /v1/prices": self.list_prices,
            "GET /v1/prices/search": self.search_prices,
            "GET /v1/prices/{price}": self.get_price,
            "POST /v1/prices/{price}": self.update_price,
            "GET /v1/events": self.list_events,
            "GET /v1/events/{id}": self.get_event,
        }

    def clear(self) -> None:
        """Remove every object and event."""
        self.products.clear()
        self.prices.clear()
        self.events.clear()
        self._lookup_keys.clear()
        self._price_extras.clear()

    def table(self, kind: str) -> Table:
        """The table of ``kind`` (product, price or event)."""
        tables = {"product": self.products, "price": self.prices, "event": self.events}
        if kind not in tables:
            raise KeyError(kind)
        return tables[kind]

    # -- helpers -------------------------------------------------------------------------------

    def _emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        ctx: RequestContext,
        previous: dict[str, Any] | None = None,
    ) -> None:
        config = self._config()
        data: dict[str, Any] = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {
            "id": self.events.new_id(),
            "object": "event",
            "api_version": config.api_version,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if config.webhook_url else 0,
            "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            "type": event_type,
        }
        self.events.put(event)
        self._on_event(event)

    def _put(self, table: Table, obj: dict[str, Any]) -> None:
        table.put(obj, self._config().search_lag_s)

    def _expand(self, obj: dict[str, Any], kind: str, paths: list[str]) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for path in paths:
            head, _, rest = path.partition(".")
            groups.setdefault(head, [])
            if rest:
                groups[head].append(rest)
        out = obj
        for head, rests in groups.items():
            if head in _INCLUDABLE.get(kind, ()):
                extras = self._price_extras.get(obj["id"], {})
                out = {**out, head: extras.get(head)}
                continue
            target_kind = _EXPANDABLE.get(kind, {}).get(head)
            if target_kind is None:
                raise invalid(f"This property cannot be expanded ({head}).", param="expand")
            ref = out.get(head)
            if isinstance(ref, str):
                target = self.table(target_kind).find(ref)
                if target is not None:
                    out = {**out, head: self._expand(target, target_kind, rests)}
        return out

    def _expand_list(
        self, objects: list[dict[str, Any]], kind: str, paths: list[str]
    ) -> list[dict[str, Any]]:
        inner = []
        for path in paths:
            if path == "total_count":
                continue
            if not path.startswith("data."):
                raise invalid(
                    f"This property cannot be expanded ({path}). You may want to try expanding "
                    f"'data.{path}' instead.",
                    param="expand",
                )
            inner.append(path[5:])
        if not inner:
            return objects
        return [self._expand(obj, kind, inner) for obj in objects]

    def _images(self, images: Any, param: str = "images") -> list[str]:
        if images == UNSET:
            return []
        if len(images) > MAX_IMAGES:
            raise invalid(
                f"Invalid array: {param} can have at most {MAX_IMAGES} items (got {len(images)}).",
                param=param,
            )
        for i, url in enumerate(images):
            if not _url_ok(url):
                raise invalid(f"Not a valid URL: {url[:100]}", param=f"{param}[{i}]")
        return list(images)

    @staticmethod
    def _features(features: Any) -> list[dict[str, Any]]:
        if features == UNSET:
            return []
        if len(features) > MAX_MARKETING_FEATURES:
            raise invalid(
                f"Invalid array: marketing_features can have at most {MAX_MARKETING_FEATURES} "
                f"items (got {len(features)}).",
                param="marketing_features",
            )
        return [{"name": f["name"]} for f in features]

    @staticmethod
    def _descriptor(value: str, param: str = "statement_descriptor") -> str:
        if set(value) & _DESCRIPTOR_FORBIDDEN:
            raise invalid(
                "The statement descriptor may not include any of these characters: < > \\ \" '",
                param=param,
            )
        if not re.search(r"[A-Za-z]", value):
            raise invalid("The statement descriptor must contain at least one letter.", param)
        return value

    @staticmethod
    def _url(value: Any, param: str = "url") -> str | None:
        if value == UNSET:
            return None
        if not _url_ok(value):
            raise invalid(f"Not a valid URL: {value[:100]}", param=param)
        return value

    # -- account -------------------------------------------------------------------------------

    def get_account(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/account``: Stripe's example account, with this emulator's id."""
        account = copy.deepcopy(api_subset()["objects"]["account"]["example"])
        account["id"] = self._config().account_id
        account["email"] = "emulator@example.com"
        return account

    # -- products ------------------------------------------------------------------------------

    def _new_product(
        self, params: dict[str, Any], product_id: str, now: int, prefix: str = ""
    ) -> dict[str, Any]:
        def name(field: str) -> str:
            return f"{prefix}[{field}]" if prefix else field

        descriptor = params.get("statement_descriptor")
        return {
            "id": product_id,
            "object": "product",
            "active": params.get("active", True),
            "created": now,
            "default_price": None,
            "description": params.get("description"),
            "images": self._images(params.get("images", []), name("images")),
            "livemode": False,
            "marketing_features": self._features(params.get("marketing_features", [])),
            "metadata": check_metadata(params.get("metadata", {}), param=name("metadata")),
            "name": params["name"],
            "package_dimensions": params.get("package_dimensions"),
            "shippable": params.get("shippable"),
            "statement_descriptor": (
                self._descriptor(descriptor, name("statement_descriptor")) if descriptor else None
            ),
            "tax_code": params.get("tax_code"),
            "unit_label": params.get("unit_label"),
            "updated": now,
            "url": self._url(params["url"], name("url")) if "url" in params else None,
        }

    def create_product(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``POST /v1/products``, optionally with a custom ``id`` and ``default_price_data``."""
        product_id = params.get("id")
        if product_id is not None:
            if product_id in self.products:
                raise ApiError(
                    400,
                    f"Product already exists: a product with id '{product_id}' already exists.",
                    code="resource_already_exists",
                    param="id",
                )
        else:
            product_id = self.products.new_id()
        now = int(time.time())
        product = self._new_product(params, product_id, now)
        price = None
        if "default_price_data" in params:
            price = self._new_price(
                params["default_price_data"], product_id, now, "default_price_data"
            )
            product["default_price"] = price["id"]
        self._put(self.products, product)
        self._emit("product.created", product, ctx)
        if price is not None:
            self._commit_price(price, ctx)
        return self._expand(product, "product", params.get("expand", []))

    def get_product(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/products/{id}``."""
        product = self.products.get(path["id"])
        return self._expand(product, "product", params.get("expand", []))

    def update_product(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``POST /v1/products/{id}``: records ``product.updated`` with ``previous_attributes``."""
        old = self.products.get(path["id"])
        new = dict(old)
        for key, value in params.items():
            if key in ("expand",):
                continue
            if key == "metadata":
                new["metadata"] = check_metadata(value, existing=old["metadata"])
            elif key == "images":
                new["images"] = self._images(value)
            elif key == "marketing_features":
                new["marketing_features"] = self._features(value)
            elif key == "url":
                new["url"] = self._url(value)
            elif key == "statement_descriptor":
                new[key] = self._descriptor(value)
            elif key == "default_price":
                price = self.prices.get(value, param="default_price", status=400)
                if price["product"] != old["id"]:
                    raise invalid(
                        f"The price '{value}' belongs to product '{price['product']}', not to "
                        f"'{old['id']}'; a default price must be one of the product's prices.",
                        param="default_price",
                    )
                if not price["active"]:
                    raise invalid(
                        f"The price '{value}' is archived; a default price must be active.",
                        param="default_price",
                    )
                new[key] = value
            else:
                new[key] = None if value == UNSET else value
        new["updated"] = max(int(time.time()), old["updated"])
        previous = _previous_attributes(old, new)
        if set(previous) - {"updated"}:
            self._put(self.products, new)
            self._emit("product.updated", new, ctx, previous)
        else:
            new = old
        return self._expand(new, "product", params.get("expand", []))

    def list_products(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/products``: newest first; ``active``, ``ids``, ``created``, cursors."""
        limit = _limit(params)
        ids = params.get("ids")
        if ids is not None and ("starting_after" in params or "ending_before" in params):
            raise invalid(
                "You cannot use `ids` together with `starting_after` or `ending_before`.",
                param="ids",
            )
        id_set = set(ids) if ids is not None else None
        predicate = _all(
            (lambda p: p["active"] is params["active"]) if "active" in params else None,
            (lambda p: p["id"] in id_set) if id_set is not None else None,
            (lambda p: p["shippable"] is params["shippable"]) if "shippable" in params else None,
            (lambda p: p["url"] == params["url"]) if "url" in params else None,
            _created_predicate(params.get("created")),
        )
        data, has_more = self.products.page(
            predicate, limit, params.get("starting_after"), params.get("ending_before")
        )
        return {
            "object": "list",
            "data": self._expand_list(data, "product", params.get("expand", [])),
            "has_more": has_more,
            "url": "/v1/products",
        }

    def search_products(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/products/search`` (sees objects only ``search_lag_s`` after each write)."""
        return self._search(self.products, "product", params, "/v1/products/search")

    # -- prices --------------------------------------------------------------------------------

    def _new_price(
        self, params: dict[str, Any], product_id: str, now: int, prefix: str = ""
    ) -> dict[str, Any]:
        def name(field: str) -> str:
            return f"{prefix}[{field}]" if prefix else field

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
            limit = _MAX_INTERVAL[recurring["interval"]]
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
        new = {**old, "lookup_key": None}
        self._put(self.prices, new)
        self._emit("price.updated", new, ctx, {"lookup_key": old["lookup_key"]})

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
        previous = _previous_attributes(old, new)
        if owner is not None:
            self._transfer_lookup_key(owner, ctx)
        if previous:
            if "lookup_key" in previous:
                if self._lookup_keys.get(old["lookup_key"]) == old["id"]:
                    del self._lookup_keys[old["lookup_key"]]
                if new["lookup_key"] is not None:
                    self._lookup_keys[new["lookup_key"]] = new["id"]
            self._put(self.prices, new)
            self._emit("price.updated", new, ctx, previous)
        else:
            new = old
        return self._expand(new, "price", params.get("expand", []))

    def list_prices(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/prices``: ``product``, ``active``, ``currency``, ``type``, ``lookup_keys``..."""
        limit = _limit(params)
        lookup_keys = params.get("lookup_keys")
        if lookup_keys is not None and len(lookup_keys) > MAX_LOOKUP_KEYS:
            raise invalid(
                f"You can pass at most {MAX_LOOKUP_KEYS} lookup_keys.", param="lookup_keys"
            )
        wanted_keys = set(lookup_keys) if lookup_keys is not None else None
        recurring = params.get("recurring") or {}
        predicate = _all(
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
            _created_predicate(params.get("created")),
        )
        data, has_more = self.prices.page(
            predicate, limit, params.get("starting_after"), params.get("ending_before")
        )
        return {
            "object": "list",
            "data": self._expand_list(data, "price", params.get("expand", [])),
            "has_more": has_more,
            "url": "/v1/prices",
        }

    def search_prices(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/prices/search`` (sees objects only ``search_lag_s`` after each write)."""
        return self._search(self.prices, "price", params, "/v1/prices/search")

    # -- search --------------------------------------------------------------------------------

    def _search(self, table: Table, kind: str, params: dict[str, Any], url: str) -> dict[str, Any]:
        predicate = compile_query(params["query"], kind)
        limit = _limit(params)
        before = None
        if "page" in params:
            before = self._decode_page(params["page"], kind)
        matches: list[tuple[int, dict[str, Any]]] = []
        for seq, indexed, current in table.searchable(before):
            if predicate(indexed):
                matches.append((seq, current))
                if len(matches) > limit:
                    break
        has_more = len(matches) > limit
        page = matches[:limit]
        expand = params.get("expand", [])
        result: dict[str, Any] = {
            "object": "search_result",
            "data": self._expand_list([obj for _, obj in page], kind, expand),
            "has_more": has_more,
            "next_page": self._encode_page(page[-1][0], kind) if has_more else None,
            "url": url,
        }
        if "total_count" in expand:
            result["total_count"] = sum(1 for _, idx, _ in table.searchable() if predicate(idx))
        return result

    @staticmethod
    def _encode_page(seq: int, kind: str) -> str:
        return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")

    @staticmethod
    def _decode_page(token: str, kind: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            token_kind, _, seq = raw.partition(":")
            if token_kind != kind:
                raise ValueError(token_kind)
            return int(seq)
        except (ValueError, UnicodeDecodeError):
            raise invalid(f"Invalid page token: {token[:50]}", param="page") from None

    # -- events --------------------------------------------------------------------------------

    def list_events(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/events``: newest first; ``type`` (``*`` wildcards), ``types``, ``created``."""
        limit = _limit(params)
        if "type" in params and "types" in params:
            raise invalid(
                "You may only specify one of these parameters: type, types.",
                param="types",
                code="parameters_exclusive",
            )
        patterns = params.get("types") or ([params["type"]] if "type" in params else None)
        type_predicate = None
        if patterns is not None:
            if len(patterns) > 20:
                raise invalid("You can pass at most 20 types.", param="types")
            regex = re.compile(
                "|".join(
                    "(?:" + re.escape(p).replace(r"\*", "[^.]*(?:\\..*)?") + ")$" for p in patterns
                )
            )
            type_predicate = lambda e: regex.match(e["type"]) is not None  # noqa: E731
        predicate = _all(type_predicate, _created_predicate(params.get("created")))
        data, has_more = self.events.page(
            predicate, limit, params.get("starting_after"), params.get("ending_before")
        )
        for path_ in params.get("expand", []):
            raise invalid(f"This property cannot be expanded ({path_}).", param="expand")
        return {"object": "list", "data": data, "has_more": has_more, "url": "/v1/events"}

    def get_event(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/events/{id}``."""
        for path_ in params.get("expand", []):
            raise invalid(f"This property cannot be expanded ({path_}).", param="expand")
        return self.events.get(path["id"])
