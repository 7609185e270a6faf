"""The events' jobs: process a batch, archive old events, fill gaps from Stripe's ``/v1/events``."""

import itertools
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from stripe_migration.events.checks import no_dead_events
from stripe_migration.events.gap_fill import fill_gaps
from stripe_migration.resources.events_db import EventsDatabaseResource
from stripe_migration.resources.stripe.client import StripeApi
from stripe_migration.resources.stripe.resource import StripeResource
from stripe_migration.settings import EVENTS_GAP_FILL_OVERLAP_S, STRIPE_LIST_PAGE_SIZE

#: Run tag on every processing run. dagster.yaml's ``concurrency: runs: tag_concurrency_limits``
#: caps the runs carrying ``stripe_migration/events: process`` in the run queue, on top of the
#: sensor's own count (the event policy's ``max_concurrent_batches``).
EVENTS_RUN_TAG = "stripe_migration/events"
PROCESS_TAG_VALUE = "process"

process_stripe_events = dg.define_asset_job(
    "process_stripe_events",
    selection=dg.AssetSelection.assets("stripe_events"),
    tags={EVENTS_RUN_TAG: PROCESS_TAG_VALUE},
    description="Claim one batch of pending Stripe events and process it, every attempt "
    "recorded; then check the batch (batch_processed_cleanly: WARN when some events failed, "
    "ERROR and a failed run when all did) and for dead events. Launched by stripe_events_sensor.",
)

archive_stripe_events = dg.define_asset_job(
    "archive_stripe_events",
    selection=dg.AssetSelection.assets("stripe_events_archive")
    | dg.AssetSelection.checks(no_dead_events),
    tags={EVENTS_RUN_TAG: "archive"},
    description="Move events older than the retention to stripe_events_archive (dead ones "
    "included), then refresh the dead-events check.",
)


class GapFillConfig(dg.Config):
    """Where gap filling starts listing Stripe's events."""

    overlap_s: int = Field(
        default=EVENTS_GAP_FILL_OVERLAP_S,
        ge=0,
        description="List from the newest stored event minus this many seconds (covers an "
        "outage that ended since the previous run).",
    )
    since: int | None = Field(
        default=None,
        ge=0,
        description="Unix time to list from instead (Stripe keeps 30 days of events).",
    )


class EventPages:
    """``fill_gaps``'s page function over :meth:`StripeApi.list_events`, which pages by itself
    through the rate limiter: each call hands out the next ``page_size`` events of one listing."""

    def __init__(self, api: StripeApi, page_size: int = STRIPE_LIST_PAGE_SIZE) -> None:
        self._api = api
        self._page_size = page_size
        self._events: Iterator[Any] = iter(())
        self._last_id: str | None = None

    def __call__(self, created_gte: int | None, starting_after: str | None) -> dict[str, Any]:
        if starting_after is None:
            params: dict[str, Any] = (
                {} if created_gte is None else {"created": {"gte": created_gte}}
            )
            self._events = self._api.list_events(**params)
        elif starting_after != self._last_id:
            raise ValueError(
                f"gap fill asked for events after {starting_after}, the listing is at "
                f"{self._last_id}"
            )
        page = list(itertools.islice(self._events, self._page_size))
        following = next(self._events, None)
        if following is not None:
            self._events = itertools.chain([following], self._events)
        if page:
            self._last_id = page[-1].id
        return {"data": page, "has_more": following is not None}


@dg.op(pool="stripe_api", tags={"kind": "stripe"})
def fill_event_gaps(
    context: dg.OpExecutionContext,
    config: GapFillConfig,
    stripe: StripeResource,
    events_db: EventsDatabaseResource,
) -> dg.Output:
    """Store the events Stripe has that the receiver never got (``GET /v1/events``)."""
    api = stripe.get_client()
    api.reset_stats()
    with events_db.connect() as conn:
        stored = fill_gaps(conn, EventPages(api), overlap_s=config.overlap_s, since=config.since)
    context.log.info(f"gap fill stored {stored} events the receiver had missed")
    return dg.Output(None, metadata={"stored": stored, **stripe.stats_metadata()})


@dg.job(tags={EVENTS_RUN_TAG: "gap_fill"})
def fill_stripe_event_gaps() -> None:
    """Pull Stripe's events created after the newest stored one and store the missing ones, so a
    receiver outage loses nothing."""
    fill_event_gaps()
