"""Parse ``select``: columns, aliases, casts, JSON paths, embedded resources and spreads."""

from __future__ import annotations

from stripe_migration.sandbox.supabase_gateway import errors
from stripe_migration.sandbox.supabase_gateway.scanner import QueryError, Scanner, split_top_level
from stripe_migration.sandbox.supabase_gateway.syntax import EmbedItem, SelectItem, read_field

#: Embeds nest at most this deep (each level is a correlated subquery).
MAX_EMBED_DEPTH = 16
_JOIN_TYPES = ("inner", "left")


def parse_select(text: str, depth: int = 0) -> list[SelectItem | EmbedItem]:
    """Parse ``select`` (or an embed's items); aggregates are refused with PGRST123."""
    if depth > MAX_EMBED_DEPTH:
        raise QueryError(f"embedded resources nest at most {MAX_EMBED_DEPTH} levels deep")
    items: list[SelectItem | EmbedItem] = []
    parts = split_top_level(text)
    if depth and parts == [""]:
        return items  # name(): an embed that selects nothing
    for raw in parts:
        raw = raw.strip()
        if raw == "*":
            items.append(SelectItem(None))
        elif raw.startswith("..."):
            items.append(_embed(Scanner(raw[3:]), raw, None, depth, spread=True))
        else:
            items.append(_item(raw, depth))
    return items


def _item(raw: str, depth: int) -> SelectItem | EmbedItem:
    scanner = Scanner(raw)
    alias: str | None = scanner.identifier("field name")
    if scanner.peek(":") and not scanner.peek("::"):
        scanner.take(":")
    else:
        alias, scanner.pos = None, 0
    start = scanner.pos
    target = read_field(scanner)
    if scanner.peek("(") or scanner.peek("!"):
        if target.column == "count" and not target.path:
            raise errors.GatewayError(400, "PGRST123", "Use of aggregate functions is not allowed")
        if target.path:
            raise QueryError(f'a JSON path cannot name an embedded resource in "{raw}"')
        scanner.pos = start
        scanner.identifier("relation name")
        return _embed(scanner, raw, alias, depth, spread=False, name=target.column)
    cast = None
    if scanner.take("::"):
        cast = scanner.identifier("type name")
    if not scanner.done():
        raise QueryError(
            f'unexpected "{raw[scanner.pos]}" in "{raw}" at position {scanner.pos + 1}'
        )
    return SelectItem(target, alias, cast)


def _embed(
    scanner: Scanner,
    raw: str,
    alias: str | None,
    depth: int,
    *,
    spread: bool,
    name: str | None = None,
) -> EmbedItem:
    """``name[!hint][!inner|!left](items)`` at the cursor (after the name when ``name`` is given)."""
    if name is None:
        name = scanner.identifier("relation name")
    hint, inner, join_given = None, False, False
    for _ in range(2):
        if not scanner.take("!"):
            break
        word = scanner.identifier("embed hint or join type")
        if word in _JOIN_TYPES and not join_given:
            inner, join_given = word == "inner", True
        elif hint is None and word not in _JOIN_TYPES:
            hint = word
        else:
            raise QueryError(f'unexpected "!{word}" in "{raw}"')
    rest = scanner.rest()
    if not (rest.startswith("(") and rest.endswith(")")):
        raise QueryError(f'expected "(" and ")" around the fields of "{name}" in "{raw}"')
    items = parse_select(rest[1:-1], depth + 1)
    return EmbedItem(name, tuple(items), alias, hint, inner, spread)
