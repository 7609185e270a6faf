"""Turn a parsed read into one SQL statement, from the pieces every statement shares.

The function calls are built in ``sql_rpc.py`` and the writes in ``sql_writes.py``, from these
pieces (relations, select lists, filters, order, paging, the JSON body).

Identifiers are checked against the catalog and written with :class:`psycopg.sql.Identifier`;
every value (filter values, JSON keys, limits, request bodies) is a bound parameter, cast to the
column's type. Statements return one row ``(total, page_total, inserted, body)`` where ``body``
is the JSON text PostgreSQL built with ``json_agg`` (as PostgREST does), so serialisation of
timestamps, numerics and JSON is PostgreSQL's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from stripe_migration.sandbox.supabase_gateway import errors
from stripe_migration.sandbox.supabase_gateway.catalog import Column, PgType, Table
from stripe_migration.sandbox.supabase_gateway.syntax import (
    Condition,
    Field,
    Logic,
    NullEmbed,
    OrderTerm,
    SelectItem,
)

TEXT = PgType(25, "pg_catalog", "text", "text", "S", 1009)
TEXT_ARRAY = PgType(1009, "pg_catalog", "_text", "text[]", "A", 0)
JSONB = PgType(3802, "pg_catalog", "jsonb", "jsonb", "U", 3807)
JSONB_ARRAY = PgType(3807, "pg_catalog", "_jsonb", "jsonb[]", "A", 0)
JSON = PgType(114, "pg_catalog", "json", "json", "U", 199)
JSON_ARRAY = PgType(199, "pg_catalog", "_json", "json[]", "A", 0)
INT4 = PgType(23, "pg_catalog", "int4", "integer", "N", 1007)
REGCONFIG = PgType(3734, "pg_catalog", "regconfig", "regconfig", "U", 3735)

# Casts allowed in ``select=col::type``, by the names PostgreSQL users write.
CASTS = {
    name: sql.Identifier("pg_catalog", internal)
    for name, internal in {
        "text": "text",
        "varchar": "varchar",
        "int": "int4",
        "integer": "int4",
        "int4": "int4",
        "bigint": "int8",
        "int8": "int8",
        "smallint": "int2",
        "int2": "int2",
        "numeric": "numeric",
        "real": "float4",
        "float4": "float4",
        "float8": "float8",
        "bool": "bool",
        "boolean": "bool",
        "json": "json",
        "jsonb": "jsonb",
        "uuid": "uuid",
        "date": "date",
        "timestamp": "timestamp",
        "timestamptz": "timestamptz",
        "interval": "interval",
    }.items()
}

_COMPARISONS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PATTERNS = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}
# Containment, overlap and the range operators: the value is cast to the column's type.
_TYPED_BINARY = {
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "sl": "<<",
    "sr": ">>",
    "nxr": "&<",
    "nxl": "&>",
    "adj": "-|-",
}
_TEXT_SEARCH = {
    "fts": "to_tsquery",
    "plfts": "plainto_tsquery",
    "phfts": "phraseto_tsquery",
    "wfts": "websearch_to_tsquery",
}
# A JSON path key that is an array index (str.isdigit() would also take "²", which int() refuses).
_ARRAY_INDEX = re.compile(r"-?[0-9]{1,9}")
_IS = {
    "null": "IS NULL",
    "not_null": "IS NOT NULL",
    "true": "IS TRUE",
    "false": "IS FALSE",
    "unknown": "IS UNKNOWN",
}


class Params:
    """Named bound parameters collected while a statement is composed."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, cast: PgType | sql.Composable | None = None) -> sql.Composable:
        """Bind ``value`` and return its placeholder, cast to ``cast`` if given."""
        name = f"p{len(self.values)}"
        self.values[name] = value
        placeholder = sql.Placeholder(name)
        if cast is None:
            return placeholder
        ident = cast.ident() if isinstance(cast, PgType) else cast
        return sql.SQL("{}::{}").format(placeholder, ident)


@dataclass(frozen=True)
class Relation:
    """Columns a statement can name, the name errors use, and how SQL qualifies them."""

    name: str
    columns: dict[str, Column]
    qualifier: str

    def column(self, name: str) -> Column:
        """The column ``name``, or a 42703 error like PostgreSQL's."""
        try:
            return self.columns[name]
        except KeyError:
            raise errors.undefined_column(self.name, name) from None

    def ref(self, name: str) -> sql.Identifier:
        """The qualified reference to column ``name``."""
        return sql.Identifier(self.qualifier, name)

    def requalified(self, qualifier: str) -> Relation:
        """The same columns under another qualifier."""
        return Relation(self.name, self.columns, qualifier)


def table_relation(table: Table) -> Relation:
    """The relation of a table, qualified by its name."""
    return Relation(table.name, table.columns, table.name)


def field_expr(
    rel: Relation, target: Field, params: Params
) -> tuple[sql.Composable, PgType, PgType | None]:
    """SQL for a column or JSON path, with the type of its value and of an array of it."""
    column = rel.column(target.column)
    expr: sql.Composable = rel.ref(column.name)
    value_type, array_type = column.type, column.array_type
    for operator, key in target.path:
        key_param = (
            params.add(int(key), INT4) if _ARRAY_INDEX.fullmatch(key) else params.add(key, TEXT)
        )
        expr = sql.SQL("({} {} {})").format(expr, sql.SQL(operator), key_param)
        if operator == "->>":
            value_type, array_type = TEXT, TEXT_ARRAY
        elif column.type.name == "json":
            value_type, array_type = JSON, JSON_ARRAY
        else:
            value_type, array_type = JSONB, JSONB_ARRAY
    return expr, value_type, array_type


def select_list(
    rel: Relation, items: list[SelectItem] | None, params: Params, expand_star: bool
) -> sql.Composable:
    """The select list; ``*`` becomes ``qualifier.*`` or, with ``expand_star``, every column."""
    parts: list[sql.Composable] = []
    for item in items or [SelectItem(None)]:
        if item.field is None:
            if expand_star:
                parts.extend(
                    sql.SQL("{} AS {}").format(rel.ref(name), sql.Identifier(name))
                    for name in rel.columns
                )
            else:
                parts.append(sql.SQL("{}.*").format(sql.Identifier(rel.qualifier)))
            continue
        expr, _, _ = field_expr(rel, item.field, params)
        if item.cast is not None:
            cast = CASTS.get(item.cast.lower())
            if cast is None:
                raise errors.GatewayError(400, "42704", f'type "{item.cast}" does not exist')
            expr = sql.SQL("{}::{}").format(expr, cast)
        name = item.alias or item.field.output_name
        parts.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(name)))
    return sql.SQL(", ").join(parts)


def condition(rel: Relation, cond: Condition, params: Params) -> sql.Composable:
    """One filter, logic tree or null test of an embed as a boolean SQL expression."""
    if isinstance(cond, Logic):
        joiner = sql.SQL(" AND " if cond.op == "and" else " OR ")
        inner = sql.SQL("({})").format(
            joiner.join(condition(rel, c, params) for c in cond.children)
        )
        return sql.SQL("NOT {}").format(inner) if cond.negate else inner
    if isinstance(cond, NullEmbed):
        alias = sql.Identifier(cond.alias)
        ref = sql.SQL("{}.{}").format(alias, alias) if cond.to_many else alias
        test = " IS DISTINCT FROM NULL" if cond.negate else " IS NOT DISTINCT FROM NULL"
        return ref + sql.SQL(test)

    expr, value_type, array_type = field_expr(rel, cond.field, params)
    op, value = cond.op, cond.value
    if op == "is":
        assert isinstance(value, str)
        clause = sql.SQL("{} " + _IS[value.lower()]).format(expr)
    elif op == "in":
        clause = sql.SQL("{} = ANY({})").format(expr, params.add(list(value), array_type))
    elif cond.quantifier:
        assert isinstance(value, str)
        if op in _PATTERNS:
            operator, cast = _PATTERNS[op], TEXT_ARRAY
            value = value.replace("*", "%") if op in ("like", "ilike") else value
        else:
            operator, cast = _COMPARISONS[op], array_type
        clause = sql.SQL("{} {} {}({})").format(
            expr,
            sql.SQL(operator),
            sql.SQL("ANY" if cond.quantifier == "any" else "ALL"),
            params.add(value, cast),
        )
    elif op in _PATTERNS:
        assert isinstance(value, str)
        pattern = value.replace("*", "%") if op in ("like", "ilike") else value
        clause = sql.SQL("{} {} {}").format(expr, sql.SQL(_PATTERNS[op]), params.add(pattern, TEXT))
    elif op in _TYPED_BINARY:
        clause = sql.SQL("{} {} {}").format(
            expr, sql.SQL(_TYPED_BINARY[op]), params.add(value, value_type)
        )
    elif op in _TEXT_SEARCH:
        clause = _text_search(expr, value_type, op, value, cond.language, params)
    elif op == "isdistinct":
        clause = sql.SQL("{} IS DISTINCT FROM {}").format(expr, params.add(value, value_type))
    else:
        clause = sql.SQL("{} {} {}").format(
            expr, sql.SQL(_COMPARISONS[op]), params.add(value, value_type)
        )
    return sql.SQL("NOT ({})").format(clause) if cond.negate else clause


def _text_search(
    expr: sql.Composable,
    value_type: PgType,
    op: str,
    value: object,
    language: str | None,
    params: Params,
) -> sql.Composable:
    """``doc @@ to_tsquery([language,] value)``, as PostgREST 13 writes full-text search.

    A ``tsvector`` column is matched as it is; any other column goes through ``to_tsvector`` with
    the same language, so text columns can be searched too.
    """
    arguments: list[sql.Composable] = [params.add(language, REGCONFIG)] if language else []
    document = expr
    if value_type.name != "tsvector":
        document = sql.SQL("pg_catalog.to_tsvector({})").format(
            sql.SQL(", ").join([*arguments, expr])
        )
    query = sql.SQL("{}({})").format(
        sql.Identifier("pg_catalog", _TEXT_SEARCH[op]),
        sql.SQL(", ").join([*arguments, params.add(value, TEXT)]),
    )
    return sql.SQL("{} @@ {}").format(document, query)


def where_clause(rel: Relation, conditions: Sequence[Condition], params: Params) -> sql.Composable:
    """``WHERE ...`` for the conditions (AND-ed), or nothing."""
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(condition(rel, c, params) for c in conditions)


def order_clause(rel: Relation, terms: list[OrderTerm], params: Params) -> sql.Composable:
    """``ORDER BY ...`` for the terms, or nothing."""
    if not terms:
        return sql.SQL("")
    parts = []
    for term in terms:
        expr, _, _ = field_expr(rel, term.field, params)
        text = " DESC" if term.descending else " ASC"
        if term.nulls:
            text += " NULLS FIRST" if term.nulls == "first" else " NULLS LAST"
        parts.append(expr + sql.SQL(text))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)


def page_clause(offset: int, limit: int | None, params: Params) -> sql.Composable:
    """``LIMIT``/``OFFSET`` with bound values."""
    clause = sql.SQL("")
    if limit is not None:
        clause += sql.SQL(" LIMIT {}").format(params.add(limit))
    if offset:
        clause += sql.SQL(" OFFSET {}").format(params.add(offset))
    return clause


def response_body(shape: Shape, row: sql.Composable) -> sql.Composable:
    """The statement's ``body`` column: the rows as JSON text (one object or an array) or CSV.

    CSV is PostgREST's: a header of the first row's keys, then each row as PostgreSQL writes a
    record (values with commas, quotes, spaces or parentheses double-quoted, nulls empty).
    """
    if shape.csv:
        header = sql.SQL(
            "coalesce((SELECT string_agg(pgrst_k, ',') FROM "
            "pg_catalog.json_object_keys((SELECT (array_agg(row_to_json({row})))[1])) AS pgrst_k),"
            " '')"
        ).format(row=row)
        lines = sql.SQL(
            "coalesce(string_agg(substring({row}::text, 2, length({row}::text) - 2), E'\\n'), '')"
        ).format(row=row)
        return sql.SQL("{} || E'\\n' || {}").format(header, lines)
    agg = sql.SQL("json_agg({})").format(row)
    body = (
        sql.SQL("coalesce({}->0, 'null')").format(agg)
        if shape.singular
        else sql.SQL("coalesce({}, '[]')").format(agg)
    )
    if shape.strip_nulls:
        body = sql.SQL("json_strip_nulls({})").format(body)
    return sql.SQL("{}::text").format(body)


@dataclass
class Shape:
    """How to render the result: one object, an array (nulls stripped or not) or CSV."""

    singular: bool = False
    strip_nulls: bool = False
    count: bool = False
    csv: bool = False
