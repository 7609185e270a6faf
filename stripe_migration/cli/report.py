"""The figures of finished runs as the commands print them: the migration report (several runs'
reports combined), the dry run's plan and the rollback's summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stripe_migration.cli.runner import RunOutcome

#: Numbers of the migration report that add up over several runs.
_SUMMED_FIGURES = (
    "created",
    "created_by_product",
    "created_by_price",
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
    if report.get("created_by_price"):  # the second way of creating (catalog/create_paths.py)
        done[0] += (
            f" ({report.get('created_by_product', 0)} by POST /v1/products, "
            f"{report['created_by_price']} by POST /v1/prices)"
        )
    return (
        f"{', '.join(done)}, failed {report.get('failed', 0)} "
        f"(invalid in the CMS {report.get('invalid', 0)}, "
        f"refused by Stripe {report.get('refused_by_stripe', 0)})\n"
        f"{report.get('duration_s', 0)} s, {report.get('products_per_second', 0)} products/s, "
        f"{report.get('api_calls', 0)} Stripe calls, {report.get('retries', 0)} retries, "
        f"{report.get('rate_limited_429s', 0)} answered 429"
    )


#: Changes of a dry run printed on the terminal (the UI lists up to 200 per run).
DRY_RUN_LISTED_CHANGES = 20


def plan_text(plan: Mapping[str, Any], *, exported: bool = False) -> str:
    """The dry run's counts per action, planned writes and first changes, for people.

    ``plan["changes"]`` is the Markdown table of the (first) run's changes; the number of
    changes comes from the counts, so it is exact whatever the table holds. ``exported``: every
    change was written to a file already (``--output``)."""
    counts = ", ".join(
        f"{name.removeprefix('plan_').replace('_', ' ')} {value}"
        for name, value in plan.items()
        if name.startswith("plan_")
    )
    total = sum(
        value or 0
        for name, value in plan.items()
        if name.startswith("plan_") and name != "plan_unchanged"
    )
    lines = [f"plan: {counts}", f"Stripe writes planned: {plan.get('planned_writes', 0)}"]
    table = str(plan.get("changes") or "").splitlines()
    rows = table[2 : 2 + min(DRY_RUN_LISTED_CHANGES, total)] if len(table) > 2 else []
    if rows:
        lines += ["", *table[:2], *rows]
    if total > len(rows):
        more = f"... {total - len(rows)} more changes"
        lines.append(more if exported else f"{more}: `--output FILE` writes every change")
    return "\n".join(lines)


def _markdown_items(value: Any) -> list[str]:
    """The lines of a Markdown bullet list the rollback op wrote as metadata."""
    text = value if isinstance(value, str) else ""
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def rollback_summary(
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
