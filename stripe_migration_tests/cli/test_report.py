"""What `stripe-migration migrate` prints: the report's summary lines and the dry run's plan (pure
formatting, no servers)."""

from stripe_migration.cli.report import plan_text, report_line


def test_stray_prices_are_mentioned_only_when_some_were_retired() -> None:
    quiet = report_line({"created": 3, "failed": 1, "invalid": 1})
    assert quiet.startswith("created 3, updated 0, repriced 0, archived 0, unchanged 0, failed 1")
    assert "stray" not in quiet

    after_a_kill = report_line({"updated": 2, "products_with_strays_retired": 4})
    assert "archived 0, stray prices retired on 4, unchanged 0" in after_a_kill


def _table(rows: int) -> str:
    lines = ["| cms_id | action |", "|:--|:--|"]
    return "\n".join([*lines, *(f"| id{i} | create |" for i in range(rows))])


def test_the_dry_run_counts_every_change_whatever_the_table_holds() -> None:
    # 268 changes, of which the UI's table holds the first 200.
    plan = {"plan_create": 250, "plan_invalid": 18, "plan_unchanged": 900, "changes": _table(200)}
    text = plan_text(plan)
    assert "plan: create 250, invalid 18, unchanged 900" in text
    assert sum(line.startswith("| id") for line in text.splitlines()) == 20
    assert text.endswith("... 248 more changes: `--output FILE` writes every change")
    assert plan_text(plan, exported=True).endswith("... 248 more changes")


def test_a_small_plan_is_listed_whole() -> None:
    text = plan_text({"plan_create": 3, "plan_unchanged": 5, "changes": _table(3)})
    assert sum(line.startswith("| id") for line in text.splitlines()) == 3
    assert "more changes" not in text
    assert "more changes" not in plan_text({"plan_unchanged": 5, "changes": "nothing to change"})
