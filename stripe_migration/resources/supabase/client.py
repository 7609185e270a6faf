"""The Supabase client the assets call: whole-table reads by keyset pagination, bulk upserts in
chunks, filtered updates and rpc calls through supabase-py, retried on 5xx and connection errors
only.

- **Reads** page on the primary key (``id > last ORDER BY id LIMIT page``), never by offset, so
  every page costs the same however deep into 100,000 rows it is. A page is at most the server's
  ``max_rows`` (PostgREST's ``db-max-rows``; 1000 on Supabase). Paging stops at an empty page, not
  at a short one: a server that caps pages below what we asked for cannot end the read early.
  Numbers come back exact (:mod:`.exact_json`).
- **Writes** upsert on the primary key, one request per chunk (500 rows by default, so 5,000 rows
  are 10 requests), returning nothing. Every row of a chunk must have the same columns, because
  PostgREST sets the union of a chunk's columns on conflict.
- **Errors**: 5xx and connection errors are retried with backoff (tenacity); 401, 404 and 400 raise
  :class:`~.errors.SupabaseError` at once with a message that names the table. supabase-py's own
  retries are off, so a request is retried in one place only.

Every HTTP request is counted (by an httpx event hook), which gives the per-step statistics and
lets tests check how a read was paged.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypedDict, TypeVar, Unpack

import httpx
from postgrest import APIError, ReturnMethod
from supabase import Client
from tenacity import RetryCallState

from stripe_migration import settings
from stripe_migration.resources.retry import RetryingClient, RetryPolicy
from stripe_migration.resources.supabase.errors import SupabaseError, error_message
from stripe_migration.resources.supabase.exact_json import decoded_rows
from stripe_migration.resources.supabase.stats import SupabaseStats

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Filter operators accepted in ``filters``: (column, operator, value) triples.
FILTER_OPERATORS = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in", "not.eq", "not.is"}
)

Filter = tuple[str, str, Any]


class PageOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`SupabaseDb.iter_pages` that :meth:`SupabaseDb.read_table`
    passes on: ``filters``, ``key`` and ``page_size``."""

    filters: Sequence[Filter] | None
    key: str
    page_size: int | None


class SupabaseDb(RetryingClient[SupabaseStats]):
    """Reads, bulk upserts and rpc calls on one supabase-py client. Thread-safe; get it from
    :meth:`SupabaseResource.get_client`."""

    def __init__(
        self,
        client: Client,
        http_client: httpx.Client,
        *,
        max_rows: int = settings.SUPABASE_PAGE_SIZE,
        upsert_chunk_size: int = settings.SUPABASE_WRITE_CHUNK_SIZE,
        retry_policy: RetryPolicy,
    ) -> None:
        super().__init__(retry_policy, SupabaseStats())
        self.client = client
        self._http = http_client
        # The status and response of the calling thread's last request (see _on_response).
        self._status = threading.local()
        self.max_rows = max_rows
        self.upsert_chunk_size = upsert_chunk_size

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
        """Run a select and return its rows with exact numbers (see :func:`~.exact_json.decoded_rows`)."""
        query.execute()  # raises APIError on an error answer; its float-decoded data is dropped
        response: httpx.Response | None = getattr(self._status, "response", None)
        self._status.response = None
        if response is None:  # pragma: no cover - the hook sees every response of the client
            raise SupabaseError(f"no response recorded for a read of {table!r}", table=table)
        return decoded_rows(table, response.content)

    def _execute(self, table: str, run: Callable[[], T], *, retry: bool = True) -> T:
        def attempt() -> T:
            self._status.value = None
            self._status.response = None
            try:
                return run()
            except APIError as err:
                status = self._status.value
                raise SupabaseError(
                    error_message(table, status, err),
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

        return self._retrying(SupabaseError)(attempt)

    def _log_retry(self, err: BaseException | None, state: RetryCallState) -> None:
        log.info("%s; retry %d/%d", err, state.attempt_number, self.retry_policy.attempts - 1)

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
        self, table: str, columns: str | Sequence[str] = "*", **options: Unpack[PageOptions]
    ) -> list[dict[str, Any]]:
        """Every row of ``table`` matching ``filters``, read page by page (see :meth:`iter_pages`
        for ``options``)."""
        out: list[dict[str, Any]] = []
        for page in self.iter_pages(table, columns, **options):
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
