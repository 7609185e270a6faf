"""Turn a parsed insert, upsert (POST/PUT), update or delete into one SQL statement.

Updates and deletes with ``limit``/``offset`` are PostgREST 12's limited mutations: the rows are
picked in a CTE ordered by the request's ``order`` and joined back on the ordered columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from stripe_migration.sandbox.supabase_gateway import errors, sql_builder
from stripe_migration.sandbox.supabase_gateway.catalog import Table
from stripe_migration.sandbox.supabase_gateway.embedding import ReadTree, compose
from stripe_migration.sandbox.supabase_gateway.sql_builder import JSON, Params
from stripe_migration.sandbox.supabase_gateway.syntax import Condition, QueryParts


@dataclass
class InsertGroup:
    """Rows that share a column list, as the JSON array text to insert."""

    columns: list[str]
    rows_json: str


@dataclass
class Returning:
    """What a mutation answers: the rows (``tree`` resolves ``select``) shaped, or nothing."""

    tree: ReadTree
    shape: sql_builder.Shape
    representation: bool


def _mutation_result(
    table: Table,
    mutation: sql.Composable,
    params: Params,
    returning: Returning,
    with_inserted: bool,
) -> sql.Composable:
    source_rel = sql_builder.table_relation(table).requalified("pgrst_source")
    if returning.representation:
        tree = returning.tree
        select, joins = compose(source_rel, tree.items, tree.children, params, expand_star=True)
        body = sql.SQL("(SELECT {} FROM (SELECT {} FROM pgrst_source{}) AS pgrst_t)").format(
            sql_builder.response_body(returning.shape, sql.Identifier("pgrst_t")), select, joins
        )
    else:
        body = sql.SQL("NULL::text")
    inserted = (
        sql.SQL("(SELECT count(*) FROM pgrst_source WHERE pgrst_inserted)")
        if with_inserted
        else sql.SQL("NULL::bigint")
    )
    return sql.SQL(
        "{mutation} SELECT NULL::bigint, (SELECT count(*) FROM pgrst_source), {inserted}, {body}"
    ).format(mutation=mutation, inserted=inserted, body=body)


def insert_rows(
    table: Table,
    groups: list[InsertGroup],
    parts: QueryParts,
    resolution: str | None,
    returning: Returning,
    put_conditions: list[Condition] | None = None,
) -> tuple[sql.Composable, dict[str, Any]]:
    """``POST /<table>``: insert (or upsert) every group in one statement.

    ``PUT`` passes its primary key filters as ``put_conditions``: only body rows that match them
    are upserted (PostgREST then checks that exactly one was).
    """
    params = Params()
    conflict_cols = parts.on_conflict or list(table.primary_key)
    for name in conflict_cols:
        if name not in table.columns:
            raise errors.column_not_found(table.name, name)
    ctes = []
    for index, group in enumerate(groups):
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in group.columns)
        statement = sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT {cols} "
            "FROM json_populate_recordset(NULL::{table}, {rows}) AS pgrst_body"
        ).format(table=table.ident(), cols=cols, rows=params.add(group.rows_json, JSON))
        if put_conditions:
            body_rel = sql_builder.Relation(table.name, table.columns, "pgrst_body")
            statement += sql_builder.where_clause(body_rel, put_conditions, params)
        if not group.columns:
            statement = sql.SQL(
                "INSERT INTO {table} SELECT FROM json_array_elements({rows})"
            ).format(table=table.ident(), rows=params.add(group.rows_json, JSON))
        if resolution == "ignore-duplicates":
            target = (
                sql.SQL(" ({})").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in conflict_cols)
                )
                if conflict_cols
                else sql.SQL("")
            )
            statement += sql.SQL(" ON CONFLICT{} DO NOTHING").format(target)
        elif resolution == "merge-duplicates" and conflict_cols and group.columns:
            updates = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in group.columns
            )
            statement += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in conflict_cols), updates
            )
        statement += sql.SQL(" RETURNING {}.*, (xmax = 0) AS pgrst_inserted").format(
            sql.Identifier(table.name)
        )
        ctes.append(sql.SQL("pgrst_insert_{} AS ({})").format(sql.SQL(str(index)), statement))
    union = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT * FROM pgrst_insert_{}").format(sql.SQL(str(i))) for i in range(len(groups))
    )
    mutation = sql.SQL("WITH {}, pgrst_source AS ({})").format(sql.SQL(", ").join(ctes), union)
    return (
        _mutation_result(table, mutation, params, returning, with_inserted=True),
        params.values,
    )


def limited(parts: QueryParts) -> bool:
    """Whether an update or delete is limited (``limit`` or ``offset`` given)."""
    return parts.limit is not None or parts.offset is not None


def _picked_rows(
    table: Table, parts: QueryParts, params: Params
) -> tuple[sql.Composable, sql.Composable]:
    """(CTE, WHERE) of a mutation; a limited one picks its rows in the CTE first.

    PostgREST 12 picks ``limit`` rows of the filtered table in ``order`` and joins them back on
    the ordered columns: ordered by a unique key, exactly those rows change; by anything else,
    every row sharing their values does (and the request is then refused with PGRST110).
    """
    rel = sql_builder.table_relation(table)
    where = sql_builder.where_clause(rel, parts.conditions, params)
    if not limited(parts):
        return sql.SQL(""), where
    keys = list(dict.fromkeys(term.field.column for term in parts.order))
    picked = sql.SQL(", ").join(rel.ref(rel.column(key).name) for key in keys)
    cte = sql.SQL("pgrst_affected_rows AS (SELECT {} FROM {}{}{}{}), ").format(
        picked,
        table.ident(),
        where,
        sql_builder.order_clause(rel, parts.order, params),
        sql_builder.page_clause(parts.offset or 0, parts.limit, params),
    )
    join = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(rel.ref(key), sql.Identifier("pgrst_affected_rows", key))
        for key in keys
    )
    return cte, join


def update_rows(
    table: Table,
    columns: list[str],
    body_json: str,
    parts: QueryParts,
    returning: Returning,
) -> tuple[sql.Composable, dict[str, Any]]:
    """``PATCH /<table>``: set the body's columns on every row the filters (and limit) pick."""
    params = Params()
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("pgrst_body", c))
        for c in columns
    )
    body_source = sql.SQL(
        "(SELECT * FROM json_populate_record(NULL::{}, {})) AS pgrst_body"
    ).format(table.ident(), params.add(body_json, JSON))
    cte, where = _picked_rows(table, parts, params)
    if limited(parts):
        body_source += sql.SQL(", pgrst_affected_rows")
    mutation = sql.SQL(
        "WITH {cte}pgrst_source AS (UPDATE {table} SET {assignments} FROM {body}{where} "
        "RETURNING {qualifier}.*)"
    ).format(
        cte=cte,
        table=table.ident(),
        assignments=assignments,
        body=body_source,
        where=where,
        qualifier=sql.Identifier(table.name),
    )
    return (
        _mutation_result(table, mutation, params, returning, with_inserted=False),
        params.values,
    )


def delete_rows(
    table: Table, parts: QueryParts, returning: Returning
) -> tuple[sql.Composable, dict[str, Any]]:
    """``DELETE /<table>``: delete every row the filters (and limit) pick."""
    params = Params()
    cte, where = _picked_rows(table, parts, params)
    using = sql.SQL(" USING pgrst_affected_rows" if limited(parts) else "")
    mutation = sql.SQL("WITH {}pgrst_source AS (DELETE FROM {}{}{} RETURNING {}.*)").format(
        cte, table.ident(), using, where, sql.Identifier(table.name)
    )
    return (
        _mutation_result(table, mutation, params, returning, with_inserted=False),
        params.values,
    )
