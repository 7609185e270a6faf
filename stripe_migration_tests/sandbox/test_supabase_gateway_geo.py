"""Resource embedding through foreign keys, with the official client, on a schema of this module's own.

Countries, cities, continents, languages (many-to-many), flags (one-to-one), trips (two foreign keys
to cities: ambiguous) and employees (self-referencing) live in a private database served by a
private gateway; ``geo_fixtures`` gives the other feature tests the same schema in a database of
their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client, create_client

from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration.sandbox.supabase_gateway import make_service_role_key, start_gateway
from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway

SCHEMA = """
CREATE TABLE continents (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE countries (
    id int PRIMARY KEY, name text NOT NULL UNIQUE, continent_id int REFERENCES continents (id)
);
CREATE TABLE cities (
    id int PRIMARY KEY, name text NOT NULL, population int,
    country_id int NOT NULL CONSTRAINT cities_country_fkey REFERENCES countries (id)
);
CREATE TABLE flags (country_id int PRIMARY KEY REFERENCES countries (id), colors text NOT NULL);
CREATE TABLE languages (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE spoken (
    country_id int REFERENCES countries (id), language_id int REFERENCES languages (id),
    PRIMARY KEY (country_id, language_id)
);
CREATE TABLE trips (
    id int PRIMARY KEY,
    from_city int NOT NULL CONSTRAINT trips_from_fkey REFERENCES cities (id),
    to_city int NOT NULL CONSTRAINT trips_to_fkey REFERENCES cities (id)
);
CREATE TABLE employees (id int PRIMARY KEY, name text, boss_id int REFERENCES employees (id));
CREATE TABLE articles (
    id int PRIMARY KEY, title text NOT NULL, body text NOT NULL,
    document tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED
);
CREATE TABLE bookings (id int PRIMARY KEY, room text NOT NULL, nights int4range NOT NULL);
CREATE FUNCTION big_cities(least_people int) RETURNS SETOF cities
LANGUAGE sql STABLE AS $$ SELECT * FROM cities WHERE population >= least_people $$;
"""
DATA = """
INSERT INTO continents VALUES (1, 'Europe'), (2, 'Asia');
INSERT INTO countries VALUES (1, 'France', 1), (2, 'Japan', 2), (3, 'Iceland', 1), (4, 'Nowhere', NULL);
INSERT INTO cities VALUES (1, 'Paris', 2100000, 1), (2, 'Lyon', 520000, 1), (3, 'Nice', 340000, 1),
    (4, 'Tokyo', 14000000, 2), (5, 'Osaka', 2700000, 2), (6, 'Reykjavik', 140000, 3);
INSERT INTO flags VALUES (1, 'blue white red'), (2, 'white red');
INSERT INTO languages VALUES (1, 'French'), (2, 'Japanese'), (3, 'Icelandic'), (4, 'English');
INSERT INTO spoken VALUES (1, 1), (2, 2), (3, 3), (3, 4);
INSERT INTO trips VALUES (1, 1, 4), (2, 4, 6);
INSERT INTO employees VALUES (1, 'ada', NULL), (2, 'bob', 1), (3, 'cy', 1), (4, 'di', 2);
INSERT INTO articles (id, title, body) VALUES
    (1, 'Cats and dogs', 'The cat chased the dog around the garden'),
    (2, 'Fat rats', 'Rats are getting fatter in the big city'),
    (3, 'Gardening', 'How to grow tomatoes, cats permitting');
INSERT INTO bookings VALUES (1, 'blue', '[1,4)'), (2, 'blue', '[4,6)'), (3, 'red', '[10,20)');
"""
TABLES = (
    "continents, countries, cities, flags, languages, spoken, trips, employees, articles, bookings"
)


def geo_fixtures(database: str) -> tuple[Any, Any]:
    """Fixtures ``geo_gateway`` (a gateway over a new database ``database`` holding ``SCHEMA``,
    for the module) and ``geo`` (a client, after ``DATA`` is loaded afresh, for each test)."""

    @pytest.fixture(scope="module", name="geo_gateway")
    def gateway_fixture(
        pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[SupabaseGateway]:
        url = pg_server.create_database(database)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        key = make_service_role_key()
        log_path = tmp_path_factory.mktemp(database) / "gateway.log"
        process = start_gateway(url, key, log_path=log_path)
        try:
            yield SupabaseGateway(process.url, key, url, process)
        finally:
            process.stop()
            pg_server.drop_database(database)

    @pytest.fixture(name="geo")
    def client_fixture(geo_gateway: SupabaseGateway) -> Iterator[Client]:
        with psycopg.connect(geo_gateway.database_url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TABLES}")
            conn.execute(DATA)
        client = create_client(geo_gateway.url, geo_gateway.key)
        try:
            yield client
        finally:
            client.postgrest.aclose()

    return gateway_fixture, client_fixture


def rest(gateway: SupabaseGateway, method: str, path: str, **kwargs) -> httpx.Response:
    """A raw request to the gateway's ``/rest/v1`` with the service role key."""
    headers = {"apikey": gateway.key, "Authorization": f"Bearer {gateway.key}"}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(
        method, f"{gateway.url}/rest/v1/{path}", headers=headers, timeout=10, **kwargs
    )


geo_gateway_fixture, geo_fixture = geo_fixtures("gateway_geo_embedding")


def _error(query) -> APIError:
    with pytest.raises(APIError) as info:
        query.execute()
    return info.value


def test_one_to_many_and_many_to_one_embeds(geo: Client) -> None:
    countries = (
        geo.table("countries").select("name, cities(name)").order("id").limit(3).execute().data
    )
    assert countries == [
        {"name": "France", "cities": [{"name": "Paris"}, {"name": "Lyon"}, {"name": "Nice"}]},
        {"name": "Japan", "cities": [{"name": "Tokyo"}, {"name": "Osaka"}]},
        {"name": "Iceland", "cities": [{"name": "Reykjavik"}]},
    ]
    nowhere = geo.table("countries").select("name, cities(*)").eq("id", 4).execute().data
    assert nowhere == [{"name": "Nowhere", "cities": []}]  # coalesce(..., '[]')

    cities = geo.table("cities").select("name, country:countries(name)").in_("id", [1, 6])
    assert cities.order("id").execute().data == [
        {"name": "Paris", "country": {"name": "France"}},
        {"name": "Reykjavik", "country": {"name": "Iceland"}},
    ]
    # Many-to-one whose foreign key is null: the object is null.
    continent = geo.table("countries").select("name, continents(name)").eq("id", 4).execute()
    assert continent.data == [{"name": "Nowhere", "continents": None}]

    nested = geo.table("continents").select("name, countries(name, cities(name))").eq("id", 2)
    assert nested.execute().data == [
        {
            "name": "Asia",
            "countries": [{"name": "Japan", "cities": [{"name": "Tokyo"}, {"name": "Osaka"}]}],
        }
    ]
    # The foreign key's name or column can name the relationship instead of the table.
    by_column = geo.table("cities").select("name, country_id(name)").eq("id", 5).execute()
    assert by_column.data == [{"name": "Osaka", "country_id": {"name": "Japan"}}]
    by_constraint = geo.table("countries").select("cities_country_fkey(name)").eq("id", 3)
    assert by_constraint.execute().data == [{"cities_country_fkey": [{"name": "Reykjavik"}]}]


def test_embedded_filters_order_limit_and_inner(geo: Client) -> None:
    countries = (
        geo.table("countries")
        .select("name, cities(name, population)")
        .gt("cities.population", 500000)
        .order("population", desc=True, foreign_table="cities")
        .limit(1, foreign_table="cities")
        .order("id")
        .execute()
    )
    assert countries.data == [
        {"name": "France", "cities": [{"name": "Paris", "population": 2100000}]},
        {"name": "Japan", "cities": [{"name": "Tokyo", "population": 14000000}]},
        {"name": "Iceland", "cities": []},  # the filter applies to cities, not to countries
        {"name": "Nowhere", "cities": []},
    ]

    either = (
        geo.table("countries")
        .select("name, cities(name)")
        .or_("name.eq.Lyon,name.like.O*", reference_table="cities")
        .order("id")
        .limit(2)
        .execute()
    )
    assert either.data == [
        {"name": "France", "cities": [{"name": "Lyon"}]},
        {"name": "Japan", "cities": [{"name": "Osaka"}]},
    ]

    # !inner keeps only the countries with a matching city, and the count follows.
    inner = (
        geo.table("countries")
        .select("name, cities!inner(name)", count="exact")
        .eq("cities.name", "Nice")
        .execute()
    )
    assert inner.data == [{"name": "France", "cities": [{"name": "Nice"}]}]
    assert inner.count == 1
    with_cities = geo.table("countries").select("name, cities!inner(id)", count="exact").execute()
    assert with_cities.count == 3 and "Nowhere" not in {r["name"] for r in with_cities.data}

    # Filtering on the embed itself: countries without cities.
    lonely = geo.table("countries").select("name, cities()").is_("cities", "null").execute()
    assert lonely.data == [{"name": "Nowhere"}]
    not_null = geo.table("countries").select("id, cities(id)").not_.is_("cities", "null")
    assert len(not_null.execute().data) == 3


def test_spread_one_to_one_many_to_many_and_self(geo: Client) -> None:
    spread = geo.table("cities").select("name, ...countries(country:name, continent_id)")
    assert spread.eq("id", 4).execute().data == [
        {"name": "Tokyo", "country": "Japan", "continent_id": 2}
    ]
    # A spread to-many relationship is refused (PGRST119).
    error = _error(geo.table("countries").select("name, ...cities(name)"))
    assert error.code == "PGRST119"
    assert error.message == "A spread operation on 'cities' is not possible"

    # flags.country_id is the primary key: one-to-one both ways, an object (or null).
    flags = geo.table("countries").select("name, flags(colors)").in_("id", [2, 3]).order("id")
    assert flags.execute().data == [
        {"name": "Japan", "flags": {"colors": "white red"}},
        {"name": "Iceland", "flags": None},
    ]
    # spoken's primary key holds both foreign keys: a many-to-many junction.
    languages = geo.table("countries").select("name, languages(name)").eq("id", 3).execute()
    assert sorted(lang["name"] for lang in languages.data[0]["languages"]) == [
        "English",
        "Icelandic",
    ]

    # A self-reference: the column name gives the parent, the table name the children.
    team = (
        geo.table("employees")
        .select("name, boss:boss_id(name), reports:employees(name)")
        .in_("id", [1, 2])
        .order("id")
        .execute()
    )
    assert team.data == [
        {"name": "ada", "boss": None, "reports": [{"name": "bob"}, {"name": "cy"}]},
        {"name": "bob", "boss": {"name": "ada"}, "reports": [{"name": "di"}]},
    ]


def test_ambiguous_and_missing_relationships(geo_gateway: SupabaseGateway, geo: Client) -> None:
    # trips has two foreign keys to cities: PGRST201 with 300 and the candidates.
    response = rest(geo_gateway, "GET", "trips?select=id,cities(name)")
    assert response.status_code == 300
    body = response.json()
    assert body["code"] == "PGRST201"
    assert body["message"] == (
        "Could not embed because more than one relationship was found for 'trips' and 'cities'"
    )
    assert body["details"] == [
        {
            "cardinality": "many-to-one",
            "embedding": "trips with cities",
            "relationship": "trips_from_fkey using trips(from_city) and cities(id)",
        },
        {
            "cardinality": "many-to-one",
            "embedding": "trips with cities",
            "relationship": "trips_to_fkey using trips(to_city) and cities(id)",
        },
    ]
    assert body["hint"] == (
        "Try changing 'cities' to one of the following: 'cities!trips_from_fkey', "
        "'cities!trips_to_fkey'. Find the desired relationship in the 'details' key."
    )
    assert _error(geo.table("cities").select("trips(id)")).code == "PGRST201"

    # A hint (constraint or column) disambiguates.
    trips = geo.table("trips").select(
        "id, origin:cities!trips_from_fkey(name), destination:cities!to_city(name)"
    )
    assert trips.order("id").execute().data == [
        {"id": 1, "origin": {"name": "Paris"}, "destination": {"name": "Tokyo"}},
        {"id": 2, "origin": {"name": "Tokyo"}, "destination": {"name": "Reykjavik"}},
    ]

    missing = rest(geo_gateway, "GET", "countries?select=name,citys(name)")
    assert missing.status_code == 400
    assert missing.json() == {
        "code": "PGRST200",
        "details": "Searched for a foreign key relationship between 'countries' and 'citys' in "
        "the schema 'public', but no matches were found.",
        "hint": "Perhaps you meant 'cities' instead of 'citys'.",
        "message": "Could not find a relationship between 'countries' and 'citys' in the schema "
        "cache",
    }
    bad_hint = _error(geo.table("countries").select("cities!nope(name)"))
    assert bad_hint.code == "PGRST200"
    assert "using the hint 'nope'" in bad_hint.details

    # Parameters of a resource select does not embed: PGRST108.
    not_embedded = _error(geo.table("countries").select("name").eq("cities.name", "Paris"))
    assert (not_embedded.code, not_embedded.message) == (
        "PGRST108",
        "'cities' is not an embedded resource in this request",
    )


def test_embeds_in_write_representations(geo: Client) -> None:
    inserted = (
        geo.table("cities")
        .insert({"id": 7, "name": "Kyoto", "country_id": 2})
        .select("name, countries(name)")
        .execute()
    )
    assert inserted.data == [{"name": "Kyoto", "countries": {"name": "Japan"}}]
    updated = (
        geo.table("countries")
        .update({"name": "Nippon"})
        .eq("id", 2)
        .select("name, cities(name)")
        .order("id", foreign_table="cities")
        .execute()
    )
    assert updated.data == [
        {"name": "Nippon", "cities": [{"name": "Tokyo"}, {"name": "Osaka"}, {"name": "Kyoto"}]}
    ]
