"""`stripe-migration check | migrate | rollback`: the catalogue's Dagster jobs, run on the instance.

Each command executes one job of the code location (``stripe_migration.definitions``) in this
process, as a reconstructable job the way a launched run executes, on the configured Dagster
instance, so every run is stored in PostgreSQL and shows in the Dagster UI next to the runs
launched there. There is no second code path.

The instance: ``$DAGSTER_HOME`` when it is set; otherwise the ``dagster.yaml`` of the current folder
(or of the checkout this package runs from, or the copy shipped in the package) with the persistent
home folder ``.dagster_home`` beside it, the way ``dagster dev`` builds its instance
(``InstanceRef.from_dir(home, config_dir=...)``); runs and events live in ``DAGSTER_PG_URL``.

On a terminal the apply step's progress is a bar with rate and ETA; otherwise every log line at
``--log-level`` or above is printed as plain text on stderr. The summary goes to stdout (one JSON
object with ``--json``). Exit status: 0 on success, 1 when a run fails (a failed step or blocking
check, a refused key...), 2 when configuration is missing, 130 when interrupted; the reason is
always one line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from stripe_migration.cli import main

if TYPE_CHECKING:
    import dagster as dg
    from rich.console import Console
    from rich.progress import Progress, TaskID

#: The persistent Dagster home the CLI creates beside the dagster.yaml it uses (gitignored).
INSTANCE_HOME_NAME = ".dagster_home"
#: dagster.yaml as shipped inside the package, for installs without a checkout.
PACKAGED_INSTANCE_CONFIG = "_dagster.yaml"

#: Exit statuses besides 0 (success).
EXIT_RUN_FAILED = 1
EXIT_NOT_CONFIGURED = 2
EXIT_INTERRUPTED = 130

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: The apply step's progress line (``stripe_catalog`` logs it every few seconds).
PROGRESS_LINE = re.compile(
    r"applied (?P<done>\d+)/(?P<total>\d+) products \((?P<rate>[\d.]+|nan|inf)/s, "
    r"ETA (?P<eta>[\d.]+|nan|inf) s\)"
)

#: Numbers of the migration report that add up over several runs.
_SUMMED_FIGURES = (
    "created",
    "updated",
    "repriced",
    "archived",
    "archived_deleted",
    "products_with_strays_retired",
    "unchanged",
    "invalid",
    "refused_by_stripe",
    "failed",
    "api_calls",
    "retries",
    "rate_limited_429s",
    "duration_s",
)


class CommandFailed(click.ClickException):
    """A one-line reason and an exit status (click prints ``Error: <reason>`` on stderr)."""

    def __init__(self, message: str, exit_code: int = EXIT_RUN_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------
# Configuration and the Dagster instance


def missing_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """The settings a job run needs that are not set (empty when configuration is complete)."""
    env = os.environ if environ is None else environ
    missing = [
        name
        for name in ("STRIPE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY")
        if not env.get(name, "").strip()
    ]
    if not (env.get("SUPABASE_URL", "").strip() or env.get("VITE_SUPABASE_URL", "").strip()):
        missing.insert(1, "SUPABASE_URL")
    if not env.get("DAGSTER_HOME") and not env.get("DAGSTER_PG_URL", "").strip():
        missing.append("DAGSTER_PG_URL")
    return missing


def require_settings() -> None:
    """Stop with one line naming what is missing, and how to get it."""
    missing = missing_settings()
    if missing:
        raise CommandFailed(
            f"not configured: {', '.join(missing)} not set (in the environment or ./.env); "
            "`stripe-migration sandbox up` writes a local sandbox's .env, or try "
            "`stripe-migration demo`",
            EXIT_NOT_CONFIGURED,
        )


def _checkout_root() -> Path | None:
    """The repository this package runs from (an editable install), if it is one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def instance_config_dir(cwd: Path | None = None) -> Path | None:
    """The folder whose ``dagster.yaml`` configures the instance: the current folder's (as for
    ``dagster dev``), else the checkout's; None when only the packaged copy is left."""
    for folder in (cwd or Path.cwd(), _checkout_root()):
        if folder is not None and (folder / "dagster.yaml").is_file():
            return folder
    return None


def packaged_instance_config() -> Path:
    """The ``dagster.yaml`` shipped inside the package (for installs without a checkout)."""
    return Path(__file__).resolve().parents[1] / PACKAGED_INSTANCE_CONFIG


def instance_home(cwd: Path | None = None) -> tuple[Path, Path]:
    """(home folder, config folder) of the instance when ``DAGSTER_HOME`` is not set.

    The home is ``.dagster_home`` beside the ``dagster.yaml`` found; with only the packaged copy,
    ``./.dagster_home`` holding a copy of it.
    """
    config_dir = instance_config_dir(cwd)
    if config_dir is not None:
        return config_dir / INSTANCE_HOME_NAME, config_dir
    packaged = packaged_instance_config()
    if not packaged.is_file():
        raise CommandFailed(
            "no Dagster instance configuration: run from the repository root (it has "
            "dagster.yaml) or set DAGSTER_HOME to a folder holding a dagster.yaml",
            EXIT_NOT_CONFIGURED,
        )
    home = (cwd or Path.cwd()) / INSTANCE_HOME_NAME
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != packaged.read_bytes():
        shutil.copyfile(packaged, target)
    return home, home


def describe_instance() -> str:
    """Where runs are stored, for people (no password)."""
    from stripe_migration.db.urls import redact

    if os.environ.get("DAGSTER_HOME"):
        where = f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
    else:
        home, config_dir = instance_home()
        where = f"{config_dir / 'dagster.yaml'}, home {home}"
    pg = os.environ.get("DAGSTER_PG_URL")
    return f"{where}" + (f", runs in {redact(pg)}" if pg else "")


@contextlib.contextmanager
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """The configured Dagster instance (see the module docstring), closed on exit."""
    import dagster as dg
    from dagster._core.instance import InstanceRef

    try:
        if os.environ.get("DAGSTER_HOME"):
            instance = dg.DagsterInstance.get()
        else:
            home, config_dir = instance_home()
            home.mkdir(parents=True, exist_ok=True)
            instance = dg.DagsterInstance.from_ref(
                InstanceRef.from_dir(str(home), config_dir=str(config_dir))
            )
    except CommandFailed:
        raise
    except Exception as exc:
        root = exc
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__  # the driver's reason, not the retry's
        reason = _first_line(str(root)) if root is not exc else _first_line(str(exc))
        raise CommandFailed(
            f"cannot open the Dagster instance ({describe_instance()}): {reason}",
            EXIT_NOT_CONFIGURED,
        ) from None
    with instance:
        yield instance


def quiet_dagster_warnings() -> None:
    """Hide Dagster's beta/preview notices about our own definitions: they are not for operators."""
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def load_definitions() -> dg.Definitions:
    """The code location's ``defs``, imported now that ``.env`` is loaded (resources read it)."""
    quiet_dagster_warnings()
    try:
        from stripe_migration.definitions import defs
    except ValueError as exc:  # a tuning variable that does not parse names itself
        raise CommandFailed(f"bad setting: {_first_line(str(exc))}", EXIT_NOT_CONFIGURED) from None
    return defs


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


# ---------------------------------------------------------------------------------------------
# Output: a progress bar on a terminal, plain log lines otherwise


def _first_line(text: str) -> str:
    """The first line of ``text``, with the next one when the first ends with a colon."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


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
        if kind == "STEP_START" and self.progress is not None and self._task is not None:
            self.progress.update(self._task, description=entry.step_key or "")
        match = PROGRESS_LINE.search(message) if event is None else None
        if match:
            self._on_progress(match)
            if self.progress is not None:
                return
        level = entry.level
        if kind in self._MILESTONES:
            level = max(level, logging.INFO)
        if kind == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                message = f"failed: {data.user_failure_data.description}"
            else:
                message = f"failed: {_error_text(data.error)}"
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
        self.print(f"{stamp} {logging.getLevelName(level):<7} {where}: {_first_line(message)}")

    def _on_progress(self, match: re.Match[str]) -> None:
        done, total = int(match["done"]), int(match["total"])
        rate, eta = float(match["rate"]), float(match["eta"])
        self.last_progress = {"done": done, "total": total, "rate": rate, "eta_s": eta}
        if self.progress is not None and self._task is not None:
            self.progress.update(
                self._task,
                total=total or None,
                completed=done,
                rate=f"{rate:.1f}/s" if rate == rate else "",
                eta=f"ETA {eta:.0f} s" if eta == eta and eta != float("inf") else "",
            )


# ---------------------------------------------------------------------------------------------
# Running a job and reading its outcome


@dataclass
class RunOutcome:
    """What one run did: its id, success, the reason when it failed, and its steps' metadata."""

    run_id: str
    job_name: str
    success: bool
    reason: str | None = None
    interrupted: bool = False
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """A metadata value as plain JSON-able Python."""
    raw = getattr(value, "value", value)
    if isinstance(raw, str | int | float | bool) or raw is None:
        return raw
    return str(raw)


def _error_text(error: Any) -> str:
    """The innermost message of a serialised error (the user code's, not Dagster's wrapper),
    with the exception's class named without its module."""
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=\w+(?::|$))", "", _first_line(error.message))


def outcome_of(result: Any, job_name: str) -> RunOutcome:
    """Read a run's execution result into a :class:`RunOutcome`."""
    from dagster._core.events import RunFailureReason

    outcome = RunOutcome(run_id=result.run_id, job_name=job_name, success=result.success)
    step_errors: list[str] = []
    run_error: str | None = None
    for event in result.all_events:
        kind = event.event_type_value
        if kind == "STEP_OUTPUT" and event.step_output_data.metadata:
            outcome.metadata.setdefault(event.step_key, {}).update(
                {k: _plain(v) for k, v in event.step_output_data.metadata.items()}
            )
        elif kind == "ASSET_MATERIALIZATION":
            node = event.asset_key.path[-1]
            outcome.metadata.setdefault(node, {}).update(
                {
                    k: _plain(v)
                    for k, v in event.event_specific_data.materialization.metadata.items()
                }
            )
        elif kind == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                text = _first_line(data.user_failure_data.description)
            else:
                text = _error_text(data.error)
            if "blocking asset check" not in text:
                step_errors.append(f"{event.step_key}: {text}")
        elif kind == "PIPELINE_FAILURE":
            data = event.event_specific_data
            if data is not None and data.failure_reason == RunFailureReason.UNEXPECTED_TERMINATION:
                outcome.interrupted = True
            elif data is not None and data.error is not None:
                run_error = _error_text(data.error)
    seen: set[tuple[str, str]] = set()
    for evaluation in result.get_asset_check_evaluations():
        key = (evaluation.asset_key.to_user_string(), evaluation.check_name)
        if evaluation.passed or key in seen:
            continue
        seen.add(key)
        said = f": {evaluation.description}" if evaluation.description else ""
        outcome.failed_checks.append(
            f"{key[1]} on {key[0]}{said}{_check_example(evaluation)}" + CHECK_HINTS.get(key[1], "")
        )
    if not outcome.success:
        if outcome.interrupted:
            outcome.reason = "interrupted; the next run resumes from the last checkpoint"
        elif step_errors:
            outcome.reason = step_errors[0]
        elif outcome.failed_checks:
            outcome.reason = "blocking check failed: " + outcome.failed_checks[0]
        elif run_error:
            outcome.reason = run_error
        else:
            outcome.reason = "the run failed; see it in the Dagster UI"
    return outcome


#: What to do when a verification fails, appended to the reason.
CHECK_HINTS = {
    "stripe_accepted_every_valid_row": "; each refused row has Stripe's message in "
    "products.sync_error, and the next `stripe-migration migrate` tries it again",
    "stripe_matches_cms": "; `stripe-migration migrate --force-resync` makes Stripe match the CMS",
    "every_valid_product_has_stripe_ids": "; run `stripe-migration migrate` again to finish them",
}


def _check_example(evaluation: Any) -> str:
    """`` (e.g. <cms id>: <problem>)`` from a failed check's table of offending rows."""
    rows = evaluation.metadata.get("rows")
    records = getattr(getattr(rows, "value", None), "records", None) or []
    if not records:
        return ""
    first = records[0].data
    return f" (e.g. {first.get('cms_id', '?')}: {first.get('problem', '?')})"


#: Where the code location's definitions live: the CLI runs the very jobs the UI shows.
CODE_LOCATION_MODULE = "stripe_migration.definitions"


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    console: RunConsole,
) -> RunOutcome:
    """Execute ``job_name`` of the code location in this process on ``instance``, rendering its
    events.

    The job is reconstructable (as a run launched from the UI is) and executed like
    ``dg.execute_job``, with a run id chosen here so that the console hears the run's first
    event. Unlike ``execute_in_process``, this keeps no step's output in memory until the end
    (about 400 MiB for 100,000 products: the rows, the validation result, the plan).
    """
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run
    from dagster._core.utils import make_new_run_id

    from stripe_migration.db.dagster_runs import fail_dead_runs, runner_tags

    # A run of ours that was killed still holds its stripe_api pool slot: release it first, or
    # this run would wait for it forever.
    for stale in fail_dead_runs(instance):
        console.print(f"marked run {stale} failed: its process is gone (killed?)")
    run_id = make_new_run_id()
    instance.add_event_listener(run_id, console.on_event)
    # Dagster's own console logger would print every event a second time: we render them.
    config = {
        **(run_config or {}),
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    try:
        job = ReconstructableRepository.for_module(
            CODE_LOCATION_MODULE, "defs"
        ).get_reconstructable_job(job_name)
        run = instance.create_run_for_job(
            job_def=job.get_definition(),
            run_id=run_id,
            run_config=config,
            tags={**dict(tags or {}), **runner_tags()},
            job_code_origin=job.get_python_origin(),
        )
        result = execute_run(job, run, instance, raise_on_error=False)
    except KeyboardInterrupt:
        return RunOutcome(run_id, job_name, False, "interrupted", interrupted=True)
    except Exception as exc:  # config or resource errors raised before any step runs
        return RunOutcome(run_id, job_name, False, _first_line(str(exc)))
    return outcome_of(result, job_name)


def finish(outcome: RunOutcome, summary: Mapping[str, Any] | None, as_json: bool) -> None:
    """Print the JSON summary when asked, then exit with the outcome's status and reason."""
    if as_json and summary is not None:
        click.echo(json.dumps(summary, indent=2, sort_keys=False))
    if outcome.success:
        return
    code = EXIT_INTERRUPTED if outcome.interrupted else EXIT_RUN_FAILED
    raise CommandFailed(f"{outcome.job_name} failed: {outcome.reason} (run {outcome.run_id})", code)


# ---------------------------------------------------------------------------------------------
# Partitions


def parse_partitions(values: Sequence[str], count: int) -> list[tuple[str, str]]:
    """Contiguous (start, end) partition ranges from ``--partition`` values (``7``, ``03``,
    ``3..7``, ``03-07``, ``all``); every partition when none is given."""
    keys: set[int] = set()
    for raw in values or ("all",):
        text = raw.strip().lower()
        if text in ("all", "*"):
            keys.update(range(count))
            continue
        match = re.fullmatch(r"(\d{1,2})(?:\s*(?:\.\.|-|:)\s*(\d{1,2}))?", text)
        if not match:
            raise click.BadParameter(
                f"{raw!r}: expected a partition (00 to {count - 1:02d}), a range like 03..07, "
                "or all",
                param_hint="--partition",
            )
        start = int(match[1])
        end = int(match[2]) if match[2] is not None else start
        if start > end or end >= count:
            raise click.BadParameter(
                f"{raw!r}: partitions are 00 to {count - 1:02d}", param_hint="--partition"
            )
        keys.update(range(start, end + 1))
    ordered = sorted(keys)
    ranges: list[tuple[str, str]] = []
    for key in ordered:
        if ranges and int(ranges[-1][1]) == key - 1:
            ranges[-1] = (ranges[-1][0], f"{key:02d}")
        else:
            ranges.append((f"{key:02d}", f"{key:02d}"))
    return ranges


def partition_tags(start: str, end: str) -> dict[str, str]:
    """The run tags of a single run over the partitions ``start``..``end``."""
    return {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }


def combine_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The migration reports of several runs as one: counts summed, products/s over the total."""
    if len(reports) == 1:
        return dict(reports[0])
    total: dict[str, Any] = {name: 0 for name in _SUMMED_FIGURES}
    weighted = 0.0
    for report in reports:
        for name in _SUMMED_FIGURES:
            total[name] += report.get(name, 0) or 0
        weighted += (report.get("products_per_second") or 0) * (report.get("duration_s") or 0)
    total["duration_s"] = round(total["duration_s"], 3)
    total["products_per_second"] = (
        round(weighted / total["duration_s"], 2) if total["duration_s"] else 0.0
    )
    return total


# ---------------------------------------------------------------------------------------------
# Shared options and printing


def _common(fn: Callable) -> Callable:
    fn = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON summary on stdout (logs stay on stderr).",
    )(fn)
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="INFO",
        show_default=True,
        envvar="STRIPE_MIGRATION_LOG_LEVEL",
        help="Least level of the run's log lines and of our Python loggers "
        "[env: STRIPE_MIGRATION_LOG_LEVEL].",
    )(fn)


def print_markdown(text: str, console: Console | None = None) -> None:
    """Markdown on stdout: rendered on a terminal, as is otherwise (it reads well as text)."""
    from rich.markdown import Markdown

    out = console or quiet_console()
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        click.echo(text.rstrip("\n"))


def report_line(report: Mapping[str, Any]) -> str:
    """The migration report's figures in two lines."""
    done = [
        f"{label} {report.get(key, 0)}"
        for label, key in (
            ("created", "created"),
            ("updated", "updated"),
            ("repriced", "repriced"),
            ("archived", "archived"),
            ("deleted rows archived", "archived_deleted"),
            ("stray prices retired on", "products_with_strays_retired"),
            ("unchanged", "unchanged"),
        )
        if key not in ("products_with_strays_retired", "archived_deleted") or report.get(key)
    ]
    return (
        f"{', '.join(done)}, failed {report.get('failed', 0)} "
        f"(invalid in the CMS {report.get('invalid', 0)}, "
        f"refused by Stripe {report.get('refused_by_stripe', 0)})\n"
        f"{report.get('duration_s', 0)} s, {report.get('products_per_second', 0)} products/s, "
        f"{report.get('api_calls', 0)} Stripe calls, {report.get('retries', 0)} retries, "
        f"{report.get('rate_limited_429s', 0)} answered 429"
    )


#: Changes of a dry run printed on the terminal (the UI shows up to 200).
DRY_RUN_LISTED_CHANGES = 20


def _plan_text(plan: Mapping[str, Any]) -> str:
    counts = ", ".join(
        f"{name.removeprefix('plan_').replace('_', ' ')} {value}"
        for name, value in plan.items()
        if name.startswith("plan_")
    )
    lines = [f"plan: {counts}", f"Stripe writes planned: {plan.get('planned_writes', 0)}"]
    changes = str(plan.get("changes") or "").splitlines()
    if len(changes) > 2:
        shown = changes[: 2 + DRY_RUN_LISTED_CHANGES]
        lines += ["", *shown]
        if len(changes) > len(shown):
            lines.append(f"... {len(changes) - len(shown)} more changes in the Dagster UI")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Commands


@main.command("check")
@_common
def check_command(log_level: str, as_json: bool) -> None:
    """Preflight: Supabase schema, Stripe account and mode.

    Runs the `preflight` job on the Dagster instance: Supabase reachable and at the latest
    schema, the Stripe key valid, with its account id and test/live mode.
    """
    set_log_level(log_level.upper())
    require_settings()
    load_definitions()  # a bad setting fails here, naming itself
    with dagster_instance() as instance, RunConsole(log_level.upper()) as console:
        outcome = run_job(instance, "preflight", console=console)
    found = outcome.metadata.get("check_connections", {})
    summary = {
        "command": "check",
        "success": outcome.success,
        "run_id": outcome.run_id,
        "schema_version": found.get("schema_version"),
        "stripe_account": found.get("stripe_account"),
        "stripe_mode": found.get("stripe_key_mode"),
        "stripe_livemode": found.get("stripe_livemode"),
        "reason": outcome.reason,
    }
    if outcome.success and not as_json:
        click.echo(f"Supabase schema {summary['schema_version']} (latest)")
        click.echo(f"Stripe account {summary['stripe_account']}, {summary['stripe_mode']} mode")
        click.echo(f"Dagster instance: {describe_instance()}")
    finish(outcome, summary, as_json)


@main.command("migrate")
@click.option(
    "--dry-run", is_flag=True, help="Plan only (the plan_catalog job): no write to Stripe."
)
@click.option(
    "--force-resync",
    is_flag=True,
    help="Compare every row with Stripe's actual state and repair any difference.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Products between two checkpoints (Supabase write-backs). [default: 100]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Threads calling Stripe; the rate limiter sets the pace. [default: 16]",
)
@click.option(
    "--partition",
    "partitions",
    multiple=True,
    metavar="P",
    help="Only these hash buckets of the catalogue: 07, 03..07 or all; repeatable. [default: all]",
)
@_common
def migrate_command(
    dry_run: bool,
    force_resync: bool,
    batch_size: int | None,
    workers: int | None,
    partitions: tuple[str, ...],
    log_level: str,
    as_json: bool,
) -> None:
    """Migrate the catalogue to Stripe, or plan it (--dry-run).

    Runs the migrate_catalog job (plan_catalog with --dry-run) on the Dagster instance. A run
    can be stopped at any moment: the next one resumes from the last checkpoint.
    """
    from stripe_migration.settings import CATALOG_PARTITION_COUNT, FORCE_RESYNC_TAG

    set_log_level(log_level.upper())
    ranges = parse_partitions(partitions, CATALOG_PARTITION_COUNT)
    require_settings()
    load_definitions()  # a bad setting fails here, naming itself
    job_name = "plan_catalog" if dry_run else "migrate_catalog"
    apply_config = {
        k: v for k, v in (("batch_size", batch_size), ("workers", workers)) if v is not None
    }
    run_config = (
        {"ops": {"stripe_catalog": {"config": apply_config}}}
        if apply_config and not dry_run
        else {}
    )

    outcomes: list[RunOutcome] = []
    with dagster_instance() as instance, RunConsole(log_level.upper()) as console:
        for start, end in ranges:
            tags = partition_tags(start, end)
            if force_resync:
                tags[FORCE_RESYNC_TAG] = "true"
            if len(ranges) > 1:
                console.print(f"{job_name}: partitions {start}..{end}")
            outcome = run_job(instance, job_name, tags=tags, run_config=run_config, console=console)
            outcomes.append(outcome)
            if not outcome.success:
                break

    last = outcomes[-1]
    summary: dict[str, Any] = {
        "command": "migrate",
        "job": job_name,
        "success": all(o.success for o in outcomes),
        "run_id": last.run_id,
        "run_ids": [o.run_id for o in outcomes],
        "partitions": [f"{s}..{e}" if s != e else s for s, e in ranges],
        "dry_run": dry_run,
        "force_resync": force_resync,
        "reason": last.reason,
    }
    if dry_run:
        plans = [o.metadata.get("catalog_plan", {}) for o in outcomes]
        plan = {
            name: sum(p.get(name, 0) or 0 for p in plans)
            for name in plans[0]
            if name.startswith("plan_") or name == "planned_writes"
        }
        summary["plan"] = {k.removeprefix("plan_"): v for k, v in plan.items()}
        if last.success and not as_json:
            click.echo(_plan_text({**plan, "changes": plans[0].get("changes", "")}))
    else:
        reports = [
            o.metadata["migration_report"] for o in outcomes if "migration_report" in o.metadata
        ]
        report = combine_reports(reports) if reports else None
        summary["report"] = (
            {k: v for k, v in report.items() if k != "report"} if report is not None else None
        )
        summary["failed_checks"] = [c for o in outcomes for c in o.failed_checks]
        if report is not None and not as_json:
            for one in reports:
                if one.get("report"):
                    print_markdown(str(one["report"]))
            click.echo(report_line(report))
    if not as_json and last.success:
        click.echo(f"run {', '.join(summary['run_ids'])} (see it in the Dagster UI)")
    finish(last, summary, as_json)


@main.command("rollback")
@click.option(
    "--run-id",
    default=None,
    help="The migration run to roll back: its id or the first characters of it (the 8 the UI "
    "shows); default: every migration run with a backup, newest first.",
)
@click.option("--yes", is_flag=True, help="Do not ask before rolling back every migration.")
@_common
def rollback_command(run_id: str | None, yes: bool, log_level: str, as_json: bool) -> None:
    """Undo migrations: what they did in Stripe and to the CMS rows' sync state.

    Runs the rollback_catalog job. A migration run is any run that materialized stripe_products
    (migrate_catalog, or the catalog assets materialized from the UI). For each row of its backup
    that it was the last to sync: a Stripe product it created is archived, a price it put in
    place is switched back, and the row's sync state comes back from the backup. Editors'
    columns are never written, deleted rows stay deleted, and rows a later run synced are kept
    and reported. The next migration then sends the CMS's current content.
    """
    from stripe_migration.db.dagster_runs import (
        RunLookupError,
        all_migration_runs,
        migration_runs,
        resolve_migration_run,
    )

    set_log_level(log_level.upper())
    require_settings()
    load_definitions()  # a bad setting fails here, naming itself
    with dagster_instance() as instance:
        if run_id:
            try:
                target = resolve_migration_run(instance, run_id, all_migration_runs(instance))
            except RunLookupError as exc:
                raise CommandFailed(f"{exc} ({describe_instance()})", EXIT_RUN_FAILED) from None
            if target.run_id != run_id:
                click.echo(f"run {run_id} is migration run {target.run_id}", err=True)
            targets = [target]
            click.echo(f"rolling back {target.describe()}", err=True)
        else:
            targets = migration_runs(instance)
            if not targets:
                summary = _rollback_summary(None, [], {})
                if not as_json:
                    click.echo("nothing to roll back: no migration run with a backup")
                finish(RunOutcome("", "rollback_catalog", True), summary, as_json)
                return
            listing = "\n".join(f"  {t.describe()}" for t in targets)
            if yes:
                click.echo(f"rolling back, newest first:\n{listing}", err=True)
            else:
                click.confirm(
                    f"These {len(targets)} migration runs will be rolled back, newest first:\n"
                    f"{listing}\nRoll them back (archive in Stripe what each created, switch back "
                    "the prices each put in place, restore the CMS rows' sync state; editors' "
                    "columns are never written)?",
                    abort=True,
                    err=True,
                )
        run_config = {
            "ops": {"rollback_migrations": {"config": {"run_ids": [t.run_id for t in targets]}}}
        }
        with RunConsole(log_level.upper()) as console:
            outcome = run_job(instance, "rollback_catalog", run_config=run_config, console=console)
    found = outcome.metadata.get("rollback_migrations", {})
    summary = _rollback_summary(outcome, targets, found)
    if outcome.success and not as_json:
        click.echo(
            f"rolled back {summary['runs']} migration run(s): {summary['rows_restored']} CMS "
            f"rows restored, {summary['rows_kept']} kept, {summary['products_archived']} Stripe "
            f"products archived, {summary['prices_restored']} prices and "
            f"{summary['contents_restored']} contents restored"
        )
        for line in summary["kept"][:20]:
            click.echo(f"kept: {line}")
        if summary["rows_kept"] > 20:
            click.echo(f"kept: ... and {summary['rows_kept'] - 20} more (see the run in the UI)")
        for line in summary["content_left"][:20]:
            click.echo(f"content left: {line}")
        click.echo("the next `stripe-migration migrate` sends the CMS's current content")
    finish(outcome, summary, as_json)


def _markdown_items(value: Any) -> list[str]:
    """The lines of a Markdown bullet list the rollback op wrote as metadata."""
    text = value if isinstance(value, str) else ""
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def _rollback_summary(
    outcome: RunOutcome | None, targets: Sequence[Any], found: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON summary of ``rollback``."""
    return {
        "command": "rollback",
        "success": True if outcome is None else outcome.success,
        "run_id": None if outcome is None else outcome.run_id,
        "rolled_back": [t.run_id for t in targets],
        "runs": found.get("runs", 0 if outcome is None else None),
        "rows_restored": found.get("rows_restored"),
        "rows_kept": found.get("rows_kept"),
        "products_archived": found.get("products_archived"),
        "prices_restored": found.get("prices_restored"),
        "contents_restored": found.get("contents_restored"),
        "contents_left": found.get("contents_left"),
        "kept": _markdown_items(found.get("kept")),
        "content_left": _markdown_items(found.get("content_left")),
        "reason": None if outcome is None else outcome.reason,
    }
