"""What every emulated operation shares: the tables, the request context, events, expansion, checks.

:class:`StripeStateBase` holds one account's products, prices and events; the operations
(``products.py``, ``prices.py``, ``operations.py``) build on it.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import EmulatorConfig
from .errors import invalid
from .search import compile_query
from .store import Table
from .validation import UNSET

MAX_IMAGES = 8
MAX_MARKETING_FEATURES = 15
MAX_LOOKUP_KEYS = 10
MAX_INTERVAL = {"day": 1095, "week": 156, "month": 36, "year": 3}
DESCRIPTOR_FORBIDDEN = set("<>\\\"'")
# Which fields of which object can be expanded, and to what kind of object.
EXPANDABLE = {"product": {"default_price": "price"}, "price": {"product": "product"}}
INCLUDABLE = {"price": ("tiers", "currency_options")}


Params = dict[str, Any]
Obj = dict[str, Any]


@dataclass(frozen=True)
class RequestContext:
    """What an event records about the request that caused it."""

    request_id: str
    idempotency_key: str | None


def url_ok(value: str) -> bool:
    return bool(re.match(r"https?://[^\s/?#]+\.[^\s]*$|https?://(localhost|127\.0\.0\.1)", value))


def param_name(prefix: str, field: str) -> str:
    """The name of parameter ``field`` in an error, inside ``prefix`` (e.g. ``product_data``) if any."""
    return f"{prefix}[{field}]" if prefix else field


def list_limit(params: dict[str, Any]) -> int:
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid(f"Invalid limit: must be between 1 and 100 (got {limit}).", param="limit")
    return limit


def created_predicate(created: Any) -> Callable[[dict[str, Any]], bool] | None:
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


def all_of(
    *predicates: Callable[[dict[str, Any]], bool] | None,
) -> Callable[[dict[str, Any]], bool]:
    active = [p for p in predicates if p is not None]
    return lambda obj: all(p(obj) for p in active)


def previous_attributes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
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


class StripeStateBase:
    """The tables of one emulated account, and the helpers its operations share."""

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

    def _store_update(self, table: Table, old: Obj, new: Obj, ctx: RequestContext) -> Obj:
        """Store ``new`` in place of ``old`` and record ``<kind>.updated`` with the previous values
        of what changed; if nothing but the ``updated`` time changed, store and record nothing.
        Return the version now stored."""
        previous = previous_attributes(old, new)
        if not set(previous) - {"updated"}:
            return old
        self._put(table, new)
        self._emit(f"{table.kind}.updated", new, ctx, previous)
        return new

    def _expand(self, obj: dict[str, Any], kind: str, paths: list[str]) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for path in paths:
            head, _, rest = path.partition(".")
            groups.setdefault(head, [])
            if rest:
                groups[head].append(rest)
        out = obj
        for head, rests in groups.items():
            if head in INCLUDABLE.get(kind, ()):
                extras = self._price_extras.get(obj["id"], {})
                out = {**out, head: extras.get(head)}
                continue
            target_kind = EXPANDABLE.get(kind, {}).get(head)
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

    def _list_page(
        self,
        table: Table,
        limit: int,
        params: Params,
        url: str,
        *filters: Callable[[dict[str, Any]], bool] | None,
    ) -> Obj:
        """One page of ``table`` matching every filter (None: no filter) and the ``created``
        parameter, as Stripe's list object, expanded."""
        predicate = all_of(*filters, created_predicate(params.get("created")))
        data, has_more = table.page(
            predicate, limit, params.get("starting_after"), params.get("ending_before")
        )
        return {
            "object": "list",
            "data": self._expand_list(data, table.kind, params.get("expand", [])),
            "has_more": has_more,
            "url": url,
        }

    def _images(self, images: Any, param: str = "images") -> list[str]:
        if images == UNSET:
            return []
        if len(images) > MAX_IMAGES:
            raise invalid(
                f"Invalid array: {param} can have at most {MAX_IMAGES} items (got {len(images)}).",
                param=param,
            )
        for i, url in enumerate(images):
            if not url_ok(url):
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
        if set(value) & DESCRIPTOR_FORBIDDEN:
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
        if not url_ok(value):
            raise invalid(f"Not a valid URL: {value[:100]}", param=param)
        return value

    # -- search --------------------------------------------------------------------------------

    def _search(self, table: Table, kind: str, params: dict[str, Any], url: str) -> dict[str, Any]:
        predicate = compile_query(params["query"], kind)
        limit = list_limit(params)
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
