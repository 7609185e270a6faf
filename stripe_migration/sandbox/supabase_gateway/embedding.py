"""Resolve the embedded resources of ``select`` to relationships, and compose their SQL.

Each embed becomes a lateral join on a correlated subquery, as PostgREST 12 builds it: a to-many
embed aggregates its rows with ``json_agg`` (``coalesce(..., '[]')`` when none match), a to-one
embed is ``row_to_json`` of its row or null, and a spread selects the to-one row's columns into
its parent. ``!inner`` turns the join into an inner join, so parents without a match are left
out; ``cities.order``/``cities.limit``/``cities.name=eq.x`` apply inside the subquery.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from psycopg import sql

from stripe_migration.sandbox.supabase_gateway import errors
from stripe_migration.sandbox.supabase_gateway.catalog import SCHEMA, Catalog, Table
from stripe_migration.sandbox.supabase_gateway.relationships import (
    Relationship,
    find_relationship,
)
from stripe_migration.sandbox.supabase_gateway.sql_builder import (
    Params,
    Relation,
    condition,
    order_clause,
    page_clause,
    select_list,
)
from stripe_migration.sandbox.supabase_gateway.syntax import (
    Condition,
    EmbedItem,
    EmbedParams,
    Filter,
    Logic,
    NullEmbed,
    QueryParts,
    SelectItem,
)


@dataclass
class EmbedNode:
    """An embedded resource resolved: its table, the relationship to its parent, its parameters."""

    item: EmbedItem
    table: Table
    relationship: Relationship
    number: int
    params: EmbedParams = field(default_factory=EmbedParams)
    children: list[EmbedNode] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The key of the embed in its parent's JSON object."""
        return self.item.alias or self.item.name

    @property
    def rows_alias(self) -> str:
        """The alias of the embedded table inside its subquery."""
        return f"pgrst_t{self.number}"

    @property
    def join_alias(self) -> str:
        """The alias of the lateral join (and, for to-many embeds, of its aggregated column)."""
        return f"pgrst_e{self.number}"

    @property
    def plain_items(self) -> list[SelectItem]:
        """The columns the embed selects (its own embeds are in ``children``)."""
        return [i for i in self.item.items if isinstance(i, SelectItem)]


@dataclass
class ReadTree:
    """A ``select`` resolved: the root's columns, its embeds and its conditions."""

    items: list[SelectItem]
    children: list[EmbedNode]
    conditions: list[Condition]


def resolve(catalog: Catalog, table: Table, parts: QueryParts, max_rows: int | None) -> ReadTree:
    """Resolve ``parts.select``'s embeds against ``catalog`` and attach their parameters.

    PGRST200/201 for a relationship that is missing or ambiguous, PGRST119 for a spread of a
    to-many one, PGRST108 for parameters of a resource ``select`` does not embed. ``max_rows``
    caps every embedded array, as PostgREST's ``db-max-rows`` does.
    """
    items = parts.select if parts.select is not None else [SelectItem(None)]
    children = _resolve_items(catalog, table.name, items, itertools.count(1))
    for path, params in parts.embedded.items():
        node = _find(children, path)
        node.params.conditions.extend(params.conditions)
        node.params.order = params.order or node.params.order
        node.params.limit = params.limit if params.limit is not None else node.params.limit
        node.params.offset = params.offset if params.offset is not None else node.params.offset
    for node in _walk(children):
        node.params.conditions = [_null_filter(c, node.children) for c in node.params.conditions]
        limit = node.params.limit
        if max_rows is not None and not node.relationship.to_one:
            node.params.limit = max_rows if limit is None else min(max_rows, limit)
    plain = [i for i in items if isinstance(i, SelectItem)]
    conditions = [_null_filter(c, children) for c in parts.conditions]
    return ReadTree(plain, children, conditions)


def reject_embeds(name: str, parts: QueryParts) -> None:
    """For results without relationships (function calls): any embed is PGRST200 or PGRST108."""
    for item in parts.select or []:
        if isinstance(item, EmbedItem):
            raise errors.no_relationship(name, item.name, item.hint)
    for path in parts.embedded:
        raise errors.not_embedded(path[0])


def _resolve_items(
    catalog: Catalog,
    origin: str,
    items: list[SelectItem | EmbedItem] | tuple[SelectItem | EmbedItem, ...],
    counter: Iterator[int],
) -> list[EmbedNode]:
    nodes = []
    for item in items:
        if not isinstance(item, EmbedItem):
            continue
        rel = find_relationship(catalog.relationships, origin, item.name, item.hint)
        if item.spread and not rel.to_one:
            raise errors.not_to_one("PGRST119", "spread operation", origin, item.name)
        table = catalog.tables[rel.foreign_table]
        node = EmbedNode(item, table, rel, next(counter))
        node.children = _resolve_items(catalog, table.name, item.items, counter)
        nodes.append(node)
    return nodes


def _find(children: list[EmbedNode], path: tuple[str, ...]) -> EmbedNode:
    """The embed a parameter's path (``cities.districts``) names, by name or alias."""
    nodes, node = children, None
    for segment in path:
        node = next((n for n in nodes if n.item.named(segment)), None)
        if node is None:
            raise errors.not_embedded(segment)
        nodes = node.children
    assert node is not None
    return node


def _walk(nodes: list[EmbedNode]) -> Iterator[EmbedNode]:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _null_filter(cond: Condition, children: list[EmbedNode]) -> Condition:
    """``cities=is.null`` on an embed named ``cities`` becomes a test of the embed itself."""
    if isinstance(cond, Logic):
        return Logic(cond.op, tuple(_null_filter(c, children) for c in cond.children), cond.negate)
    if not isinstance(cond, Filter) or cond.field.path or cond.op != "is":
        return cond
    if not isinstance(cond.value, str) or cond.value.lower() != "null":
        return cond
    node = next((n for n in children if n.item.named(cond.field.column)), None)
    if node is None:
        return cond
    return NullEmbed(node.join_alias, not node.relationship.to_one, cond.negate)


def compose(
    rel: Relation,
    items: list[SelectItem],
    children: list[EmbedNode],
    params: Params,
    *,
    expand_star: bool = False,
) -> tuple[sql.Composable, sql.Composable]:
    """(select list, lateral joins) of rows of ``rel`` with their embeds.

    The select list is empty when nothing is selected (``name()``), which PostgreSQL accepts.
    """
    parts: list[sql.Composable] = []
    if items:
        parts.append(select_list(rel, items, params, expand_star))
    joins: list[sql.Composable] = []
    for node in children:
        alias = sql.Identifier(node.join_alias)
        subquery = _subquery(node, rel, params)
        on: sql.Composable = sql.SQL("TRUE")
        if node.relationship.to_one:
            source = sql.SQL("({})").format(subquery)
            value = sql.SQL("row_to_json({}.*)::jsonb").format(alias)
        else:
            source = sql.SQL("(SELECT json_agg({a})::jsonb AS {a} FROM ({q}) AS {a})").format(
                a=alias, q=subquery
            )
            value = sql.SQL("coalesce({}.{}, '[]')").format(alias, alias)
            if node.item.inner:
                on = sql.SQL("{}.{} IS NOT NULL").format(alias, alias)
        kind = sql.SQL("INNER" if node.item.inner else "LEFT")
        joins.append(sql.SQL(" {} JOIN LATERAL {} AS {} ON {}").format(kind, source, alias, on))
        if node.item.spread:
            parts.append(sql.SQL("{}.*").format(alias))
        elif node.item.items:
            parts.append(sql.SQL("{} AS {}").format(value, sql.Identifier(node.key)))
    return sql.SQL(", ").join(parts), sql.Composed(joins)


def _subquery(node: EmbedNode, parent: Relation, params: Params) -> sql.Composable:
    """The embedded rows of one parent row (``parent`` is the parent's relation)."""
    rel = Relation(node.table.name, node.table.columns, node.rows_alias)
    select, joins = compose(rel, node.plain_items, node.children, params)
    sources = [sql.SQL("{} AS {}").format(node.table.ident(), sql.Identifier(node.rows_alias))]
    links: list[sql.Composable] = []
    relationship = node.relationship
    junction = relationship.junction
    if junction is None:
        links.extend(
            sql.SQL("{} = {}").format(rel.ref(own), parent.ref(theirs))
            for theirs, own in relationship.columns
        )
    else:
        through = f"pgrst_j{node.number}"
        sources.append(
            sql.SQL("{} AS {}").format(
                sql.Identifier(SCHEMA, junction.table), sql.Identifier(through)
            )
        )
        links.extend(
            sql.SQL("{} = {}").format(sql.Identifier(through, col), parent.ref(theirs))
            for theirs, col in junction.source_columns
        )
        links.extend(
            sql.SQL("{} = {}").format(sql.Identifier(through, col), rel.ref(own))
            for own, col in junction.target_columns
        )
    links.extend(condition(rel, c, params) for c in node.params.conditions)
    return sql.SQL("SELECT {} FROM {}{} WHERE {}{}{}").format(
        select,
        sql.SQL(", ").join(sources),
        joins,
        sql.SQL(" AND ").join(links),
        order_clause(rel, node.params.order, params),
        page_clause(node.params.offset or 0, node.params.limit, params),
    )
