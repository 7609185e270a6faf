"""Parse PostgREST's query-string grammar into the syntax tree of ``syntax.py`` (no SQL here).

Covers horizontal filters (``col=[not.]op[(any|all)|(language)].value``), logic trees
(``or=(...)``, ``and=(...)``, nested, negated), ``order``, ``limit``, ``offset``, ``columns``,
``on_conflict``, ``select`` (``select_parser.py``) and the same parameters for embedded resources
(``cities.order=name``, ``cities.or=(...)``, ``cities.name=eq.x``). Anything outside the grammar is
a PGRST100 error naming the parameter, so text that is not an identifier never reaches SQL.
"""

from __future__ import annotations

import re

from stripe_migration.sandbox.supabase_gateway import errors
from stripe_migration.sandbox.supabase_gateway.scanner import (
    QueryError,
    Scanner,
    split_top_level,
    unquote,
    whole_identifier,
)
from stripe_migration.sandbox.supabase_gateway.select_parser import parse_select
from stripe_migration.sandbox.supabase_gateway.syntax import (
    EmbedParams,
    Filter,
    Logic,
    OrderTerm,
    QueryParts,
    parse_field,
    read_field,
)

OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "like",
    "ilike",
    "match",
    "imatch",
    "in",
    "is",
    "isdistinct",
    "cs",
    "cd",
    "ov",
    "sl",
    "sr",
    "nxr",
    "nxl",
    "adj",
    "fts",
    "plfts",
    "phfts",
    "wfts",
)
TEXT_SEARCH = {"fts", "plfts", "phfts", "wfts"}
QUANTIFIABLE = {"eq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
IS_VALUES = ("null", "not_null", "true", "false", "unknown")
RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}
LOGIC_KEYS = {"and", "or", "not.and", "not.or"}
#: Deeper ``and``/``or`` nesting is a 400: each level costs Python stack frames when the SQL is
#: composed, and a few hundred levels would overflow it (PostgreSQL would refuse soon after).
MAX_LOGIC_DEPTH = 64

_OPERATOR_LIST = ", ".join(OPERATORS)
_LANGUAGE = re.compile(r"[A-Za-z0-9_]+")


def _parse_operation(text: str) -> tuple[bool, str, str | None, str | None, str]:
    """Split ``[not.]op[(any|all)|(language)].value`` into its parts."""
    negate = text.startswith("not.")
    if negate:
        text = text[4:]
    op, dot, value = text.partition(".")
    quantifier = language = None
    match = re.fullmatch(r"([a-z]+)\(([^()]*)\)", op)
    if match:
        op, argument = match.group(1), match.group(2)
        if op in TEXT_SEARCH and _LANGUAGE.fullmatch(argument):
            language = argument
        elif op in QUANTIFIABLE and argument in ("any", "all"):
            quantifier = argument
        else:
            raise QueryError(f'"{argument}" is not a modifier of "{op}"')
    if op not in OPERATORS or not dot:
        raise QueryError(f'unknown operator "{op}", expecting "not" or one of: {_OPERATOR_LIST}')
    return negate, op, quantifier, language, value


def _parse_list(value: str, opening: str, closing: str) -> tuple[str, ...]:
    if not (value.startswith(opening) and value.endswith(closing)):
        raise QueryError(f'expected a list in "{opening}{closing}", found "{value}"')
    inner = value[1:-1]
    if inner == "":
        return ()
    return tuple(unquote(item) for item in split_top_level(inner))


def parse_filter(key: str, raw: str, *, in_logic: bool = False) -> Filter:
    """Parse one horizontal filter (``key`` is the field, ``raw`` the operation and value)."""
    target = parse_field(key)
    negate, op, quantifier, language, value = _parse_operation(raw)
    parsed: str | tuple[str, ...]
    if op == "in":
        parsed = _parse_list(value, "(", ")")
    else:
        parsed = unquote(value) if in_logic else value
        if op == "is" and parsed.lower() not in IS_VALUES:
            raise QueryError(f'"is" takes one of {", ".join(IS_VALUES)}, found "{parsed}"')
        if quantifier:
            _parse_list(parsed, "{", "}")  # validated here; PostgreSQL parses the array literal
    return Filter(target, op, parsed, negate, quantifier, language)


def parse_logic(key: str, raw: str) -> Logic:
    """Parse ``or=(...)``/``and=(...)`` (``key`` may be ``not.or``/``not.and``)."""
    negate = key.startswith("not.")
    op = key.removeprefix("not.")
    return _logic_body(op, raw, negate)


def _logic_body(op: str, raw: str, negate: bool, depth: int = 1) -> Logic:
    if depth > MAX_LOGIC_DEPTH:
        raise QueryError(f"logic trees nest at most {MAX_LOGIC_DEPTH} levels deep")
    if not (raw.startswith("(") and raw.endswith(")")):
        raise QueryError(f'expected "(" and ")" around the conditions of "{op}"')
    children: list[Filter | Logic] = []
    for item in split_top_level(raw[1:-1]):
        item = item.strip()
        match = re.match(r"(not\.)?(and|or)\(", item)
        if match:
            children.append(
                _logic_body(
                    match.group(2), item[match.end() - 1 :], bool(match.group(1)), depth + 1
                )
            )
            continue
        scanner = Scanner(item)
        read_field(scanner)
        key, rest = item[: scanner.pos], item[scanner.pos :]
        if not rest.startswith("."):
            raise QueryError(f'expected "." after the field in "{item}"')
        children.append(parse_filter(key, rest[1:], in_logic=True))
    if not children:
        raise QueryError(f'"{op}" needs at least one condition')
    return Logic(op, tuple(children), negate)


def parse_order(text: str) -> list[OrderTerm]:
    """Parse ``order=col[.asc|.desc][.nullsfirst|.nullslast],...``."""
    terms = []
    for raw in split_top_level(text):
        scanner = Scanner(raw.strip())
        target = read_field(scanner)
        modifiers = scanner.rest().split(".")[1:] if not scanner.done() else []
        if not scanner.done() and not scanner.peek("."):
            raise QueryError(f'unexpected "{scanner.text[scanner.pos]}" in "{raw}"')
        descending, nulls = False, None
        for position, modifier in enumerate(modifiers):
            if modifier in ("asc", "desc") and position == 0:
                descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast") and nulls is None:
                nulls = modifier[5:]
            else:
                raise QueryError(
                    f'unexpected "{modifier}" in "{raw}", expecting asc, desc, nullsfirst or '
                    "nullslast"
                )
        terms.append(OrderTerm(target, descending, nulls))
    return terms


def parse_names(text: str) -> list[str]:
    """Parse a comma-separated list of (optionally double-quoted) column names."""
    return [whole_identifier(raw, "column name") for raw in split_top_level(text)]


def _non_negative(name: str, raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        if re.fullmatch(r"-[0-9]+", raw) and name == "limit":
            raise errors.invalid_range("Limit should be greater than or equal to zero.")
        raise errors.parse_error(f"{name} parameter", raw, "expected a non-negative integer")
    return int(raw)


def parse_query(
    items: list[tuple[str, str]], arg_names: frozenset[str] = frozenset()
) -> QueryParts:
    """Parse a whole query string (``items`` in order); ``arg_names`` are RPC argument names."""
    parts = QueryParts()
    for key, value in items:
        try:
            if key == "apikey":
                continue  # Supabase's API gateway accepts the key as a query parameter too
            if key in arg_names:
                parts.args[key] = value
            elif key == "select":
                parts.select = parse_select(value)
            elif key == "columns":
                parts.columns = parse_names(value)
            elif key == "on_conflict":
                parts.on_conflict = parse_names(value)
            else:
                embedded = _embedded_key(key)
                if embedded is None:
                    _add_parameter(parts, key, value)
                else:
                    path, name = embedded
                    _add_parameter(parts.embedded.setdefault(path, EmbedParams()), name, value)
        except QueryError as exc:
            raise errors.parse_error(_describe(key), value, str(exc)) from None
    return parts


def _add_parameter(target: QueryParts | EmbedParams, key: str, value: str) -> None:
    """``order``, ``limit``, ``offset``, a logic tree or a filter, of the request or an embed."""
    if key == "order":
        target.order = parse_order(value)
    elif key == "limit":
        target.limit = _non_negative("limit", value)
    elif key == "offset":
        target.offset = _non_negative("offset", value)
    elif key in LOGIC_KEYS:
        target.conditions.append(parse_logic(key, value))
    else:
        target.conditions.append(parse_filter(key, value))


def _embedded_key(key: str) -> tuple[tuple[str, ...], str] | None:
    """``cities.order`` → ``(("cities",), "order")``: a parameter of an embedded resource, if so."""
    if key.startswith('"'):
        return None
    segments = split_top_level(key, ".")
    if len(segments) < 2 or "->" in segments[0]:
        return None
    tail = 2 if segments[-1] in ("and", "or") and segments[-2] == "not" else 1
    if len(segments) <= tail:
        return None  # not.or is the request's own logic tree
    path = tuple(whole_identifier(s, "embedded resource name") for s in segments[:-tail])
    return path, ".".join(segments[-tail:])


def _describe(key: str) -> str:
    """How PostgREST's parse errors name the parameter ``key``."""
    last = key.rsplit(".", 1)[-1]
    if key == "order" or last == "order":
        return "order"
    if last in RESERVED:
        return f"{last} parameter"
    return "logic tree" if key in LOGIC_KEYS or last in ("and", "or") else "filter"
