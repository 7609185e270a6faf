"""The error a Supabase request raises, with a message that names the table (or function) and
what the status means."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from postgrest import APIError


# eq=False keeps an exception's identity comparison (and hash); repr=False keeps its repr.
@dataclass(eq=False, repr=False)
class SupabaseError(Exception):
    """A Supabase request failed; the message names the table (or function) and the status."""

    message: str
    _: KW_ONLY
    table: str
    http_status: int | None = None
    retryable: bool = False
    # PostgREST's own fields of the error, when it answered with one.
    code: str | None = None
    hint: str | None = None
    details: Any = None

    def __post_init__(self) -> None:
        super().__init__(self.message)


def error_message(table: str, status: int | None, err: APIError) -> str:
    """The message of a failed request on ``table`` (``rpc/<name>`` for a function)."""
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
