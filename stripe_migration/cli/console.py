"""What the commands print: a run's events as a progress bar or plain lines, logs, reports.

On a terminal the apply step's progress is a bar (products done/total, products/s, ETA, the step
running); otherwise every event at ``--log-level`` or above is one plain line on stderr, progress
included. The progress comes as structured data, never as parsed prose: the apply step logs an
``AssetObservation`` whose metadata holds ``done``, ``total``, ``failed``, ``invalid`` and
``products_per_second`` (see ``progress`` in ``stripe_catalog``), and the console draws the bar or
writes the line from those numbers. The package's Python loggers print on stderr too
(:func:`set_log_level`), and Markdown reports on stdout (:func:`print_markdown`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

import click

from stripe_migration.cli.errors import error_text, first_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: The metadata of the apply step's progress observations (all numbers). ``failed`` counts the
#: rows refused by the validation and those refused by Stripe; ``invalid`` the former.
PROGRESS_FIGURES = ("done", "total", "failed", "invalid", "products_per_second")


def set_log_level(level: str) -> None:
    """Our modules' and Dagster's Python loggers at ``level``, printed plainly on stderr."""
    numeric = logging.getLevelName(level)
    for name in ("stripe_migration", "dagster"):
        logging.getLogger(name).setLevel(numeric)
    ours = logging.getLogger("stripe_migration")
    if not any(getattr(h, "_stripe_migration_cli", False) for h in ours.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._stripe_migration_cli = True  # type: ignore[attr-defined]
        ours.addHandler(handler)


def _unredirected_stderr() -> TextIO | None:
    """A copy of the process's stderr that stays on the terminal while Dagster captures the
    run's output (it points file descriptor 2 at the compute log and mirrors it with ``tail``,
    a second late and not at all once the run ends). None when stderr is no real file."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    sys.stderr.flush()
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")


def quiet_console(**options: Any) -> Console:
    """A rich Console that goes quiet when its pipe closes, instead of rich's default of
    exiting (and pointing file descriptor 1 at /dev/null)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True

    return _Console(highlight=False, **options)


class RunConsole:
    """Renders a run's events as they are stored: a bar for the apply step's progress on a
    terminal, plain lines otherwise. Feed it with ``instance.add_event_listener``."""

    #: Dagster logs these at DEBUG; operators want them in plain output.
    _MILESTONES = frozenset({"STEP_SUCCESS", "STEP_SKIPPED", "PIPELINE_SUCCESS", "PIPELINE_START"})

    def __init__(
        self, level: str = "INFO", *, file: TextIO | None = None, terminal: bool | None = None
    ) -> None:
        self.level = logging.getLevelName(level)
        self._own_stream = None if file is not None else _unredirected_stderr()
        self.console = quiet_console(
            file=file or self._own_stream or sys.stderr, force_terminal=terminal, soft_wrap=True
        )
        self.terminal = self.console.is_terminal
        self.progress: Progress | None = None
        self._task: TaskID | None = None
        self.last_progress: dict[str, float] | None = None
        self._broken = False

    def __enter__(self) -> RunConsole:
        if self.terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self._task = self.progress.add_task("starting", total=None, rate="", eta="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self._own_stream is not None:
            self._own_stream.close()
            self._own_stream = None

    def print(self, text: str) -> None:
        """A line above the bar (or on stderr)."""
        self.console.print(text, markup=False, highlight=False)

    def on_event(self, entry: Any) -> None:
        """Handle one ``EventLogEntry`` of the run. Never raises: a closed terminal (a dropped
        SSH session, a pipe into ``head``) must not fail the run, which goes on silently."""
        if self._broken:
            return
        try:
            self._render(entry)
        except (Exception, SystemExit):  # rich turns a broken pipe into SystemExit
            self._broken = True

    def _render(self, entry: Any) -> None:
        event = entry.dagster_event
        kind = event.event_type_value if event is not None else None
        message = entry.user_message or (event.message if event is not None else "") or kind or ""
        where = entry.step_key or entry.job_name or ""
        level = entry.level
        if kind == "STEP_START" and self.progress is not None and self._task is not None:
            self.progress.update(self._task, description=entry.step_key or "")
        figures = progress_figures(entry)
        if figures is not None:
            self._on_progress(figures)
            if self.progress is not None:
                return
            level, message = logging.INFO, progress_text(self.last_progress or {})
        if kind in self._MILESTONES:
            level = max(level, logging.INFO)
        if kind == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                message = f"failed: {data.user_failure_data.description}"
            else:
                message = f"failed: {error_text(data.error)}"
        if kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            level = max(level, logging.INFO if data.passed else logging.WARNING)
            message = f"check {data.check_name} on {data.asset_key.to_user_string()}: " + (
                "passed" if data.passed else "FAILED"
            )
        if level < self.level:
            return
        # Above a bar, Dagster's own INFO milestones are noise (the bar names the step); the
        # job's own messages, warnings and errors still show, and everything at DEBUG.
        if (
            self.progress is not None
            and event is not None
            and logging.INFO <= level < logging.WARNING
        ):
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(entry.timestamp))
        self.print(f"{stamp} {logging.getLevelName(level):<7} {where}: {first_line(message)}")

    def _on_progress(self, figures: Mapping[str, float]) -> None:
        done, total = int(figures["done"]), int(figures["total"])
        rate = float(figures.get("products_per_second", 0.0))
        eta = (total - done) / rate if rate > 0 else math.nan
        self.last_progress = {
            "done": done,
            "total": total,
            "failed": int(figures.get("failed", 0)),
            "rate": rate,
            "eta_s": eta,
            "invalid": int(figures.get("invalid", 0)),
        }
        if self.progress is not None and self._task is not None:
            self.progress.update(
                self._task,
                total=total or None,
                completed=done,
                rate=f"{rate:.1f}/s",
                eta=_eta_text(eta),
            )


def progress_figures(entry: Any) -> dict[str, float] | None:
    """The figures of the apply step's progress observation (see :data:`PROGRESS_FIGURES`), or
    None when ``entry`` is any other event."""
    event = entry.dagster_event
    if event is None or event.event_type_value != "ASSET_OBSERVATION":
        return None
    metadata = event.event_specific_data.asset_observation.metadata
    if not all(name in metadata for name in PROGRESS_FIGURES):
        return None
    return {
        name: float(getattr(metadata[name], "value", metadata[name])) for name in PROGRESS_FIGURES
    }


def _eta_text(eta_s: float) -> str:
    return f"ETA {eta_s:.0f} s" if math.isfinite(eta_s) else "ETA unknown"


def progress_text(progress: Mapping[str, float]) -> str:
    """The plain line of one progress figure set (see
    :func:`stripe_migration.catalog.report.progress_line`)."""
    from stripe_migration.catalog.report import progress_line

    return progress_line({**progress, "products_per_second": progress.get("rate", 0.0)})


def print_markdown(text: str) -> None:
    """Markdown on stdout: rendered on a terminal, as is otherwise (it reads well as text)."""
    from rich.markdown import Markdown

    out = quiet_console()
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        click.echo(text.rstrip("\n"))
