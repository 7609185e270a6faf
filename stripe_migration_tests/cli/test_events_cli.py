"""`stripe-migration events ...` on the sandbox, through click's CliRunner: the queue's status in
human durations, and the events' jobs run by hand (process, archive, fill-gaps) without a daemon."""

from __future__ import annotations

import time

import pytest

from stripe_migration.cli.events import human_duration
from stripe_migration_tests.cli.test_migrate_cli import (  # noqa: F401 (fixtures)
    _invoke,
    _one_line_error,
    cli_env,
    dagster_pg_url,
)
from stripe_migration_tests.events.test_events_dagster import (
    add,
    broken_product_event,
    payment_failed,
    query,
)

pytestmark = pytest.mark.timeout(240)

DAY = 86400


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (42, "42 s"),
        (600, "10 min"),
        (3 * 3600 + 300, "3 h 5 min"),
        (7200, "2 h"),
        (45 * DAY, "45 days"),
    ],
)
def test_durations_read_the_way_people_say_them(seconds: float, said: str) -> None:
    assert human_duration(seconds) == said


def test_status_then_process_runs_the_jobs_and_says_what_failed(cli_env) -> None:  # noqa: F811
    db = cli_env["DATABASE_URL"]
    now = int(time.time())
    add(db, payment_failed("evt_ok_1", now - 45 * DAY), payment_failed("evt_ok_2", now))
    add(db, broken_product_event("evt_broken", now))

    status = _invoke(["events", "status"])
    assert status.exit_code == 0, status.output
    assert "new 3" in status.stdout and "oldest pending 45 days" in status.stdout

    result = _invoke(["events", "process"])
    assert result.exit_code == 1, result.output
    assert "3 events, 2 succeeded, 0 ignored, 1 failed" in result.stdout
    assert "1 batches, 3 events: 2 processed, 1 failed" in result.stdout
    assert "1 events failed" in _one_line_error(result)
    done = dict(query(db, "SELECT event_id, processed_at IS NOT NULL FROM stripe_events"))
    assert done == {"evt_ok_1": True, "evt_ok_2": True, "evt_broken": False}

    again = _invoke(["events", "process"])  # the failed one waits for its retry delay
    assert again.exit_code == 0, again.output
    assert "0 batches, 0 events: 0 processed, 0 failed" in again.stdout


def test_archive_moves_old_events(cli_env) -> None:  # noqa: F811
    db = cli_env["DATABASE_URL"]
    now = int(time.time())
    add(db, payment_failed("evt_old", now - 10 * DAY), payment_failed("evt_new", now))
    assert _invoke(["events", "process"]).exit_code == 0

    result = _invoke(["events", "archive", "--retention-days", "5"])
    assert result.exit_code == 0, result.output
    assert "archived 1 events older than 5 days; 0 remain" in result.stdout
    assert [r[0] for r in query(db, "SELECT event_id FROM stripe_events")] == ["evt_new"]
    assert [r[0] for r in query(db, "SELECT event_id FROM stripe_events_archive")] == ["evt_old"]


def test_fill_gaps_stores_what_the_receiver_missed(cli_env, emulator) -> None:  # noqa: F811
    client = emulator.client()
    client.v1.products.create(params={"name": "Made while the receiver was down"})
    made = {e.id for e in client.v1.events.list().data}
    assert made

    result = _invoke(["events", "fill-gaps", "--since", "0"])
    assert result.exit_code == 0, result.output
    stored = {r[0] for r in query(cli_env["DATABASE_URL"], "SELECT event_id FROM stripe_events")}
    assert made <= stored
    assert f"stored {len(stored)} events the receiver had missed" in result.stdout


@pytest.mark.slow  # the fast tier keeps status, process and archive
def test_a_batch_that_failed_whole_is_counted_and_the_command_goes_on(cli_env) -> None:  # noqa: F811
    db = cli_env["DATABASE_URL"]
    now = int(time.time())
    add(db, broken_product_event("evt_broken_a", now), broken_product_event("evt_broken_b", now))
    add(db, payment_failed("evt_fine", now))

    # Batches of one: the first two fail whole (their runs fail), the third is clean.
    result = _invoke(["events", "process", "--batch-size", "1"])
    assert result.exit_code == 1, result.output
    assert result.stdout.count("1 events, 0 succeeded, 0 ignored, 1 failed") == 2
    assert "1 events, 1 succeeded, 0 ignored, 0 failed" in result.stdout
    assert "3 batches, 3 events: 1 processed, 2 failed" in result.stdout
    assert "2 events failed" in _one_line_error(result)
