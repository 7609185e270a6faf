"""Full-text search, range operators, CSV, PUT and limited PATCH/DELETE, with the official client.

They run on the geography schema of ``test_supabase_gateway_geo`` (articles with a tsvector
column, bookings with an int4range column), in a database of this module's own.
"""

from __future__ import annotations

import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client

from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway
from stripe_migration_tests.sandbox.test_supabase_gateway_geo import geo_fixtures, rest

geo_gateway_fixture, geo_fixture = geo_fixtures("gateway_geo_features")


def _ids(query) -> list[int]:
    return sorted(row["id"] for row in query.execute().data)


def _error(query) -> APIError:
    with pytest.raises(APIError) as info:
        query.execute()
    return info.value


def _rows(gateway: SupabaseGateway, query: str) -> list[tuple]:
    with psycopg.connect(gateway.database_url) as conn:
        return conn.execute(query).fetchall()


def test_full_text_search(geo: Client) -> None:
    articles = geo.table("articles").select("id")
    # tsvector column, to_tsquery syntax, then each flavour through text_search's options.
    assert _ids(articles.fts("document", "cat & dog")) == [1]
    assert _ids(geo.table("articles").select("id").text_search("document", "rat | tomato")) == [
        2,
        3,
    ]
    plain = (
        geo.table("articles")
        .select("id")
        .text_search("document", "fat rats", {"type": "plain", "config": "english"})
    )
    assert _ids(plain) == [2]
    phrase = (
        geo.table("articles")
        .select("id")
        .text_search("document", "big city", {"type": "phrase", "config": "english"})
    )
    assert _ids(phrase) == [2]
    assert _ids(geo.table("articles").select("id").phfts("document", "city big")) == []
    web = (
        geo.table("articles")
        .select("id")
        .text_search(
            "document", '"big city" or tomatoes -cats', {"type": "web_search", "config": "english"}
        )
    )
    assert _ids(web) == [2]
    # A text column goes through to_tsvector (PostgREST 13), with the language given.
    assert _ids(geo.table("articles").select("id").fts("body", "garden")) == [1]
    assert _ids(geo.table("articles").select("id").plfts("title", "gardening")) == [3]
    english = geo.table("articles").select("id").filter("body", "wfts(english)", "gardens")
    assert _ids(english) == [1]
    assert _ids(geo.table("articles").select("id").not_.fts("document", "cat")) == [2]

    error = _error(geo.table("articles").select("id").filter("body", "fts(klingon)", "x"))
    assert error.code == "42704"  # text search configuration "klingon" does not exist


def test_range_operators(geo: Client) -> None:
    def booked(method: str, bounds: tuple[int, int]) -> list[int]:
        return _ids(getattr(geo.table("bookings").select("id"), method)("nights", bounds))

    # The client sends exclusive bounds: (4,10) is [5,10).
    assert booked("range_lt", (4, 10)) == [1]  # sl: strictly left of
    assert booked("range_gt", (4, 10)) == [3]  # sr: strictly right of
    assert booked("range_gte", (4, 10)) == [3]  # nxl: does not extend to the left of
    assert booked("range_lte", (4, 10)) == [1, 2]  # nxr: does not extend to the right of
    assert booked("range_adjacent", (5, 10)) == [2, 3]  # adj: [6,10) touches [4,6) and [10,20)
    overlapping = geo.table("bookings").select("id").ov("nights", "[3,5)")
    assert _ids(overlapping) == [1, 2]
    contains = geo.table("bookings").select("id").contains("nights", "[11,12]")
    assert _ids(contains) == [3]

    error = _error(geo.table("bookings").select("id").filter("nights", "sl", "(1,x)"))
    assert error.code == "22P02"  # malformed range literal


def test_csv_output(geo_gateway: SupabaseGateway, geo: Client) -> None:
    geo.table("cities").insert(
        {"id": 9, "name": 'Saint-"Quote", Town', "population": None, "country_id": 1}
    ).execute()
    text = (
        geo.table("cities").select("id, name, population").in_("id", [1, 9]).order("id").csv()
    ).execute()
    # PostgREST's CSV: a header, then records quoted as PostgreSQL writes them, nulls empty.
    assert text.data == 'id,name,population\n1,Paris,2100000\n9,"Saint-""Quote"", Town",'

    response = rest(
        geo_gateway,
        "GET",
        "countries?select=name,cities(name)&id=eq.3",
        headers={"Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text == 'name,cities\nIceland,"[{""name"": ""Reykjavik""}]"'

    empty = rest(geo_gateway, "GET", "cities?id=eq.0", headers={"Accept": "text/csv"})
    assert (empty.status_code, empty.text) == (200, "\n")
    deleted = rest(
        geo_gateway,
        "DELETE",
        "cities?id=eq.9&select=id,name",
        headers={"Accept": "text/csv", "Prefer": "return=representation"},
    )
    assert deleted.text == 'id,name\n9,"Saint-""Quote"", Town"'

    # Function results too; embedding on them is not supported (PGRST200, PGRST108).
    big = geo.rpc("big_cities", {"least_people": 2500000}).select("name").order("name").csv()
    assert big.execute().data == "name\nOsaka\nTokyo"
    embedded = geo.rpc("big_cities", {"least_people": 0}).select("name, countries(name)")
    assert _error(embedded).code == "PGRST200"
    ordered = geo.rpc("big_cities", {"least_people": 0}).order("name", foreign_table="countries")
    assert _error(ordered).code == "PGRST108"


def test_put_upserts_one_row_by_primary_key(geo_gateway: SupabaseGateway) -> None:
    def put(query: str, body, prefer: str = "return=representation", **headers):
        return rest(
            geo_gateway,
            "PUT",
            f"countries?{query}",
            json=body,
            headers={"Prefer": prefer, **headers},
        )

    created = put("id=eq.5", {"id": 5, "name": "Chile", "continent_id": None})
    assert created.status_code == 201
    assert created.json() == [{"id": 5, "name": "Chile", "continent_id": None}]
    replaced = put("id=eq.5", [{"id": 5, "name": "Chili"}, {"id": 6, "name": "Skipped"}])
    assert replaced.status_code == 200  # only the row the key names is upserted
    assert replaced.json() == [{"id": 5, "name": "Chili", "continent_id": None}]
    minimal = put("id=eq.3", {"id": 3, "name": "Island"}, prefer="return=minimal")
    assert (minimal.status_code, minimal.content) == (204, b"")
    single = put(
        "id=eq.3",
        {"id": 3, "name": "Iceland"},
        Accept="application/vnd.pgrst.object+json",
    )
    assert single.json() == {"id": 3, "name": "Iceland", "continent_id": 1}
    assert _rows(
        geo_gateway, "SELECT id, name FROM countries WHERE id IN (3, 5, 6) ORDER BY id"
    ) == [
        (3, "Iceland"),
        (5, "Chili"),
    ]
    # A composite primary key: every column must be filtered.
    spoken = rest(
        geo_gateway,
        "PUT",
        "spoken?country_id=eq.5&language_id=eq.4",
        json={"country_id": 5, "language_id": 4},
    )
    assert spoken.status_code == 204

    refused = [
        ("id=eq.7", {"id": 8, "name": "Peru"}, 400, "PGRST115"),
        ("id=eq.7", {"name": "Peru"}, 400, "PGRST115"),
        ("name=eq.Peru", {"id": 7, "name": "Peru"}, 405, "PGRST105"),
        ("id=eq.7&name=eq.Peru", {"id": 7, "name": "Peru"}, 405, "PGRST105"),
        ("id=gte.7", {"id": 7, "name": "Peru"}, 405, "PGRST105"),
        ("id=not.eq.7", {"id": 7, "name": "Peru"}, 405, "PGRST105"),
        ("or=(id.eq.7)", {"id": 7, "name": "Peru"}, 405, "PGRST105"),
        ("id=eq.7&limit=1", {"id": 7, "name": "Peru"}, 400, "PGRST114"),
    ]
    for query, body, status, code in refused:
        response = put(query, body)
        assert (response.status_code, response.json()["code"]) == (status, code), query
    assert put("id=eq.7", {"id": 8, "name": "Peru"}).json()["message"] == (
        "Payload values do not match URL in primary key column(s)"
    )
    assert _rows(geo_gateway, "SELECT count(*) FROM countries WHERE id >= 7") == [(0,)]
    half_key = rest(
        geo_gateway, "PUT", "spoken?country_id=eq.5", json={"country_id": 5, "language_id": 1}
    )
    assert half_key.json()["code"] == "PGRST105"


def test_limited_delete_and_update(geo_gateway: SupabaseGateway, geo: Client) -> None:
    deleted = geo.table("cities").delete().eq("country_id", 1).order("id", desc=True).limit(2)
    assert sorted(row["name"] for row in deleted.execute().data) == ["Lyon", "Nice"]
    assert _rows(geo_gateway, "SELECT id FROM cities WHERE country_id = 1") == [(1,)]

    # No filter at all is allowed when limited (the statement still has a WHERE clause).
    updated = geo.table("cities").update({"population": 0}).order("population").limit(1).execute()
    assert [row["name"] for row in updated.data] == ["Reykjavik"]
    offset = rest(
        geo_gateway,
        "PATCH",
        "cities?order=id&limit=1&offset=1",
        json={"population": 1},
        headers={"Prefer": "return=representation"},
    )
    assert [row["name"] for row in offset.json()] == ["Tokyo"]

    # Without an order: PGRST109; ordered by a column that is not unique: PGRST110, rolled back.
    unordered = rest(geo_gateway, "DELETE", "cities?limit=1")
    assert unordered.status_code == 400
    assert unordered.json() == {
        "code": "PGRST109",
        "details": None,
        "hint": "Apply an 'order' using unique column(s)",
        "message": "A 'limit' was applied without an explicit 'order'",
    }
    error = _error(geo.table("bookings").delete().order("room").limit(1))
    assert (error.code, error.details) == (
        "PGRST110",
        "Results contain 2 rows changed but the maximum number allowed is 1",
    )
    error = _error(
        geo.table("cities").update({"name": "x"}).gte("id", 4).order("country_id").limit(1)
    )
    assert error.code == "PGRST110"
    assert _rows(geo_gateway, "SELECT count(*) FROM cities WHERE name = 'x'") == [(0,)]
    assert _rows(geo_gateway, "SELECT count(*) FROM cities") == [(4,)]
    assert _rows(geo_gateway, "SELECT count(*) FROM bookings") == [(3,)]
