"""Parse PostgREST's query-string grammar into a small syntax tree (no SQL here).

Covers ``select`` (columns, ``*``, aliases, casts, JSON paths), horizontal filters
(``col=[not.]op[(any|all)].value``), logic trees (``or=(...)``, ``and=(...)``, nested, negated),
``order``, ``limit``, ``offset``, ``columns`` and ``on_conflict``. Anything outside the grammar is a
PGRST100 error naming the parameter, so text that is not an identifier never reaches SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stripe_migration.sandbox.supabase_gateway import errors

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
)
QUANTIFIABLE = {"eq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
IS_VALUES = ("null", "not_null", "true", "false", "unknown")
RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}
LOGIC_KEYS = {"and", "or", "not.and", "not.or"}
#: Deeper ``and``/``or`` nesting is a 400: each level costs Python stack frames when the SQL is
#: composed, and a few hundred levels would overflow it (PostgreSQL would refuse soon after).
MAX_LOGIC_DEPTH = 64

_OPERATOR_LIST = ", ".join(OPERATORS)
# Unquoted identifiers: letters, digits, underscore, dollar and spaces; '-' unless it starts '->'.
_IDENT_CHAR = re.compile(r"[\w$ ]", re.UNICODE)


class QueryError(ValueError):
    """A part of the query string that does not fit the grammar (message = details)."""


@dataclass(frozen=True)
class Field:
    """A column, optionally followed by a JSON path (``metadata->a->>b``)."""

    column: str
    path: tuple[tuple[str, str], ...] = ()

    @property
    def output_name(self) -> str:
        """The key PostgREST gives this field in the result: the last JSON key or the column."""
        return self.path[-1][1] if self.path else self.column


@dataclass(frozen=True)
class SelectItem:
    """One item of ``select``: ``*`` (``field`` is None) or ``[alias:]field[::cast]``."""

    field: Field | None
    alias: str | None = None
    cast: str | None = None


@dataclass(frozen=True)
class Filter:
    """``field [NOT] op value``; ``value`` is a list for ``in`` and a string otherwise."""

    field: Field
    op: str
    value: str | tuple[str, ...]
    negate: bool = False
    quantifier: str | None = None


@dataclass(frozen=True)
class Logic:
    """``and``/``or`` over conditions, optionally negated."""

    op: str
    children: tuple[Filter | Logic, ...]
    negate: bool = False


@dataclass(frozen=True)
class OrderTerm:
    """One ``order`` term."""

    field: Field
    descending: bool = False
    nulls: str | None = None


@dataclass
class QueryParts:
    """Everything a request's query string says, parsed."""

    select: list[SelectItem] | None = None
    conditions: list[Filter | Logic] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    columns: list[str] | None = None
    on_conflict: list[str] | None = None
    args: dict[str, str] = field(default_factory=dict)


class _Scanner:
    """A cursor over one parameter value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, what: str) -> None:
        if not self.take(token):
            raise QueryError(f"expected {what} at position {self.pos + 1}{self._found()}")

    def _found(self) -> str:
        return f', found "{self.text[self.pos]}"' if not self.done() else ", found end of input"

    def quoted(self) -> str:
        """A double-quoted string with backslash escapes (the opening quote is current)."""
        self.expect('"', "'\"'")
        out = []
        while not self.done():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and not self.done():
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise QueryError("unterminated double quote")

    def identifier(self, what: str = "identifier") -> str:
        if self.peek('"'):
            return self.quoted()
        start = self.pos
        while not self.done():
            char = self.text[self.pos]
            if _IDENT_CHAR.match(char) or (char == "-" and not self.peek("->")):
                self.pos += 1
            else:
                break
        name = self.text[start : self.pos].strip()
        if not name:
            raise QueryError(f"expected {what} at position {start + 1}{self._found()}")
        return name

    def field(self) -> Field:
        column = self.identifier("column name")
        path = []
        while True:
            if self.take("->>"):
                path.append(("->>", self.identifier("JSON key")))
            elif self.take("->"):
                path.append(("->", self.identifier("JSON key")))
            else:
                return Field(column, tuple(path))


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside double quotes and parentheses/braces."""
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "({":
            depth += 1
        elif not quoted and char in ")}":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise QueryError("unterminated double quote")
    if depth != 0:
        raise QueryError("unbalanced parentheses")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _Scanner(value).quoted()
    return value


def parse_field(text: str) -> Field:
    """Parse a filter key or order field: a column with an optional JSON path."""
    scanner = _Scanner(text)
    result = scanner.field()
    if not scanner.done():
        raise QueryError(f'unexpected "{text[scanner.pos]}" at position {scanner.pos + 1}')
    return result


def parse_select(text: str, table: str) -> list[SelectItem]:
    """Parse ``select``; embedded resources get PGRST200, aggregates PGRST123."""
    items = []
    for raw in split_top_level(text):
        raw = raw.strip()
        if raw == "*":
            items.append(SelectItem(None))
            continue
        if raw.startswith("..."):
            raise errors.no_relationship(table, raw[3:].split("(")[0].split("!")[0])
        scanner = _Scanner(raw)
        alias = None
        first = scanner.identifier("column name")
        if scanner.peek(":") and not scanner.peek("::"):
            scanner.take(":")
            alias = first
            target = scanner.field()
        else:
            scanner.pos = 0
            target = scanner.field()
        if scanner.peek("(") or scanner.peek("!"):
            if scanner.text[scanner.pos :].startswith("()"):
                raise errors.GatewayError(
                    400, "PGRST123", "Use of aggregate functions is not allowed"
                )
            raise errors.no_relationship(table, target.column)
        cast = None
        if scanner.take("::"):
            cast = scanner.identifier("type name")
        if not scanner.done():
            raise errors.parse_error(
                "select parameter",
                text,
                f'unexpected "{raw[scanner.pos]}" in "{raw}" at position {scanner.pos + 1}',
            )
        items.append(SelectItem(target, alias, cast))
    return items


def _parse_operation(text: str) -> tuple[bool, str, str | None, str]:
    """Split ``[not.]op[(any|all)].value`` into its parts."""
    negate = text.startswith("not.")
    if negate:
        text = text[4:]
    op, dot, value = text.partition(".")
    quantifier = None
    match = re.fullmatch(r"([a-z]+)\((any|all)\)", op)
    if match:
        op, quantifier = match.group(1), match.group(2)
        if op not in QUANTIFIABLE:
            raise QueryError(f'the "{quantifier}" modifier is not supported with "{op}"')
    if op not in OPERATORS or not dot:
        raise QueryError(f'unknown operator "{op}", expecting "not" or one of: {_OPERATOR_LIST}')
    return negate, op, quantifier, value


def _parse_list(value: str, opening: str, closing: str) -> tuple[str, ...]:
    if not (value.startswith(opening) and value.endswith(closing)):
        raise QueryError(f'expected a list in "{opening}{closing}", found "{value}"')
    inner = value[1:-1]
    if inner == "":
        return ()
    return tuple(_unquote(item) for item in split_top_level(inner))


def parse_filter(key: str, raw: str, *, in_logic: bool = False) -> Filter:
    """Parse one horizontal filter (``key`` is the field, ``raw`` the operation and value)."""
    target = parse_field(key)
    negate, op, quantifier, value = _parse_operation(raw)
    parsed: str | tuple[str, ...]
    if op == "in":
        parsed = _parse_list(value, "(", ")")
    else:
        parsed = _unquote(value) if in_logic else value
        if op == "is" and parsed.lower() not in IS_VALUES:
            raise QueryError(f'"is" takes one of {", ".join(IS_VALUES)}, found "{parsed}"')
        if quantifier:
            _parse_list(parsed, "{", "}")  # validated here; PostgreSQL parses the array literal
    return Filter(target, op, parsed, negate, quantifier)


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
        scanner = _Scanner(item)
        target_text_end = _field_end(scanner)
        key, rest = item[:target_text_end], item[target_text_end:]
        if not rest.startswith("."):
            raise QueryError(f'expected "." after the field in "{item}"')
        children.append(parse_filter(key, rest[1:], in_logic=True))
    if not children:
        raise QueryError(f'"{op}" needs at least one condition')
    return Logic(op, tuple(children), negate)


def _field_end(scanner: _Scanner) -> int:
    scanner.field()
    return scanner.pos


def parse_order(text: str) -> list[OrderTerm]:
    """Parse ``order=col[.asc|.desc][.nullsfirst|.nullslast],...``."""
    terms = []
    for raw in split_top_level(text):
        scanner = _Scanner(raw.strip())
        target = scanner.field()
        modifiers = scanner.text[scanner.pos :].split(".")[1:] if not scanner.done() else []
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
    names = []
    for raw in split_top_level(text):
        scanner = _Scanner(raw.strip())
        names.append(scanner.identifier("column name"))
        if not scanner.done():
            raise QueryError(f'unexpected "{scanner.text[scanner.pos]}" in "{raw}"')
    return names


def _non_negative(name: str, raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        if re.fullmatch(r"-[0-9]+", raw) and name == "limit":
            raise errors.invalid_range("Limit should be greater than or equal to zero.")
        raise errors.parse_error(f"{name} parameter", raw, "expected a non-negative integer")
    return int(raw)


def parse_query(
    items: list[tuple[str, str]], table: str, arg_names: frozenset[str] = frozenset()
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
                parts.select = parse_select(value, table)
            elif key == "order":
                parts.order = parse_order(value)
            elif key == "limit":
                parts.limit = _non_negative("limit", value)
            elif key == "offset":
                parts.offset = _non_negative("offset", value)
            elif key == "columns":
                parts.columns = parse_names(value)
            elif key == "on_conflict":
                parts.on_conflict = parse_names(value)
            elif key in LOGIC_KEYS:
                parts.conditions.append(parse_logic(key, value))
            elif _is_embedded_key(key):
                raise errors.not_embedded(key.split(".")[0] if "." in key else key)
            else:
                parts.conditions.append(parse_filter(key, value))
        except QueryError as exc:
            raise errors.parse_error(_describe(key), value, str(exc)) from None
    return parts


def _is_embedded_key(key: str) -> bool:
    """``rel.order``, ``rel.limit``, ``rel.col``, ``rel.or``: parameters for embedded resources."""
    if key.startswith('"'):
        return False
    head, dot, _ = key.partition(".")
    return bool(dot) and "->" not in head


def _describe(key: str) -> str:
    """How PostgREST's parse errors name the parameter ``key``."""
    if key == "order":
        return "order"
    if key in RESERVED:
        return f"{key} parameter"
    return "logic tree" if key in LOGIC_KEYS else "filter"
