"""Turn a parsed insert, update or delete into one SQL statement returning what was asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from stripe_migration.sandbox.supabase_gateway import errors
from stripe_migration.sandbox.supabase_gateway.catalog import Table
from stripe_migration.sandbox.supabase_gateway.query import (
    QueryParts,
)
from stripe_migration.sandbox.supabase_gateway.sql_builder import (
    JSON,
    Params,
    Shape,
    response_body,
    select_list,
    table_relation,
    where_clause,
)


@dataclass
class InsertGroup:
    """Rows that share a column list, as the JSON array text to insert."""

    columns: list[str]
    rows_json: str


def _mutation_result(
    table: Table,
    mutation: sql.Composable,
    parts: QueryParts,
    params: Params,
    shape: Shape,
    representation: bool,
    with_inserted: bool,
) -> sql.Composable:
    source_rel = table_relation(table).requalified("pgrst_source")
    if representation:
        select = select_list(source_rel, parts.select, params, expand_star=True)
        body = sql.SQL("(SELECT {} FROM (SELECT {} FROM pgrst_source) AS pgrst_t)").format(
            response_body(shape.singular, shape.strip_nulls, sql.Identifier("pgrst_t")), select
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
    shape: Shape,
    representation: bool,
) -> tuple[sql.Composable, dict[str, Any]]:
    """``POST /<table>``: insert (or upsert) every group in one statement."""
    params = Params()
    conflict_cols = parts.on_conflict or list(table.primary_key)
    for name in conflict_cols:
        if name not in table.columns:
            raise errors.column_not_found(table.name, name)
    ctes = []
    for index, group in enumerate(groups):
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in group.columns)
        statement = sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, {rows})"
        ).format(table=table.ident(), cols=cols, rows=params.add(group.rows_json, JSON))
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
        _mutation_result(table, mutation, parts, params, shape, representation, with_inserted=True),
        params.values,
    )


def update_rows(
    table: Table,
    columns: list[str],
    body_json: str,
    parts: QueryParts,
    shape: Shape,
    representation: bool,
) -> tuple[sql.Composable, dict[str, Any]]:
    """``PATCH /<table>``: set the body's columns on every row the filters match."""
    params = Params()
    rel = table_relation(table)
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("pgrst_body", c))
        for c in columns
    )
    body_source = sql.SQL(
        "(SELECT * FROM json_populate_record(NULL::{}, {})) AS pgrst_body"
    ).format(table.ident(), params.add(body_json, JSON))
    where = where_clause(rel, parts.conditions, params)
    mutation = sql.SQL(
        "WITH pgrst_source AS (UPDATE {table} SET {assignments} FROM {body}{where} "
        "RETURNING {qualifier}.*)"
    ).format(
        table=table.ident(),
        assignments=assignments,
        body=body_source,
        where=where,
        qualifier=sql.Identifier(table.name),
    )
    return (
        _mutation_result(
            table, mutation, parts, params, shape, representation, with_inserted=False
        ),
        params.values,
    )


def delete_rows(
    table: Table, parts: QueryParts, shape: Shape, representation: bool
) -> tuple[sql.Composable, dict[str, Any]]:
    """``DELETE /<table>``: delete every row the filters match."""
    params = Params()
    rel = table_relation(table)
    where = where_clause(rel, parts.conditions, params)
    mutation = sql.SQL("WITH pgrst_source AS (DELETE FROM {}{} RETURNING {}.*)").format(
        table.ident(), where, sql.Identifier(table.name)
    )
    return (
        _mutation_result(
            table, mutation, parts, params, shape, representation, with_inserted=False
        ),
        params.values,
    )
