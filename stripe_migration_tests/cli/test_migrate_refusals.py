"""`stripe-migration migrate` when Stripe refuses valid rows: exit 1, one line with the count and
an example, and the report's figures in ``--json`` (issue 12, item 5)."""

from __future__ import annotations

import json

import pytest

from stripe_migration_tests.cli.test_migrate_cli import (  # noqa: F401 (fixtures)
    _invoke,
    _one_line_error,
    _seed,
    cli_env,
    dagster_pg_url,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_rows_refused_by_stripe_fail_the_command_with_the_count_and_an_example(
    cli_env,  # noqa: F811
    emulator,
) -> None:
    valid, bad = _seed(cli_env["DATABASE_URL"], 40, bad_fraction=0.1)
    emulator.control.fail_next(
        "POST",
        "/v1/products",
        phase="after_execution",
        status=400,
        count=3,
        message="Refused by the test.",
    )
    result = _invoke(["migrate", "--json"])
    assert result.exit_code == 1, result.output
    line = _one_line_error(result)
    assert "stripe_accepted_every_valid_row" in line
    assert "3 valid rows refused by Stripe" in line
    assert "Refused by the test." in line
    summary = json.loads(result.stdout)
    assert summary["success"] is False
    report = summary["report"]
    assert report["refused_by_stripe"] == 3
    assert report["invalid"] == bad
    assert report["created"] == valid - 3
    assert report["failed"] == bad + 3
