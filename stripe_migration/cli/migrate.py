"""`stripe-migration check | migrate | rollback`: the commands that run the catalogue's jobs.

``check`` is the ``preflight`` job, ``migrate`` is ``migrate_catalog`` (``plan_catalog`` with
``--dry-run``), ``rollback`` is ``rollback_catalog``; :mod:`stripe_migration.cli.runner` runs them on
the Dagster instance, :mod:`stripe_migration.cli.console` shows their progress on stderr. The
summary goes to stdout (one JSON object with ``--json``). Exit status: 0 on success, 1 when a run
fails (a failed step or blocking check, a refused key...), 2 when configuration is missing, 130
when interrupted; the reason is always one line on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import click

from stripe_migration.catalog.partitions import partition_tags
from stripe_migration.cli import main
from stripe_migration.cli.console import LOG_LEVELS, RunConsole, print_markdown, set_log_level
from stripe_migration.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    CommandFailed,
)
from stripe_migration.cli.partitions import parse_partitions
from stripe_migration.cli.pending_work import NOTHING_TO_SYNC, catalogue_has_work
from stripe_migration.cli.report import combine_reports, plan_text, report_line, rollback_summary
from stripe_migration.cli.runner import (
    RunOutcome,
    dagster_instance,
    describe_instance,
    load_definitions,
    require_settings,
    run_job,
)
from stripe_migration.cli.stored_outputs import (
    change_rows,
    check_output_path,
    load_plan,
    stored_report,
    write_changes,
)


def finish(outcome: RunOutcome, summary: Mapping[str, Any] | None, as_json: bool) -> None:
    """Print the JSON summary when asked, then exit with the outcome's status and reason."""
    if as_json and summary is not None:
        click.echo(json.dumps(summary, indent=2, sort_keys=False))
    if outcome.success:
        return
    code = EXIT_INTERRUPTED if outcome.interrupted else EXIT_RUN_FAILED
    raise CommandFailed(f"{outcome.job_name} failed: {outcome.reason} (run {outcome.run_id})", code)


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
    "--verify-all",
    is_flag=True,
    help="Verify every row of the partitions against Stripe, not only the rows the run wrote "
    "(as the daily audit does; one list call per 100 products, twice).",
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
@click.option(
    "--output",
    default=None,
    metavar="FILE",
    help="Write every change of the plan to FILE (.csv or .json); the terminal and the UI list "
    "the first ones.",
)
@_common
def migrate_command(
    dry_run: bool,
    force_resync: bool,
    verify_all: bool,
    batch_size: int | None,
    workers: int | None,
    partitions: tuple[str, ...],
    output: str | None,
    log_level: str,
    as_json: bool,
) -> None:
    """Migrate the catalogue to Stripe, or plan it (--dry-run).

    Runs the migrate_catalog job (plan_catalog with --dry-run) on the Dagster instance. A run
    can be stopped at any moment: the next one resumes from the last checkpoint. With nothing to
    do (and no --partition, --force-resync, --verify-all or --dry-run) it says so and starts no
    run.
    """
    from stripe_migration.settings import CATALOG_PARTITION_COUNT, FORCE_RESYNC_TAG, VERIFY_TAG

    set_log_level(log_level.upper())
    ranges = parse_partitions(partitions, CATALOG_PARTITION_COUNT)
    output_path = check_output_path(output)
    require_settings()
    load_definitions()  # a bad setting fails here, naming itself
    job_name = "plan_catalog" if dry_run else "migrate_catalog"
    asked_for_a_run = partitions or dry_run or force_resync or verify_all
    if not asked_for_a_run and not catalogue_has_work():
        click.echo(NOTHING_TO_SYNC, err=True)
        if as_json:
            summary = {
                "command": "migrate",
                "job": job_name,
                "success": True,
                "run_id": None,
                "run_ids": [],
                "partitions": [],
                "dry_run": False,
                "force_resync": False,
                "reason": "nothing to sync",
                "report": None,
                "failed_checks": [],
            }
            click.echo(json.dumps(summary, indent=2, sort_keys=False))
        return
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
            if verify_all:
                tags[VERIFY_TAG] = "full"
            if len(ranges) > 1:
                console.print(f"{job_name}: partitions {start}..{end}")
            outcome = run_job(instance, job_name, tags=tags, run_config=run_config, console=console)
            outcomes.append(outcome)
            if not outcome.success:
                break
        storage = instance.storage_directory()
        if output_path is not None and outcomes[-1].success:
            plans = [load_plan(storage, s, e) for s, e in ranges]
            changes = change_rows(plans)
            write_changes(output_path, changes)
            console.print(f"{len(changes)} changes written to {output_path}")
        for outcome, (start, end) in zip(outcomes, ranges, strict=False):
            # A failed blocking check of stripe_products skips the report step: the run
            # applied its plan all the same, and its report is what the user needs most then.
            skipped = "migration_report" not in outcome.metadata
            if not dry_run and skipped and "stripe_products" in outcome.metadata:
                found = stored_report(storage, start, end)
                if found is not None:
                    outcome.metadata["migration_report"] = found

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
            changes = "\n".join(str(p.get("changes") or "") for p in plans)
            click.echo(plan_text({**plan, "changes": changes}, exported=output_path is not None))
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
                summary = rollback_summary(None, [], {})
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
    summary = rollback_summary(outcome, targets, found)
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
