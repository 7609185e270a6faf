"""Foreign-key relationships between exposed tables, and PostgREST's rules for picking one to embed.

Read from ``pg_constraint`` like PostgREST 12's schema cache: every foreign key gives a many-to-one
relationship from the referencing table and its inverse one-to-many (one-to-one both ways when the
foreign key columns are the referencing table's primary key or a unique key), and a table whose
primary key holds the columns of two foreign keys is the junction of a many-to-many relationship.
Relationships through views and computed relationships are not discovered.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import psycopg

from stripe_migration.sandbox.supabase_gateway import errors

SCHEMA = "public"
TO_ONE = ("many-to-one", "one-to-one")

_FOREIGN_KEYS = """
SELECT con.conname, tab.relname, other.relname,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_constraint con
JOIN pg_class tab ON tab.oid = con.conrelid
JOIN pg_class other ON other.oid = con.confrelid
WHERE con.contype = 'f' AND con.conparentid = 0
  AND tab.relnamespace = %(schema)s::regnamespace AND other.relnamespace = %(schema)s::regnamespace
ORDER BY tab.relname, con.conname
"""


@dataclass(frozen=True)
class Junction:
    """The table between the two sides of a many-to-many relationship.

    ``source_columns`` pair a column of the origin with the junction's column that references it,
    ``target_columns`` a column of the target with the junction's.
    """

    table: str
    constraint1: str
    constraint2: str
    source_columns: tuple[tuple[str, str], ...]
    target_columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Relationship:
    """A way to embed ``foreign_table`` in rows of ``table``.

    ``columns`` pair a column of ``table`` with the column of ``foreign_table`` it matches
    (empty for many-to-many, whose pairs are on the junction).
    """

    table: str
    foreign_table: str
    constraint: str
    columns: tuple[tuple[str, str], ...]
    cardinality: str
    is_self: bool = False
    junction: Junction | None = None

    @property
    def to_one(self) -> bool:
        """Whether at most one row of ``foreign_table`` matches a row of ``table``."""
        return self.cardinality in TO_ONE

    def describe(self) -> dict[str, str]:
        """The entry PostgREST lists in PGRST201's details for this relationship."""
        if self.junction is not None:
            j = self.junction
            source = ", ".join(col for _, col in j.source_columns)
            target = ", ".join(col for _, col in j.target_columns)
            text = f"{j.table} using {j.constraint1}({source}) and {j.constraint2}({target})"
        else:
            own = ", ".join(col for col, _ in self.columns)
            other = ", ".join(col for _, col in self.columns)
            text = f"{self.constraint} using {self.table}({own}) and {self.foreign_table}({other})"
        return {
            "cardinality": self.cardinality,
            "embedding": f"{self.table} with {self.foreign_table}",
            "relationship": text,
        }

    def hint_name(self) -> str:
        """``target!name``: how PostgREST's PGRST201 hint tells to pick this relationship."""
        name = self.junction.table if self.junction is not None else self.constraint
        return f"'{self.foreign_table}!{name}'"


async def load_relationships(
    conn: psycopg.AsyncConnection,
    unique_keys: dict[str, tuple[tuple[str, ...], ...]],
    primary_keys: dict[str, tuple[str, ...]],
) -> dict[str, tuple[Relationship, ...]]:
    """Every relationship of the exposed schema, by origin table."""
    rows = await (await conn.execute(_FOREIGN_KEYS, {"schema": SCHEMA})).fetchall()
    direct: list[Relationship] = []
    for constraint, table, foreign_table, cols, fcols in rows:
        pairs = tuple(zip(cols, fcols, strict=True))
        one_to_one = set(cols) in [set(key) for key in unique_keys.get(table, ())]
        cardinality = "one-to-one" if one_to_one else "many-to-one"
        is_self = table == foreign_table
        direct.append(Relationship(table, foreign_table, constraint, pairs, cardinality, is_self))
    inverse = [
        Relationship(
            r.foreign_table,
            r.table,
            r.constraint,
            tuple((f, c) for c, f in r.columns),
            "one-to-many" if r.cardinality == "many-to-one" else "one-to-one",
            r.is_self,
        )
        for r in direct
    ]
    by_table: dict[str, list[Relationship]] = {}
    for rel in [*direct, *inverse, *_many_to_many(direct, primary_keys)]:
        by_table.setdefault(rel.table, []).append(rel)
    return {name: tuple(rels) for name, rels in by_table.items()}


def _many_to_many(
    direct: list[Relationship], primary_keys: dict[str, tuple[str, ...]]
) -> list[Relationship]:
    rels = []
    many_to_one = [r for r in direct if r.cardinality == "many-to-one"]
    for first in many_to_one:
        for second in many_to_one:
            if first.table != second.table or first.constraint == second.constraint:
                continue
            junction_cols = {c for c, _ in first.columns} | {c for c, _ in second.columns}
            if not junction_cols <= set(primary_keys.get(first.table, ())):
                continue
            junction = Junction(
                first.table,
                first.constraint,
                second.constraint,
                tuple((f, c) for c, f in first.columns),
                tuple((f, c) for c, f in second.columns),
            )
            is_self = first.foreign_table == second.foreign_table
            rels.append(
                Relationship(
                    first.foreign_table, second.foreign_table, "", (), "many-to-many", is_self,
                    junction,
                )
            )  # fmt: skip
    return rels


def find_relationship(
    relationships: dict[str, tuple[Relationship, ...]],
    origin: str,
    target: str,
    hint: str | None,
) -> Relationship:
    """The one relationship ``origin → target`` (with ``hint``) names, as PostgREST 12 finds it.

    ``target`` may be the foreign table, a foreign key's name or its (single) column; ``hint`` may
    be a constraint, a column on either side or a junction table. None is PGRST200, several are
    PGRST201.
    """
    candidates = [r for r in relationships.get(origin, ()) if _matches(r, target, hint)]
    if not candidates:
        raise errors.no_relationship(
            origin, target, hint, _suggestion(relationships, origin, target)
        )
    if len(candidates) > 1:
        raise errors.ambiguous_relationship(
            origin,
            target,
            [r.describe() for r in candidates],
            ", ".join(r.hint_name() for r in candidates),
        )
    return candidates[0]


def _single(rel: Relationship, index: int) -> str | None:
    return rel.columns[0][index] if len(rel.columns) == 1 else None


def _matches(rel: Relationship, target: str, hint: str | None) -> bool:
    direct = rel.junction is None
    if rel.is_self:
        # One self-referencing foreign key gives a one-to-many and a many-to-one relationship:
        # the table name picks the children, the column name the parent.
        if hint is None:
            return (target == rel.foreign_table and rel.cardinality == "one-to-many") or (
                direct and target == _single(rel, 0) and rel.cardinality == "many-to-one"
            )
        return (
            target == rel.foreign_table
            and rel.cardinality == "one-to-many"
            and hint == _single(rel, 1)
        )
    if hint is None:
        return target == rel.foreign_table or (
            direct and target in (rel.constraint, _single(rel, 0))
        )
    if target != rel.foreign_table:
        return False
    if not direct:
        return rel.junction is not None and hint == rel.junction.table
    return hint in (rel.constraint, _single(rel, 0), _single(rel, 1))


def _suggestion(
    relationships: dict[str, tuple[Relationship, ...]], origin: str, target: str
) -> str | None:
    """PostgREST's PGRST200 hint: a close parent name if ``origin`` has none, else a close target."""
    if origin not in relationships:
        match = difflib.get_close_matches(origin, list(relationships), n=1, cutoff=0.6)
        return f"Perhaps you meant '{match[0]}' instead of '{origin}'." if match else None
    targets = sorted({r.foreign_table for r in relationships[origin]} - {target})
    match = difflib.get_close_matches(target, targets, n=1, cutoff=0.6)
    return f"Perhaps you meant '{match[0]}' instead of '{target}'." if match else None
