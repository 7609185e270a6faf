"""What `stripe-migration migrate` prints: the report's summary lines and the dry run's plan (pure
formatting, no servers)."""

from stripe_migration.cli.report import combine_reports, plan_text, report_line


def test_stray_prices_are_mentioned_only_when_some_were_retired() -> None:
    quiet = report_line({"created": 3, "failed": 1, "invalid": 1})
    assert quiet.startswith("created 3, updated 0, repriced 0, archived 0, unchanged 0, failed 1")
    assert "stray" not in quiet

    after_a_kill = report_line({"updated": 2, "products_with_strays_retired": 4})
    assert "archived 0, stray prices retired on 4, unchanged 0" in after_a_kill


def test_the_two_ways_of_creating_are_named_when_the_second_was_used() -> None:
    one_way = report_line({"created": 3, "created_by_product": 3})
    assert "POST /v1/prices" not in one_way
    runs = [
        {"created": 3, "created_by_product": 2, "created_by_price": 1, "duration_s": 1.0},
        {"created": 4, "created_by_product": 2, "created_by_price": 2, "duration_s": 1.0},
    ]
    both = report_line(combine_reports(runs))
    assert both.startswith("created 7 (4 by POST /v1/products, 3 by POST /v1/prices), updated 0")


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
