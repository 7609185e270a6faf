"""The syntax tree a PostgREST query string parses into (see ``query.py`` and ``select_parser.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stripe_migration.sandbox.supabase_gateway.scanner import QueryError, Scanner


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
class EmbedItem:
    """An embedded resource in ``select``: ``[alias:]name[!hint][!inner](items)`` or ``...name(items)``.

    ``name`` is what PostgREST resolves to a relationship (a table, a foreign key or its column);
    no ``items`` (``name()``) embeds nothing but still filters with ``!inner``; a ``spread``
    flattens a to-one resource's columns into its parent.
    """

    name: str
    items: tuple[SelectItem | EmbedItem, ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False
    spread: bool = False

    def named(self, name: str) -> bool:
        """Whether an embedded parameter's path segment ``name`` designates this resource."""
        return name in (self.name, self.alias)


@dataclass(frozen=True)
class Filter:
    """``field [NOT] op value``; ``value`` is a list for ``in`` and a string otherwise.

    ``quantifier`` is ``any``/``all`` (``eq(any)``); ``language`` the text search configuration of
    ``fts(english)``.
    """

    field: Field
    op: str
    value: str | tuple[str, ...]
    negate: bool = False
    quantifier: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Logic:
    """``and``/``or`` over conditions, optionally negated."""

    op: str
    children: tuple[Condition, ...]
    negate: bool = False


@dataclass(frozen=True)
class OrderTerm:
    """One ``order`` term."""

    field: Field
    descending: bool = False
    nulls: str | None = None


@dataclass
class EmbedParams:
    """The parameters given to one embedded resource: ``cities.name=eq.x``, ``cities.order=...``."""

    conditions: list[Condition] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


@dataclass
class QueryParts:
    """Everything a request's query string says, parsed.

    ``embedded`` holds the parameters of embedded resources by their path (``("cities",)`` for
    ``cities.order``); which resources exist is only known once ``select`` is resolved.
    """

    select: list[SelectItem | EmbedItem] | None = None
    conditions: list[Condition] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    columns: list[str] | None = None
    on_conflict: list[str] | None = None
    args: dict[str, str] = field(default_factory=dict)
    embedded: dict[tuple[str, ...], EmbedParams] = field(default_factory=dict)


def read_field(scanner: Scanner) -> Field:
    """A column name and its JSON path at the cursor."""
    column = scanner.identifier("column name")
    path = []
    while True:
        if scanner.take("->>"):
            path.append(("->>", scanner.identifier("JSON key")))
        elif scanner.take("->"):
            path.append(("->", scanner.identifier("JSON key")))
        else:
            return Field(column, tuple(path))


def parse_field(text: str) -> Field:
    """Parse a filter key or order field: a column with an optional JSON path."""
    scanner = Scanner(text)
    result = read_field(scanner)
    if not scanner.done():
        raise QueryError(f'unexpected "{text[scanner.pos]}" at position {scanner.pos + 1}')
    return result


@dataclass(frozen=True)
class NullEmbed:
    """``cities=is.null`` / ``cities=not.is.null``: whether an embedded resource has rows.

    Built when ``select`` is resolved; ``alias`` is the SQL alias the embed is joined under and
    ``to_many`` tells whether it is an aggregated array (null when empty) or a row.
    """

    alias: str
    to_many: bool
    negate: bool = False


#: A boolean condition of a request: a filter, a logic tree or a null filter on an embed.
Condition = Filter | Logic | NullEmbed
