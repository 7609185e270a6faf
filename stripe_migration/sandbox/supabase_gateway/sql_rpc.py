"""Turn a parsed call of a database function (``/rpc/<name>``) into one SQL statement."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import sql

from stripe_migration.sandbox.supabase_gateway.catalog import Column, Function
from stripe_migration.sandbox.supabase_gateway.sql_builder import (
    JSON,
    Params,
    Relation,
    Shape,
    order_clause,
    page_clause,
    response_body,
    select_list,
    where_clause,
)
from stripe_migration.sandbox.supabase_gateway.syntax import QueryParts


@dataclass
class RpcCall:
    """A resolved function call: the function and the named arguments' JSON text."""

    function: Function
    args_json: str
    arg_names: list[str] = field(default_factory=list)


def _call(call: RpcCall, params: Params) -> tuple[sql.Composable, sql.Composable]:
    """(FROM items that bind the arguments, the call expression)."""
    by_name = {p.name: p for p in call.function.params}
    if not call.arg_names:
        return sql.SQL(""), sql.SQL("{}()").format(call.function.ident())
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(n), by_name[n].type.ident()) for n in call.arg_names
    )
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(n), sql.Identifier("pgrst_args", n))
        for n in call.arg_names
    )
    source = sql.SQL("json_to_record({}) AS pgrst_args({})").format(
        params.add(call.args_json, JSON), definitions
    )
    return source, sql.SQL("{}({})").format(call.function.ident(), arguments)


def rpc_relation(function: Function) -> Relation:
    """The columns filters and ``select`` may name on a function's result."""
    if function.returns == "composite":
        return Relation(function.name, function.columns, "pgrst_call")
    column = Column(function.name, function.return_type, None)
    return Relation(function.name, {function.name: column}, "pgrst_call")


def call_function(
    call: RpcCall, parts: QueryParts, offset: int, limit: int | None, shape: Shape
) -> tuple[sql.Composable, dict[str, Any]]:
    """``POST /rpc/<fn>``: call once, then filter, order and page a set result."""
    params = Params()
    function = call.function
    source, expr = _call(call, params)
    from_args = sql.SQL(" FROM {}").format(source) if call.arg_names else sql.SQL("")

    if function.returns in ("void", "scalar") and not function.returns_set:
        value = sql.SQL("to_json({})").format(expr)
        body = sql.SQL("coalesce({}, 'null')::text").format(value)
        if function.returns == "void":
            body = sql.SQL("{}::text").format(expr)
        statement = sql.SQL("SELECT NULL::bigint, 1::bigint, NULL::bigint, {}{}").format(
            body, from_args
        )
        return statement, params.values

    rel = rpc_relation(function)
    lateral = (
        sql.SQL("{}, LATERAL {}").format(source, expr)
        if call.arg_names
        else sql.SQL("{}").format(expr)
    )
    if function.returns == "composite":
        call_from = sql.SQL("{} AS pgrst_call").format(lateral)
    else:
        call_from = sql.SQL("{} AS pgrst_call({})").format(lateral, sql.Identifier(function.name))
    where = where_clause(rel, parts.conditions, params)
    source_rel = rel.requalified("pgrst_source")
    if function.returns == "composite":
        select = select_list(source_rel, parts.select, params, expand_star=False)
        row: sql.Composable = sql.Identifier("pgrst_t")
    else:
        select = sql.SQL("{} AS {}").format(source_rel.ref(function.name), sql.Identifier("v"))
        row = sql.Identifier("pgrst_t", "v")
    order = order_clause(source_rel, parts.order, params)
    page = page_clause(offset, limit, params)
    singular = shape.singular or not function.returns_set
    statement = sql.SQL(
        "WITH pgrst_source AS MATERIALIZED (SELECT pgrst_call.* FROM {call_from}{where}) "
        "SELECT {total}, count(pgrst_t), NULL::bigint, {body} "
        "FROM (SELECT {select} FROM pgrst_source{order}{page}) AS pgrst_t"
    ).format(
        call_from=call_from,
        where=where,
        total=sql.SQL("(SELECT count(*) FROM pgrst_source)")
        if shape.count
        else sql.SQL("NULL::bigint"),
        body=response_body(replace(shape, singular=singular), row),
        select=select,
        order=order,
        page=page,
    )
    return statement, params.values
