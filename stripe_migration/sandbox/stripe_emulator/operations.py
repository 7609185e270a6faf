"""The emulated API: :class:`StripeState` joins the product and price operations to the account's
and the events', and routes each operation name to its handler.

Each operation takes parameters already checked against the OpenAPI schema
(:mod:`.validation`), applies the rules Stripe documents outside the schema, changes the tables
only once every check has passed, records the ``product.*``/``price.*`` events Stripe would, and
returns the response object.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from .config import EmulatorConfig
from .errors import invalid
from .prices import PriceOperations
from .products import ProductOperations
from .state import Obj, Params, RequestContext, all_of, created_predicate, list_limit
from .validation import api_subset


class StripeState(ProductOperations, PriceOperations):
    """Products, prices and events of one emulated account, and the operations on them."""

    def __init__(
        self,
        config: Callable[[], EmulatorConfig],
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(config, on_event)
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

    # -- account -------------------------------------------------------------------------------

    def get_account(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/account``: Stripe's example account, with this emulator's id."""
        account = copy.deepcopy(api_subset()["objects"]["account"]["example"])
        account["id"] = self._config().account_id
        account["email"] = "emulator@example.com"
        return account

    # -- events --------------------------------------------------------------------------------

    def list_events(self, params: Params, path: dict[str, str], ctx: RequestContext) -> Obj:
        """``GET /v1/events``: newest first; ``type`` (one name, or a group with ``*`` wildcards:
        ``product.*``), ``types`` (up to 20 exact names; not both), ``created``, cursors
        (https://docs.stripe.com/api/events/list)."""
        limit = list_limit(params)
        if "type" in params and "types" in params:
            raise invalid(
                "You may only specify one of these parameters: type, types.",
                param="types",
                code="parameters_exclusive",
            )
        type_predicate = None
        if "types" in params:
            if len(params["types"]) > 20:
                raise invalid("You can pass at most 20 types.", param="types")
            names = frozenset(params["types"])
            type_predicate = lambda e: e["type"] in names  # noqa: E731
        elif "type" in params:
            wildcard = re.escape(params["type"]).replace(r"\*", "[^.]*(?:\\..*)?")
            regex = re.compile(f"(?:{wildcard})$")
            type_predicate = lambda e: regex.match(e["type"]) is not None  # noqa: E731
        predicate = all_of(type_predicate, created_predicate(params.get("created")))
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
