"""`stripe-migration sandbox up | down [--purge]`: what the local stack leaves behind, and how to
start over from nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stripe_migration.cli import main
from stripe_migration.sandbox.stack import read_state

pytestmark = pytest.mark.timeout(180)


def _sandbox(*args: str):
    return CliRunner().invoke(main, ["sandbox", *args], catch_exceptions=False)


def test_down_says_what_it_keeps_and_purge_removes_it(tmp_path: Path) -> None:
    up = _sandbox("up", "--dir", str(tmp_path))
    assert up.exit_code == 0, up.output
    state = read_state(tmp_path)
    assert state is not None
    env = tmp_path / ".env"
    env.write_text("MY_OWN_SETTING=1\n" + env.read_text())
    (tmp_path / ".dagster_home").mkdir()

    down = _sandbox("down", "--dir", str(tmp_path))
    assert down.exit_code == 0, down.output
    assert "sandbox stopped" in down.stdout
    assert f"kept {env}, {tmp_path / '.sandbox'}, {tmp_path / '.dagster_home'}" in down.stdout
    assert read_state(tmp_path) is None and (tmp_path / ".sandbox" / "pg").is_dir()

    purge = _sandbox("down", "--dir", str(tmp_path), "--purge")
    assert purge.exit_code == 0, purge.output
    assert "no sandbox running for this folder" in purge.stdout
    assert f"removed {tmp_path / '.sandbox'}" in purge.stdout
    assert not (tmp_path / ".sandbox").exists() and not (tmp_path / ".dagster_home").exists()
    # The user's own line stays; the stack's keys are gone.
    assert env.read_text() == "MY_OWN_SETTING=1\n"
    assert f"removed the sandbox's settings from {env} (the other lines stay)" in purge.stdout
    assert "kept" not in purge.stdout

    again = _sandbox("up", "--dir", str(tmp_path))  # starting over works
    try:
        assert again.exit_code == 0, again.output
        assert read_state(tmp_path).env["STRIPE_SECRET_KEY"] != state.env["STRIPE_SECRET_KEY"]
    finally:
        _sandbox("down", "--dir", str(tmp_path), "--purge")
    assert not env.exists() or "STRIPE_SECRET_KEY" not in env.read_text()
