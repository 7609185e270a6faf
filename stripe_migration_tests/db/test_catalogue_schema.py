"""The catalogue's change tracking in SQL: needs_sync, partitions, the sync checkpoint function."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest


@pytest.fixture
def conn(migrated_db: str):
    with psycopg.connect(migrated_db, autocommit=True) as connection:
        yield connection


def _insert(conn: psycopg.Connection, name: str = "Mug") -> uuid.UUID:
    return conn.execute(
        "INSERT INTO products (name, price, currency) VALUES (%s, '9.99', 'usd') RETURNING id",
        (name,),
    ).fetchone()[0]


def _row(conn: psycopg.Connection, pid: uuid.UUID) -> dict:
    cur = conn.execute("SELECT * FROM products WHERE id = %s", (pid,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def _sync(conn: psycopg.Connection, pid: uuid.UUID, version, status: str = "synced") -> list:
    result = {
        "id": str(pid),
        "stripe_product_id": "prod_x",
        "stripe_price_id": "price_x",
        "sync_status": status,
        "sync_error": None if status == "synced" else "price: not a number",
        "sync_content_hash": "h1",
        "synced_unit_amount": 999,
        "synced_currency": "usd",
        "synced_version": version.isoformat(),
    }
    return conn.execute("SELECT * FROM apply_sync_results(%s)", (json.dumps([result]),)).fetchall()


def test_new_row_needs_sync_and_has_a_stable_partition(conn: psycopg.Connection) -> None:
    pid = _insert(conn)
    row = _row(conn, pid)
    assert row["needs_sync"] is True
    assert 0 <= row["sync_partition"] < 16
    (again,) = conn.execute("SELECT abs(hashtext(%s)) %% 16", (str(pid),)).fetchone()
    assert row["sync_partition"] == again


def test_sync_write_back_clears_needs_sync_without_touching_updated_at(
    conn: psycopg.Connection,
) -> None:
    pid = _insert(conn)
    before = _row(conn, pid)
    assert _sync(conn, pid, before["updated_at"]) == [(pid,)]
    after = _row(conn, pid)
    assert after["updated_at"] == before["updated_at"]
    assert after["needs_sync"] is False
    assert after["synced_at"] is not None
    assert (after["stripe_product_id"], after["sync_status"]) == ("prod_x", "synced")


def test_edit_during_a_run_keeps_the_row_in_scope(conn: psycopg.Connection) -> None:
    pid = _insert(conn)
    read_version = _row(conn, pid)["updated_at"]  # the run reads the row ...
    conn.execute("UPDATE products SET name = 'Mug v2' WHERE id = %s", (pid,))  # ... an editor edits
    _sync(conn, pid, read_version)  # ... the run writes back what it synced
    assert _row(conn, pid)["needs_sync"] is True


def test_failed_rows_stay_in_scope(conn: psycopg.Connection) -> None:
    pid = _insert(conn)
    _sync(conn, pid, _row(conn, pid)["updated_at"], status="failed")
    row = _row(conn, pid)
    assert row["needs_sync"] is True
    assert row["sync_error"] == "price: not a number"


def test_checkpoint_never_recreates_a_deleted_row(conn: psycopg.Connection) -> None:
    pid = _insert(conn)
    version = _row(conn, pid)["updated_at"]
    conn.execute("DELETE FROM products WHERE id = %s", (pid,))
    assert _sync(conn, pid, version) == []
    assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0


def test_drift_puts_a_synced_row_back_in_scope(conn: psycopg.Connection) -> None:
    pid = _insert(conn)
    _sync(conn, pid, _row(conn, pid)["updated_at"])
    conn.execute(
        """UPDATE products SET stripe_drift = '{"in_sync": true, "product": {}}' WHERE id = %s""",
        (pid,),
    )
    assert _row(conn, pid)["needs_sync"] is False  # the newest event matched: no drift
    conn.execute(
        """UPDATE products SET stripe_drift = '{"in_sync": false, "product": {}}' WHERE id = %s""",
        (pid,),
    )
    assert _row(conn, pid)["needs_sync"] is True
