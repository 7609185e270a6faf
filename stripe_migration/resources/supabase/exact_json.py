"""Rows decoded from PostgREST's JSON with exact numbers: a number with a fraction or an exponent
becomes a :class:`JsonFloat` that keeps its text, integers stay ints (postgrest-py decodes bodies
with plain floats, so reads decode the body again with these)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from stripe_migration.resources.supabase.errors import SupabaseError


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


def decoded_rows(table: str, body: bytes) -> list[dict[str, Any]]:
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
