"""The Starlette application: Supabase's ``/rest/v1`` (PostgREST) API over a PostgreSQL database.

Reads, function calls and the gateway's state are here; inserts, updates and deletes are in
``writes.py``.

One request is one SQL statement on a pooled psycopg connection; PostgreSQL builds the JSON body.
Requests are authenticated like Supabase's API gateway: the ``apikey`` header (or query
parameter) and ``Authorization: Bearer`` must both carry the configured service role key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import psycopg
import psycopg_pool
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripe_migration.db.urls import libpq_url
from stripe_migration.sandbox.supabase_gateway import (
    embedding,
    errors,
    headers,
    sql_builder,
    sql_read,
    sql_rpc,
)
from stripe_migration.sandbox.supabase_gateway.catalog import Catalog, CatalogCache, Function, Table
from stripe_migration.sandbox.supabase_gateway.errors import GatewayError
from stripe_migration.sandbox.supabase_gateway.query import parse_query
from stripe_migration.sandbox.supabase_gateway.writes import GatewayWrites

EXPOSED_SCHEMA = "public"
logger = logging.getLogger(__name__)
_TABLE_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def range_status(offset: int, page_total: int, total: int | None) -> tuple[int, str]:
    """(status, Content-Range) of a read: 206 when the page is part of a counted total."""
    upper = offset + page_total - 1
    header = headers.content_range(offset, upper, total)
    if total is None:
        return 200, header
    if offset > total:
        return 416, header
    if page_total < total:
        return 206, header
    return 200, header


class Gateway(GatewayWrites):
    """The gateway's state (pool, schema cache, key) and its request handlers."""

    def __init__(
        self,
        database_url: str,
        service_role_key: str,
        max_rows: int | None = 1000,
        pool_min_size: int = 2,
        pool_max_size: int = 10,
    ) -> None:
        if not service_role_key:
            raise ValueError("service_role_key must not be empty")
        self._key = service_role_key.encode()
        self._conninfo = libpq_url(database_url)
        self.max_rows = max_rows
        self.catalog_cache = CatalogCache(min_interval_s=0.2)
        self.pool = psycopg_pool.AsyncConnectionPool(
            self._conninfo,
            min_size=pool_min_size,
            max_size=pool_max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name="supabase_gateway",
        )

    def __repr__(self) -> str:
        return f"Gateway(max_rows={self.max_rows})"

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection) -> None:
        # PostgREST (and Supabase) answer timestamps in UTC whatever the server's TimeZone.
        await conn.execute("SET TIME ZONE 'UTC'")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Open the pool and load the schema cache; close the pool on shutdown."""
        # One direct connection first: a wrong URL fails at once instead of after the pool's
        # 30 s wait, and the launcher reports it.
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            await self.catalog_cache.refresh(conn)
        await self.pool.open(wait=True, timeout=30)
        listener = asyncio.create_task(self._listen())
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self.pool.close()

    async def _listen(self) -> None:
        """Reload the schema cache on ``NOTIFY pgrst, 'reload schema'``, as PostgREST does."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN pgrst")
                    async for notify in conn.notifies():
                        if notify.payload in ("", "reload schema"):
                            async with self.pool.connection() as pooled:
                                await self.catalog_cache.refresh(pooled)
            except psycopg.Error as exc:
                logger.warning("schema reload listener: %s; reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)

    # -- plumbing ------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        apikey = request.headers.get("apikey") or request.query_params.get("apikey")
        if not apikey:
            raise errors.KongError(
                401,
                None,
                "No API key found in request",
                hint="No `apikey` request header or url param was found.",
            )
        if not hmac.compare_digest(apikey.encode(), self._key):
            raise errors.KongError(
                401,
                None,
                "Invalid API key",
                hint="Double check your Supabase `anon` or `service_role` API key.",
            )
        authorization = request.headers.get("authorization")
        if not authorization:
            raise GatewayError(
                401,
                "PGRST302",
                "Anonymous access is disabled",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
            raise GatewayError(
                401,
                "PGRST301",
                "No suitable key or wrong key type",
                headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token", '
                    'error_description="No suitable key or wrong key type"'
                },
            )

    @staticmethod
    def _check_profile(request: Request) -> None:
        name = "accept-profile" if request.method in ("GET", "HEAD") else "content-profile"
        schema = request.headers.get(name)
        if schema is not None and schema != EXPOSED_SCHEMA:
            raise GatewayError(
                406,
                "PGRST106",
                f"Invalid schema: {schema}",
                hint=f"Only the following schemas are exposed: {EXPOSED_SCHEMA}",
            )

    async def _catalog(self, missing: bool = False) -> Catalog:
        if not missing:
            return self.catalog_cache.current
        async with self.pool.connection() as conn:
            return await self.catalog_cache.refresh(conn, force=False)

    async def _table(self, name: str) -> Table:
        catalog = await self._catalog()
        if name not in catalog.tables:
            catalog = await self._catalog(missing=True)
        if name not in catalog.tables:
            raise errors.table_not_found(name, catalog.suggest_table(name))
        return catalog.tables[name]

    async def _functions(self, name: str) -> tuple[Function, ...]:
        catalog = await self._catalog()
        if name not in catalog.functions:
            catalog = await self._catalog(missing=True)
        return catalog.functions.get(name, ())

    async def _execute(
        self,
        statement: sql.Composable,
        params: dict[str, Any],
        *,
        transaction: bool = False,
        read_only: bool = False,
        check: Any = None,
    ) -> tuple[Any, ...]:
        """Run one statement; ``check(row)`` may raise to roll the transaction back."""
        try:
            # Every statement returns (bigint, bigint, bigint, text) whatever the table's columns,
            # so statements psycopg prepared stay valid across ALTER TABLE.
            async with self.pool.connection() as conn:
                return await self._run(conn, statement, params, transaction, read_only, check)
        except psycopg.Error as exc:
            raise errors.from_database(exc) from None
        except psycopg_pool.PoolTimeout:
            raise GatewayError(
                504, "PGRST003", "Timed out acquiring connection from connection pool."
            ) from None

    @staticmethod
    async def _run(
        conn: psycopg.AsyncConnection,
        statement: sql.Composable,
        params: dict[str, Any],
        transaction: bool,
        read_only: bool,
        check: Any,
    ) -> tuple[Any, ...]:
        if not transaction:
            row = await (await conn.execute(statement, params)).fetchone()
        else:
            async with conn.transaction():
                if read_only:
                    await conn.execute("SET TRANSACTION READ ONLY")
                row = await (await conn.execute(statement, params)).fetchone()
                if check is not None:
                    check(row)
        assert row is not None
        return tuple(row)

    @staticmethod
    async def _json_body(request: Request, empty: Any = None) -> tuple[Any, str]:
        content_type = request.headers.get("content-type", "application/json")
        media = content_type.split(";")[0].strip().lower()
        if media not in ("application/json", ""):
            raise GatewayError(415, "PGRST107", f"Content-Type not acceptable: {media}")
        raw = await request.body()
        if not raw.strip() and empty is not None:
            return empty, json.dumps(empty)
        try:
            text = raw.decode("utf-8")
            return json.loads(text, parse_constant=_reject_constant), text
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
            raise errors.invalid_body("Empty or invalid json") from None

    @staticmethod
    def _check_columns(table: Table, names: list[str]) -> None:
        for name in names:
            if name not in table.columns:
                raise errors.column_not_found(table.name, name)

    @staticmethod
    def _content_location(request: Request, name: str) -> str:
        query = request.url.query
        return f"/{quote(name)}" + (f"?{query}" if query else "")

    # -- endpoints -----------------------------------------------------------------------------

    async def health(self, _request: Request) -> Response:
        """Unauthenticated liveness probe (used by the launcher to know the server is up)."""
        return JSONResponse({"status": "ok"})

    async def root(self, request: Request) -> Response:
        """``GET /rest/v1/``: a minimal OpenAPI description listing the exposed tables."""
        try:
            self._authenticate(request)
            catalog = await self._catalog()
        except GatewayError as exc:
            return exc.to_response()
        paths = {f"/{name}": {} for name in sorted(catalog.tables)}
        paths.update({f"/rpc/{name}": {} for name in sorted(catalog.functions)})
        return JSONResponse(
            {"swagger": "2.0", "info": {"title": "local supabase gateway"}, "paths": paths}
        )

    async def table(self, request: Request) -> Response:
        """``/rest/v1/<table>``: read, insert/upsert, update and delete."""
        try:
            if request.method == "OPTIONS":
                return Response(status_code=200, headers={"Allow": _TABLE_METHODS})
            self._authenticate(request)
            self._check_profile(request)
            name = request.path_params["name"]
            table = await self._table(name)
            try:
                return await self._dispatch(request, table)
            except GatewayError as exc:
                if exc.code not in ("42703", "PGRST204", "PGRST200"):
                    raise
                # An unknown column or relationship may be a new one: reload (throttled) and try
                # once more.
                fresh = (await self._catalog(missing=True)).tables.get(name)
                if fresh is None or fresh is table:
                    raise
                return await self._dispatch(request, fresh)
        except GatewayError as exc:
            return exc.to_response()

    async def _dispatch(self, request: Request, table: Table) -> Response:
        if request.method in ("GET", "HEAD"):
            return await self._read(request, table)
        if request.method == "POST":
            return await self._insert(request, table)
        if request.method == "PATCH":
            return await self._update(request, table)
        if request.method == "DELETE":
            return await self._delete(request, table)
        if request.method == "PUT":
            return await self._put(request, table)
        raise GatewayError(405, "PGRST117", f"Unsupported HTTP method: {request.method}")

    async def rpc(self, request: Request) -> Response:
        """``/rest/v1/rpc/<function>``: call a function with named arguments."""
        try:
            if request.method == "OPTIONS":
                return Response(status_code=200, headers={"Allow": "GET, HEAD, POST, OPTIONS"})
            self._authenticate(request)
            self._check_profile(request)
            return await self._call(request, request.path_params["name"])
        except GatewayError as exc:
            return exc.to_response()

    async def invalid_path(self, request: Request) -> Response:
        """Any other path under ``/rest/v1``."""
        try:
            self._authenticate(request)
        except GatewayError as exc:
            return exc.to_response()
        return GatewayError(404, "PGRST125", "Invalid path specified in request URL").to_response()

    # -- operations ----------------------------------------------------------------------------

    async def _read(self, request: Request, table: Table) -> Response:
        prefs = headers.parse_prefer(request.headers.getlist("prefer"))
        media = headers.negotiate(request.headers.get("accept"))
        parts = parse_query(request.query_params.multi_items())
        offset, limit = headers.page(
            request.headers.get("range"), parts.limit, parts.offset, self.max_rows
        )
        tree = embedding.resolve(await self._catalog(), table, parts, self.max_rows)
        shape = sql_builder.Shape(media.singular, media.strip_nulls, prefs.count, media.csv)
        statement, params = sql_read.read_table(table, tree, parts.order, (offset, limit), shape)
        total, page_total, _, body = await self._execute(statement, params)
        if media.singular and page_total != 1:
            raise errors.singular(page_total)
        status, range_header = range_status(offset, page_total, total)
        if status == 416:
            raise errors.invalid_range(
                f"An offset of {offset} was requested, but there are only {total} rows."
            )
        response_headers = {
            "Content-Range": range_header,
            "Content-Location": self._content_location(request, table.name),
            **prefs.applied("count"),
        }
        content = b"" if request.method == "HEAD" else body.encode()
        return Response(content, status, response_headers, media_type=media.content_type)

    async def _call(self, request: Request, name: str) -> Response:
        overloads = await self._functions(name)
        read_only = request.method in ("GET", "HEAD")
        if request.method not in ("GET", "HEAD", "POST"):
            raise GatewayError(405, "PGRST101", f"Cannot use the {request.method} method on RPC")
        prefs = headers.parse_prefer(request.headers.getlist("prefer"))
        media = headers.negotiate(request.headers.get("accept"))
        query_items = request.query_params.multi_items()
        if read_only:
            names = frozenset(p.name for f in overloads for p in f.params)
            args = {k: v for k, v in query_items if k in names}
        else:
            args, _ = await self._json_body(request, empty={})
            if not isinstance(args, dict):
                raise errors.invalid_body("RPC arguments must be a JSON object")
        keys = set(args)
        candidates = [f for f in overloads if f.accepts(keys)]
        if not candidates:
            hint = None
            if not overloads:
                suggestion = (await self._catalog()).suggest_function(name)
                hint = (
                    f"Perhaps you meant to call the function public.{suggestion}"
                    if suggestion
                    else None
                )
            raise errors.function_not_found(name, sorted(keys), hint)
        if len(candidates) > 1:
            raise GatewayError(
                300,
                "PGRST203",
                f"Could not choose the best candidate function between: {name} ("
                f"{len(candidates)} overloads)",
                hint="Try renaming the parameters or the function itself in the database so "
                "function overloading can be resolved",
            )
        function = candidates[0]
        arg_names = frozenset(args) if read_only else frozenset()
        parts = parse_query([(k, v) for k, v in query_items if not (read_only and k in arg_names)])
        embedding.reject_embeds(name, parts)
        if media.csv and function.returns != "composite":
            raise GatewayError(406, "PGRST107", "None of these media types are available: text/csv")
        offset, limit = (
            headers.page(request.headers.get("range"), parts.limit, parts.offset, self.max_rows)
            if function.returns_set
            else (0, None)
        )
        call = sql_rpc.RpcCall(function, json.dumps(args), sorted(keys))
        shape = sql_builder.Shape(media.singular, media.strip_nulls, prefs.count, media.csv)
        statement, params = sql_rpc.call_function(call, parts, offset, limit, shape)
        total, page_total, _, body = await self._execute(
            statement, params, transaction=True, read_only=read_only
        )
        if function.returns == "void":
            return Response(b"", 204, prefs.applied("count"))
        if media.singular and function.returns_set and page_total != 1:
            raise errors.singular(page_total)
        status, range_header = range_status(offset, page_total, total)
        if status == 416:
            raise errors.invalid_range(
                f"An offset of {offset} was requested, but there are only {total} rows."
            )
        extra = {"Content-Range": range_header, **prefs.applied("count")}
        content = b"" if request.method == "HEAD" else body.encode()
        return Response(content, status, extra, media_type=media.content_type)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return errors.internal_error().to_response()


def create_app(database_url: str, service_role_key: str, max_rows: int | None = 1000) -> Starlette:
    """Build the ASGI app serving ``/rest/v1`` over ``database_url``.

    ``service_role_key`` is the key clients must send (``apikey`` and ``Authorization: Bearer``);
    ``max_rows`` caps the rows of any read, like PostgREST's ``db-max-rows`` (None: no cap).
    """
    gateway = Gateway(database_url, service_role_key, max_rows)
    table_methods = ["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"]
    routes = [
        Route("/health", gateway.health, methods=["GET"]),
        Route("/rest/v1/", gateway.root, methods=["GET", "HEAD"]),
        Route("/rest/v1/rpc/{name}", gateway.rpc, methods=table_methods),
        Route("/rest/v1/{name}", gateway.table, methods=table_methods),
        Route("/rest/v1/{path:path}", gateway.invalid_path, methods=table_methods),
    ]
    app = Starlette(
        routes=routes,
        lifespan=gateway.lifespan,
        exception_handlers={Exception: _internal_error},
    )
    app.state.gateway = gateway
    return app
