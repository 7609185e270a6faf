"""Hostile requests: fuzzed webhooks against the receiver, hostile identifiers and filters against
the Supabase gateway. Both are served for real (a receiver child process, the session's gateway
process) and reached over HTTP with httpx.

- The receiver never answers 5xx (its database is up throughout), and stores only events whose
  ``Stripe-Signature`` matches the body under our secret: whatever the body, headers or signature,
  ``stripe_events`` ends up holding exactly the signed events it answered 200 for.
- The gateway never answers 5xx and never runs what a request smuggles in: a hostile identifier
  (column, operator, ``order``, ``select``, ``on_conflict``, ``columns``, table, rpc name or
  argument) gets a 400, or a 404 for an unknown table or function, and the data and the schema are
  the same after every request. Mutations carry a filter no row matches, so a request the gateway
  rightly accepts cannot change the data either.

Each suite starts with the inputs that once produced a 500 (kept as regressions), then hypothesis
fuzzes with bounded examples. Totals are printed by the last test (``-s``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_migration.webhook.signature import compute_signature, sign
from stripe_migration_tests.fixtures.receiver import ReceiverProcess, start_receiver
from stripe_migration_tests.fixtures.supabase_gateway import SupabaseGateway

pytestmark = pytest.mark.timeout(300)

SECRET = "whsec_hostile_requests_current"
OTHER_SECRET = "whsec_hostile_requests_unknown"
MAX_BODY_BYTES = 64 * 1024
#: Seconds between this process's clock read and the receiver's that a test allows for.
_CLOCK_MARGIN_S = 10
RECEIVER_EXAMPLES = 250
GATEWAY_EXAMPLES = 400
NIL_ID = "00000000-0000-0000-0000-000000000000"

TOTALS = {
    "receiver_requests": 0,
    "receiver_accepted": 0,
    "receiver_stored": 0,
    "gateway_requests": 0,
}

_FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# == the webhook receiver ==========================================================================


@pytest.fixture
def receiver(migrated_db: str, tmp_path: Path) -> Iterator[ReceiverProcess]:
    """The receiver in a child process on a fresh database, accepting ``SECRET`` only."""
    process = start_receiver(
        migrated_db, SECRET, max_body_bytes=MAX_BODY_BYTES, log_path=tmp_path / "receiver.log"
    )
    try:
        yield process
    finally:
        process.stop()


def stored_events(database_url: str) -> dict[str, Any]:
    """``event_id`` → payload of every stored event."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT event_id, payload::text FROM stripe_events").fetchall())


def event_body(event_id: str = "evt_1", **fields: Any) -> bytes:
    """A Stripe event (``fields`` replace or add top-level fields) as JSON bytes."""
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "livemode": False,
        "type": "product.updated",
        "data": {"object": {"id": "prod_1", "object": "product", "name": "Mug"}},
        **fields,
    }
    return json.dumps(event).encode()


def _raw_event(**raw: str) -> bytes:
    """An event whose fields are given as raw JSON text (escapes json.dumps would not write)."""
    fields = {
        "id": '"evt_raw"',
        "object": '"event"',
        "type": '"product.updated"',
        "created": str(int(time.time())),
        "data": '{"object": {"id": "prod_1"}}',
        **raw,
    }
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


#: Signed bodies and headers that once made the receiver answer 500.
RECEIVER_REGRESSIONS: list[tuple[str, bytes, bytes | None]] = [
    # (what, body, Stripe-Signature header or None to sign the body with SECRET)
    ("lone surrogate in the id", _raw_event(id='"evt_\\ud800"'), None),
    ("lone surrogate in the type", _raw_event(type='"\\udc00"'), None),
    ("lone surrogate in api_version", _raw_event(api_version='"\\ud83d"'), None),
    ("NUL in the id", _raw_event(id='"evt_\\u0000"'), None),
    ("NUL in the payload", _raw_event(data='{"object": {"name": "\\u0000"}}'), None),
    ("lone surrogate in the payload", _raw_event(data='{"object": {"n": "\\udfff"}}'), None),
    ("nested 5000 deep", _raw_event(data='{"object": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"), None),
    ("created beyond timestamps", _raw_event(created="1" + "0" * 30), None),
    ("number beyond numeric", _raw_event(data='{"object": {"n": 1e999999}}'), None),
    ("superscript timestamp", event_body(), b"t=\xb2,v1=" + b"0" * 64),
    ("5000-digit timestamp", event_body(), b"t=" + b"9" * 5000 + b",v1=" + b"0" * 64),
    ("non-ASCII signature", event_body(), f"t={int(time.time())},v1=".encode() + b"\xe9" * 64),
]  # fmt: skip


def test_receiver_refuses_what_once_crashed_it(receiver: ReceiverProcess, migrated_db: str) -> None:
    with httpx.Client(timeout=30) as client:
        for what, body, header in RECEIVER_REGRESSIONS:
            signature = header if header is not None else sign(body, SECRET).encode()
            response = client.post(
                receiver.webhook_url, content=body, headers={"Stripe-Signature": signature}
            )
            assert response.status_code == 400, (what, response.status_code, response.text)
            assert "error" in response.json(), what
    assert stored_events(migrated_db) == {}
    assert "Traceback" not in receiver.log_tail(100_000)


def header_value(raw: bytes) -> bytes:
    """``raw`` reduced to what HTTP lets a header value carry (h11 refuses the rest)."""
    return bytes(c for c in raw if c in b" \t" or 0x21 <= c != 0x7F).strip(b" \t")


_header_bytes = st.binary(max_size=120).map(header_value)
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_ids = st.one_of(
    st.uuids().map(lambda u: f"evt_{u.hex}"),
    st.text(min_size=1, max_size=30),
    st.sampled_from(["", " ", "evt_" + "x" * 300, "evt_'; DROP TABLE stripe_events;--"]),
)
_event_fields = st.fixed_dictionaries(
    {},
    optional={
        "object": st.one_of(st.just("event"), _json),
        "type": st.one_of(st.just("product.updated"), _json),
        "created": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), _json),
        "livemode": st.one_of(st.booleans(), _json),
        "api_version": st.one_of(st.text(max_size=20), _json),
        "data": st.one_of(st.fixed_dictionaries({"object": _json}), _json),
    },
)


@st.composite
def webhook_bodies(draw: st.DrawFn) -> bytes:
    """Anything a body can be: bytes, JSON values, events with odd fields, deep or huge ones."""
    kind = draw(st.sampled_from(["bytes", "json", "event", "event", "odd_event", "deep", "big"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(_json)).encode()
    if kind == "event":
        return event_body(draw(_ids))
    if kind == "odd_event":
        fields = draw(_event_fields)
        return event_body(draw(st.one_of(_ids, _json)), **fields)
    if kind == "deep":
        depth = draw(st.integers(100, 20_000))
        return _raw_event(data='{"object": {"a": ' + "[" * depth + "]" * depth + "}}")
    size = draw(st.integers(MAX_BODY_BYTES - 100, MAX_BODY_BYTES + 100))
    return event_body(draw(_ids), data={"object": {"blob": "x" * size}})


@st.composite
def signatures(draw: st.DrawFn, body: bytes) -> tuple[bool, bytes | None]:
    """(whether the header is Stripe's genuine signature of ``body`` with our secret, header)."""
    now = int(time.time())
    genuine = st.sampled_from(["valid", "valid_rotated"])
    forged = st.sampled_from(
        ["none", "garbage", "other_secret", "stale", "future", "other_body", "no_v1", "truncated",
         "uppercase", "bytes"]
    )  # fmt: skip
    mode = draw(st.one_of(genuine, forged))  # half the bodies carry a genuine signature
    digest = compute_signature(SECRET, now, body)
    if mode == "valid":
        return True, f"t={now},v1={digest}".encode()
    if mode == "valid_rotated":  # a second v1 and a v0 around the good one
        return True, f"t={now},v1={'0' * 64},v1={digest},v0=abc".encode()
    if mode == "none":
        return False, None
    if mode == "garbage":
        return False, header_value(draw(st.text(max_size=100)).encode("utf-8"))
    if mode == "bytes":
        return False, draw(_header_bytes)
    if mode == "other_secret":
        return False, sign(body, OTHER_SECRET).encode()
    # Outside the 300 s tolerance by a margin: ``now`` is floored and the receiver reads its clock
    # later, so a timestamp 301 s ahead can arrive within 300 s of it (hypothesis shrank to that).
    if mode == "stale":
        then = now - draw(st.integers(300 + _CLOCK_MARGIN_S, 10**9))
        return False, f"t={then},v1={compute_signature(SECRET, then, body)}".encode()
    if mode == "future":
        then = now + draw(st.integers(300 + _CLOCK_MARGIN_S, 10**9))
        return False, f"t={then},v1={compute_signature(SECRET, then, body)}".encode()
    if mode == "other_body":
        return False, f"t={now},v1={compute_signature(SECRET, now, body + b' ')}".encode()
    if mode == "no_v1":
        return False, f"t={now},v0={digest}".encode()
    if mode == "truncated":
        return False, f"t={now},v1={digest[:-1]}".encode()
    return False, f"t={now},v1={digest.upper()}".encode()


def _numbers_exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@pytest.mark.slow  # fuzzing; the fast tier keeps the recorded crashers
def test_fuzzed_webhooks_never_get_a_500_nor_store_an_unsigned_event(
    receiver: ReceiverProcess, migrated_db: str
) -> None:
    accepted: dict[str, bytes] = {}

    with httpx.Client(timeout=30) as client:

        @settings(_FUZZ, max_examples=RECEIVER_EXAMPLES)
        @given(data=st.data())
        def post(data: st.DataObject) -> None:
            body = data.draw(webhook_bodies(), label="body")
            genuine, header = data.draw(signatures(body), label="signature")
            headers: dict[str, bytes] = data.draw(
                st.dictionaries(
                    st.sampled_from(["Content-Type", "User-Agent", "X-Forwarded-For", "Accept"]),
                    _header_bytes,
                    max_size=2,
                ),
                label="headers",
            )
            if header is not None:
                headers["Stripe-Signature"] = header
            response = client.post(receiver.webhook_url, content=body, headers=headers)
            TOTALS["receiver_requests"] += 1
            assert response.status_code in (200, 400, 413), (response.status_code, response.text)
            # (uvicorn itself answers a request it cannot parse with a plain-text 400)
            if response.headers.get("content-type") == "application/json":
                assert set(response.json()) <= {"error", "received", "duplicate"}
            try:
                event_id = json.loads(body)["id"]
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                event_id = None
            if not genuine:
                assert response.status_code != 200, (header, body[:200])
            elif response.status_code == 200:
                TOTALS["receiver_accepted"] += 1
                accepted.setdefault(event_id, body)

        post()

    stored = stored_events(migrated_db)
    TOTALS["receiver_stored"] += len(stored)
    # Exactly the signed events answered 200, each stored once, as the body Stripe signed.
    assert set(stored) == set(accepted)
    for event_id, payload in stored.items():
        # (a body nested deeper than this test's own json.loads goes is not compared)
        with contextlib.suppress(RecursionError):
            # numbers compared as decimals: jsonb writes 1e+51 out in full
            assert _numbers_exact(payload) == _numbers_exact(accepted[event_id])
    assert "Traceback" not in receiver.log_tail(1_000_000)


# == the Supabase gateway ===========================================================================

#: Requests that once made the gateway answer 500 (method, path and query, body, expected status).
GATEWAY_REGRESSIONS: list[tuple[str, str, Any, dict[str, Any], int]] = [
    ("GET", "products?select=metadata->²", None, {}, 200),  # "²".isdigit(), int("²") fails
    ("GET", "products?select=metadata->--5", None, {}, 200),  # "--5".lstrip("-").isdigit()
    ("GET", "products?metadata->>¹=eq.x", None, {}, 200),
    ("GET", "products?name=eq.%00", None, {}, 400),  # psycopg refuses NUL before PostgreSQL
    ("GET", "products?name=in.(a,%00)", None, {}, 400),
    ("PATCH", f"products?id=eq.{NIL_ID}&name=eq.%00", {"name": "x"}, {}, 400),
    ("GET", "products?or=(" + "and(" * 300 + "name.eq.1" + ")" * 300 + ")", None, {}, 400),
    ("GET", "products?not.or=(" + "or(" * 80 + "name.eq.1" + ")" * 80 + ")", None, {}, 400),
    ("GET", "products", None, {"Prefer": b"max-affected=\xb2"}, 200),
    ("POST", "rpc/apply_sync_results", "[" * 5000 + "]" * 5000, {}, 400),
    ("POST", "products", "[" * 5000 + "]" * 5000, {}, 400),
    ("PATCH", f"products?id=eq.{NIL_ID}", '{"name": ' + "[" * 5000 + "]" * 5000 + "}", {}, 400),
]  # fmt: skip


def log_since(path: Path, offset: int) -> str:
    """What the session's gateway logged after ``offset`` (other tests share its log)."""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", errors="replace")


def _headers(gateway: SupabaseGateway, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apikey": gateway.key, "Authorization": f"Bearer {gateway.key}", **(extra or {})}


def _send(
    client: httpx.Client, method: str, path: str, body: Any, headers: dict[str, Any]
) -> httpx.Response:
    content = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    if content is not None:
        headers = {"Content-Type": "application/json", **headers}
    return client.request(method, path, content=content, headers=headers)


def snapshot(database_url: str) -> tuple[Any, ...]:
    """The data and the shape of the public schema, to compare before and after requests."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            """
            SELECT (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.id), ''))
                      FROM products p),
                   (SELECT count(*) FROM stripe_events),
                   (SELECT count(*) FROM stripe_events_archive),
                   (SELECT count(*) FROM products_backup),
                   (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
                     WHERE relnamespace = 'public'::regnamespace),
                   (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc
                     WHERE pronamespace = 'public'::regnamespace),
                   (SELECT count(*) FROM pg_roles)
            """
        ).fetchone()


@pytest.fixture
def seeded_gateway(gateway: SupabaseGateway) -> SupabaseGateway:
    """The gateway over a catalogue of three products and one stored event."""
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (name, price, currency, metadata) VALUES "
            "('Mug', '9.99', 'usd', '{\"a\": \"1\"}'), ('Cap', '5', 'eur', '{}'), "
            "('Pen', '1.50', 'usd', '{\"k\": [1, 2]}')"
        )
        conn.execute(
            "INSERT INTO stripe_events (event_id, type, payload, created_at) "
            "VALUES ('evt_seed', 'product.updated', '{}', now())"
        )
    return gateway


def test_gateway_answers_what_once_crashed_it(seeded_gateway: SupabaseGateway) -> None:
    log_offset = seeded_gateway.process.log_path.stat().st_size
    before = snapshot(seeded_gateway.database_url)
    with httpx.Client(base_url=seeded_gateway.url + "/rest/v1/", timeout=30) as client:
        for method, path, body, extra, status in GATEWAY_REGRESSIONS:
            response = _send(client, method, path, body, _headers(seeded_gateway, extra))
            assert response.status_code == status, (path[:80], response.text[:300])
            if status >= 400:
                assert response.json()["code"], path[:80]
    assert snapshot(seeded_gateway.database_url) == before
    assert "Traceback" not in log_since(seeded_gateway.process.log_path, log_offset)


#: Identifiers that are no column, table or function, and smuggle SQL or break the grammar.
INJECTIONS = [
    "name;DROP TABLE products;--", "name); DROP TABLE products;--", 'name"; DROP TABLE products;--',
    "name' OR '1'='1", "name/**/OR/**/1=1", "1=1", "pg_sleep(5)", "name||pg_sleep(5)",
    "(SELECT 1)", "name--", "name\\", '"name', 'na"me', "name\x00", "\uff4e\uff41\uff4d\uff45", "NAME",
    "metadata->>a);--", "name::regclass", "name::text;drop", "count()", "name!inner", "...name",
    "name(*)", "id,(select 1)", "pg_catalog.pg_roles", "public.products", "products.name",
    "name UNION SELECT rolpassword FROM pg_authid", "$1", "name%27", "\u202ename", "na me",
    "metadata->'a'", "*/", "name)", "(name", "name,", ",name", "name.eq.x", "or", "not",
]  # fmt: skip
TABLE_INJECTIONS = [
    "products;DROP TABLE products", "products--", "pg_authid", "pg_catalog.pg_roles",
    "information_schema.tables", "products%00", "PRODUCTS", "products ", "../products", "/",
]  # fmt: skip
OPERATORS = [
    "eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch", "in", "is",
    "isdistinct", "cs", "cd", "ov", "not.eq", "eq(any)", "like(all)", "fts", "eq;", "", "=",
    "not.not.eq", "cs(any)", "EQ", "eq ",
]  # fmt: skip
HOSTILE_VALUES = [
    "x'; DROP TABLE products;--", "1 OR 1=1", "(a,b", "a,b)", "{1,2", "(", ")", "{}", "()", "\\",
    "%", "*", "null", "not_null", "NaN", "Infinity", "-0", "1e999999", "9" * 400, "2024-13-45",
    "99999999-01-01", "00000000-0000-0000-0000-00000000000g", "[", '"', '"unterminated', "\x00",
    "é" * 5000, "🙂", "\u202e", "a" * 20_000, "(" * 200 + ")" * 200, "{" * 200 + "}" * 200,
]  # fmt: skip

_identifier = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=30))
_value = st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=50))
_short_value = st.one_of(
    st.sampled_from([v for v in HOSTILE_VALUES if len(v) < 500]), st.text(max_size=30)
)
_operator = st.one_of(st.sampled_from(OPERATORS), st.text(max_size=10))
_json_args = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _short_value,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_short_value, inner, max_size=3),
    max_leaves=6,
)
#: A row no insert can store: its sync_status breaks the column's CHECK constraint.
UNSTORABLE_ROW = {"name": "fuzz", "sync_status": "hostile"}


@st.composite
def logic_trees(draw: st.DrawFn, depth: int = 0) -> str:
    """``(child,child,...)`` with filters and nested and/or, sometimes malformed."""
    children = []
    for _ in range(draw(st.integers(1, 3))):
        if depth < 4 and draw(st.booleans()):
            op = draw(st.sampled_from(["and", "or", "not.and", "not.or", "xor", "and "]))
            children.append(op + draw(logic_trees(depth + 1)))
        else:
            column = draw(st.one_of(st.sampled_from(["name", "price", "id"]), _identifier))
            children.append(f"{column}.{draw(_operator)}.{draw(_short_value)}")
    return "(" + ",".join(children) + ")"


Request = tuple[str, str, Any, dict[str, str], bool]


@st.composite
def gateway_requests(draw: st.DrawFn, columns: list[str]) -> Request:
    """(method, path with query, body, extra headers, whether it must be refused with 400/404).

    A request whose hostile part is one of the known injections must be refused; fresh
    hypothesis text may happen to be valid, so such a request only has to avoid a 5xx. Requests
    that write are built so that even a valid one cannot change a row: a filter on an id no row
    has, or a row that breaks a CHECK constraint.
    """
    kind = draw(
        st.sampled_from(
            ["filter", "value", "select", "order", "logic", "paging", "insert", "on_conflict",
             "columns", "update", "delete", "table", "rpc_name", "rpc_args", "rpc_get", "body"]
        )
    )  # fmt: skip
    ident = draw(_identifier)
    injected = ident in INJECTIONS and ident not in columns
    q = quote
    op, value = q(draw(_operator)), q(draw(_value))
    if kind == "filter":
        return "GET", f"products?{q(ident)}={op}.{value}", None, {}, injected
    if kind == "value":
        return "GET", f"products?{q(draw(st.sampled_from(columns)))}={op}.{value}", None, {}, False
    if kind == "select":
        return "GET", f"products?select={q(ident)}", None, {}, injected
    if kind == "order":
        direction = draw(st.sampled_from(["", ".asc", ".desc.nullslast", ".x"]))
        return "GET", f"products?order={q(ident + direction)}", None, {}, injected
    if kind == "logic":
        key = draw(st.sampled_from(["or", "and", "not.or", "not.and"]))
        return "GET", f"products?{key}={q(draw(logic_trees()))}", None, {}, False
    if kind == "paging":
        query = f"products?limit={q(draw(_short_value))}&offset={q(draw(_short_value))}"
        return "GET", query, None, {"Range": draw(_value), "Prefer": draw(_value)}, False
    if kind == "insert":
        key = ident if ident not in columns else ident + "_not_a_column"
        prefer = draw(st.sampled_from(["return=representation", "missing=default", "count=exact"]))
        return "POST", "products", [{key: draw(_value)}], {"Prefer": prefer}, True
    if kind == "on_conflict":
        headers = {"Prefer": "resolution=merge-duplicates"}
        return "POST", f"products?on_conflict={q(ident)}", [UNSTORABLE_ROW], headers, True
    if kind == "columns":
        return "POST", f"products?columns={q(ident)},sync_status", [UNSTORABLE_ROW], {}, True
    if kind == "update":
        body = {draw(st.sampled_from([*columns, ident])): draw(_value)}
        query = f"products?id=eq.{NIL_ID}&{q(ident)}=eq.{value}"
        return "PATCH", query, body, {}, injected
    if kind == "delete":
        return "DELETE", f"products?id=eq.{NIL_ID}&{q(ident)}={op}.{value}", None, {}, injected
    if kind == "table":
        name = draw(st.one_of(st.sampled_from(TABLE_INJECTIONS), st.text(min_size=1, max_size=20)))
        method = draw(st.sampled_from(["GET", "DELETE", "PATCH", "POST"]))
        body = None if method in ("GET", "DELETE") else {"x": 1}  # no table has a column x
        path = f"{q(name, safe='')}?id=eq.{NIL_ID}"
        return method, path, body, {}, name in TABLE_INJECTIONS
    if kind == "rpc_name":
        names = st.sampled_from([*INJECTIONS, *TABLE_INJECTIONS])
        name = draw(st.one_of(names, st.text(min_size=1, max_size=20)))
        known = name in ("apply_sync_results", "archive_old_events")
        path = f"rpc/{q(name, safe='')}"
        return "POST", path, {"results": []}, {}, not known and name in INJECTIONS
    if kind == "rpc_args":
        function = draw(st.sampled_from(["apply_sync_results", "archive_old_events"]))
        names = st.sampled_from(["results", "older_than", "batch_size"])
        args = draw(st.dictionaries(st.one_of(_identifier, names), _json_args, max_size=3))
        if "results" in args:
            args["results"] = _no_matching_rows(args["results"])
        if "older_than" in args:  # no event is that old, whatever the interval parses to
            args["older_than"] = draw(st.sampled_from(["10000 years", "1 day);DROP TABLE x;--"]))
        return "POST", f"rpc/{function}", args, {}, False
    if kind == "rpc_get":
        query = f"older_than={value}&batch_size={q(draw(_short_value))}"
        return "GET", f"rpc/archive_old_events?{query}", None, {}, False
    raw = draw(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from(
                [b"NaN", b"[1e999999]", b'{"a": Infinity}', b'"\\ud800"', b"[" * 3000, b"{}",
                 b"[{}]", b'{"name": "\\u0000"}', b"\xff\xfe", b'[{"name": 1}, {"price": 2}]']
            ),
        )
    )  # fmt: skip
    method, path = draw(
        st.sampled_from(
            [("POST", "products?columns=sync_status"), ("POST", "rpc/apply_sync_results"),
             ("PATCH", f"products?id=eq.{NIL_ID}")]
        )
    )  # fmt: skip
    return method, path, raw, {}, False


def _no_matching_rows(results: Any) -> Any:
    """Hostile ``results`` for apply_sync_results whose ids can match no product."""
    if isinstance(results, list):
        return [{**item, "id": NIL_ID} if isinstance(item, dict) else item for item in results]
    return results


@pytest.mark.slow  # fuzzing; the fast tier keeps the recorded crashers
def test_fuzzed_gateway_requests_never_get_a_500_nor_touch_the_data(
    seeded_gateway: SupabaseGateway,
) -> None:
    log_offset = seeded_gateway.process.log_path.stat().st_size
    before = snapshot(seeded_gateway.database_url)
    with psycopg.connect(seeded_gateway.database_url) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'products'::regclass "
            "AND attnum > 0 AND NOT attisdropped"
        )]  # fmt: skip

    with httpx.Client(base_url=seeded_gateway.url + "/rest/v1/", timeout=30) as client:

        @settings(_FUZZ, max_examples=GATEWAY_EXAMPLES)
        @given(request=gateway_requests(columns))
        def send(request: Request) -> None:
            method, path, body, extra, must_refuse = request
            headers = {k: header_value(v.encode()) for k, v in extra.items()}
            response = _send(client, method, path, body, {**_headers(seeded_gateway), **headers})
            TOTALS["gateway_requests"] += 1
            assert response.status_code < 500, (method, path[:200], response.text[:300])
            if response.status_code >= 400:
                assert response.json()["message"], (method, path[:200])
            if must_refuse:
                assert response.status_code in (400, 404), (method, path[:200], response.text[:300])
            assert snapshot(seeded_gateway.database_url) == before, (method, path[:200], body)

        send()

    assert "Traceback" not in log_since(seeded_gateway.process.log_path, log_offset)
