"""SupabaseResource against the local gateway: keyset reads, chunked upserts, rpc, errors that
name the table, retries on 5xx and connection errors only, and no key in the logs."""

import json
import logging
import pickle
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pandas as pd
import psycopg
import pytest

from stripe_migration.catalog.schema import validate_products
from stripe_migration.resources.supabase.errors import SupabaseError
from stripe_migration.resources.supabase.resource import SupabaseResource, supabase_url_from_env


def resource(gateway, **overrides) -> SupabaseResource:
    settings = dict(
        url=gateway.url,
        service_role_key=gateway.key,
        retry_initial_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    settings.update(overrides)
    return SupabaseResource(**settings)


def fill_products(database_url: str, count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (name, price, currency) "
            "SELECT 'Product ' || g, '19.99', 'usd' FROM generate_series(1, %s) AS g",
            [count],
        )


def product_ids(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT id FROM products ORDER BY id")]


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_reading_20000_rows_walks_keyset_pages(gateway) -> None:
    fill_products(gateway.database_url, 20_000)
    db = resource(gateway).get_client()

    rows = db.read_table("products", ["id", "name"])

    assert [r["id"] for r in rows] == product_ids(gateway.database_url)
    assert set(rows[0]) == {"id", "name"}
    requests = db.stats.requests_to("products", "GET")
    assert len(requests) == 21  # 20 full pages, then the empty one that ends the read
    previous_last = None
    for number, url in enumerate(requests):
        query = query_of(url)
        assert query["limit"] == ["1000"] and query["order"] == ["id.asc"]
        assert "offset" not in query
        if number == 0:
            assert "id" not in query
        else:
            assert query["id"] == [f"gt.{previous_last}"]
        previous_last = rows[min(number * 1000 + 999, len(rows) - 1)]["id"]
    assert db.stats_metadata()["supabase_rows_read"] == 20_000


def test_pages_never_exceed_the_servers_max_rows(gateway) -> None:
    fill_products(gateway.database_url, 25)
    db = resource(gateway, max_rows=10).get_client()
    pages = list(db.iter_pages("products", "id"))
    assert [len(p) for p in pages] == [10, 10, 5]
    with pytest.raises(ValueError, match="max_rows"):
        next(db.iter_pages("products", page_size=11))


def test_filters_combine_with_keyset_paging(gateway) -> None:
    fill_products(gateway.database_url, 30)
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE products SET sync_status = 'synced' WHERE id IN "
            "(SELECT id FROM products ORDER BY id LIMIT 12)"
        )
    db = resource(gateway).get_client()
    pending = db.read_table(
        "products", "id,sync_status", filters=[("sync_status", "eq", "pending")], page_size=5
    )
    assert len(pending) == 18
    assert {r["sync_status"] for r in pending} == {"pending"}
    assert [r["id"] for r in pending] == product_ids(gateway.database_url)[12:]
    none_synced = db.read_table("products", "id", filters=[("synced_at", "is", None)])
    assert len(none_synced) == 30
    with pytest.raises(ValueError, match="unknown operator 'between'"):
        db.read_table("products", filters=[("price", "between", (1, 2))])


def test_a_bulk_upsert_of_5000_rows_takes_ten_requests(gateway) -> None:
    db = resource(gateway).get_client()
    rows = [
        {"id": str(uuid.uuid4()), "name": f"P{n}", "price": "1.00", "currency": "usd"}
        for n in range(5000)
    ]
    assert db.upsert("products", rows) == 5000
    assert len(db.stats.requests_to("products", "POST")) == 10
    assert len(product_ids(gateway.database_url)) == 5000

    for row in rows:
        row["name"] += " (renamed)"
    db.upsert("products", rows)  # the same rows again: updated in place on the primary key
    assert len(db.stats.requests_to("products", "POST")) == 20
    with psycopg.connect(gateway.database_url) as conn:
        count, renamed = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE name LIKE '%(renamed)') FROM products"
        ).fetchone()
    assert (count, renamed) == (5000, 5000)


def test_upsert_refuses_rows_it_cannot_send_safely(gateway) -> None:
    db = resource(gateway).get_client()
    with pytest.raises(
        ValueError, match=r"row 1 has other columns than row 0 \(missing \['price'\]"
    ):
        db.upsert(
            "products",
            [{"id": str(uuid.uuid4()), "price": "1"}, {"id": str(uuid.uuid4())}],
        )
    with pytest.raises(ValueError, match="row 0 has no value for the conflict column 'id'"):
        db.upsert("products", [{"id": None, "name": "x"}])
    assert db.stats.requests_to("products") == []


def test_numbers_in_jsonb_reach_validation_exactly(gateway) -> None:
    # PostgreSQL keeps a jsonb number's digits (numeric); postgrest-py decodes them as floats,
    # which made Stripe metadata "1.2345678901234567e+19" of a CMS value 12345678901234567890.5.
    metadata = (
        '{"big": 12345678901234567890.5, "ratio": 1.10, "tiny": 0.0000001, "e": 1E+2,'
        ' "neg": -0.50, "int": 123456789012345678901234567890, "dims": {"w": 0.10}}'
    )
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (name, price, currency, metadata) "
            "VALUES ('Exact', '19.99', 'usd', %s::jsonb)",
            [metadata],
        )
    db = resource(gateway).get_client()

    [read] = db.read_table("products", ["id", "name", "price", "currency", "metadata"])

    numbers = read["metadata"]
    # PostgreSQL's text of each number, as real PostgREST sends it (1E+2 is stored as 100).
    assert {k: str(v) for k, v in numbers.items() if k != "dims"} == {
        "big": "12345678901234567890.5",
        "ratio": "1.10",
        "tiny": "0.0000001",
        "e": "100",
        "neg": "-0.50",
        "int": "123456789012345678901234567890",
    }
    assert str(numbers["dims"]["w"]) == "0.10"
    # Still numbers to the rest of the code: floats compare, encode as JSON and feed pandas.
    assert numbers["ratio"] == 1.1 and isinstance(numbers["ratio"], float)
    assert json.loads(json.dumps(read))["metadata"]["ratio"] == 1.1

    # As the supabase_products asset hands the rows to validated_products: a DataFrame, pickled.
    frame = pickle.loads(pickle.dumps(pd.DataFrame([read], dtype=object)))
    nested = validate_products(frame)
    assert nested.invalid.loc[0, "reason"] == (
        'metadata["dims"]: value is an object; Stripe metadata values are strings'
    )
    frame.at[0, "metadata"] = {k: v for k, v in numbers.items() if k != "dims"}
    result = validate_products(frame)
    assert result.invalid.empty, result.invalid.to_dict("records")
    assert result.valid.loc[0, "metadata"] == {
        "big": "12345678901234567890.5",
        "cms_id": read["id"],
        "e": "100",
        "int": "123456789012345678901234567890",
        "neg": "-0.50",
        "ratio": "1.10",
        "tiny": "0.0000001",
    }


def test_update_needs_a_filter_and_sets_the_matching_rows(gateway) -> None:
    fill_products(gateway.database_url, 3)
    first = product_ids(gateway.database_url)[0]
    db = resource(gateway).get_client()
    with pytest.raises(ValueError, match="at least one filter"):
        db.update("products", {"sync_status": "failed"}, [])
    updated = db.update("products", {"sync_status": "failed"}, [("id", "eq", first)])
    assert [r["id"] for r in updated] == [first]


def test_rpc_calls_a_database_function(gateway) -> None:
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stripe_events (event_id, type, payload, created_at) "
            "VALUES ('evt_old', 'product.created', '{}', now() - interval '90 days')"
        )
    db = resource(gateway).get_client()
    assert db.rpc("archive_old_events", {"older_than": "30 days", "batch_size": 100}) == 1
    with pytest.raises(SupabaseError, match="function 'archive_old_events'") as caught:
        db.rpc("archive_old_events", {"older_than": "-1 day"})
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("table", "columns", "status", "message"),
    [
        ("no_such_table", "*", 404, "no table 'no_such_table'"),
        ("products", "id,colour", 400, "rejected the request on table 'products'"),
    ],
)
def test_client_errors_name_the_table_and_are_not_retried(
    gateway, table, columns, status, message
) -> None:
    db = resource(gateway).get_client()
    with pytest.raises(SupabaseError, match=message) as caught:
        db.read_table(table, columns)
    assert caught.value.http_status == status
    assert caught.value.table == table
    assert len(db.stats.requests_to(table)) == 1


def test_a_wrong_key_is_a_401_naming_the_table_without_the_key(gateway) -> None:
    wrong = "eyJwrong.key.value"
    db = resource(gateway, service_role_key=wrong).get_client()
    with pytest.raises(SupabaseError) as caught:
        db.read_table("products")
    assert caught.value.http_status == 401
    assert "table 'products'" in str(caught.value) and "SUPABASE_SERVICE_ROLE_KEY" in str(
        caught.value
    )
    assert wrong not in str(caught.value)
    assert len(db.stats.requests_to("products")) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_errors_are_retried_then_reported() -> None:
    db = SupabaseResource(
        url=f"http://127.0.0.1:{_free_port()}",  # nothing listens there
        service_role_key="k",
        retry_attempts=3,
        retry_initial_delay_s=0.01,
        retry_max_delay_s=0.02,
    ).get_client()
    with pytest.raises(SupabaseError, match=r"'products'.*connection error"):
        db.read_table("products")
    assert db.stats.retries == 2


class _FlakyGateway(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then an empty page."""

    failures = 2
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        status, body = (503, {"message": "busy"}) if self.hits <= self.failures else (200, [])
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


@contextmanager
def flaky_gateway() -> Iterator[tuple[str, type]]:
    handler = type("Handler", (_FlakyGateway,), {"hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_5xx_answers_are_retried() -> None:
    # The gateway never fails by itself, so a scripted server over real HTTP plays a busy one.
    with flaky_gateway() as (url, handler):
        db = SupabaseResource(
            url=url, service_role_key="k", retry_initial_delay_s=0.01, retry_max_delay_s=0.02
        ).get_client()
        assert db.read_table("products") == []
    assert handler.hits == 3
    assert db.stats.retries == 2


def test_the_url_falls_back_to_the_seeds_variable() -> None:
    assert supabase_url_from_env({"SUPABASE_URL": "http://a"}) == dg.EnvVar("SUPABASE_URL")
    assert supabase_url_from_env({"VITE_SUPABASE_URL": "http://b"}) == dg.EnvVar(
        "VITE_SUPABASE_URL"
    )
    assert supabase_url_from_env({}) == dg.EnvVar("SUPABASE_URL")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(url="example.supabase.co"), "http"),
        (dict(service_role_key=""), "SUPABASE_SERVICE_ROLE_KEY"),
        (dict(max_rows=0), "greater than or equal to 1"),
        (dict(retry_initial_delay_s=2, retry_max_delay_s=1), "retry_max_delay_s"),
    ],
)
def test_bad_settings_fail_at_load(settings, message) -> None:
    full = dict(url="http://localhost:54321", service_role_key="secret-key-value")
    full.update(settings)
    with pytest.raises(ValueError, match=message) as caught:
        SupabaseResource(**full)
    assert "secret-key-value" not in str(caught.value)


def test_no_key_in_any_log_output_of_a_run(gateway, caplog, capfd, monkeypatch) -> None:
    fill_products(gateway.database_url, 1500)
    monkeypatch.setenv("SUPABASE_URL", gateway.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", gateway.key)
    caplog.set_level(logging.DEBUG)

    @dg.asset
    def supabase_products(context: dg.AssetExecutionContext, supabase: SupabaseResource):
        context.log.info(f"resource: {supabase!r} / {supabase}")
        db = supabase.get_client()
        rows = db.read_table("products", "id,name")
        db.upsert("products", [{"id": r["id"], "name": r["name"] + "!"} for r in rows[:10]])
        with pytest.raises(SupabaseError):
            db.read_table("no_such_table")
        return dg.MaterializeResult(metadata=supabase.stats_metadata())

    res = SupabaseResource(
        url=supabase_url_from_env(), service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY")
    )
    result = dg.materialize([supabase_products], resources={"supabase": res})
    assert result.success
    metadata = result.asset_materializations_for_node("supabase_products")[0].metadata
    assert metadata["supabase_rows_read"].value == 1500

    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, repr(metadata), repr(res)])
    assert "HTTP Request" in everything  # httpx's request log was captured
    assert gateway.key not in everything
    assert gateway.key.split(".")[-1] not in everything  # not even the signature
