"""What a finished run stored, read back for the commands: its whole plan, and its report when
the report step did not run.

The plan's metadata in the UI lists the first changes only; ``migrate --output FILE`` writes
every change (CSV or JSON, by the file's extension) from the ``catalog_plan`` output the run
stored (see :mod:`stripe_migration.resources.pickle_io_manager`). When a blocking check of
``stripe_products`` fails, Dagster skips ``migration_report``; ``migrate`` then renders the same
report from the stored plan and apply statistics.
"""

from __future__ import annotations

import csv
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

#: The formats ``--output`` writes, by file extension.
FORMATS = (".csv", ".json")


def check_output_path(path: str | None) -> Path | None:
    """``path`` as a Path, or a usage error when its extension names no format we write."""
    if path is None:
        return None
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        raise click.UsageError(f"--output {path}: name a .csv or a .json file")
    return target


def load_output(storage_dir: str, asset: str, start: str, end: str) -> Any:
    """The output of ``asset`` a run over partitions ``start``..``end`` stored."""
    import dagster as dg

    from stripe_migration.resources.pickle_io_manager import range_name, stored_output_path

    path = stored_output_path(storage_dir, dg.AssetKey(asset), range_name(start, end))
    with path.open("rb") as handle:
        return pickle.load(handle)


def load_plan(storage_dir: str, start: str, end: str) -> list[Any]:
    """The ``catalog_plan`` a run over partitions ``start``..``end`` stored."""
    return load_output(storage_dir, "catalog_plan", start, end)


def stored_report(storage_dir: str, start: str, end: str) -> dict[str, Any] | None:
    """The migration report's metadata (``report`` the Markdown, and the figures) rendered from
    the plan and apply statistics a run stored, or None when it stored no statistics."""
    from stripe_migration.catalog.report import render_report, report_metadata

    try:
        plan = load_plan(storage_dir, start, end)
        stats = load_output(storage_dir, "stripe_products", start, end)
    except FileNotFoundError:
        return None
    return {"report": render_report(plan, stats), **report_metadata(plan, stats)}


def change_rows(plans: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Every change of ``plans`` (unchanged products left out), in plan order."""
    from stripe_migration.catalog.plan import plan_table

    return [row for plan in plans for row in plan_table(plan, limit=len(plan))]


def write_changes(target: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` to ``target`` as CSV (a header row) or JSON (a list of objects)."""
    if target.suffix.lower() == ".json":
        target.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    columns = list(rows[0]) if rows else ["cms_id", "action", "changes"]
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
