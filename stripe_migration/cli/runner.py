"""Runs one job of the code location on the configured Dagster instance and reads its outcome.

The only module of the command line that touches Dagster's internals (``dagster._core``): it finds
the instance, executes a job in this process as a reconstructable job, the way a launched run
executes (so every run is stored in PostgreSQL and shows in the Dagster UI next to the runs
launched there; there is no second code path), and reads the run's events into a
:class:`RunOutcome`.

The instance: ``$DAGSTER_HOME`` when it is set; otherwise the ``dagster.yaml`` of the current folder
(or of the checkout this package runs from, or the copy shipped in the package) with the persistent
home folder ``.dagster_home`` beside it, the way ``dagster dev`` builds its instance
(``InstanceRef.from_dir(home, config_dir=...)``); runs and events live in ``DAGSTER_PG_URL``.
Before a run, the settings it needs are checked and the code location's definitions loaded, so that
a missing or bad setting fails with one line naming it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stripe_migration.cli.errors import (
    EXIT_NOT_CONFIGURED,
    CommandFailed,
    error_text,
    first_line,
)

if TYPE_CHECKING:
    import dagster as dg

    from stripe_migration.cli.console import RunConsole

#: The persistent Dagster home the CLI creates beside the dagster.yaml it uses (gitignored).
INSTANCE_HOME_NAME = ".dagster_home"
#: dagster.yaml as shipped inside the package, for installs without a checkout.
PACKAGED_INSTANCE_CONFIG = "_dagster.yaml"
#: Where the code location's definitions live: the CLI runs the very jobs the UI shows.
CODE_LOCATION_MODULE = "stripe_migration.definitions"


# ---------------------------------------------------------------------------------------------
# What a run needs: settings, the instance, the definitions


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
        reason = first_line(str(root)) if root is not exc else first_line(str(exc))
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
        raise CommandFailed(f"bad setting: {first_line(str(exc))}", EXIT_NOT_CONFIGURED) from None
    return defs


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
                text = first_line(data.user_failure_data.description)
            else:
                text = error_text(data.error)
            if "blocking asset check" not in text:
                step_errors.append(f"{event.step_key}: {text}")
        elif kind == "PIPELINE_FAILURE":
            data = event.event_specific_data
            if data is not None and data.failure_reason == RunFailureReason.UNEXPECTED_TERMINATION:
                outcome.interrupted = True
            elif data is not None and data.error is not None:
                run_error = error_text(data.error)
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
        return RunOutcome(run_id, job_name, False, first_line(str(exc)))
    return outcome_of(result, job_name)
