"""Housekeeping of the Dagster instance: runs started from the command line, and migration runs.

A run that ``stripe-migration`` executes in its own process holds a slot of the ``stripe_api``
pool while its Stripe step runs. If that process is killed (SIGKILL, a lost machine), the run
stays STARTED and keeps the slot: only ``dagster-daemon``'s run monitoring would notice. So CLI runs
carry the pid and host of the process running them, and before starting a new run the CLI marks
the runs whose process is gone as failed and frees their slots, so the next run resumes at once.

A rollback undoes migration runs, whatever launched them: ``migrate_catalog`` from the CLI or the
Launchpad, or the ``catalog`` group materialized from the asset graph (an ``__ASSET_JOB`` run). The
instance's event log says which runs those are (:func:`migration_runs`), and a run id or the
8-character prefix the UI shows names one (:func:`resolve_migration_run`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from stripe_migration.processes import process_exists

#: Run statuses of a run that has not finished yet (queued, starting, running or cancelling):
#: what the sensors count before launching more of the same work.
IN_FLIGHT = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def runs_in_flight(instance: dg.DagsterInstance, job_name: str) -> int:
    """How many runs of ``job_name`` have not finished."""
    return instance.get_runs_count(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT))


RUNNER_PID_TAG = "stripe_migration/runner_pid"
RUNNER_HOST_TAG = "stripe_migration/runner_host"


def runner_tags() -> dict[str, str]:
    """Tags identifying this process as the one executing a run."""
    return {RUNNER_PID_TAG: str(os.getpid()), RUNNER_HOST_TAG: socket.gethostname()}


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark this host's CLI runs whose process died as failed, free their pool slots, and return
    their ids."""
    records = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={RUNNER_HOST_TAG: socket.gethostname()},
        )
    )
    failed = []
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(RUNNER_PID_TAG, "")
        if not pid.isdigit() or process_exists(int(pid)):
            continue
        instance.report_run_failed(
            run, message=f"the process running it (pid {pid}) is gone: it was killed or crashed"
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed


# ---------------------------------------------------------------------------------------------
# Migration runs: which runs a rollback can undo

#: The asset whose materialization writes to Stripe and to the rows' sync state: a run that set
#: out to materialize it (any job: ``migrate_catalog``, the UI's ``__ASSET_JOB``, a backfill) is
#: a migration run.
STRIPE_PRODUCTS_ASSET = dg.AssetKey("stripe_products")
#: The asset that snapshots the rows in scope before anything is written (``products_backup``
#: table), with ``backup_run_id`` (the root run id) and ``rows_backed_up`` as metadata.
PRODUCTS_BACKUP_ASSET = dg.AssetKey("products_backup")

ROOT_RUN_ID_TAG = "dagster/root_run_id"
_PAGE = 1000


class RunLookupError(LookupError):
    """A run id or prefix that names no migration run, or several: the message says which."""


@dataclass(frozen=True)
class MigrationRun:
    """A migration as a rollback sees it: its root run (the id its backup and the rows' sync
    state are recorded under) and what a person needs to recognise it."""

    run_id: str
    job_name: str
    started_at: float | None
    partitions: str
    rows_backed_up: int | None
    #: every run of this migration the instance knows: the root and its re-executions
    run_ids: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        """The first 8 characters, as the Dagster UI shows run ids."""
        return self.run_id[:8]

    def describe(self) -> str:
        """One line: short id, job, start time (UTC), partitions, rows backed up."""
        when = (
            datetime.fromtimestamp(self.started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if self.started_at
            else "not started"
        )
        rows = "?" if self.rows_backed_up is None else str(self.rows_backed_up)
        parts = f"partitions {self.partitions}" if self.partitions else "unpartitioned"
        return f"{self.short_id}  {self.job_name}  {when}  {parts}  {rows} rows backed up"


def _partitions(tags: Mapping[str, str]) -> str:
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start}..{end}"
    return tags.get("dagster/partition", "")


def _run_records(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> dict[str, Any]:
    ids = sorted(set(run_ids))
    records: dict[str, Any] = {}
    for start in range(0, len(ids), 100):
        for record in instance.get_run_records(dg.RunsFilter(run_ids=ids[start : start + 100])):
            records[record.dagster_run.run_id] = record
    return records


def _planned_stripe_products(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run's plan held ``stripe_products`` (whatever became of the step: a run that
    failed or was killed while applying wrote rows too)."""
    cursor = None
    while True:
        connection = instance.get_records_for_run(
            run_id,
            cursor=cursor,
            of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            limit=_PAGE,
        )
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event is not None and event.asset_key == STRIPE_PRODUCTS_ASSET:
                return True
        if not connection.has_more:
            return False
        cursor = connection.cursor


def migration_runs(instance: dg.DagsterInstance) -> list[MigrationRun]:
    """Every migration run of the instance that backed up rows, newest first.

    A migration run is a run of any job that planned ``stripe_products`` and materialized
    ``products_backup``; re-executions count as their root run, under whose id the backup and
    the sync state are recorded. Runs whose backup held no row are left out (nothing to undo).
    """
    return [run for run in all_migration_runs(instance) if run.rows_backed_up != 0]


def all_migration_runs(instance: dg.DagsterInstance) -> list[MigrationRun]:
    """Every migration run of the instance, newest first, those whose backup held no row
    included (a run named explicitly may be one)."""
    backups: dict[str, dict[str, int | None]] = {}  # root id -> {backing-up run id: rows}
    cursor = None
    while True:
        result = instance.fetch_materializations(PRODUCTS_BACKUP_ASSET, limit=_PAGE, cursor=cursor)
        for record in result.records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            root = getattr(metadata.get("backup_run_id"), "value", None) or record.run_id
            rows = getattr(metadata.get("rows_backed_up"), "value", None)
            by_run = backups.setdefault(str(root), {})
            # a run over several partitions records the same total on each partition's event
            known = by_run.get(record.run_id)
            by_run[record.run_id] = rows if known is None else max(known, rows or 0)
        if not result.has_more:
            break
        cursor = result.cursor
    records = _run_records(instance, [r for runs in backups.values() for r in runs] + list(backups))
    children: dict[str, set[str]] = {}
    roots = sorted(backups)
    for start in range(0, len(roots), 100):
        for record in instance.get_run_records(
            dg.RunsFilter(tags={ROOT_RUN_ID_TAG: roots[start : start + 100]})
        ):
            run = record.dagster_run
            records.setdefault(run.run_id, record)
            children.setdefault(str(run.root_run_id), set()).add(run.run_id)
    found = []
    for root, by_run in backups.items():
        record = records.get(root)
        if record is None:  # the root run was deleted from the instance: nothing to show or check
            continue
        if not any(_planned_stripe_products(instance, run_id) for run_id in sorted(by_run)):
            continue
        rows = by_run.get(root)
        if rows is None and by_run:
            rows = max((n for n in by_run.values() if n is not None), default=None)
        run = record.dagster_run
        found.append(
            MigrationRun(
                run_id=root,
                job_name=run.job_name,
                started_at=record.start_time or record.create_timestamp.timestamp(),
                partitions=_partitions(run.tags),
                rows_backed_up=rows,
                run_ids=tuple(sorted({root, *by_run, *children.get(root, ())})),
            )
        )
    found.sort(key=lambda m: m.started_at or 0.0, reverse=True)
    return found


def resolve_migration_run(
    instance: dg.DagsterInstance, run_id: str, runs: Sequence[MigrationRun] | None = None
) -> MigrationRun:
    """The migration run a full run id or an unambiguous prefix names (a re-execution's id names
    its root run); :class:`RunLookupError` with a message for people otherwise."""
    wanted = run_id.strip().lower()
    if not wanted:
        raise RunLookupError("an empty run id names no run")
    if runs is None:
        runs = all_migration_runs(instance)
    matches = {m.run_id: m for m in runs if any(r.startswith(wanted) for r in m.run_ids)}
    if len(matches) == 1:
        return next(iter(matches.values()))
    if len(matches) > 1:
        listed = "; ".join(
            m.describe() for m in sorted(matches.values(), key=lambda m: -(m.started_at or 0))
        )
        raise RunLookupError(
            f"run id prefix {run_id!r} is ambiguous: it matches {len(matches)} migration runs "
            f"({listed}); give more characters"
        )
    other = instance.get_run_by_id(wanted)
    if other is not None:
        raise RunLookupError(
            f"run {wanted} is a {other.job_name} run, not a migration run: it did not back up "
            "the rows (products_backup) to materialize stripe_products, so it has nothing to "
            "roll back"
        )
    raise RunLookupError(
        f"no migration run {run_id} in this Dagster instance (no run that materialized "
        "stripe_products has this id or an id starting with it)"
    )
