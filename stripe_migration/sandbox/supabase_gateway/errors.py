"""Errors in PostgREST's JSON shape (``code``, ``message``, ``details``, ``hint``) and its statuses.

Codes and statuses follow PostgREST's ``Error.hs``: ``PGRST1xx`` for bad requests, ``PGRST2xx`` for
names missing from the schema cache, and PostgreSQL's SQLSTATE (mapped to an HTTP status the way
PostgREST maps it) for errors raised by the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg
from starlette.responses import Response

from stripe_migration.sandbox.http_error import HttpError

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class GatewayError(HttpError):
    """A request the gateway answers with an error response."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: Any = None,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.code = code
        self.details = details
        self.hint = hint

    def body(self) -> dict[str, Any]:
        """The JSON body PostgREST would send."""
        return {key: getattr(self, key) for key in ("code", "details", "hint", "message")}

    def to_response(self) -> Response:
        """The HTTP response for this error."""
        headers = dict(self.headers)
        if self.code:
            headers.setdefault("Proxy-Status", f"PostgREST; error={self.code}")
        return Response(
            json.dumps(self.body()).encode(),
            status_code=self.status,
            headers=headers,
            media_type=JSON_CONTENT_TYPE,
        )


class KongError(GatewayError):
    """An error from Supabase's API gateway in front of PostgREST (shape ``{message, hint}``)."""

    def body(self) -> dict[str, Any]:
        """The JSON body Supabase's API gateway sends."""
        return {"message": self.message, "hint": self.hint}


def parse_error(what: str, raw: str, details: str) -> GatewayError:
    """PGRST100: a query parameter (``what``) could not be parsed."""
    return GatewayError(400, "PGRST100", f"failed to parse {what} ({raw})", details)


def invalid_body(message: str) -> GatewayError:
    """PGRST102: the request body is not the JSON the operation needs."""
    return GatewayError(400, "PGRST102", message)


def invalid_range(details: str) -> GatewayError:
    """PGRST103: the requested range cannot be served."""
    return GatewayError(416, "PGRST103", "Requested range not satisfiable", details)


def not_embedded(name: str) -> GatewayError:
    """PGRST108: a parameter refers to a resource that ``select`` does not embed."""
    return GatewayError(
        400,
        "PGRST108",
        f"'{name}' is not an embedded resource in this request",
        None,
        f"Verify that '{name}' is included in the 'select' query parameter.",
    )


def no_relationship(
    table: str, other: str, hint: str | None = None, suggestion: str | None = None
) -> GatewayError:
    """PGRST200: no foreign key relationship between ``table`` and the embedded ``other``."""
    using = f"' using the hint '{hint}" if hint else ""
    return GatewayError(
        400,
        "PGRST200",
        f"Could not find a relationship between '{table}' and '{other}' in the schema cache",
        f"Searched for a foreign key relationship between '{table}' and '{other}{using}' in the "
        "schema 'public', but no matches were found.",
        suggestion,
    )


def ambiguous_relationship(
    table: str, other: str, relationships: list[dict[str, str]], choices: str
) -> GatewayError:
    """PGRST201 (300): several relationships could embed ``other``; details lists them."""
    return GatewayError(
        300,
        "PGRST201",
        f"Could not embed because more than one relationship was found for '{table}' and '{other}'",
        relationships,
        f"Try changing '{other}' to one of the following: {choices}. Find the desired "
        "relationship in the 'details' key.",
    )


def not_to_one(code: str, what: str, table: str, other: str) -> GatewayError:
    """PGRST118 (related order) or PGRST119 (spread) on a relationship that is not to-one."""
    return GatewayError(
        400,
        code,
        f"A {what} on '{other}' is not possible",
        f"'{table}' and '{other}' do not form a many-to-one or one-to-one relationship",
    )


def put_filters() -> GatewayError:
    """PGRST105 (405): PUT's filters must be ``eq`` on every primary key column and nothing else."""
    return GatewayError(
        405,
        "PGRST105",
        "Filters must include all and only primary key columns with 'eq' operators",
    )


def put_mismatch() -> GatewayError:
    """PGRST115: PUT's body does not hold the primary key its filters name."""
    return GatewayError(400, "PGRST115", "Payload values do not match URL in primary key column(s)")


def put_paging() -> GatewayError:
    """PGRST114: PUT takes no ``limit``/``offset``."""
    return GatewayError(
        400, "PGRST114", "limit/offset querystring parameters are not allowed for PUT"
    )


def limited_change(changed: int | None = None, limit: int | None = None) -> GatewayError:
    """PostgREST 12's limited PATCH/DELETE errors.

    PGRST109 (no ``changed``): a limit without an explicit ``order``; PGRST110: the order was not
    unique, so ``changed`` rows would change where ``limit`` were asked.
    """
    if changed is None:
        return GatewayError(
            400,
            "PGRST109",
            "A 'limit' was applied without an explicit 'order'",
            hint="Apply an 'order' using unique column(s)",
        )
    details = f"Results contain {changed} rows changed but the maximum number allowed is {limit}"
    return GatewayError(
        400, "PGRST110", "The maximum number of rows allowed to change was surpassed", details
    )


def undefined_column(relation: str, column: str) -> GatewayError:
    """42703: a column named in ``select``, a filter or ``order`` does not exist."""
    return GatewayError(400, "42703", f"column {relation}.{column} does not exist")


def column_not_found(relation: str, column: str) -> GatewayError:
    """PGRST204: a column named in a request body or ``columns``/``on_conflict`` does not exist."""
    return GatewayError(
        400, "PGRST204", f"Could not find the '{column}' column of '{relation}' in the schema cache"
    )


def table_not_found(name: str, suggestion: str | None) -> GatewayError:
    """PGRST205: no table or view of that name in the exposed schema."""
    hint = f"Perhaps you meant the table 'public.{suggestion}'" if suggestion else None
    return GatewayError(
        404, "PGRST205", f"Could not find the table 'public.{name}' in the schema cache", None, hint
    )


def function_not_found(name: str, keys: list[str], hint: str | None) -> GatewayError:
    """PGRST202: no function of that name accepts these named arguments."""
    params = f"({', '.join(keys)})" if keys else " without parameters"
    searched = (
        f" with parameter{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
        if keys
        else " without parameters"
    )
    return GatewayError(
        404,
        "PGRST202",
        f"Could not find the function public.{name}{params} in the schema cache",
        f"Searched for the function public.{name}{searched}, but no matches were found in the "
        "schema cache.",
        hint,
    )


def singular(count: int) -> GatewayError:
    """PGRST116: an object was requested but the result does not have exactly one row."""
    return GatewayError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        f"The result contains {count} rows",
    )


def status_for_sqlstate(sqlstate: str, message: str) -> int:
    """The HTTP status PostgREST gives a database error with this SQLSTATE."""
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "57P01": 503,
        "P0001": 400,
        "42883": 404,
        "42P01": 404,
        "42P17": 500,
        "42501": 403,
    }
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    prefixes = {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
    }
    return prefixes.get(sqlstate[:2], 400)


def from_database(exc: psycopg.Error) -> GatewayError:
    """Translate an error raised by PostgreSQL into PostgREST's response for it."""
    sqlstate = exc.sqlstate
    if not sqlstate:
        if isinstance(exc, psycopg.OperationalError):
            # No SQLSTATE: the connection failed or broke, not the statement.
            return GatewayError(503, "PGRST001", "Database client error. Retrying the connection.")
        if isinstance(exc, psycopg.DataError):
            # psycopg refuses a value before sending it (a NUL in text); PostgreSQL would answer
            # 22021 for the same value, and PostgREST a 400.
            return GatewayError(400, "22021", str(exc))
        return internal_error()
    diag = exc.diag
    message = diag.message_primary or str(exc)
    return GatewayError(
        status_for_sqlstate(sqlstate, message),
        sqlstate,
        message,
        diag.message_detail,
        diag.message_hint,
    )


def internal_error() -> GatewayError:
    """A fault in the gateway itself (logged; the client sees no internals)."""
    return GatewayError(500, "PGRSTX00", "Internal error in the local Supabase gateway")
