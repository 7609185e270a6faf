"""In-memory tables of Stripe objects, with Stripe-like ids, list pagination and a lagging search index.

Stored objects are never changed in place: an update stores a new dict. Events, search snapshots and
responses can therefore share them safely.
"""

from __future__ import annotations

import bisect
import random
import string
import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import missing_resource

_ALPHABET = string.ascii_letters + string.digits
# Ids only need to be unique, not unpredictable: a seeded PRNG is ~10x faster than SystemRandom.
_rng = random.Random()

# Id prefix and random length per object kind, as Stripe forms them (prod_ + 14, price_ + 24).
ID_FORMATS = {"product": ("prod_", 14), "price": ("price_", 24), "event": ("evt_", 24)}


def new_id(prefix: str, length: int) -> str:
    """A random id such as ``prod_Qx3...``."""
    return prefix + "".join(_rng.choices(_ALPHABET, k=length))


class Table:
    """The objects of one kind, in creation order.

    ``search_lag_s`` delays what search sees: each write adds a snapshot that becomes searchable
    only ``lag`` seconds later; until then search matches the previous snapshot (or nothing).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._objects: dict[str, dict[str, Any]] = {}
        self._seq: dict[str, int] = {}
        self._order: list[str] = []
        self._snapshots: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._objects

    def new_id(self) -> str:
        """A fresh id for this kind that is not taken."""
        prefix, length = ID_FORMATS[self.kind]
        while True:
            candidate = new_id(prefix, length)
            if candidate not in self._objects:
                return candidate

    def get(self, object_id: str, param: str = "id", status: int = 404) -> dict[str, Any]:
        """The object ``object_id``, or Stripe's ``resource_missing`` error."""
        try:
            return self._objects[object_id]
        except KeyError:
            raise missing_resource(self.kind, object_id, param=param, status=status) from None

    def find(self, object_id: str) -> dict[str, Any] | None:
        """The object ``object_id`` or None."""
        return self._objects.get(object_id)

    def put(self, obj: dict[str, Any], search_lag_s: float = 0.0) -> None:
        """Insert or replace ``obj`` (keyed by its id) and index it for search after the lag."""
        object_id = obj["id"]
        if object_id not in self._objects:
            self._seq[object_id] = len(self._order)
            self._order.append(object_id)
        self._objects[object_id] = obj
        if self.kind != "event":
            now = time.monotonic()
            snaps = self._snapshots.setdefault(object_id, [])
            snaps.append((now + search_lag_s, obj))
            self._prune(snaps, now)

    @staticmethod
    def _prune(snaps: list[tuple[float, dict[str, Any]]], now: float) -> None:
        # Keep the newest snapshot already visible and all those not yet visible.
        visible = [i for i, (at, _) in enumerate(snaps) if at <= now]
        if len(visible) > 1:
            del snaps[: visible[-1]]

    def all(self) -> list[dict[str, Any]]:
        """Every object, oldest first."""
        return [self._objects[i] for i in self._order]

    def newest_first(self, before_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """Objects newest first, optionally only those created before position ``before_seq``."""
        start = len(self._order) - 1 if before_seq is None else before_seq - 1
        for index in range(start, -1, -1):
            yield self._objects[self._order[index]]

    def seq(self, object_id: str) -> int | None:
        """Creation position of ``object_id`` (None if unknown)."""
        return self._seq.get(object_id)

    def page(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a newest-first list, Stripe style; returns (objects, has_more)."""
        if ending_before is not None:
            cursor = self._cursor(ending_before, "ending_before")
            newer = []
            for index in range(cursor + 1, len(self._order)):
                obj = self._objects[self._order[index]]
                if predicate(obj):
                    newer.append(obj)
                    if len(newer) > limit:
                        break
            # The page is the `limit` objects just before the cursor, still newest first.
            page = newer[:limit]
            return list(reversed(page)), len(newer) > limit
        before = None if starting_after is None else self._cursor(starting_after, "starting_after")
        out: list[dict[str, Any]] = []
        for obj in self.newest_first(before):
            if predicate(obj):
                if len(out) == limit:
                    return out, True
                out.append(obj)
        return out, False

    def _cursor(self, object_id: str, param: str) -> int:
        seq = self._seq.get(object_id)
        if seq is None:
            raise missing_resource(self.kind, object_id, param=param, status=400)
        return seq

    def searchable(
        self, before_seq: int | None = None
    ) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        """(position, indexed snapshot, current object) visible to search now, newest first."""
        now = time.monotonic()
        start = len(self._order) - 1 if before_seq is None else before_seq - 1
        for index in range(start, -1, -1):
            object_id = self._order[index]
            snaps = self._snapshots.get(object_id)
            if not snaps:
                continue
            pos = bisect.bisect_right([at for at, _ in snaps], now)
            if pos:
                yield index, snaps[pos - 1][1], self._objects[object_id]

    def clear(self) -> None:
        """Remove every object."""
        self._objects.clear()
        self._seq.clear()
        self._order.clear()
        self._snapshots.clear()
