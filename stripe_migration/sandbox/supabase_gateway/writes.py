"""The gateway's write handlers: PostgREST's insert (POST), upsert (PUT), update (PATCH) and delete.

Updates and deletes follow PostgREST 12: with ``limit``/``offset`` they change only the rows picked
in ``order`` (PGRST109 without an order, PGRST110 when the order was not unique and more rows
changed). ``PUT`` upserts the one row its primary key filters name (PGRST105, PGRST114, PGRST115).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from stripe_migration.sandbox.supabase_gateway import (
    embedding,
    errors,
    headers,
    sql_builder,
    sql_writes,
)
from stripe_migration.sandbox.supabase_gateway.catalog import Table
from stripe_migration.sandbox.supabase_gateway.errors import GatewayError
from stripe_migration.sandbox.supabase_gateway.query import parse_query
from stripe_migration.sandbox.supabase_gateway.syntax import Filter, QueryParts


class GatewayWrites:
    """Inserts, updates and deletes; mixed into :class:`~.app.Gateway`, whose helpers they use."""

    def _mutation_checks(
        self,
        media: headers.MediaChoice,
        prefs: headers.Preferences,
        limit_affected: bool,
        max_changes: int | None = None,
        put: bool = False,
    ) -> Any:
        def check(row: tuple[Any, ...]) -> None:
            affected = row[1]
            if put and affected != 1:
                raise errors.put_mismatch()
            if max_changes is not None and affected > max_changes:
                raise errors.limited_change(affected, max_changes)
            if (
                limit_affected
                and prefs.get("handling") == "strict"
                and prefs.max_affected is not None
                and affected > prefs.max_affected
            ):
                raise GatewayError(
                    400,
                    "PGRST124",
                    "Query result exceeds max-affected preference constraint",
                    f"The query affects {affected} rows",
                )
            if media.singular and affected != 1:
                raise errors.singular(affected)

        return check

    def _mutation_response(
        self,
        status: int,
        body: str | None,
        representation: bool,
        media: headers.MediaChoice,
        extra: dict[str, str],
    ) -> Response:
        if representation:
            return Response((body or "[]").encode(), status, extra, media_type=media.content_type)
        return Response(b"", status, extra)

    @staticmethod
    def _request(
        request: Request,
    ) -> tuple[headers.Preferences, headers.MediaChoice, QueryParts]:
        """The request's ``Prefer`` and ``Accept`` headers and its query string, parsed."""
        return (
            headers.parse_prefer(request.headers.getlist("prefer")),
            headers.negotiate(request.headers.get("accept")),
            parse_query(request.query_params.multi_items()),
        )

    async def _returning(
        self, table: Table, parts: QueryParts, shape: sql_builder.Shape, representation: bool
    ) -> sql_writes.Returning:
        """What the mutation answers: ``select`` (embeds resolved) in ``shape``, if asked."""
        tree = embedding.resolve(await self._catalog(), table, parts, None)
        return sql_writes.Returning(tree, shape, representation)

    def _rows(self, table: Table, payload: Any, parts: QueryParts) -> tuple[list[Any], list[str]]:
        """The body's rows and the columns to write (``columns`` or the first row's keys)."""
        rows = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(row, dict) for row in rows):
            raise errors.invalid_body("All elements of the JSON array must be objects")
        if parts.columns is not None:
            columns = list(dict.fromkeys(parts.columns))
        else:
            columns = list(rows[0]) if rows else []
            if any(row.keys() != rows[0].keys() for row in rows[1:]):
                raise errors.invalid_body("All object keys must match")
        self._check_columns(table, columns)
        return rows, columns

    async def _insert(self, request: Request, table: Table) -> Response:
        prefs, media, parts = self._request(request)
        payload, raw = await self._json_body(request)
        rows, columns = self._rows(table, payload, parts)

        if prefs.get("missing") == "default" and parts.columns is not None and rows:
            by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                by_keys.setdefault(tuple(c for c in columns if c in row), []).append(row)
            groups = [
                sql_writes.InsertGroup(list(keys), json.dumps(members))
                for keys, members in by_keys.items()
            ]
        else:
            rows_json = raw if isinstance(payload, list) else f"[{raw}]"
            groups = [sql_writes.InsertGroup(columns, rows_json)]

        return_pref = prefs.get("return")
        headers_only = return_pref == "headers-only" and bool(table.primary_key)
        representation = return_pref == "representation" or headers_only
        if headers_only:
            parts.select = parse_query(
                [("select", ",".join(f'"{c}"' for c in table.primary_key))]
            ).select
        resolution = prefs.get("resolution")
        if resolution and not (table.primary_key or parts.on_conflict):
            resolution = None  # PostgREST ignores resolution without a key to resolve on
        shape = sql_builder.Shape(
            media.singular and not headers_only,
            media.strip_nulls,
            csv=media.csv and not headers_only,
        )
        returning = await self._returning(table, parts, shape, representation)
        statement, params = sql_writes.insert_rows(table, groups, parts, resolution, returning)
        _, affected, inserted, body = await self._execute(
            statement, params, transaction=True, check=self._mutation_checks(media, prefs, False)
        )
        extra = {
            "Content-Range": headers.content_range(1, 0, affected if prefs.count else None),
            **prefs.applied(*(["resolution"] if resolution else []), "return", "count", "missing"),
        }
        if headers_only:
            location = self._location(table, body)
            if location:
                extra["Location"] = location
        status = 200 if resolution == "merge-duplicates" and inserted == 0 else 201
        return self._mutation_response(
            status, body, representation and not headers_only, media, extra
        )

    @staticmethod
    def _location(table: Table, body: str | None) -> str | None:
        rows = json.loads(body or "[]")
        if len(rows) != 1:
            return None
        query = "&".join(
            f"{quote(c)}=eq.{quote(str(rows[0][c]))}" for c in table.primary_key if c in rows[0]
        )
        return f"/{quote(table.name)}?{query}"

    @staticmethod
    def _limit_order(parts: QueryParts) -> int | None:
        """The most rows a limited PATCH/DELETE may change (None: not limited); PGRST109 unordered."""
        if not sql_writes.limited(parts):
            return None
        if not parts.order:
            raise errors.limited_change()
        return parts.limit

    async def _change(
        self,
        statement: Any,
        params: dict[str, Any],
        media: headers.MediaChoice,
        prefs: headers.Preferences,
        max_changes: int | None,
    ) -> tuple[int, str | None]:
        """Run an update or delete: (rows changed, body); rolled back when a check fails."""
        check = self._mutation_checks(media, prefs, True, max_changes)
        _, affected, _, body = await self._execute(statement, params, transaction=True, check=check)
        return affected, body

    async def _update(self, request: Request, table: Table) -> Response:
        prefs, media, parts = self._request(request)
        max_changes = self._limit_order(parts)
        payload, raw = await self._json_body(request)
        if not isinstance(payload, dict):
            raise errors.invalid_body("PATCH needs a JSON object")
        columns = list(payload)
        self._check_columns(table, columns)
        representation = prefs.get("return") == "representation"
        applied = prefs.applied("return", "count", "handling", "max-affected")
        if not columns:
            extra = {"Content-Range": "*/0" if prefs.count else "*/*", **applied}
            return self._mutation_response(
                200 if representation else 204, "[]", representation, media, extra
            )
        if not parts.conditions and not sql_writes.limited(parts):
            raise GatewayError(400, "21000", "UPDATE requires a WHERE clause")
        shape = sql_builder.Shape(media.singular, media.strip_nulls, csv=media.csv)
        returning = await self._returning(table, parts, shape, representation)
        statement, params = sql_writes.update_rows(table, columns, raw, parts, returning)
        affected, body = await self._change(statement, params, media, prefs, max_changes)
        extra = {
            "Content-Range": headers.content_range(
                0, affected - 1, affected if prefs.count else None
            ),
            **applied,
        }
        return self._mutation_response(
            200 if representation else 204, body, representation, media, extra
        )

    async def _delete(self, request: Request, table: Table) -> Response:
        prefs, media, parts = self._request(request)
        max_changes = self._limit_order(parts)
        if not parts.conditions and not sql_writes.limited(parts):
            # Supabase loads pg-safeupdate for API roles: an unfiltered DELETE is refused (a
            # limited one has a WHERE clause joining the rows it picked).
            raise GatewayError(400, "21000", "DELETE requires a WHERE clause")
        representation = prefs.get("return") == "representation"
        shape = sql_builder.Shape(media.singular, media.strip_nulls, csv=media.csv)
        returning = await self._returning(table, parts, shape, representation)
        statement, params = sql_writes.delete_rows(table, parts, returning)
        affected, body = await self._change(statement, params, media, prefs, max_changes)
        extra = {
            "Content-Range": headers.content_range(1, 0, affected if prefs.count else None),
            **prefs.applied("return", "count", "handling", "max-affected"),
        }
        return self._mutation_response(
            200 if representation else 204, body, representation, media, extra
        )

    async def _put(self, request: Request, table: Table) -> Response:
        """``PUT /<table>?pk=eq.v``: insert or replace the one row the primary key names."""
        prefs, media, parts = self._request(request)
        if sql_writes.limited(parts):
            raise errors.put_paging()
        key = set(table.primary_key)
        filters = [c for c in parts.conditions if isinstance(c, Filter)]
        if (
            not key
            or len(filters) != len(parts.conditions)
            or {f.field.column for f in filters} != key
            or any(f.op != "eq" or f.negate or f.quantifier or f.field.path for f in filters)
        ):
            raise errors.put_filters()
        payload, raw = await self._json_body(request)
        _, columns = self._rows(table, payload, parts)
        if not key <= set(columns):
            raise errors.put_mismatch()
        rows_json = raw if isinstance(payload, list) else f"[{raw}]"
        representation = prefs.get("return") == "representation"
        shape = sql_builder.Shape(media.singular, media.strip_nulls, csv=media.csv)
        returning = await self._returning(table, parts, shape, representation)
        parts.on_conflict = None  # PUT resolves on the primary key
        statement, params = sql_writes.insert_rows(
            table,
            [sql_writes.InsertGroup(columns, rows_json)],
            parts,
            "merge-duplicates",
            returning,
            put_conditions=list(filters),
        )
        _, _, inserted, body = await self._execute(
            statement,
            params,
            transaction=True,
            check=self._mutation_checks(media, prefs, False, put=True),
        )
        status = (201 if inserted else 200) if representation else 204
        return self._mutation_response(
            status, body, representation, media, prefs.applied("return", "count")
        )
