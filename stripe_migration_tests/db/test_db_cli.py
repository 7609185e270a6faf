"""`stripe-migration db ...` against the embedded PostgreSQL."""

from __future__ import annotations

from click.testing import CliRunner

from stripe_migration.cli import main


def test_db_upgrade_status_downgrade(empty_db: str) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": empty_db}

    result = runner.invoke(main, ["db", "status"], env=env)
    assert result.exit_code == 0, result.output
    states = [line.split()[1] for line in result.output.splitlines()[1:]]
    assert states == ["pending"] * 6

    result = runner.invoke(main, ["db", "upgrade", "--to", "1.1.0"], env=env)
    assert result.exit_code == 0, result.output
    assert "applied 1.0.0, 1.1.0" in result.output

    result = runner.invoke(main, ["db", "status"], env=env)
    lines = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:]}
    assert lines == {
        "1.0.0": "applied",
        "1.1.0": "applied",
        "1.2.0": "pending",
        "1.3.0": "pending",
        "1.4.0": "pending",
        "1.5.0": "pending",
    }

    result = runner.invoke(main, ["db", "downgrade", "--to", "1.0.0"], env=env)
    assert result.exit_code == 0, result.output
    assert "rolled back 1.1.0; now at 1.0.0" in result.output


def test_db_without_a_url_says_what_to_do() -> None:
    result = CliRunner().invoke(main, ["db", "status"], env={"DATABASE_URL": ""})
    assert result.exit_code != 0
    assert "set DATABASE_URL" in result.output


def test_unknown_version_is_a_clear_error(empty_db: str) -> None:
    result = CliRunner().invoke(
        main, ["db", "upgrade", "--to", "9.9.9"], env={"DATABASE_URL": empty_db}
    )
    assert result.exit_code == 1
    assert "unknown schema version 9.9.9" in result.output
