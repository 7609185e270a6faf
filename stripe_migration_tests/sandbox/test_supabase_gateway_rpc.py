"""RPC results, max-rows and the schema cache, on a private gateway with test-only functions.

The session gateway's database is shared, so the functions these tests need live in a database
of this module's own, served by a gateway started with ``max_rows=5``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from postgrest.exceptions import APIError
from psycopg import sql
from supabase import Client, create_client

from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration.sandbox.supabase_gateway import make_service_role_key, start_gateway
from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway, truncate_data_tables

_DATABASE = "gateway_rpc_test"
_FUNCTIONS = """
CREATE FUNCTION products_by_status(wanted text) RETURNS SETOF products
LANGUAGE sql STABLE AS $$ SELECT * FROM products WHERE sync_status = wanted $$;

CREATE FUNCTION product_names(prefix text DEFAULT '') RETURNS SETOF text
LANGUAGE sql STABLE AS $$ SELECT name FROM products WHERE name LIKE prefix || '%' ORDER BY name $$;

CREATE FUNCTION currency_counts() RETURNS TABLE (currency text, products bigint)
LANGUAGE sql STABLE AS $$ SELECT currency, count(*) FROM products GROUP BY currency $$;

CREATE FUNCTION describe_all(note text) RETURNS void
LANGUAGE sql AS $$ UPDATE products SET description = note WHERE true $$;
"""


@pytest.fixture(scope="module")
def rpc_gateway(
    pg_server: LocalPostgres, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SupabaseGateway]:
    """A gateway (max_rows=5) on a private database with the functions above."""
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_DATABASE))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(_DATABASE), sql.Identifier(migrated_template)
            )
        )
    url = pg_server.url(_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_FUNCTIONS)
    key = make_service_role_key()
    log_path = tmp_path_factory.mktemp("rpc_gateway") / "gateway.log"
    process = start_gateway(url, key, max_rows=5, log_path=log_path)
    try:
        yield SupabaseGateway(process.url, key, url, process)
    finally:
        process.stop()
        pg_server.drop_database(_DATABASE)


@pytest.fixture
def rpc_client(rpc_gateway: SupabaseGateway) -> Iterator[Client]:
    """A client of the private gateway, with eight products loaded."""
    truncate_data_tables(rpc_gateway.database_url)
    client = create_client(rpc_gateway.url, rpc_gateway.key)
    client.table("products").insert(
        [
            {
                "name": f"item {i}",
                "currency": "eur" if i < 5 else "usd",
                "sync_status": "synced" if i % 2 else "pending",
                "synced_unit_amount": i * 10,
            }
            for i in range(8)
        ]
    ).execute()
    try:
        yield client
    finally:
        client.postgrest.aclose()


def test_set_returning_rpc_with_filters_order_range_and_count(rpc_client: Client) -> None:
    result = (
        rpc_client.rpc("products_by_status", {"wanted": "synced"}, count="exact")
        .select("name, synced_unit_amount")
        .gte("synced_unit_amount", 20)
        .order("synced_unit_amount", desc=True)
        .range(0, 1)
        .execute()
    )
    assert result.count == 3  # items 3, 5, 7
    assert result.data == [
        {"name": "item 7", "synced_unit_amount": 70},
        {"name": "item 5", "synced_unit_amount": 50},
    ]

    names = rpc_client.rpc("product_names", {"prefix": "item"}).limit(3).execute()
    assert names.data == ["item 0", "item 1", "item 2"]

    counts = rpc_client.rpc("currency_counts", {}).order("currency").execute()
    assert counts.data == [{"currency": "eur", "products": 5}, {"currency": "usd", "products": 3}]

    single = rpc_client.rpc("currency_counts", {}).eq("currency", "usd").single().execute()
    assert single.data == {"currency": "usd", "products": 3}


def test_void_rpc_and_read_only_get(rpc_client: Client) -> None:
    rpc_client.rpc("describe_all", {"note": "seen"}).execute()
    described = rpc_client.table("products").select("description").execute()
    assert {row["description"] for row in described.data} == {"seen"}

    # GET calls run read-only, as in PostgREST: a writing function fails with 25006 (405).
    with pytest.raises(APIError) as info:
        rpc_client.rpc("describe_all", {"note": "x"}, get=True).execute()
    assert info.value.code == "25006"

    by_get = rpc_client.rpc("product_names", {"prefix": "item 7"}, get=True).execute()
    assert by_get.data == ["item 7"]


def test_max_rows_caps_every_read(rpc_client: Client) -> None:
    page = rpc_client.table("products").select("name", count="exact").execute()
    assert len(page.data) == 5 and page.count == 8

    assert len(rpc_client.rpc("product_names", {}).execute().data) == 5

    # Writes are not capped: all eight rows come back.
    updated = rpc_client.table("products").update({"active": False}).neq("name", "x").execute()
    assert len(updated.data) == 8


def _poll(check, deadline_s: float = 5.0):
    """Call ``check`` until it stops raising APIError (the schema cache reloads asynchronously)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return check()
        except (APIError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_schema_changes_are_picked_up(rpc_gateway: SupabaseGateway, rpc_client: Client) -> None:
    # Run `select=*` often enough that psycopg prepares it: the new column must still show.
    for _ in range(6):
        rpc_client.table("products").select("*").limit(1).execute()
    with psycopg.connect(rpc_gateway.database_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION late_arrival() RETURNS integer LANGUAGE sql AS 'SELECT 42'")
        conn.execute("ALTER TABLE products ADD COLUMN late_column text DEFAULT 'late'")
    try:
        # Unknown names reload the schema cache (at most every 0.2 s), as if PostgREST got
        # NOTIFY pgrst.
        assert _poll(lambda: rpc_client.rpc("late_arrival", {}).execute().data) == 42
        rows = _poll(lambda: rpc_client.table("products").select("late_column").limit(1).execute())
        assert rows.data == [{"late_column": "late"}]
        for _ in range(3):  # every pooled connection may hold the stale prepared statement
            star = rpc_client.table("products").select("*").limit(1).execute()
            assert star.data[0]["late_column"] == "late"

        with psycopg.connect(rpc_gateway.database_url, autocommit=True) as conn:
            conn.execute("DROP FUNCTION late_arrival()")
            conn.execute("NOTIFY pgrst, 'reload schema'")

        def gone() -> None:
            with pytest.raises(APIError) as info:
                rpc_client.rpc("late_arrival", {}).execute()
            assert info.value.code == "PGRST202"

        _poll(gone)
    finally:
        with psycopg.connect(rpc_gateway.database_url, autocommit=True) as conn:
            conn.execute("DROP FUNCTION IF EXISTS late_arrival()")
            conn.execute("ALTER TABLE products DROP COLUMN IF EXISTS late_column")
            conn.execute("NOTIFY pgrst, 'reload schema'")
