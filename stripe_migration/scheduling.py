"""How the project's schedules run: in UTC, switched on from the start, built by one helper."""

from __future__ import annotations

from typing import Any

import dagster as dg

#: The settings every schedule shares, for ``@dg.schedule`` and ``dg.ScheduleDefinition`` alike.
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "execution_timezone": "UTC",
    "default_status": dg.DefaultScheduleStatus.RUNNING,
}


def running_schedule(
    name: str, job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition, cron: str, description: str
) -> dg.ScheduleDefinition:
    """A schedule named ``name`` that launches ``job`` at ``cron`` (UTC), running by default."""
    return dg.ScheduleDefinition(
        name=name, job=job, cron_schedule=cron, description=description, **SCHEDULE_DEFAULTS
    )
