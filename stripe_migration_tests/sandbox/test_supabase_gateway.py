"""The official supabase client against the local gateway over real HTTP: reads and writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client

from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway


def _products(n: int) -> list[dict]:
    return [
        {
            "name": f"product {i:03d}",
            "price": f"{i}.50",
            "currency": "eur" if i % 2 else "usd",
            "stripe_product_id": f"prod_{i:03d}",
            "metadata": {"cms_id": str(i), "tier": "gold" if i % 3 == 0 else "basic"},
            "synced_unit_amount": None if i % 5 == 0 else i * 100,
        }
        for i in range(n)
    ]


def _rest(gateway: SupabaseGateway, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"apikey": gateway.key, "Authorization": f"Bearer {gateway.key}"}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(
        method, f"{gateway.url}/rest/v1/{path}", headers=headers, timeout=10, **kwargs
    )


def test_select_with_filters_order_range_and_count(supabase_client: Client) -> None:
    supabase_client.table("products").insert(_products(30)).execute()

    result = (
        supabase_client.table("products")
        .select("name, currency, synced_unit_amount", count="exact")
        .eq("currency", "eur")
        .gte("synced_unit_amount", 500)
        .order("synced_unit_amount", desc=True, nullsfirst=False)
        .range(2, 5)
        .execute()
    )
    eur_from_5 = sorted((i for i in range(30) if i % 2 and i % 5 and i * 100 >= 500), reverse=True)
    assert result.count == len(eur_from_5)
    assert [row["name"] for row in result.data] == [f"product {i:03d}" for i in eur_from_5[2:6]]
    assert set(result.data[0]) == {"name", "currency", "synced_unit_amount"}

    combined = (
        supabase_client.table("products")
        .select("stripe_product_id")
        .in_("stripe_product_id", ["prod_001", "prod_002", "prod_003", "prod_nope"])
        .neq("stripe_product_id", "prod_002")
        .order("stripe_product_id")
        .execute()
    )
    assert [r["stripe_product_id"] for r in combined.data] == ["prod_001", "prod_003"]

    nulls = supabase_client.table("products").select("name").is_("synced_unit_amount", None)
    assert len(nulls.execute().data) == 6
    not_null = supabase_client.table("products").select("name").not_.is_("synced_unit_amount", None)
    assert len(not_null.execute().data) == 24

    either = (
        supabase_client.table("products")
        .select("stripe_product_id")
        .or_("stripe_product_id.eq.prod_007,and(currency.eq.usd,name.like.*02*)")
        .order("stripe_product_id")
        .execute()
    )
    assert [r["stripe_product_id"] for r in either.data] == [
        "prod_002",
        "prod_007",
        "prod_020",
        "prod_022",
        "prod_024",
        "prod_026",
        "prod_028",
    ]

    contained = (
        supabase_client.table("products").select("name").contains("metadata", {"cms_id": "7"})
    )
    assert contained.execute().data == [{"name": "product 007"}]

    pattern = supabase_client.table("products").select("name").ilike("name", "PRODUCT 01%")
    assert len(pattern.execute().data) == 10

    gold = (
        supabase_client.table("products")
        .select("cms_id:metadata->>cms_id")
        .eq("metadata->>tier", "gold")
        .lt("synced_unit_amount", 1000)
        .order("synced_unit_amount")
        .execute()
    )
    assert gold.data == [{"cms_id": "3"}, {"cms_id": "6"}, {"cms_id": "9"}]


def test_count_and_range_headers_follow_postgrest(
    gateway: SupabaseGateway, supabase_client: Client
) -> None:
    supabase_client.table("products").insert(_products(12)).execute()

    partial = _rest(
        gateway,
        "GET",
        "products?select=name&order=name",
        headers={"Prefer": "count=exact", "Range": "0-4"},
    )
    assert partial.status_code == 206
    assert partial.headers["content-range"] == "0-4/12"
    assert len(partial.json()) == 5

    whole = _rest(gateway, "GET", "products?select=name", headers={"Prefer": "count=exact"})
    assert (whole.status_code, whole.headers["content-range"]) == (200, "0-11/12")

    uncounted = _rest(gateway, "GET", "products?select=name&limit=3&offset=10")
    assert (uncounted.status_code, uncounted.headers["content-range"]) == (200, "10-11/*")

    beyond = _rest(
        gateway, "GET", "products?select=name&offset=20", headers={"Prefer": "count=exact"}
    )
    assert beyond.status_code == 416
    assert beyond.json()["code"] == "PGRST103"

    head = _rest(gateway, "HEAD", "products", headers={"Prefer": "count=exact"})
    assert head.headers["content-range"] == "0-11/12" and head.content == b""


def test_single_and_maybe_single(supabase_client: Client) -> None:
    supabase_client.table("products").insert(_products(3)).execute()
    table = supabase_client.table("products")

    one = table.select("name").eq("stripe_product_id", "prod_001").single().execute()
    assert one.data == {"name": "product 001"}

    assert table.select("name").eq("stripe_product_id", "nope").maybe_single().execute() is None

    for query in (
        table.select("name").eq("stripe_product_id", "nope").single(),
        table.select("name").single(),
    ):
        with pytest.raises(APIError) as info:
            query.execute()
        assert info.value.code == "PGRST116"


def test_bulk_insert_serialises_like_postgrest(
    gateway: SupabaseGateway, supabase_client: Client
) -> None:
    rows = _products(500)
    result = supabase_client.table("products").insert(rows).execute()

    assert len(result.data) == 500
    first = result.data[0]
    assert first["metadata"] == {"cms_id": "0", "tier": "gold"}
    assert first["images"] == [] and first["active"] is True
    assert result.data[1]["synced_unit_amount"] == 100
    created = datetime.fromisoformat(first["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert first["created_at"].endswith("+00:00")
    with psycopg.connect(gateway.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (500,)


def test_bulk_insert_with_differing_keys(supabase_client: Client) -> None:
    rows = [{"name": "a", "images": ["https://x/a.png"]}, {"name": "b", "price": "1,50"}]

    # default_to_null=False sends Prefer: missing=default, so b's images take the column default.
    inserted = supabase_client.table("products").insert(rows, default_to_null=False).execute()
    by_name = {r["name"]: r for r in inserted.data}
    assert by_name["a"]["images"] == ["https://x/a.png"] and by_name["a"]["price"] is None
    assert by_name["b"]["images"] == [] and by_name["b"]["price"] == "1,50"

    # Without it missing keys are NULL, and images is NOT NULL: PostgREST answers 23502 (400).
    with pytest.raises(APIError) as info:
        supabase_client.table("products").insert(rows).execute()
    assert info.value.code == "23502"


def test_upsert_on_conflict(gateway: SupabaseGateway, supabase_client: Client) -> None:
    table = supabase_client.table("products")
    table.insert(_products(3)).execute()

    merged = table.upsert(
        [
            {"stripe_product_id": "prod_001", "name": "renamed"},
            {"stripe_product_id": "prod_new", "name": "new"},
        ],
        on_conflict="stripe_product_id",
    ).execute()
    assert sorted(r["name"] for r in merged.data) == ["new", "renamed"]
    kept = table.select("price").eq("stripe_product_id", "prod_001").single().execute()
    assert kept.data == {"price": "1.50"}  # merge updates only the columns sent

    ignored = table.upsert(
        [{"stripe_product_id": "prod_002", "name": "ignored"}],
        on_conflict="stripe_product_id",
        ignore_duplicates=True,
    ).execute()
    assert ignored.data == []
    assert table.select("name").eq("stripe_product_id", "prod_002").execute().data == [
        {"name": "product 002"}
    ]

    # Upserting only existing rows inserts nothing: PostgREST then answers 200, not 201.
    response = _rest(
        gateway,
        "POST",
        "products?on_conflict=stripe_product_id",
        json=[{"stripe_product_id": "prod_000", "name": "again"}],
        headers={"Prefer": "resolution=merge-duplicates,return=minimal"},
    )
    assert response.status_code == 200 and response.content == b""
    assert table.select("name", count="exact").execute().count == 4


def test_update_with_filters(supabase_client: Client) -> None:
    table = supabase_client.table("products")
    table.insert(_products(10)).execute()

    updated = (
        table.update({"sync_status": "synced", "metadata": {"synced": True}})
        .lt("synced_unit_amount", 400)
        .execute()
    )
    assert sorted(r["stripe_product_id"] for r in updated.data) == [
        "prod_001",
        "prod_002",
        "prod_003",
    ]
    assert all(r["metadata"] == {"synced": True} for r in updated.data)
    synced = table.select("stripe_product_id", count="exact").eq("sync_status", "synced").execute()
    assert synced.count == 3

    with pytest.raises(APIError) as info:
        table.update({"name": "everything"}).execute()
    assert info.value.code == "21000"  # Supabase's pg-safeupdate: no filter, no update

    # max_affected (handling=strict): more rows than allowed rolls the whole update back.
    with pytest.raises(APIError) as info:
        table.update({"sync_status": "failed"}).eq("sync_status", "synced").max_affected(
            2
        ).execute()
    assert info.value.code == "PGRST124"
    assert table.select("id", count="exact").eq("sync_status", "failed").execute().count == 0


def test_delete_with_filters(supabase_client: Client) -> None:
    table = supabase_client.table("products")
    table.insert(_products(10)).execute()

    deleted = table.delete().eq("currency", "usd").execute()
    assert len(deleted.data) == 5
    minimal = table.delete(returning="minimal").eq("stripe_product_id", "prod_001").execute()
    assert minimal.data == []
    assert table.select("id", count="exact").execute().count == 4

    with pytest.raises(APIError) as info:
        table.delete().execute()
    assert info.value.code == "21000"


def test_rpc_archive_old_events(gateway: SupabaseGateway, supabase_client: Client) -> None:
    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    recent = datetime.now(UTC).isoformat()
    events = [
        {"event_id": f"evt_{i}", "type": "product.updated", "payload": {"n": i}, "created_at": ts}
        for i, ts in enumerate([old, old, old, recent])
    ]
    supabase_client.table("stripe_events").insert(events).execute()
    supabase_client.table("stripe_event_processing").insert(
        {"event_id": "evt_0", "attempt_number": 1, "status": "failed", "error_message": "boom"}
    ).execute()

    first = supabase_client.rpc("archive_old_events", {"older_than": "30 days", "batch_size": 2})
    assert first.execute().data == 2
    assert supabase_client.rpc("archive_old_events", {"older_than": "30 days"}).execute().data == 1
    assert supabase_client.rpc("archive_old_events", {"older_than": "30 days"}).execute().data == 0

    archived = (
        supabase_client.table("stripe_events_archive")
        .select("event_id, processing_history")
        .order("event_id")
        .execute()
    )
    assert [r["event_id"] for r in archived.data] == ["evt_0", "evt_1", "evt_2"]
    assert archived.data[0]["processing_history"][0]["error_message"] == "boom"
    remaining = supabase_client.table("stripe_events").select("event_id").execute()
    assert remaining.data == [{"event_id": "evt_3"}]

    with pytest.raises(APIError) as info:
        supabase_client.rpc("archive_old_events", {"older_than": "-1 day"}).execute()
    assert info.value.code == "P0001"  # RAISE EXCEPTION: PostgREST answers 400
    with pytest.raises(APIError) as info:
        supabase_client.rpc("archive_old_events", {"age": "1 day"}).execute()
    assert info.value.code == "PGRST202"


def test_return_minimal_and_headers(gateway: SupabaseGateway, supabase_client: Client) -> None:
    minimal = supabase_client.table("products").insert(_products(2), returning="minimal")
    assert minimal.execute().data == []

    response = _rest(
        gateway,
        "POST",
        "products",
        json={"name": "located"},
        headers={"Prefer": "return=headers-only,count=exact"},
    )
    assert response.status_code == 201 and response.content == b""
    assert response.headers["content-range"] == "*/1"
    assert response.headers["location"].startswith("/products?id=eq.")
    row_id = response.headers["location"].rsplit(".", 1)[1]
    fetched = supabase_client.table("products").select("name").eq("id", row_id).single()
    assert fetched.execute().data == {"name": "located"}
