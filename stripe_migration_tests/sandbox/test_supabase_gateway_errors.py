"""The gateway's errors: PostgREST's codes and statuses, auth, and hostile input."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client, create_client

from stripe_migration.sandbox.supabase_gateway import make_service_role_key, start_gateway
from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway


def _rest(gateway: SupabaseGateway, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"apikey": gateway.key, "Authorization": f"Bearer {gateway.key}"}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(
        method, f"{gateway.url}/rest/v1/{path}", headers=headers, timeout=10, **kwargs
    )


def _api_error(query) -> APIError:
    with pytest.raises(APIError) as info:
        query.execute()
    return info.value


def test_database_errors_map_to_postgrest_statuses(
    gateway: SupabaseGateway, supabase_client: Client
) -> None:
    products = supabase_client.table("products")
    products.insert({"name": "a", "stripe_product_id": "prod_a"}).execute()

    cases = [
        # (client call, code, status of the same request sent with httpx)
        (
            products.insert({"stripe_product_id": "prod_a"}),
            "23505",
            ("POST", "products", {"json": {"stripe_product_id": "prod_a"}}),
            409,
        ),
        (
            supabase_client.table("stripe_event_processing").insert(
                {"event_id": "evt_missing", "attempt_number": 1}
            ),
            "23503",
            (
                "POST",
                "stripe_event_processing",
                {"json": {"event_id": "evt_missing", "attempt_number": 1}},
            ),
            409,
        ),
        (
            products.insert({"sync_status": "bogus"}),
            "23514",
            ("POST", "products", {"json": {"sync_status": "bogus"}}),
            400,
        ),
        (
            products.insert({"active": None}),
            "23502",
            ("POST", "products", {"json": {"active": None}}),
            400,
        ),
        (
            products.select("*").eq("id", "not-a-uuid"),
            "22P02",
            ("GET", "products?id=eq.not-a-uuid", {}),
            400,
        ),
        (
            products.select("nope"),
            "42703",
            ("GET", "products?select=nope", {}),
            400,
        ),
        (
            products.insert({"nope": 1}),
            "PGRST204",
            ("POST", "products", {"json": {"nope": 1}}),
            400,
        ),
        (
            supabase_client.table("no_such_table").select("*"),
            "PGRST205",
            ("GET", "no_such_table", {}),
            404,
        ),
        (
            products.select("name").eq("name", "zzz").single(),
            "PGRST116",
            (
                "GET",
                "products?name=eq.zzz",
                {"headers": {"Accept": "application/vnd.pgrst.object+json"}},
            ),
            406,
        ),
        (
            products.select("name, prices(*)"),
            "PGRST200",
            ("GET", "products?select=name,prices(*)", {}),
            400,
        ),
    ]
    for query, code, (method, path, kwargs), status in cases:
        error = _api_error(query)
        assert error.code == code, (code, error.message)
        assert error.message
        response = _rest(gateway, method, path, **kwargs)
        assert response.status_code == status, (code, response.text)
        assert set(response.json()) == {"code", "message", "details", "hint"}
        assert response.json()["code"] == code

    suggestion = _rest(gateway, "GET", "product").json()
    assert suggestion["hint"] == "Perhaps you meant the table 'public.products'"


def test_auth_needs_the_service_role_key(gateway: SupabaseGateway) -> None:
    wrong = create_client(gateway.url, gateway.key + "x")
    try:
        error = _api_error(wrong.table("products").select("*"))
        assert error.message == "Invalid API key"
    finally:
        wrong.postgrest.aclose()

    url = f"{gateway.url}/rest/v1/products"
    missing = httpx.get(url, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["message"] == "No API key found in request"

    bad_bearer = httpx.get(
        url, headers={"apikey": gateway.key, "Authorization": "Bearer nope"}, timeout=10
    )
    assert bad_bearer.status_code == 401
    assert bad_bearer.json()["code"] == "PGRST301"
    assert "WWW-Authenticate" in bad_bearer.headers

    no_bearer = httpx.get(url, headers={"apikey": gateway.key}, timeout=10)
    assert no_bearer.status_code == 401

    ok = httpx.get(
        url, headers={"apikey": gateway.key, "Authorization": f"Bearer {gateway.key}"}, timeout=10
    )
    assert ok.status_code == 200


HOSTILE_REQUESTS = [
    ("GET", "products?name;DROP TABLE products;--=eq.x", None, 400),
    ("GET", 'products?select=name,"x"";DROP TABLE products;--"', None, 400),
    ("GET", "products?select=name);DROP TABLE products;--", None, 400),
    ("GET", "products?order=name;DROP TABLE products", None, 400),
    ("GET", "products?order=name.desc;DROP", None, 400),
    ("GET", "products?name=eq;DROP TABLE products.x", None, 400),
    ("GET", "products?or=(name.eq.x);DROP TABLE products;--", None, 400),
    ("GET", "products?or=(name.eq.x,id.eq.1 OR 1=1)", None, 400),
    ("GET", "products?metadata->>a'||pg_sleep(5)||'=eq.x", None, 400),
    ("GET", "products?select=name::text;drop", None, 400),
    ("GET", "products?select=name::regclass", None, 400),
    ("GET", "products?limit=1;DROP", None, 400),
    ("GET", "products?name=in.(a,b", None, 400),
    ("GET", "products?name=is.DROP", None, 400),
    ("POST", "products", {'name"); DROP TABLE products;--': "x"}, 400),
    ("POST", 'products?columns=name,"x;DROP"', [{"name": "x"}], 400),
    ("POST", "products?on_conflict=id);DROP TABLE products;--", [{"name": "x"}], 400),
    ("PATCH", "products?name=eq.a", {"name; DROP TABLE products": "x"}, 400),
    ("GET", "products;DROP TABLE products", None, 404),
    ("POST", "rpc/archive_old_events", {"older_than); DROP TABLE products;--": "1 day"}, 404),
]


def test_hostile_identifiers_and_filters_are_refused(
    gateway: SupabaseGateway, supabase_client: Client
) -> None:
    supabase_client.table("products").insert({"name": "a"}).execute()

    for method, path, body, status in HOSTILE_REQUESTS:
        response = _rest(gateway, method, path, json=body)
        assert response.status_code == status, (path, response.text)
        assert response.json()["code"]

    # A hostile *value* is just a value: bound, compared, no match.
    values = (
        supabase_client.table("products").select("name").eq("name", "a'; DROP TABLE products;--")
    )
    assert values.execute().data == []
    # Through the official client too: the column name is refused, never executed.
    error = _api_error(
        supabase_client.table("products").select("*").eq("name;DROP TABLE products", "x")
    )
    assert error.code == "PGRST100"

    with psycopg.connect(gateway.database_url) as conn:
        assert conn.execute("SELECT name FROM products").fetchall() == [("a",)]


def test_bad_requests_are_400_not_500(gateway: SupabaseGateway) -> None:
    cases = [
        (
            "POST",
            "products",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "PGRST102",
        ),
        ("POST", "products", {"json": [{"name": "a"}, {"price": "1"}]}, 400, "PGRST102"),
        ("POST", "products", {"json": [1, 2]}, 400, "PGRST102"),
        ("GET", "products?name=zz.x", {}, 400, "PGRST100"),
        ("GET", "products?limit=-1", {}, 416, "PGRST103"),
        ("GET", "products", {"headers": {"Range": "5-2"}}, 416, "PGRST103"),
        ("GET", "products", {"headers": {"Accept": "text/html"}}, 406, "PGRST107"),
        (
            "POST",
            "rpc/archive_old_events",
            {"json": {"older_than": "1 day"}, "headers": {"Accept": "text/csv"}},
            406,
            "PGRST107",
        ),
        ("GET", "products", {"headers": {"Accept-Profile": "private"}}, 406, "PGRST106"),
        ("GET", "products?prices.limit=1", {}, 400, "PGRST108"),
        ("GET", "products?select=count()", {}, 400, "PGRST123"),
        ("GET", "products?id=like.a%25", {}, 404, "42883"),
        (
            "POST",
            "products",
            {"content": b"name=x", "headers": {"Content-Type": "text/plain"}},
            415,
            "PGRST107",
        ),
        ("PUT", "products?name=eq.1", {"json": {}}, 405, "PGRST105"),
        ("GET", "products", {"headers": {"Prefer": "handling=strict,bogus=1"}}, 400, "PGRST122"),
    ]
    for method, path, kwargs, status, code in cases:
        response = _rest(gateway, method, path, **kwargs)
        assert (response.status_code, response.json()["code"]) == (status, code), (
            path,
            response.text,
        )


def test_secrets_stay_out_of_argv_and_errors(
    supabase_gateway: SupabaseGateway, tmp_path: Path
) -> None:
    cmdline = Path(f"/proc/{supabase_gateway.process.pid}/cmdline")
    if cmdline.exists():
        argv = cmdline.read_bytes().decode()
        assert supabase_gateway.key not in argv
        assert supabase_gateway.database_url not in argv
    assert supabase_gateway.key not in repr(supabase_gateway)

    key = make_service_role_key()
    with pytest.raises(RuntimeError) as info:
        start_gateway(
            "postgresql://postgres:hunter2@/nodb?host=/nonexistent",
            key,
            log_path=tmp_path / "gateway.log",
        )
    message = str(info.value)
    assert "No such file or directory" in message  # the cause is reported...
    assert "hunter2" not in message and key not in message  # ...without the secrets
