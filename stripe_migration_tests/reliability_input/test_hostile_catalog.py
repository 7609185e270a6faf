"""Hostile catalogue rows: hypothesis fills the CMS with what no editor should write, the migration
runs, and neither the run nor Stripe may suffer for it.

Each example draws, per column, a small pool of hostile values (any unicode, NUL and lone
surrogates, very long strings, NaN, infinity, negative and fractional-cent prices, odd currencies,
broken image URLs, raw JSON oddities, deep or huge metadata) and combines them into one batch of
~150 rows: most rows change one or two columns of a valid baseline row, so a refusal can be traced
to the column that caused it. The batch goes into PostgreSQL with psycopg (a row PostgreSQL itself
refuses, for a NUL or a lone surrogate, is counted and left out: it cannot exist in the CMS), then
one ``migrate_catalog`` run processes it.

What must hold:

- The run succeeds. Hostile rows are data, not a reason to stop: validation refuses them one by
  one and the valid rows still migrate. A run failing on a blocking check would hold the whole
  catalogue hostage to one bad row, so it counts as a failure here too.
- Every row ends ``synced`` or ``failed``; a failed row has a reason naming a field (``price: ...``,
  ``images[2]: ...``) and no Stripe object; a row holding a value known to be invalid fails with a
  reason naming that field; a row of known-valid values is synced.
- The emulator (which checks every request against Stripe's OpenAPI description and documented
  rules) answered every request with 200: no request Stripe would refuse was ever sent.
- Stripe's products and prices are exactly the synced rows, with the CMS content.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from stripe_migration.catalog.prices import parse_price_to_cents
from stripe_migration.catalog.stripe_payloads import custom_product_id
from stripe_migration.resources.supabase.exact_json import JsonFloat
from stripe_migration_tests.fixtures.migration import Migration
from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway, truncate_data_tables

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = 3
"""Generated batches, after the explicit one holding every named hostile value once."""
ROWS_PER_EXAMPLE = (100, 150)
#: Probability that a row takes a column's value from the hostile pool instead of the baseline.
DEVIATION = 0.2

OK, BAD, ANY = "ok", "bad", "any"
"""Verdicts: the value alone is valid, the value alone must make the row fail, or unknown."""

FIELDS = ("name", "description", "price", "currency", "images", "metadata", "active")

#: Statistics over the whole module, printed at the end (``-s``) for the issue's closing note.
TOTALS: dict[str, int] = {
    "examples": 0,
    "rows_generated": 0,
    "rows_refused_by_postgresql": 0,
    "rows_stored": 0,
    "rows_synced": 0,
    "rows_failed": 0,
    "stripe_requests": 0,
}


@dataclass(frozen=True)
class Raw:
    """JSON text to store as is in a jsonb column (numbers Python cannot write, duplicate keys)."""

    text: str


@dataclass(frozen=True)
class Value:
    """One hostile value for a column, with what validation must make of it."""

    value: Any
    verdict: str = ANY


def _v(verdict: str, *values: Any) -> list[Value]:
    return [Value(v, verdict) for v in values]


# -- pools of named hostile values -------------------------------------------------------------

LONG = 5_000
NAMES = [
    *_v(OK, "x" * LONG, "🙂" * LONG, "e\u0301" * 2_000, "\u202eevil\u202c", "'; DROP TABLE products;--"),
    *_v(OK, "<script>alert(1)</script>", "%00", "\\x00", "Mug [1] & {2} = 3?", "名前", "\u200b"),
    *_v(BAD, None, "", "   ", "\t\r\n", "\u3000", "x" * (LONG + 1), "🙂" * (LONG + 1)),
]  # fmt: skip
DESCRIPTIONS = [
    *_v(OK, None, "", "  ", "y" * 40_000, "line\r\nbreak", "\u0007bell", "\ufeffbom"),
    *_v(BAD, "y" * 40_001),
]
PRICES_USD = [
    *_v(OK, "0.50", "19.99", "19.9", "20", " 19.99 ", "999999.99", "999999", "12,50", "$5"),
    *_v(OK, "0019.99", "1,234.50", "USD 7", "7 usd"),
    *_v(BAD, None, "", " ", "NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "-1"),
    *_v(BAD, "-0.50", "\u22125", "0", "0.00", "0.001", "19.999", "0.49", "1000000.00", "1e3"),
    *_v(BAD, "1000000", "1.000", "2.500"),
    *_v(BAD, "1E-2", "abc", "12.5.0", "١٢", "\uff11\uff12", "9" * 70, "1,234", "€5", "5 eur", "0x10"),
    *_v(BAD, "1_000", "(5)", "5-", "--5", ".", "1.2.3,4"),
]  # fmt: skip
CURRENCIES = [
    *_v(OK, "usd", "USD", " Usd ", "usd\t"),
    *_v(ANY, "eur", "jpy", "isk", "bhd", "kwd", "huf"),
    *_v(BAD, None, "", "   ", "xxx", "US$", "dollars", "\uff55\uff53\uff44", "us d", "eu", "usdd"),
    *_v(BAD, "btc", "u\u0073\u0301d", "usd\u200b", "$", "€", "🇺🇸"),
]  # fmt: skip
GOOD_URL = "https://example.com/a.png"
IMAGES = [
    *_v(OK, [], Raw("null"), [GOOD_URL], [GOOD_URL] * 8, [f" {GOOD_URL} "]),
    *_v(OK, ["https://cdn.example.com/" + "a" * 4_970], ["http://例え.jp/画像.png"]),
    *_v(OK, ["https://example.com/a.png?x=1&y=[2]#frag"], ["https://user:pw@example.com/a"]),
    *_v(BAD, [GOOD_URL] * 9, ["ftp://example.com/a.png"], ["//example.com/a.png"]),
    *_v(BAD, ["example.com/a.png"], ["javascript:alert(1)"], ["http://"], ["https://"]),
    *_v(BAD, ["https://exa mple.com/a.png"], ["https://example.com/a\nb.png"], [""]),
    *_v(BAD, ["https://example.com/" + "a" * LONG], [123], [None], [{"url": GOOD_URL}]),
    *_v(BAD, [[GOOD_URL]], GOOD_URL, {"0": GOOD_URL}, 42, True, Raw("[1e400]"), Raw('"x"')),
    *_v(BAD, Raw("[1e5000]"), Raw('["https://example.com/a.png", 1e-5000]')),
    *_v(BAD, ["data:image/png;base64,iVBORw0KGgo="], ["file:///etc/passwd"]),
    # Stripe refuses these ("Not a valid URL"); validation once let them through.
    *_v(BAD, ["HTTP://EXAMPLE.COM/a.png"], ["http://cdn/a.png"], ["http://[::1]/a.png"]),
    *_v(BAD, ["https://localhost/a.png"], ["https://./a.png"]),
]
_NESTED: Any = "deep"
for _ in range(60):
    _NESTED = {"k": _NESTED}
METADATA = [
    *_v(OK, {}, Raw("null"), {"color": "red"}, {"n": 2}, {"b": True}, {"f": 1.5}, {"e": ""}),
    *_v(OK, {"z": None}, {"k" * 40: "v" * 500}, {"ключ": "значение"}, {"🙂": "🙂"}, {" ": "sp"}),
    *_v(OK, {f"k{i}": str(i) for i in range(49)}, Raw('{"a": "1", "a": "2"}'), Raw('{"a": -0}')),
    *_v(OK, Raw('{"a": 1e-5}'), Raw('{"a": 123456789012345678901234567890}'), {"a;b": "c=d&e"}),
    *_v(BAD, {f"k{i}": str(i) for i in range(50)}, {"cms_id": "x"}, {"": "v"}, {"a[b]": "v"}),
    *_v(BAD, {"a]": "v"}, {"k" * 41: "v"}, {"k": "v" * 501}, {"k": {"nested": 1}}, {"k": [1]}),
    *_v(BAD, {"k": _NESTED}, [], ["a"], "string", 42, {f"k{i}": "v" for i in range(1000)}),
    *_v(BAD, {"k": "v" * 100_000}, Raw('{"k": 1e600}'), Raw('{"k": [[[[[[[[[[]]]]]]]]]]}')),
    *_v(BAD, Raw('{"k": 1e5000}')),
    # Exact: Stripe gets the number's JSON text as the CMS holds it.
    *_v(OK, Raw('{"k": 12345678901234567890.5}'), Raw('{"k": 1.10}')),
    *_v(ANY, Raw('{"k": -1e-5000}')),
]  # fmt: skip
#: Values PostgreSQL cannot hold (checked: the insert must fail); the row is left out.
UNSTORABLE = {
    "name": ["a\x00b", "\ud800", "x\udfffy"],
    "description": ["\x00", "lone \udc00"],
    "price": ["1\x00", "\ud83d"],
    "currency": ["us\x00d"],
    "images": [["https://example.com/\x00.png"], ["https://example.com/\ud800.png"]],
    "metadata": [{"k": "\x00"}, {"\ud83d": "x"}, {"k\x00": "v"}],
}

# -- hypothesis strategies for fresh hostile values ----------------------------------------------

_text = st.text(max_size=30)
_long_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(1, 20_000))
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_url = st.builds(
    lambda scheme, sep, host, path: f"{scheme}{sep}{host}{path}",
    st.sampled_from(["http", "https", "HTTP", "Https", "ftp", "", "javascript", "h\u0442tp"]),
    st.sampled_from(["://", ":/", ":", "//", ":///"]),
    st.sampled_from(
        ["example.com", "a", "localhost", "127.0.0.1", "[::1]", "例え.jp", "xn--r8jz45g.jp",
         "EXAMPLE.COM", "example.com:99999", "example.com:", "u:p@example.com", "", ".", "..",
         "-.com", "a..b", "exa\u200bmple.com", "%41.com"]
    ),
    st.sampled_from(["", "/", "/a.png", "/a b.png", "/%zz", "?q", "#f", "/\u00e9.png", "\\x"]),
)  # fmt: skip


def _fresh_values(name: str) -> st.SearchStrategy[Value]:
    """Values drawn by hypothesis for one column, with the verdicts that can be told cheaply."""
    if name == "name":
        return st.one_of(_text, _long_text).map(lambda s: Value(s, _name_verdict(s)))
    if name == "description":
        return st.one_of(_text, _long_text, st.none()).map(lambda s: Value(s, _desc_verdict(s)))
    if name == "price":
        return st.one_of(
            _text,
            st.decimals(allow_nan=True, allow_infinity=True).map(str),
            st.floats().map(repr),
            st.integers(-(10**30), 10**30).map(str),
            st.decimals(min_value=0, max_value=10**7, places=3).map(str),
        ).map(Value)
    if name == "currency":
        return st.one_of(st.text(max_size=5), st.sampled_from(["usd", "eur", "gbp"])).map(Value)
    if name == "images":
        return st.one_of(st.lists(_url, max_size=9), st.lists(_text, max_size=3), _json).map(Value)
    if name == "metadata":
        return st.one_of(st.dictionaries(st.text(max_size=45), _json_leaf, max_size=6), _json).map(
            Value
        )
    return st.booleans().map(lambda b: Value(b, OK))


def _name_verdict(name: str) -> str:
    if not name.strip():
        return BAD
    return BAD if len(name.strip()) > LONG else ANY


def _desc_verdict(description: str | None) -> str:
    if description is None:
        return OK
    return BAD if len(description.strip()) > 40_000 else ANY


_POOLS = {
    "name": NAMES,
    "description": DESCRIPTIONS,
    "price": PRICES_USD,
    "currency": CURRENCIES,
    "images": IMAGES,
    "metadata": METADATA,
}


def _baseline(index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "name": f"Mug {index}",
        "description": rng.choice([None, "A mug."]),
        "price": rng.choice(["19.99", "5", "0.50", "1,234.00"]),
        "currency": "usd",
        "images": [],
        "metadata": {},
        "active": rng.random() < 0.9,
    }


def corpus_batch() -> tuple[list[dict[str, Any]], list[dict[str, Value]]]:
    """Every named hostile value once, each in an otherwise valid, active row."""
    rng = random.Random(0)
    rows, deviations = [], []
    for name, pool in _POOLS.items():
        for value in [*pool, *(Value(v, BAD) for v in UNSTORABLE.get(name, []))]:
            row = _baseline(len(rows), rng)
            row["active"] = True
            row[name] = value.value
            rows.append(row)
            deviations.append({name: value})
    return rows, deviations


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Value]]]:
    """One batch of rows and, per row, the column values that deviate from the baseline."""
    pools: dict[str, list[Value]] = {}
    for name in FIELDS:
        named = _POOLS.get(name, [])
        picked = draw(st.lists(st.sampled_from(named), max_size=8)) if named else []
        fresh = draw(st.lists(_fresh_values(name), min_size=1, max_size=5))
        unstorable = [Value(v, BAD) for v in UNSTORABLE.get(name, [])]
        if unstorable:
            fresh += draw(st.lists(st.sampled_from(unstorable), max_size=1))
        pools[name] = picked + fresh
    count = draw(st.integers(*ROWS_PER_EXAMPLE))
    rng = random.Random(draw(st.integers(0, 2**32)))
    rows, deviations = [], []
    for index in range(count):
        row = _baseline(index, rng)
        changed: dict[str, Value] = {}
        for name in FIELDS:
            if name != "active" and rng.random() < DEVIATION and pools[name]:
                changed[name] = rng.choice(pools[name])
                row[name] = changed[name].value
        rows.append(row)
        deviations.append(changed)
    return rows, deviations


# -- storing, reading, checking --------------------------------------------------------------------

INSERT = """
INSERT INTO products (id, name, description, price, currency, images, metadata, active)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)
"""


def _json_text(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value)  # ASCII escapes: \u0000 and lone surrogates reach PostgreSQL as such


def insert_rows(database_url: str, rows: list[dict[str, Any]]) -> set[str]:
    """Insert each row in its own savepoint; return the ids PostgreSQL refused."""
    refused = set()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for row in rows:
            params = (
                row["id"],
                row["name"],
                row["description"],
                row["price"],
                row["currency"],
                _json_text(row["images"]),
                _json_text(row["metadata"]),
                row["active"],
            )
            try:
                conn.execute(INSERT, params)
            except (psycopg.DataError, UnicodeEncodeError):
                refused.add(row["id"])
    return refused


def _parse_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= 4000 else Decimal(text)  # int() stops at 4300 digits


def read_rows(database_url: str) -> list[dict[str, Any]]:
    """Every CMS row; jsonb decoded here, since psycopg's loader fails on numbers too long for int."""
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(
            "SELECT id::text, name, description, price, currency, images::text AS images, "
            "metadata::text AS metadata, active, sync_status, sync_error, stripe_product_id, "
            "stripe_price_id, synced_unit_amount FROM products"
        )
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        for column in ("images", "metadata"):
            row[column] = json.loads(row[column], parse_float=JsonFloat, parse_int=_parse_int)
    return rows


def _holds_unstorable(value: Any) -> bool:
    """Whether PostgreSQL must refuse ``value``: a NUL or a lone surrogate anywhere in its text."""
    if isinstance(value, str):
        return "\x00" in value or re.search("[\ud800-\udfff]", value) is not None
    if isinstance(value, dict):
        return any(_holds_unstorable(k) or _holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_unstorable(v) for v in value)
    return False


_LABEL = {
    "name": r"name",
    "description": r"description",
    "price": r"price",
    "currency": r"currency",
    "images": r"images(\[\d+\])?",
    "metadata": r"metadata(\[.*?\])?",
    "active": r"active",
}
_ANY_LABEL = re.compile(r"^(" + "|".join(_LABEL.values()) + r"):")


def names_field(reason: str, name: str) -> bool:
    """Whether ``reason`` (reasons joined by "; ") has one starting with ``name``'s label."""
    return re.search(rf"(^|; ){_LABEL[name]}: ", reason) is not None


def _metadata_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # a JsonFloat's text is the JSON number as written


def check_stripe_object(
    row: dict[str, Any], product: dict[str, Any], price: dict[str, Any]
) -> None:
    """The Stripe product and its default price say what the CMS row says."""
    assert product["name"] == row["name"].strip()
    assert product["description"] == ((row["description"] or "").strip() or None)
    assert product["images"] == [url.strip() for url in (row["images"] or [])]
    expected_metadata = {
        k: _metadata_text(v) for k, v in (row["metadata"] or {}).items() if v not in (None, "")
    }
    expected_metadata["cms_id"] = str(row["id"])
    assert product["metadata"] == expected_metadata
    assert product["active"] == row["active"]
    currency = row["currency"].strip().lower()
    assert price["currency"] == currency
    assert price["product"] == product["id"]
    plain = re.fullmatch(r"\s*(\d+)(\.\d{1,2})?\s*", row["price"])
    if plain and currency == "usd":
        assert price["unit_amount"] == int(Decimal(row["price"].strip()) * 100)
    else:
        assert price["unit_amount"] == parse_price_to_cents(row["price"], currency)
    assert price["unit_amount"] == row["synced_unit_amount"]


def test_hostile_rows_never_break_the_run_or_reach_stripe(
    migration: Migration, gateway: SupabaseGateway
) -> None:
    # The fixtures stay outside @given: hypothesis would print them (keys included) on a failure.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # Each example is a whole migration run: shrinking would take minutes. The assertion
        # messages name the row's hostile values instead.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(batch=batches())
    @example(batch=corpus_batch())
    def run_examples(batch: tuple[list[dict[str, Any]], list[dict[str, Value]]]) -> None:
        truncate_data_tables(gateway.database_url)
        migration.emulator.control.reset(keep_config=True)
        check_batch(migration, *batch)

    run_examples()
    assert TOTALS["examples"] >= EXAMPLES + 1


def check_batch(
    migration: Migration, rows: list[dict[str, Any]], deviations: list[dict[str, Value]]
) -> None:
    """Store one batch, run the migration, and check the run, the CMS rows and Stripe."""
    refused = insert_rows(migration.database_url, rows)
    for row, changed in zip(rows, deviations, strict=True):
        unstorable = any(_holds_unstorable(v.value) for v in changed.values())
        assert (row["id"] in refused) == unstorable, (row["id"], changed)

    result = migration.run()
    assert result.success, [
        e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert not failed_checks, failed_checks

    # Every request the emulator answered was accepted: nothing Stripe's API would refuse was sent.
    stats = migration.emulator.control.stats()
    refusals = {
        endpoint: statuses
        for endpoint, statuses in stats["by_endpoint"].items()
        if set(statuses) != {"200"}
    }
    assert not refusals, refusals

    stored = {r["id"]: r for r in read_rows(migration.database_url)}
    assert set(stored) == {r["id"] for r in rows} - refused
    products = {p["id"]: p for p in migration.emulator.control.objects("product")}
    prices = {p["id"]: p for p in migration.emulator.control.objects("price")}
    synced = 0
    for row, changed in zip(rows, deviations, strict=True):
        if row["id"] in refused:
            continue
        cms = stored[row["id"]]
        status, reason = cms["sync_status"], cms["sync_error"] or ""
        # A valid but inactive row is not created in Stripe: Stripe is asked whether it holds a
        # product for it, and the row is recorded archived with none (plan.py: inactive_unrecorded).
        allowed = ("synced", "failed") if row["active"] else ("archived", "failed")
        assert status in allowed, (status, changed)
        must_fail = [
            name
            for name, value in changed.items()
            if value.verdict == BAD
            # a currency refusal is the whole reason: the price cannot be read without it
            and not (name == "price" and "currency" in changed)
        ]
        if status == "failed":
            assert _ANY_LABEL.match(reason), (reason, changed)
            for name in must_fail:
                assert names_field(reason, name), (name, reason, changed)
        else:
            assert not must_fail, (must_fail, changed)
        if status == "synced":
            product = products[custom_product_id(row["id"])]
            assert cms["stripe_product_id"] == product["id"]
            check_stripe_object(cms, product, prices[cms["stripe_price_id"]])
            synced += 1
        else:
            assert cms["stripe_product_id"] is None
            assert custom_product_id(row["id"]) not in products
        if all(v.verdict == OK for v in changed.values()):
            assert status == ("synced" if row["active"] else "archived"), (reason, changed)
    assert len(products) == synced
    assert len(prices) == synced

    TOTALS["examples"] += 1
    TOTALS["rows_generated"] += len(rows)
    TOTALS["rows_refused_by_postgresql"] += len(refused)
    TOTALS["rows_stored"] += len(stored)
    TOTALS["rows_synced"] += synced
    TOTALS["rows_failed"] += sum(1 for r in stored.values() if r["sync_status"] == "failed")
    TOTALS["stripe_requests"] += stats["requests_total"]
