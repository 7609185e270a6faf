"""The schema migrations against a real PostgreSQL: upgrade, rollback, checksums, archival."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from stripe_migration.db import migrations

VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_upgrade_from_empty_to_latest(empty_db: str) -> None:
    assert migrations.current_version(empty_db) is None
    assert migrations.upgrade(empty_db) == VERSIONS
    assert migrations.current_version(empty_db) == VERSIONS[-1]
    assert {
        "products",
        "stripe_events",
        "payment_recovery_attempts",
        "stripe_event_processing",
        "stripe_event_batches",
        "stripe_events_archive",
        "schema_migrations",
    } <= _tables(empty_db)
    assert migrations.upgrade(empty_db) == []  # nothing left to do


def test_upgrade_to_a_given_version_then_the_rest(empty_db: str) -> None:
    assert migrations.upgrade(empty_db, to="1.1.0") == ["1.0.0", "1.1.0"]
    assert "stripe_event_batches" not in _tables(empty_db)
    assert migrations.upgrade(empty_db) == ["1.2.0", "1.3.0", "1.4.0", "1.5.0"]


def test_downgrade_to_1_0_0_and_back_keeps_rows(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (name, price, currency) VALUES ('Mug', '12.50', 'eur'), ('Cap', '9', 'usd')"
        )
        conn.execute(
            """INSERT INTO stripe_events (event_id, type, payload, created_at)
               VALUES ('evt_new', 'product.created', '{}', now()),
                      ('evt_old', 'product.updated', '{}', now() - interval '400 days')"""
        )
        conn.execute(
            "INSERT INTO stripe_event_processing (event_id, attempt_number, status, error_message)"
            " VALUES ('evt_old', 1, 'failed', 'boom')"
        )
        assert conn.execute("SELECT archive_old_events('180 days')").fetchone()[0] == 1

    assert migrations.downgrade(empty_db, to="1.0.0") == [
        "1.5.0",
        "1.4.0",
        "1.3.0",
        "1.2.0",
        "1.1.0",
    ]
    assert "stripe_events_archive" not in _tables(empty_db)
    with psycopg.connect(empty_db) as conn:
        assert _count(conn, "products") == 2
        # The archived event came back into stripe_events rather than being dropped.
        events = conn.execute("SELECT event_id FROM stripe_events ORDER BY event_id").fetchall()
        assert events == [("evt_new",), ("evt_old",)]

    assert migrations.upgrade(empty_db) == ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]
    with psycopg.connect(empty_db) as conn:
        assert _count(conn, "products") == 2
        assert _count(conn, "stripe_events") == 2
        names = conn.execute("SELECT name, price FROM products ORDER BY name").fetchall()
        assert names == [("Cap", "9"), ("Mug", "12.50")]


def test_rollback_of_1_2_0_restores_archived_attempt_history(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stripe_events (event_id, type, payload, created_at)"
            " VALUES ('evt_a', 't', '{}', now() - interval '1 year')"
        )
        conn.execute(
            "INSERT INTO stripe_event_processing (event_id, attempt_number, status, error_message)"
            " VALUES ('evt_a', 1, 'failed', 'first'), ('evt_a', 2, 'succeeded', NULL)"
        )
        conn.execute("SELECT archive_old_events('1 day')")
    migrations.downgrade(empty_db, to="1.1.0")
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "SELECT attempt_number, status, error_message FROM stripe_event_processing"
            " WHERE event_id = 'evt_a' ORDER BY attempt_number"
        ).fetchall()
    assert rows == [(1, "failed", "first"), (2, "succeeded", None)]


def test_downgrade_to_empty(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    assert migrations.downgrade(empty_db, to="0") == VERSIONS[::-1]
    assert _tables(empty_db) == {"schema_migrations"}


def test_status_lists_applied_and_pending(empty_db: str) -> None:
    migrations.upgrade(empty_db, to="1.0.0")
    status = {s.version: s for s in migrations.status(empty_db)}
    assert status["1.0.0"].applied and status["1.0.0"].checksum_matches
    assert status["1.0.0"].executed_at is not None
    assert not status["1.1.0"].applied and status["1.1.0"].executed_at is None


def test_changed_applied_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    sql = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), sql)
    migrations.upgrade(empty_db, to="1.0.0", directory=sql)
    first = sql / "1.0.0_catalogue_and_events.sql"
    first.write_text(first.read_text() + "\n-- an edit after the fact\n")

    with pytest.raises(migrations.MigrationError, match=r"1\.0\.0 .*changed after it was applied"):
        migrations.upgrade(empty_db, directory=sql)
    assert migrations.current_version(empty_db) == "1.0.0"  # nothing else ran
    status = {s.version: s for s in migrations.status(empty_db, directory=sql)}
    assert status["1.0.0"].checksum_matches is False


def test_failed_migration_leaves_nothing_half_applied(empty_db: str, tmp_path: Path) -> None:
    sql = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), sql)
    broken = sql / "1.1.0_event_processing.sql"
    broken.write_text(broken.read_text() + "\nSELECT no_such_function();\n")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrations.upgrade(empty_db, directory=sql)
    assert migrations.current_version(empty_db) == "1.0.0"
    assert "stripe_event_processing" not in _tables(empty_db)


def test_updated_at_really_updates(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        (pid,) = conn.execute(
            "INSERT INTO products (name, updated_at) VALUES ('A', now() - interval '1 day') RETURNING id"
        ).fetchone()
        conn.execute("UPDATE products SET name = 'B' WHERE id = %s", (pid,))
        (age,) = conn.execute(
            "SELECT now() - updated_at < interval '1 minute' FROM products WHERE id = %s", (pid,)
        ).fetchone()
    assert age is True


def _seed_events(conn: psycopg.Connection, old: int, recent: int) -> None:
    conn.execute(
        """INSERT INTO stripe_events (event_id, type, payload, created_at)
           SELECT 'evt_old_' || lpad(i::text, 5, '0'), 'product.updated', '{}',
                  now() - interval '200 days' - i * interval '1 minute'
           FROM generate_series(1, %s) AS i""",
        (old,),
    )
    conn.execute(
        """INSERT INTO stripe_events (event_id, type, payload, created_at)
           SELECT 'evt_new_' || i, 'product.updated', '{}', now() - i * interval '1 minute'
           FROM generate_series(1, %s) AS i""",
        (recent,),
    )
    conn.execute(
        """INSERT INTO stripe_event_processing (event_id, attempt_number, status, error_message)
           SELECT event_id, 1, 'failed', 'handler error for ' || event_id FROM stripe_events"""
    )


def test_archive_moves_at_most_batch_size_oldest_first_with_history(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        _seed_events(conn, old=25, recent=5)
        assert conn.execute("SELECT archive_old_events('180 days', 10)").fetchone()[0] == 10
        archived = [
            r[0] for r in conn.execute("SELECT event_id FROM stripe_events_archive").fetchall()
        ]
        # The ten oldest: evt_old_00016 .. evt_old_00025 (larger i is older).
        assert sorted(archived) == [f"evt_old_{i:05d}" for i in range(16, 26)]
        history = conn.execute(
            "SELECT processing_history FROM stripe_events_archive WHERE event_id = 'evt_old_00025'"
        ).fetchone()[0]
        assert [(h["attempt_number"], h["error_message"]) for h in history] == [
            (1, "handler error for evt_old_00025")
        ]
        # The attempt rows moved with their events: none is left behind for an archived event.
        assert _count(conn, "stripe_event_processing") == 20

        assert conn.execute("SELECT archive_old_events('180 days', 10)").fetchone()[0] == 10
        assert conn.execute("SELECT archive_old_events('180 days', 10)").fetchone()[0] == 5
        assert conn.execute("SELECT archive_old_events('180 days', 10)").fetchone()[0] == 0
        assert _count(conn, "stripe_events") == 5
        assert _count(conn, "stripe_events_archive") == 25


def test_archive_refuses_a_nonsense_batch_size(migrated_db: str) -> None:
    with (
        psycopg.connect(migrated_db) as conn,
        pytest.raises(psycopg.errors.RaiseException, match="batch_size must be a positive integer"),
    ):
        conn.execute("SELECT archive_old_events('1 day', 0)")


def test_archive_from_two_connections_at_once_keeps_every_event_once(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        _seed_events(conn, old=2000, recent=100)
        before = _count(conn, "stripe_events")

    moved: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def archive_all() -> None:
        try:
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                barrier.wait()
                while n := conn.execute("SELECT archive_old_events('180 days', 50)").fetchone()[0]:
                    moved.append(n)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=archive_all) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors
    assert sum(moved) == 2000

    with psycopg.connect(migrated_db) as conn:
        assert _count(conn, "stripe_events") + _count(conn, "stripe_events_archive") == before
        (dupes,) = conn.execute(
            "SELECT count(*) FROM stripe_events e JOIN stripe_events_archive a USING (event_id)"
        ).fetchone()
        assert dupes == 0
        assert _count(conn, "stripe_events_archive") == 2000
        (histories,) = conn.execute(
            "SELECT count(*) FROM stripe_events_archive WHERE jsonb_array_length(processing_history) = 1"
        ).fetchone()
        assert histories == 2000


def test_1_3_0_keeps_a_row_marked_mid_apply_in_scope_until_its_checkpoint(empty_db: str) -> None:
    """A row a run marked and never checkpointed (the run was killed) stays in the next run's
    scope even though its recorded sync state matches the CMS; the checkpoint clears the mark."""
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        (pid, version) = conn.execute(
            "INSERT INTO products (name, price, currency) VALUES ('Mug', '12.50', 'eur')"
            " RETURNING id, updated_at"
        ).fetchone()
        checkpoint = [
            {"id": str(pid), "sync_status": "synced", "synced_version": version.isoformat()}
        ]

        def state() -> tuple:
            return conn.execute("SELECT needs_sync, sync_run_id FROM products").fetchone()

        conn.execute("SELECT apply_sync_results(%s)", (Jsonb(checkpoint),))
        assert state() == (False, None)
        conn.execute("UPDATE products SET sync_run_id = 'run-1'")
        assert state() == (True, "run-1")
        conn.execute("SELECT apply_sync_results(%s)", (Jsonb(checkpoint),))
        assert state() == (False, None)
