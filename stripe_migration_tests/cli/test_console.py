"""The progress console: the apply step's progress observations as a bar on a terminal and as
plain lines otherwise (no servers)."""

from __future__ import annotations

import io
import math
import re

import dagster as dg
from dagster._core.events import AssetObservationData

from stripe_migration.cli.console import RunConsole

#: The console's plain progress line (what a pipe or a CI log shows).
PROGRESS_LINE = re.compile(
    r"applied (?P<done>\d+)/(?P<total>\d+) products \((?P<rate>[\d.]+)/s, "
    r"ETA (?:(?P<eta>[\d.]+) s|unknown)\), (?P<refused>\d+) refused by Stripe"
)


def _entry(message: str, step: str = "stripe_catalog", level: int = 20) -> dg.EventLogEntry:
    return dg.EventLogEntry(
        error_info=None,
        level=level,
        user_message=message,
        run_id="r",
        timestamp=0.0,
        step_key=step,
        job_name="migrate_catalog",
        dagster_event=None,
    )


def _progress(
    done: int, total: int, rate: float, failed: int = 0, invalid: int = 0
) -> dg.EventLogEntry:
    """The event the apply step logs (``progress`` in ``stripe_catalog``), as the instance's
    event listener receives it."""
    observation = dg.AssetObservation(
        asset_key="stripe_products",
        metadata={
            "done": done,
            "total": total,
            "failed": failed,
            "invalid": invalid,
            "products_per_second": rate,
        },
    )
    event = dg.DagsterEvent(
        event_type_value="ASSET_OBSERVATION",
        job_name="migrate_catalog",
        event_specific_data=AssetObservationData(observation),
        step_key="stripe_catalog",
    )
    return dg.EventLogEntry(
        error_info=None,
        level=10,  # Dagster logs observations at DEBUG
        user_message="ASSET_OBSERVATION for step stripe_catalog",
        run_id="r",
        timestamp=0.0,
        step_key="stripe_catalog",
        job_name="migrate_catalog",
        dagster_event=event,
    )


def test_terminal_shows_progress_as_a_bar_and_plain_output_as_lines() -> None:
    line = "applied 40/100 products (25.0/s, ETA 2 s), 0 refused by Stripe"
    buffer = io.StringIO()
    with RunConsole("INFO", file=buffer, terminal=True) as console:
        console.on_event(_progress(40, 100, 25.0))
        task = console.progress.tasks[0]
        assert (task.completed, task.total) == (40, 100)
        assert (task.fields["rate"], task.fields["eta"]) == ("25.0/s", "ETA 2 s")
        console.on_event(_progress(0, 0, 0.0, failed=3, invalid=3))
        assert console.last_progress["total"] == 0
        assert math.isnan(console.last_progress["eta_s"])
    assert line not in buffer.getvalue()  # a bar, not a line

    buffer = io.StringIO()
    with RunConsole("INFO", file=buffer, terminal=False) as console:
        console.on_event(_progress(40, 100, 25.0))
        console.on_event(_entry("debug detail", "catalog_plan", level=10))
        console.on_event(_progress(0, 100, 0.0))
        console.on_event(_progress(15, 15, 2.0, failed=13, invalid=12))
        console.on_event(_progress(0, 0, 0.0, failed=3, invalid=3))
        console.on_event(_progress(0, 0, 0.0))
    assert f"stripe_catalog: {line}" in buffer.getvalue()
    assert PROGRESS_LINE.search(buffer.getvalue())["done"] == "40"
    assert "debug detail" not in buffer.getvalue()
    assert "stripe_catalog: applied 0/100 products (0.0/s, ETA unknown), 0 refused by Stripe" in (
        buffer.getvalue()
    )
    # The invalid rows are never among the products to apply: they are said apart.
    assert (
        "stripe_catalog: applied 15/15 products (2.0/s, ETA 0 s), 1 refused by Stripe; "
        "12 invalid rows skipped"
    ) in buffer.getvalue()
    assert "stripe_catalog: nothing to apply; 3 invalid rows skipped" in buffer.getvalue()
    assert buffer.getvalue().rstrip().endswith("stripe_catalog: nothing to apply")
    assert "nan" not in buffer.getvalue()


def test_progress_comes_from_the_structured_event_not_from_prose() -> None:
    buffer = io.StringIO()
    with RunConsole("INFO", file=buffer, terminal=True) as console:
        console.on_event(_entry("applied 40/100 products (25.0/s, ETA 2 s), 0 refused by Stripe"))
        assert console.last_progress is None
        assert console.progress.tasks[0].total is None


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_terminal_does_not_break_the_run() -> None:
    with RunConsole("INFO", file=_ClosedPipe(), terminal=False) as console:
        console.on_event(_progress(1, 2, 1.0))
        console.on_event(_entry("still running"))  # dropped, no exception
    assert console.console.quiet
