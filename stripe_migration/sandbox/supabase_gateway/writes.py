"""The gateway's write handlers: PostgREST's insert (POST), update (PATCH) and delete on a table."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from stripe_migration.sandbox.supabase_gateway import errors, headers, sql_builder, sql_writes
from stripe_migration.sandbox.supabase_gateway.catalog import Table
from stripe_migration.sandbox.supabase_gateway.errors import GatewayError
from stripe_migration.sandbox.supabase_gateway.query import QueryParts, parse_query


class GatewayWrites:
    """Inserts, updates and deletes; mixed into :class:`~.app.Gateway`, whose helpers they use."""

    def _mutation_checks(
        self, media: headers.MediaChoice, prefs: headers.Preferences, limit_affected: bool
    ) -> Any:
        def check(row: tuple[Any, ...]) -> None:
            affected = row[1]
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

    async def _insert(self, request: Request, table: Table) -> Response:
        prefs = headers.parse_prefer(request.headers.getlist("prefer"))
        media = headers.negotiate(request.headers.get("accept"))
        parts = parse_query(request.query_params.multi_items(), table.name)
        payload, raw = await self._json_body(request)
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
                [("select", ",".join(f'"{c}"' for c in table.primary_key))], table.name
            ).select
        resolution = prefs.get("resolution")
        if resolution and not (table.primary_key or parts.on_conflict):
            resolution = None  # PostgREST ignores resolution without a key to resolve on
        shape = sql_builder.Shape(media.singular and not headers_only, media.strip_nulls)
        statement, params = sql_writes.insert_rows(
            table, groups, parts, resolution, shape, representation
        )
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

    def _reject_paging(self, parts: QueryParts, method: str) -> None:
        if parts.limit is not None or parts.offset is not None:
            raise GatewayError(
                400,
                "PGRST127",
                "Feature not implemented",
                f"limit/offset on {method} are not supported by the local gateway",
            )

    async def _update(self, request: Request, table: Table) -> Response:
        prefs = headers.parse_prefer(request.headers.getlist("prefer"))
        media = headers.negotiate(request.headers.get("accept"))
        parts = parse_query(request.query_params.multi_items(), table.name)
        self._reject_paging(parts, "PATCH")
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
        if not parts.conditions:
            raise GatewayError(400, "21000", "UPDATE requires a WHERE clause")
        shape = sql_builder.Shape(media.singular, media.strip_nulls)
        statement, params = sql_writes.update_rows(
            table, columns, raw, parts, shape, representation
        )
        _, affected, _, body = await self._execute(
            statement, params, transaction=True, check=self._mutation_checks(media, prefs, True)
        )
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
        prefs = headers.parse_prefer(request.headers.getlist("prefer"))
        media = headers.negotiate(request.headers.get("accept"))
        parts = parse_query(request.query_params.multi_items(), table.name)
        self._reject_paging(parts, "DELETE")
        if not parts.conditions:
            # Supabase loads pg-safeupdate for API roles: an unfiltered DELETE is refused.
            raise GatewayError(400, "21000", "DELETE requires a WHERE clause")
        representation = prefs.get("return") == "representation"
        shape = sql_builder.Shape(media.singular, media.strip_nulls)
        statement, params = sql_writes.delete_rows(table, parts, shape, representation)
        _, affected, _, body = await self._execute(
            statement, params, transaction=True, check=self._mutation_checks(media, prefs, True)
        )
        extra = {
            "Content-Range": headers.content_range(1, 0, affected if prefs.count else None),
            **prefs.applied("return", "count", "handling", "max-affected"),
        }
        return self._mutation_response(
            200 if representation else 204, body, representation, media, extra
        )
