"""Gap filling: store the events Stripe has that the receiver never got (it was down, say).

Stripe keeps events for 30 days at ``GET /v1/events``, newest first. :func:`fill_gaps` lists those
created since the newest stored event, minus an overlap window, and stores the missing ones with the
receiver's own insert (``ON CONFLICT (event_id) DO NOTHING``), so running it twice, or while the
receiver is up, stores nothing twice.

The overlap matters: once the receiver is back, the newest stored event is recent, and an outage
just before it is only covered if the window reaches back over it. With an hourly job, an overlap of
at least an hour (the default) covers any outage that ended since the previous run; Stripe's own
delivery retries (for up to three days) cover the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from stripe_migration import settings
from stripe_migration.events.queries import newest_stored_created
from stripe_migration.webhook.store import MalformedEvent, insert_event, record_from_mapping

ListEvents = Callable[[int | None, str | None], Any]
"""``(created_gte, starting_after) -> page``: one page of ``GET /v1/events`` (newest first), with
``data`` (events) and ``has_more``, as a Stripe ``ListObject`` or a plain dict."""

log = logging.getLogger(__name__)


def _as_dict(item: Any) -> Mapping[str, Any]:
    if hasattr(item, "to_dict"):
        return item.to_dict(recursive=True, for_json=True)
    if isinstance(item, Mapping):
        return item
    raise MalformedEvent(f"listed event is a {type(item).__name__}, not an object")


def _page_parts(page: Any) -> tuple[list[Any], bool]:
    if isinstance(page, Mapping):
        data, has_more = page.get("data"), page.get("has_more")
    else:
        data, has_more = getattr(page, "data", None), getattr(page, "has_more", None)
    if not isinstance(data, list):
        raise MalformedEvent(f"a page of /v1/events has no 'data' list (got {type(data).__name__})")
    return data, bool(has_more)


def fill_gaps(
    conn: psycopg.Connection,
    stripe_list_events: ListEvents,
    overlap_s: int = settings.EVENTS_GAP_FILL_OVERLAP_S,
    since: int | None = None,
) -> int:
    """List Stripe events created since the newest stored one (minus ``overlap_s``) and store the
    missing ones on ``conn`` (autocommit). Return how many were stored.

    ``since`` (Unix seconds) overrides the start; with no stored event and no ``since`` every event
    Stripe still keeps is listed. An event that is not a valid Stripe event raises
    :class:`~stripe_migration.webhook.store.MalformedEvent` naming it; those stored before stay.
    """
    if overlap_s < 0:
        raise ValueError(f"overlap_s must be >= 0, got {overlap_s}")
    stored = listed = 0
    if since is None:
        newest = newest_stored_created(conn)
        since = None if newest is None else max(newest - overlap_s, 0)
    starting_after: str | None = None
    while True:
        data, has_more = _page_parts(stripe_list_events(since, starting_after))
        for item in data:
            record = record_from_mapping(_as_dict(item))
            listed += 1
            stored += insert_event(conn, record)
        if not has_more or not data:
            break
        starting_after = record.event_id
    log.info("gap fill: %d events listed since %s, %d stored", listed, since, stored)
    return stored
