"""The emulated product operations: create, retrieve, update, list and search products."""

from __future__ import annotations

import functools
import time
from typing import Any

from .errors import ApiError, invalid
from .state import Obj, Params, RequestContext, StripeStateBase, list_limit, param_name
from .validation import UNSET, check_metadata


class ProductOperations(StripeStateBase):
    """``/v1/products`` on the account's tables."""

    def _new_product(
        self, params: dict[str, Any], product_id: str, now: int, prefix: str = ""
    ) -> dict[str, Any]:
        name = functools.partial(param_name, prefix)
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
        stored = self._store_update(self.products, old, new, ctx)
        return self._expand(stored, "product", params.get("expand", []))

    def list_products(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/products``: newest first; ``active``, ``ids``, ``created``, cursors."""
        limit = list_limit(params)
        ids = params.get("ids")
        if ids is not None and ("starting_after" in params or "ending_before" in params):
            raise invalid(
                "You cannot use `ids` together with `starting_after` or `ending_before`.",
                param="ids",
            )
        id_set = set(ids) if ids is not None else None
        return self._list_page(
            self.products,
            limit,
            params,
            "/v1/products",
            (lambda p: p["active"] is params["active"]) if "active" in params else None,
            (lambda p: p["id"] in id_set) if id_set is not None else None,
            (lambda p: p["shippable"] is params["shippable"]) if "shippable" in params else None,
            (lambda p: p["url"] == params["url"]) if "url" in params else None,
        )

    def search_products(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/products/search`` (sees objects only ``search_lag_s`` after each write)."""
        return self._search(self.products, "product", params, "/v1/products/search")
