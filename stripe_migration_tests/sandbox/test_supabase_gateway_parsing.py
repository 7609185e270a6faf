"""PostgREST's query grammar and range rules, as the gateway parses them (no server)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from stripe_migration.sandbox.supabase_gateway import headers
from stripe_migration.sandbox.supabase_gateway.app import range_status
from stripe_migration.sandbox.supabase_gateway.errors import GatewayError
from stripe_migration.sandbox.supabase_gateway.query import parse_query
from stripe_migration.sandbox.supabase_gateway.syntax import (
    EmbedItem,
    EmbedParams,
    Field,
    Filter,
    Logic,
    OrderTerm,
    SelectItem,
)


def _parse(query: list[tuple[str, str]]):
    return parse_query(query)


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ("*", [SelectItem(None)]),
        ("id,name", [SelectItem(Field("id")), SelectItem(Field("name"))]),
        ("label:name::text", [SelectItem(Field("name"), "label", "text")]),
        ("metadata->a->>b", [SelectItem(Field("metadata", (("->", "a"), ("->>", "b"))))]),
        ('"odd name",x', [SelectItem(Field("odd name")), SelectItem(Field("x"))]),
        (
            "name,cities(name,*)",
            [
                SelectItem(Field("name")),
                EmbedItem("cities", (SelectItem(Field("name")), SelectItem(None))),
            ],
        ),
        (
            "c:cities!fk!inner(n:name,d:districts())",
            [
                EmbedItem(
                    "cities",
                    (SelectItem(Field("name"), "n"), EmbedItem("districts", (), "d")),
                    alias="c",
                    hint="fk",
                    inner=True,
                )
            ],
        ),
        (
            "...countries!left(name)",
            [EmbedItem("countries", (SelectItem(Field("name")),), spread=True)],
        ),
    ],
)
def test_select(select: str, expected: list[SelectItem]) -> None:
    assert _parse([("select", select)]).select == expected


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("name", "eq.a.b", Filter(Field("name"), "eq", "a.b")),
        ("name", "not.like.*x*", Filter(Field("name"), "like", "*x*", negate=True)),
        ("id", 'in.(1,"2,3",4)', Filter(Field("id"), "in", ("1", "2,3", "4"))),
        ("id", "in.()", Filter(Field("id"), "in", ())),
        ("n", "is.null", Filter(Field("n"), "is", "null")),
        ("n", "eq(any).{a,b}", Filter(Field("n"), "eq", "{a,b}", quantifier="any")),
        ("metadata->>k", "eq.v", Filter(Field("metadata", (("->>", "k"),)), "eq", "v")),
        ("doc", "fts.a & b", Filter(Field("doc"), "fts", "a & b")),
        (
            "doc",
            "not.wfts(english).a b",
            Filter(Field("doc"), "wfts", "a b", True, None, "english"),
        ),
        ("during", "adj.[1,2)", Filter(Field("during"), "adj", "[1,2)")),
    ],
)
def test_filters(key: str, value: str, expected: Filter) -> None:
    assert _parse([(key, value)]).conditions == [expected]


def test_logic_trees_nest_and_negate() -> None:
    parts = _parse([("not.or", '(a.eq.1,and(b.gt.2,c.eq."x,y"),d.not.is.null)')])
    assert parts.conditions == [
        Logic(
            "or",
            (
                Filter(Field("a"), "eq", "1"),
                Logic("and", (Filter(Field("b"), "gt", "2"), Filter(Field("c"), "eq", "x,y"))),
                Filter(Field("d"), "is", "null", negate=True),
            ),
            negate=True,
        )
    ]


def test_order_limit_offset_and_reserved_names() -> None:
    parts = _parse(
        [
            ("order", "a.desc.nullslast,b,c.nullsfirst"),
            ("limit", "10"),
            ("offset", "5"),
            ("apikey", "ignored"),
            ("columns", '"a",b'),
            ("on_conflict", "b"),
        ]
    )
    assert parts.order == [
        OrderTerm(Field("a"), True, "last"),
        OrderTerm(Field("b")),
        OrderTerm(Field("c"), False, "first"),
    ]
    assert (parts.limit, parts.offset, parts.columns, parts.on_conflict) == (
        10,
        5,
        ["a", "b"],
        ["b"],
    )
    assert parts.conditions == []


def test_embedded_parameters_are_kept_by_path() -> None:
    query = (
        "cities.name=eq.Paris&cities.order=name.desc&cities.limit=2&cities.districts.offset=1"
        '&cities.not.or=(a.eq.1,b.eq.2)&not.or=(c.eq.3)&"a.b"=eq.x'
    )
    parts = _parse(parse_qsl(query))
    assert parts.embedded == {
        ("cities",): EmbedParams(
            [
                Filter(Field("name"), "eq", "Paris"),
                Logic("or", (Filter(Field("a"), "eq", "1"), Filter(Field("b"), "eq", "2")), True),
            ],
            [OrderTerm(Field("name"), True)],
            2,
        ),
        ("cities", "districts"): EmbedParams(offset=1),
    }
    assert parts.conditions == [
        Logic("or", (Filter(Field("c"), "eq", "3"),), True),
        Filter(Field("a.b"), "eq", "x"),
    ]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ([("name;drop", "eq.x")], "PGRST100"),
        ([("name", "eq")], "PGRST100"),
        ([("name", "fts(x y).x")], "PGRST100"),
        ([("name", "eq(english).x")], "PGRST100"),
        ([("select", "name,...rel")], "PGRST100"),
        ([("select", "name!inner")], "PGRST100"),
        ([("select", "rel!inner!left(*)")], "PGRST100"),
        ([("select", "rel->a(*)")], "PGRST100"),
        ([("select", "rel(a)b")], "PGRST100"),
        ([("select", "count(*)")], "PGRST123"),
        ([("cities;drop.limit", "1")], "PGRST100"),
        ([("cities.limit", "-1")], "PGRST103"),
        ([("or", "name.eq.x")], "PGRST100"),
        ([("order", "name.sideways")], "PGRST100"),
        ([("select", "count()")], "PGRST123"),
        ([("limit", "x")], "PGRST100"),
        ([("limit", "-1")], "PGRST103"),
    ],
)
def test_refused_queries(query: list[tuple[str, str]], code: str) -> None:
    with pytest.raises(GatewayError) as info:
        _parse(query)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("range_header", "limit", "offset", "max_rows", "expected"),
    [
        (None, None, None, None, (0, None)),
        (None, None, None, 1000, (0, 1000)),
        ("0-9", None, None, 1000, (0, 10)),
        ("10-", None, None, 5, (10, 5)),
        (None, 5, 10, 1000, (10, 5)),
        ("0-99", 10, None, None, (0, 10)),
        ("20-29", 5, None, None, (20, 0)),  # PostgREST intersects [0, 4] with [20, 29]
        (None, 0, 3, None, (0, 0)),
        ("bogus", None, None, None, (0, None)),  # malformed ranges are ignored
    ],
)
def test_page(range_header, limit, offset, max_rows, expected) -> None:
    assert headers.page(range_header, limit, offset, max_rows) == expected


@pytest.mark.parametrize(
    ("offset", "page_total", "total", "expected"),
    [
        (0, 10, None, (200, "0-9/*")),
        (0, 10, 10, (200, "0-9/10")),
        (0, 10, 500, (206, "0-9/500")),
        (0, 0, 0, (200, "*/0")),
        (20, 0, 12, (416, "*/12")),
        (5, 0, None, (200, "*/*")),
    ],
)
def test_range_status(offset, page_total, total, expected) -> None:
    assert range_status(offset, page_total, total) == expected


def test_prefer_and_accept() -> None:
    prefs = headers.parse_prefer(["return=representation, count=exact", "bogus"])
    assert prefs.get("return") == "representation" and prefs.count
    assert prefs.applied("count") == {"Preference-Applied": "count=exact"}
    with pytest.raises(GatewayError) as info:
        headers.parse_prefer(["handling=strict, bogus"])
    assert info.value.code == "PGRST122"

    assert headers.negotiate("application/vnd.pgrst.object+json").singular
    assert headers.negotiate("text/csv, */*") == headers.MediaChoice(csv=True)
    assert headers.negotiate("text/csv").content_type == "text/csv; charset=utf-8"
    assert headers.negotiate("application/vnd.pgrst.array+json;nulls=stripped").strip_nulls
    with pytest.raises(GatewayError) as info:
        headers.negotiate("text/html")
    assert (info.value.status, info.value.code) == (406, "PGRST107")
