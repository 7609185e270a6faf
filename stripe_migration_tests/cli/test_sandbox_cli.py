"""`stripe-migration sandbox up | down [--purge]`: what the local stack leaves behind, and how to
start over from nothing."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import stripe
from click.testing import CliRunner

from stripe_migration.cli import main
from stripe_migration.sandbox.stack import read_state

pytestmark = pytest.mark.timeout(180)


def _sandbox(*args: str):
    return CliRunner().invoke(main, ["sandbox", *args], catch_exceptions=False)


@pytest.mark.slow  # starts and stops the whole stack twice
def test_down_says_what_it_keeps_and_purge_removes_it(tmp_path: Path) -> None:
    up = _sandbox("up", "--dir", str(tmp_path))
    assert up.exit_code == 0, up.output
    state = read_state(tmp_path)
    assert state is not None
    assert f"the emulator's webhook events go to {state.receiver_url}" in up.stdout
    # An edit through the emulator's API reaches stripe_events, as a dashboard edit would.
    client = stripe.StripeClient(
        state.env["STRIPE_SECRET_KEY"], base_addresses={"api": state.env["STRIPE_API_BASE"]}
    )
    product = client.v1.products.create(params={"name": "Made in the dashboard"})
    deadline = time.monotonic() + 30
    with psycopg.connect(state.env["DATABASE_URL"], autocommit=True) as conn:
        while not (
            stored := conn.execute(
                "SELECT type FROM stripe_events WHERE payload -> 'data' -> 'object' ->> 'id' = %s",
                (product.id,),
            ).fetchall()
        ):
            assert time.monotonic() < deadline, "the receiver stored no event of the product"
            time.sleep(0.1)
    assert stored == [("product.created",)]
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

    again = _sandbox("up", "--dir", str(tmp_path), "--no-webhook")  # starting over works
    try:
        assert again.exit_code == 0, again.output
        assert read_state(tmp_path).receiver_pid is None and "webhook" not in again.stdout
        assert read_state(tmp_path).env["STRIPE_SECRET_KEY"] != state.env["STRIPE_SECRET_KEY"]
    finally:
        _sandbox("down", "--dir", str(tmp_path), "--purge")
    assert not env.exists() or "STRIPE_SECRET_KEY" not in env.read_text()
