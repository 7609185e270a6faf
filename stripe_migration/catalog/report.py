"""The migration report: what a run did, in Markdown for people and in numbers for the UI's plots."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from stripe_migration.catalog.actions import Action, PlannedAction
from stripe_migration.catalog.apply import ApplyStats
from stripe_migration.catalog.plan import summarize

#: Most failure reasons listed in the Markdown report (all are in Supabase's sync_error column).
MAX_LISTED_FAILURES = 50


def report_metadata(plan: Sequence[PlannedAction], stats: ApplyStats) -> dict[str, float | int]:
    """The run's figures as flat numbers (Dagster plots numeric metadata across runs)."""
    planned = summarize(plan)
    applied = stats.by_action
    return {
        "created": applied.get(Action.CREATE.value, 0),
        # the two ways of creating a product (see catalog/create_paths.py)
        "created_by_product": stats.created_by_product,
        "created_by_price": stats.created_by_price,
        "updated": applied.get(Action.UPDATE.value, 0)
        + applied.get(Action.UPDATE_AND_REPRICE.value, 0),
        "repriced": applied.get(Action.REPRICE.value, 0)
        + applied.get(Action.UPDATE_AND_REPRICE.value, 0),
        "archived": applied.get(Action.ARCHIVE.value, 0),
        # Stripe products of rows deleted from the CMS, archived (never deleted)
        "archived_deleted": applied.get(Action.ARCHIVE_DELETED.value, 0),
        # products whose only change was deactivating the stray prices a killed run left
        "products_with_strays_retired": applied.get(Action.RETIRE_PRICES.value, 0),
        "unchanged": planned[Action.UNCHANGED.value],
        "invalid": planned[Action.INVALID.value],
        "failed": stats.failed,
        # valid rows Stripe refused (the rest of `failed` are rows invalid in the CMS)
        "refused_by_stripe": stats.refused,
        "api_calls": int(stats.api.get("stripe_requests", 0)),
        "retries": int(stats.api.get("stripe_retries", 0)),
        "rate_limited_429s": int(stats.api.get("stripe_429s", 0)),
        "duration_s": round(stats.seconds, 3),
        "products_per_second": round(stats.products_per_second, 2),
    }


def _failure_reasons(stats: ApplyStats) -> list[tuple[str, int]]:
    """Failure reasons grouped by field (the text before the first colon), most frequent first."""
    kinds = Counter(reason.split(":", 1)[0].strip() or "unknown" for _, reason in stats.failures)
    return kinds.most_common()


def render_report(plan: Sequence[PlannedAction], stats: ApplyStats) -> str:
    """A Markdown report of one migration run."""
    figures = report_metadata(plan, stats)
    lines = [
        "# Catalogue migration report",
        "",
        "| | |",
        "|---|---:|",
        *(f"| {name.replace('_', ' ')} | {value} |" for name, value in figures.items()),
        "",
    ]
    if stats.create_paths:
        lines += [stats.create_paths[0].upper() + stats.create_paths[1:] + ".", ""]
    if stats.failures:
        lines += ["## Failed products", "", "| by field | rows |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in _failure_reasons(stats)]
        lines += ["", "| cms id | reason |", "|---|---|"]
        for cms_id, reason in stats.failures[:MAX_LISTED_FAILURES]:
            lines.append(f"| {cms_id} | {reason.replace('|', '/')} |")
        if len(stats.failures) > MAX_LISTED_FAILURES:
            lines.append(
                f"\n…and {len(stats.failures) - MAX_LISTED_FAILURES} more: every failed row "
                "carries its reason in `products.sync_error`."
            )
    else:
        lines.append("No product failed.")
    return "\n".join(lines) + "\n"


def progress_line(figures: Mapping[str, float]) -> str:
    """The apply step's progress in words, e.g. ``applied 150/480 products (24.9/s, ETA 13 s),
    0 refused by Stripe; 12 invalid rows skipped``. ``figures``: ``done``, ``total`` (the valid
    rows with a change: invalid rows are never among them), ``failed`` (refused by Stripe or
    invalid), ``invalid``, ``products_per_second``."""
    done, total, failed, invalid = (
        int(figures.get(k, 0)) for k in ("done", "total", "failed", "invalid")
    )
    skipped = f"; {invalid} invalid rows skipped" if invalid else ""
    if total == 0:
        return f"nothing to apply{skipped}"
    rate = float(figures.get("products_per_second", 0.0))
    eta_s = (total - done) / rate if rate > 0 else math.nan
    eta = f"ETA {eta_s:.0f} s" if math.isfinite(eta_s) else "ETA unknown"
    return (
        f"applied {done}/{total} products ({rate:.1f}/s, {eta}), "
        f"{failed - invalid} refused by Stripe{skipped}"
    )
