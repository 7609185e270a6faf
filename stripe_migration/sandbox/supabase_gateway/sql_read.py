"""Turn a resolved read of a table (``GET``/``HEAD``), embeds included, into one SQL statement."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from stripe_migration.sandbox.supabase_gateway import sql_builder
from stripe_migration.sandbox.supabase_gateway.catalog import Table
from stripe_migration.sandbox.supabase_gateway.embedding import ReadTree, compose
from stripe_migration.sandbox.supabase_gateway.syntax import OrderTerm


def read_table(
    table: Table,
    tree: ReadTree,
    order: list[OrderTerm],
    page: tuple[int, int | None],
    shape: sql_builder.Shape,
) -> tuple[sql.Composable, dict[str, Any]]:
    """``GET /<table>``: one page (``(offset, limit)``) of rows, and the filtered total if asked.

    The total counts the rows the page is cut from, so it goes through the same joins: an
    ``!inner`` embed or a null test of an embed filters it too.
    """
    params = sql_builder.Params()
    rel = sql_builder.table_relation(table)
    select, joins = compose(rel, tree.items, tree.children, params)
    where = sql_builder.where_clause(rel, tree.conditions, params)
    total = (
        sql.SQL("(SELECT count(*) FROM {}{}{})").format(table.ident(), joins, where)
        if shape.count
        else sql.SQL("NULL::bigint")
    )
    statement = sql.SQL(
        "SELECT {total}, count(pgrst_t), NULL::bigint, {body} "
        "FROM (SELECT {select} FROM {table}{joins}{where}{order}{page}) AS pgrst_t"
    ).format(
        total=total,
        body=sql_builder.response_body(shape, sql.Identifier("pgrst_t")),
        select=select,
        table=table.ident(),
        joins=joins,
        where=where,
        order=sql_builder.order_clause(rel, order, params),
        page=sql_builder.page_clause(page[0], page[1], params),
    )
    return statement, params.values
