"""The Supabase resource: whole-table reads by keyset pagination, bulk upserts in chunks, rpc calls,
through supabase-py, with retries on 5xx and connection errors only.

- **Reads** page on the primary key (``id > last ORDER BY id LIMIT page``), never by offset, so
  every page costs the same however deep into 100,000 rows it is. A page is at most the server's
  ``max_rows`` (PostgREST's ``db-max-rows``; 1000 on Supabase). Paging stops at an empty page, not
  at a short one: a server that caps pages below what we asked for cannot end the read early.
- **Writes** upsert on the primary key, one request per chunk (500 rows by default, so 5,000 rows
  are 10 requests), returning nothing. Every row of a chunk must have the same columns, because
  PostgREST sets the union of a chunk's columns on conflict.
- **Numbers** in what a read returns are exact: a JSON number with a fraction or an exponent (a
  ``numeric`` column, a number inside ``jsonb``) is a :class:`JsonFloat`, a float whose ``str()``
  is the number's text as PostgreSQL wrote it (``12345678901234567890.5``, ``1.10``); integers are
  Python ints. postgrest-py decodes bodies with plain floats, so reads decode the body again.
- **Errors**: 5xx and connection errors are retried with backoff (tenacity); 401, 404 and 400 raise
  :class:`SupabaseError` at once with a message that names the table. supabase-py's own retries
  are off, so a request is retried in one place only.

The key never appears in messages, logs or reprs. Every HTTP request is counted (by an httpx
event hook), which gives the per-step statistics and lets tests check how a read was paged.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import dagster as dg
import httpx
from postgrest import APIError, ReturnMethod
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator
from supabase import Client, ClientOptions, create_client
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Filter operators accepted in ``filters``: (column, operator, value) triples.
FILTER_OPERATORS = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in", "not.eq", "not.is"}
)

Filter = tuple[str, str, Any]


def supabase_url_from_env(environ: Mapping[str, str] | None = None) -> dg.EnvVar:
    """The ``dg.EnvVar`` to build :class:`SupabaseResource`'s ``url`` from, where Definitions are
    assembled: ``SUPABASE_URL``, or the seed's ``VITE_SUPABASE_URL`` when only that one is set.
    The value is read when a run starts, not here."""
    env = os.environ if environ is None else environ
    if not env.get("SUPABASE_URL") and env.get("VITE_SUPABASE_URL"):
        return dg.EnvVar("VITE_SUPABASE_URL")
    return dg.EnvVar("SUPABASE_URL")


class SupabaseError(Exception):
    """A Supabase request failed; the message names the table (or function) and the status."""

    def __init__(
        self,
        message: str,
        *,
        table: str,
        http_status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        details: Any = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.http_status = http_status
        self.code = code
        self.hint = hint
        self.details = details
        self.retryable = retryable


class SupabaseStats:
    """Thread-safe counters: HTTP requests by method, table and status, rows read and written,
    retries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.requests: Counter[tuple[str, str, str]] = Counter()
            # The latest requests only, so a long run does not grow it without bound.
            self.request_log: deque[tuple[str, str]] = deque(maxlen=10_000)
            self.rows_read = 0
            self.rows_written = 0
            self.retries = 0

    def record_request(self, method: str, url: str, status: str) -> None:
        """Count one HTTP request (``url`` is kept, without credentials, for inspection)."""
        table = _table_of(url)
        with self._lock:
            self.requests[(method, table, status)] += 1
            self.request_log.append((method, url))

    def add(self, *, rows_read: int = 0, rows_written: int = 0, retries: int = 0) -> None:
        """Add to the row and retry counters."""
        with self._lock:
            self.rows_read += rows_read
            self.rows_written += rows_written
            self.retries += retries

    def requests_to(self, table: str, method: str | None = None) -> list[str]:
        """URLs of the requests sent to ``table`` (and ``method``), in order."""
        with self._lock:
            return [
                url
                for m, url in self.request_log
                if _table_of(url) == table and (method is None or m == method)
            ]


def _table_of(url: str) -> str:
    path = urlsplit(url).path
    marker = "/rest/v1/"
    return path.split(marker, 1)[1] if marker in path else path


def _error_message(table: str, status: int | None, err: APIError) -> str:
    what = f"function {table[4:]!r}" if table.startswith("rpc/") else f"table {table!r}"
    detail = err.message or "no message"
    if err.hint:
        detail += f" (hint: {err.hint})"
    if status == 401:
        return (
            f"Supabase refused the service-role key on {what} (HTTP 401): check "
            "SUPABASE_SERVICE_ROLE_KEY"
        )
    if status == 404:
        return f"Supabase has no {what} (HTTP 404, {err.code}): {detail}"
    if status == 400:
        return f"Supabase rejected the request on {what} (HTTP 400, {err.code}): {detail}"
    return f"Supabase request on {what} failed (HTTP {status}, {err.code}): {detail}"


class JsonFloat(float):
    """A JSON number with a fraction or an exponent, as a read decodes it: the nearest float for
    arithmetic, ``repr()``, JSON encoding and pandas (as before), and its exact JSON text as
    ``str()`` and :attr:`text`, which a binary float cannot hold (``12345678901234567890.5``
    reads as 1.2345678901234567e+19, ``1.10`` as 1.1). Pickles with its text."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[type[JsonFloat], tuple[str]]:
        return (type(self), (self.text,))


def _parse_int(text: str) -> int | Decimal:
    # int() refuses more than 4300 digits (sys.get_int_max_str_digits); a jsonb number may have
    # 131,072. Decimal has no such limit, and validation refuses the value with a reason.
    return int(text) if len(text) <= 4000 else Decimal(text)


def _decoded_rows(table: str, body: bytes) -> list[dict[str, Any]]:
    """The rows of a read, decoded from the response body with exact numbers: fractions and
    exponents as :class:`JsonFloat`, integers as ints (Decimals past what ``int()`` reads)."""
    try:
        data = json.loads(body, parse_float=JsonFloat, parse_int=_parse_int)
    except ValueError as exc:
        raise SupabaseError(
            f"Supabase answered a read of table {table!r} with a body that is not JSON "
            f"({type(exc).__name__})",
            table=table,
        ) from None
    if not isinstance(data, list):
        raise SupabaseError(
            f"Supabase answered a read of table {table!r} with {type(data).__name__}, not rows",
            table=table,
        )
    return data


class SupabaseDb:
    """Reads, bulk upserts and rpc calls on one supabase-py client. Thread-safe; get it from
    :meth:`SupabaseResource.get_client`."""

    def __init__(
        self,
        client: Client,
        http_client: httpx.Client,
        *,
        max_rows: int = 1000,
        upsert_chunk_size: int = 500,
        retry_attempts: int = 5,
        retry_initial_delay_s: float = 0.5,
        retry_max_delay_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._http = http_client
        self.max_rows = max_rows
        self.upsert_chunk_size = upsert_chunk_size
        self.retry_attempts = retry_attempts
        self._wait = wait_exponential_jitter(
            multiplier=retry_initial_delay_s, max=retry_max_delay_s, jitter=retry_initial_delay_s
        )
        self._sleep = sleep
        self._status = threading.local()
        self.stats = SupabaseStats()

    def __repr__(self) -> str:
        return f"SupabaseDb(url={str(self.client.supabase_url)!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _on_response(self, response: httpx.Response) -> None:
        # httpx runs event hooks in the thread that sent the request, so the status can be
        # handed to the code that sees postgrest's exception (which does not carry it), and the
        # response to a read that decodes the body itself (see _read_page).
        self._status.value = response.status_code
        self._status.response = response
        request = response.request
        self.stats.record_request(request.method, str(request.url), str(response.status_code))

    def _read_page(self, table: str, query: Any) -> list[dict[str, Any]]:
        """Run a select and return its rows with exact numbers (see :func:`_decoded_rows`)."""
        query.execute()  # raises APIError on an error answer; its float-decoded data is dropped
        response: httpx.Response | None = getattr(self._status, "response", None)
        self._status.response = None
        if response is None:  # pragma: no cover - the hook sees every response of the client
            raise SupabaseError(f"no response recorded for a read of {table!r}", table=table)
        return _decoded_rows(table, response.content)

    def _execute(self, table: str, run: Callable[[], T], *, retry: bool = True) -> T:
        def attempt() -> T:
            self._status.value = None
            self._status.response = None
            try:
                return run()
            except APIError as err:
                status = self._status.value
                raise SupabaseError(
                    _error_message(table, status, err),
                    table=table,
                    http_status=status,
                    code=err.code,
                    hint=err.hint,
                    details=err.details,
                    retryable=retry and status is not None and status >= 500,
                ) from None
            except httpx.TransportError as err:
                self.stats.record_request("?", f"/rest/v1/{table}", type(err).__name__)
                raise SupabaseError(
                    f"Supabase request on {table!r} failed: {type(err).__name__} "
                    "(connection error or timeout)",
                    table=table,
                    retryable=retry,
                ) from None

        retrying = Retrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, SupabaseError) and e.retryable),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.add(retries=1)
        err = state.outcome.exception() if state.outcome else None
        log.info("%s; retry %d/%d", err, state.attempt_number, self.retry_attempts - 1)

    @staticmethod
    def _apply_filters(query: Any, filters: Sequence[Filter] | None) -> Any:
        for number, item in enumerate(filters or ()):
            if not isinstance(item, tuple) or len(item) != 3:
                raise ValueError(
                    f"filter #{number}: expected (column, operator, value), got {item!r}"
                )
            column, operator, value = item
            if operator not in FILTER_OPERATORS:
                raise ValueError(
                    f"filter #{number} on {column!r}: unknown operator {operator!r}; "
                    f"use one of {sorted(FILTER_OPERATORS)}"
                )
            if operator == "in":
                query = query.in_(column, list(value))
            elif operator == "is":
                query = query.is_(column, value)
            elif operator.startswith("not."):
                query = query.not_.filter(column, operator[4:], "null" if value is None else value)
            else:
                query = getattr(query, operator)(column, value)
        return query

    # -- reads ---------------------------------------------------------------------------------

    def iter_pages(
        self,
        table: str,
        columns: str | Sequence[str] = "*",
        *,
        filters: Sequence[Filter] | None = None,
        key: str = "id",
        page_size: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``table``'s rows in ``key`` order, by keyset pagination (``key > last``).

        ``filters`` are ``(column, operator, value)`` triples (operators in
        :data:`FILTER_OPERATORS`). ``page_size`` defaults to and may not exceed ``max_rows``.
        """
        size = page_size or self.max_rows
        if not 1 <= size <= self.max_rows:
            raise ValueError(
                f"page_size for {table!r} must be between 1 and max_rows ({self.max_rows}), "
                f"got {size}"
            )
        if isinstance(columns, str):
            select = columns
            if select != "*" and key not in [c.strip() for c in select.split(",")]:
                select = f"{select},{key}"
        else:
            names = list(columns)
            select = ",".join(names if key in names else [*names, key])
        last: Any = None
        while True:
            query = self.client.table(table).select(select)
            query = self._apply_filters(query, filters)
            if last is not None:
                query = query.gt(key, last)
            query = query.order(key).limit(size)
            rows = self._execute(table, functools.partial(self._read_page, table, query))
            if not rows:
                return
            self.stats.add(rows_read=len(rows))
            yield rows
            last = rows[-1][key]

    def read_table(
        self,
        table: str,
        columns: str | Sequence[str] = "*",
        *,
        filters: Sequence[Filter] | None = None,
        key: str = "id",
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every row of ``table`` matching ``filters``, read page by page (see :meth:`iter_pages`)."""
        out: list[dict[str, Any]] = []
        for page in self.iter_pages(table, columns, filters=filters, key=key, page_size=page_size):
            out.extend(page)
        return out

    # -- writes --------------------------------------------------------------------------------

    def upsert(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        on_conflict: str = "id",
        chunk_size: int | None = None,
        ignore_duplicates: bool = False,
    ) -> int:
        """Insert or update ``rows`` on ``on_conflict`` (the primary key), one request per chunk;
        return the number of rows sent. Every row must have the same columns."""
        size = chunk_size or self.upsert_chunk_size
        if size < 1:
            raise ValueError(f"chunk_size for {table!r} must be >= 1, got {size}")
        rows = list(rows)
        if not rows:
            return 0
        expected = set(rows[0])
        conflict_columns = [c.strip() for c in on_conflict.split(",")]
        for number, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"upsert into {table!r}: row {number} is not a mapping")
            if set(row) != expected:
                missing = sorted(expected - set(row))
                extra = sorted(set(row) - expected)
                raise ValueError(
                    f"upsert into {table!r}: row {number} has other columns than row 0 "
                    f"(missing {missing}, extra {extra}); every row of an upsert needs the same "
                    "columns"
                )
            for column in conflict_columns:
                if row.get(column) is None:
                    raise ValueError(
                        f"upsert into {table!r}: row {number} has no value for the conflict "
                        f"column {column!r}"
                    )
        for start in range(0, len(rows), size):
            chunk = [dict(r) for r in rows[start : start + size]]
            query = self.client.table(table).upsert(
                chunk,
                on_conflict=on_conflict,
                ignore_duplicates=ignore_duplicates,
                returning=ReturnMethod.minimal,
                default_to_null=False,
            )
            self._execute(table, query.execute)
            self.stats.add(rows_written=len(chunk))
        return len(rows)

    def update(
        self,
        table: str,
        values: Mapping[str, Any],
        filters: Sequence[Filter],
        *,
        return_rows: bool = True,
    ) -> list[dict[str, Any]]:
        """Set ``values`` on the rows of ``table`` matching ``filters`` (at least one filter, so a
        typo can never update a whole table); return the updated rows, or nothing (and no rows
        over the wire) with ``return_rows=False``."""
        if not filters:
            raise ValueError(f"update of {table!r} needs at least one filter")
        returning = ReturnMethod.representation if return_rows else ReturnMethod.minimal
        query = self._apply_filters(
            self.client.table(table).update(dict(values), returning=returning), filters
        )
        rows: list[dict[str, Any]] = self._execute(table, query.execute).data or []
        self.stats.add(rows_written=len(rows))
        return rows

    def rpc(
        self, function: str, params: Mapping[str, Any] | None = None, *, retry: bool = True
    ) -> Any:
        """Call the database function ``function`` with named ``params`` and return its result.
        Pass ``retry=False`` for a function that must not run twice (a connection lost after the
        call committed would otherwise repeat it)."""
        query = self.client.rpc(function, dict(params or {}))
        return self._execute(f"rpc/{function}", query.execute, retry=retry).data

    # -- statistics ----------------------------------------------------------------------------

    def stats_metadata(self) -> dict[str, int]:
        """The counters as a flat dict of numbers, ready for Dagster metadata."""
        stats = self.stats
        with stats._lock:
            out: dict[str, int] = {
                "supabase_requests": sum(stats.requests.values()),
                "supabase_rows_read": stats.rows_read,
                "supabase_rows_written": stats.rows_written,
                "supabase_retries": stats.retries,
            }
            for (method, table, status), n in sorted(stats.requests.items()):
                out[f"supabase_requests[{method} {table}][{status}]"] = n
        return out

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()


class SupabaseResource(dg.ConfigurableResource):
    """Supabase's REST API (PostgREST) through supabase-py. Build it where Definitions are
    assembled::

        SupabaseResource(
            url=supabase_url_from_env(),  # SUPABASE_URL, or VITE_SUPABASE_URL
            service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY"),
        )
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(description="Project URL, e.g. https://<ref>.supabase.co (SUPABASE_URL).")
    service_role_key: str = Field(
        repr=False,
        description="Service-role key (SUPABASE_SERVICE_ROLE_KEY); bypasses row-level security. "
        "Never shown in logs or errors.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a response."
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a connection."
    )
    max_rows: int = Field(
        default=1000,
        ge=1,
        description="The server's maximum rows per response (PostgREST db-max-rows; 1000 on "
        "Supabase). Read pages are never larger.",
    )
    upsert_chunk_size: int = Field(default=500, ge=1, description="Rows per upsert request.")
    retry_attempts: int = Field(
        default=5, ge=1, description="Attempts per request, the first included."
    )
    retry_initial_delay_s: float = Field(
        default=0.5, gt=0, description="Wait before the first retry (plus up to as much jitter)."
    )
    retry_max_delay_s: float = Field(
        default=10.0, gt=0, description="Longest wait between attempts."
    )

    _db: SupabaseDb | None = PrivateAttr(default=None)
    _db_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("url", mode="before")
    @classmethod
    def _check_url(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):
            return value
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError(f"url must be the project's http(s) URL (SUPABASE_URL), got {value!r}")
        return value.rstrip("/")

    @field_validator("service_role_key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("service_role_key is empty: set SUPABASE_SERVICE_ROLE_KEY")
        return value

    @model_validator(mode="after")
    def _check_retry_delays(self) -> SupabaseResource:
        if self.retry_max_delay_s < self.retry_initial_delay_s:
            raise ValueError(
                "retry_max_delay_s must be >= retry_initial_delay_s "
                f"({self.retry_max_delay_s} < {self.retry_initial_delay_s})"
            )
        return self

    def __repr__(self) -> str:
        return f"SupabaseResource(url={self.url!r}, max_rows={self.max_rows})"

    __str__ = __repr__

    def _build(self) -> SupabaseDb:
        holder: list[SupabaseDb] = []

        def on_response(response: httpx.Response) -> None:
            holder[0]._on_response(response)

        http_client = httpx.Client(
            timeout=httpx.Timeout(self.request_timeout_s, connect=self.connect_timeout_s),
            event_hooks={"response": [on_response]},
            follow_redirects=True,
        )
        options = ClientOptions(
            httpx_client=http_client,
            postgrest_client_timeout=self.request_timeout_s,
            postgrest_client_retry=False,  # retries happen once, in SupabaseDb
            auto_refresh_token=False,
            persist_session=False,
        )
        client = create_client(self.url, self.service_role_key, options=options)
        db = SupabaseDb(
            client,
            http_client,
            max_rows=self.max_rows,
            upsert_chunk_size=self.upsert_chunk_size,
            retry_attempts=self.retry_attempts,
            retry_initial_delay_s=self.retry_initial_delay_s,
            retry_max_delay_s=self.retry_max_delay_s,
        )
        holder.append(db)
        return db

    def get_client(self) -> SupabaseDb:
        """The resource's :class:`SupabaseDb` (built on first use, then shared by all threads)."""
        with self._db_lock:
            if self._db is None:
                self._db = self._build()
            return self._db

    def stats_metadata(self) -> dict[str, int]:
        """The client's counters as Dagster metadata (empty before the first request)."""
        return self._db.stats_metadata() if self._db is not None else {}

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the HTTP connections when the step ends."""
        if self._db is not None:
            self._db.close()
