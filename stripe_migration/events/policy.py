"""The event policy: how webhook events are processed, retried and archived, as a Dagster resource.

The sensor that launches processing runs and the runs themselves read the same resource
(``event_policy``), so they agree on it; a run can override any field in its run config
(``resources: event_policy: config: ...``). Defaults are in ``settings.py``; the
``STRIPE_EVENTS_*`` variables (:data:`~stripe_migration.settings.EVENTS_ENV`) override them.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from pydantic import Field, StrictBool, StrictInt

from stripe_migration import settings
from stripe_migration.resources.setting_fields import at_least_one


class EventPolicy(dg.ConfigurableResource):
    """How events are processed, retried and archived; checked once, by pydantic, at load."""

    max_attempts: StrictInt = at_least_one(
        settings.EVENTS_MAX_ATTEMPTS,
        "Attempts before an event is dead (kept with its last error, not retried).",
    )
    retry_delay_s: StrictInt = Field(
        default=settings.EVENTS_RETRY_DELAY_S,
        ge=0,
        description="Seconds after an attempt started before the event may be tried again.",
    )
    retention_days: StrictInt = at_least_one(
        settings.EVENTS_RETENTION_DAYS,
        "Events created longer ago are moved to stripe_events_archive.",
    )
    archive_enabled: StrictBool = Field(
        default=settings.EVENTS_ARCHIVE_ENABLED,
        description="Off: the archive schedule skips and the archive asset moves nothing.",
    )
    batch_size: StrictInt = at_least_one(
        settings.EVENTS_BATCH_SIZE, "Events claimed by one processing run."
    )
    max_concurrent_batches: StrictInt = at_least_one(
        settings.EVENTS_MAX_CONCURRENT_BATCHES,
        "Processing runs the sensor keeps in flight (queued or running) at once.",
    )


def event_policy_from_env(environ: Mapping[str, str] | None = None) -> EventPolicy:
    """The EventPolicy with the defaults of settings.py, overridden by the ``STRIPE_EVENTS_*``
    variables set in ``environ`` (default: ``os.environ``), read now."""
    return EventPolicy(**settings.read_env(settings.EVENTS_ENV, environ))
