"""The schema cache: tables, columns, keys, relationships and functions of the ``public`` schema.

Read from ``pg_catalog`` like PostgREST's schema cache. Every identifier a request names is looked
up here before any SQL is built, and types are kept as (schema, name) pairs so that casts can be
written with :class:`psycopg.sql.Identifier` instead of type names spliced as text.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from stripe_migration.sandbox.supabase_gateway.relationships import Relationship, load_relationships

SCHEMA = "public"


@dataclass(frozen=True)
class PgType:
    """A PostgreSQL type, by its schema-qualified internal name (castable via ``sql.Identifier``)."""

    oid: int
    schema: str
    name: str
    display: str
    category: str
    array_oid: int
    relid: int = 0

    def ident(self) -> sql.Identifier:
        """The type as a quoted, schema-qualified identifier, usable after ``::``."""
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Column:
    """A column of a table, view or function result."""

    name: str
    type: PgType
    array_type: PgType | None
    nullable: bool = True
    has_default: bool = False


@dataclass(frozen=True)
class Table:
    """A table or view exposed by the gateway."""

    name: str
    kind: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = ()

    def ident(self) -> sql.Identifier:
        """The relation as a quoted, schema-qualified identifier."""
        return sql.Identifier(SCHEMA, self.name)


@dataclass(frozen=True)
class FunctionParam:
    """A named input parameter of a function."""

    name: str
    type: PgType
    has_default: bool


@dataclass(frozen=True)
class Function:
    """A function callable through ``/rpc/<name>``.

    ``returns`` is ``"void"``, ``"scalar"`` or ``"composite"``; ``returns_set`` says whether it
    returns a set. ``columns`` are the result columns of composite results.
    """

    name: str
    params: tuple[FunctionParam, ...]
    returns: str
    returns_set: bool
    return_type: PgType
    columns: dict[str, Column] = field(default_factory=dict)
    volatility: str = "v"

    def ident(self) -> sql.Identifier:
        """The function as a quoted, schema-qualified identifier."""
        return sql.Identifier(SCHEMA, self.name)

    def accepts(self, keys: set[str]) -> bool:
        """Whether a call with exactly these named arguments resolves to this function."""
        names = {p.name for p in self.params}
        required = {p.name for p in self.params if not p.has_default}
        return keys <= names and required <= keys


@dataclass(frozen=True)
class Catalog:
    """A snapshot of the exposed schema."""

    tables: dict[str, Table]
    functions: dict[str, tuple[Function, ...]]
    loaded_at: float
    relationships: dict[str, tuple[Relationship, ...]] = field(default_factory=dict)

    def suggest_table(self, name: str) -> str | None:
        """The closest table name to ``name``, for the 404 hint."""
        match = difflib.get_close_matches(name, list(self.tables), n=1, cutoff=0.75)
        return match[0] if match else None

    def suggest_function(self, name: str) -> str | None:
        """The closest function name to ``name``, for the 404 hint."""
        match = difflib.get_close_matches(name, list(self.functions), n=1, cutoff=0.75)
        return match[0] if match else None


_TYPES = """
SELECT t.oid, n.nspname, t.typname, format_type(t.oid, NULL), t.typcategory, t.typarray,
       t.typrelid
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY(%s)
"""

_COLUMNS = """
SELECT c.relname, c.relkind, c.oid, a.attname, a.atttypid, NOT a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
ORDER BY c.relname, a.attnum
"""

_COMPOSITE_COLUMNS = """
SELECT a.attrelid, a.attname, a.atttypid
FROM pg_attribute a
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_KEYS = """
SELECT c.relname, con.contype,
       array(SELECT a.attname
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND con.contype IN ('p', 'u')
ORDER BY c.relname, con.conname
"""

_FUNCTIONS = """
SELECT p.proname, p.proretset, p.provolatile, p.pronargs, p.pronargdefaults,
       coalesce(p.proargnames, ARRAY[]::text[]),
       coalesce(p.proargmodes::text[], ARRAY[]::text[]),
       coalesce(p.proallargtypes::oid[], p.proargtypes::oid[]),
       p.prorettype, rt.typtype, rt.typrelid
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = %s AND p.prokind = 'f'
  AND rt.typname NOT IN ('trigger', 'event_trigger', 'internal', 'language_handler',
                         'fdw_handler', 'index_am_handler', 'table_am_handler', 'tsm_handler')
ORDER BY p.proname, p.oid
"""


async def load_catalog(conn: psycopg.AsyncConnection) -> Catalog:
    """Read the exposed schema's tables, keys and functions from ``pg_catalog``."""
    column_rows = await (await conn.execute(_COLUMNS, [SCHEMA])).fetchall()
    key_rows = await (await conn.execute(_KEYS, [SCHEMA])).fetchall()
    function_rows = await (await conn.execute(_FUNCTIONS, [SCHEMA])).fetchall()

    composite_relids = {row[10] for row in function_rows if row[9] == "c" and row[10]}
    composite_rows = (
        await (await conn.execute(_COMPOSITE_COLUMNS, [list(composite_relids)])).fetchall()
        if composite_relids
        else []
    )

    type_oids = {row[4] for row in column_rows} | {row[2] for row in composite_rows}
    for row in function_rows:
        type_oids.update(row[7])
        type_oids.add(row[8])
    types = await _load_types(conn, type_oids)
    types.update(await _load_types(conn, {t.array_oid for t in types.values() if t.array_oid}))

    def column(name: str, oid: int, nullable: bool = True, has_default: bool = False) -> Column:
        pg_type = types[oid]
        return Column(name, pg_type, types.get(pg_type.array_oid), nullable, has_default)

    table_columns: dict[str, dict[str, Column]] = {}
    kinds: dict[str, str] = {}
    for relname, relkind, _relid, attname, atttypid, nullable, has_default in column_rows:
        table_columns.setdefault(relname, {})[attname] = column(
            attname, atttypid, nullable, has_default
        )
        kinds[relname] = relkind

    primary: dict[str, tuple[str, ...]] = {}
    unique: dict[str, list[tuple[str, ...]]] = {}
    for relname, contype, cols in key_rows:
        if contype == "p":
            primary[relname] = tuple(cols)
        unique.setdefault(relname, []).append(tuple(cols))

    tables = {
        name: Table(name, kinds[name], cols, primary.get(name, ()), tuple(unique.get(name, [])))
        for name, cols in table_columns.items()
    }

    composite_columns: dict[int, dict[str, Column]] = {}
    for relid, attname, atttypid in composite_rows:
        composite_columns.setdefault(relid, {})[attname] = column(attname, atttypid)

    functions: dict[str, list[Function]] = {}
    for row in function_rows:
        function = _function(row, types, composite_columns)
        if function is not None:
            functions.setdefault(function.name, []).append(function)

    return Catalog(
        tables=tables,
        functions={name: tuple(overloads) for name, overloads in functions.items()},
        loaded_at=time.monotonic(),
        relationships=await load_relationships(
            conn, {n: t.unique_keys for n, t in tables.items()}, primary
        ),
    )


async def _load_types(conn: psycopg.AsyncConnection, oids: set[int]) -> dict[int, PgType]:
    if not oids:
        return {}
    rows = await (await conn.execute(_TYPES, [sorted(oids)])).fetchall()
    return {
        oid: PgType(oid, nsp, name, display, category, array_oid, relid)
        for oid, nsp, name, display, category, array_oid, relid in rows
    }


def _function(
    row: tuple, types: dict[int, PgType], composite_columns: dict[int, dict[str, Column]]
) -> Function | None:
    (name, retset, volatility, nargs, ndefaults, argnames, argmodes, argtypes, rettype, typtype,
     typrelid) = row  # fmt: skip
    modes = list(argmodes) or ["i"] * len(argtypes)
    names = list(argnames) + [""] * (len(argtypes) - len(argnames))
    inputs = [(n, types[t]) for n, t, m in zip(names, argtypes, modes, strict=True) if m in "ibv"]
    outputs = [(n, types[t]) for n, t, m in zip(names, argtypes, modes, strict=True) if m in "ot"]
    if any(not n for n, _ in inputs):
        return None  # unnamed parameters cannot be passed by name from a JSON object
    first_default = nargs - ndefaults
    params = tuple(
        FunctionParam(n, t, has_default=i >= first_default) for i, (n, t) in enumerate(inputs)
    )
    return_type = types[rettype]
    columns: dict[str, Column] = {}
    if outputs and (retset or len(outputs) > 1):
        returns = "composite"
        columns = {n: Column(n, t, types.get(t.array_oid)) for n, t in outputs}
    elif typtype == "c" and typrelid:
        returns = "composite"
        columns = composite_columns.get(typrelid, {})
    elif return_type.name == "void":
        returns = "void"
    elif typtype == "p" and return_type.name == "record":
        return None  # anonymous records need a column definition list at call time
    else:
        returns = "scalar"
    return Function(name, params, returns, retset, return_type, columns, volatility)


class CatalogCache:
    """The current :class:`Catalog`, reloaded on demand at most once per ``min_interval_s``.

    A request naming something the cache does not know triggers a reload first, so tables or
    functions created after the gateway started are found (PostgREST needs a ``NOTIFY pgrst``
    for that); the interval keeps floods of unknown names from hammering ``pg_catalog``.
    """

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self._catalog: Catalog | None = None
        self._lock = asyncio.Lock()
        self._min_interval_s = min_interval_s

    @property
    def current(self) -> Catalog:
        """The loaded catalog (raises if :meth:`refresh` never ran)."""
        if self._catalog is None:
            raise RuntimeError("schema cache not loaded")
        return self._catalog

    async def refresh(self, conn: psycopg.AsyncConnection, force: bool = True) -> Catalog:
        """Reload the catalog (unless ``force`` is false and it was loaded recently)."""
        async with self._lock:
            recent = (
                self._catalog is not None
                and time.monotonic() - self._catalog.loaded_at < self._min_interval_s
            )
            if force or not recent:
                self._catalog = await load_catalog(conn)
            return self.current
