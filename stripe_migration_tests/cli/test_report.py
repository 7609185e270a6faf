"""The two summary lines `stripe-migration migrate` prints (pure formatting, no servers)."""

from stripe_migration.cli.report import report_line


def test_stray_prices_are_mentioned_only_when_some_were_retired() -> None:
    quiet = report_line({"created": 3, "failed": 1, "invalid": 1})
    assert quiet.startswith("created 3, updated 0, repriced 0, archived 0, unchanged 0, failed 1")
    assert "stray" not in quiet

    after_a_kill = report_line({"updated": 2, "products_with_strays_retired": 4})
    assert "archived 0, stray prices retired on 4, unchanged 0" in after_a_kill
