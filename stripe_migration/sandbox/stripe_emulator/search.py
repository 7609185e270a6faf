"""A subset of Stripe's search query language, compiled to a predicate over objects.

Supported: clauses ``field:value`` (exact, case-insensitive), ``field~"sub"`` (substring, at least
3 characters), ``created>N`` / ``<`` / ``>=`` / ``<=`` / ``:`` on numbers, ``metadata['key']:'v'``,
``metadata['key']:null`` (key absent), a leading ``-`` to negate, joined by ``AND`` or by ``OR``
(not both, at most 10 clauses). Values are quoted with ``'`` or ``"`` (``\\`` escapes), except
numbers, ``null`` and ``true``/``false``. Anything else is a 400 naming ``query``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import invalid

MAX_CLAUSES = 10

# Searchable fields per resource, with their kind.
FIELDS: dict[str, dict[str, str]] = {
    "product": {
        "active": "bool",
        "created": "number",
        "description": "string",
        "name": "string",
        "shippable": "bool",
        "url": "string",
    },
    "price": {
        "active": "bool",
        "created": "number",
        "currency": "string",
        "lookup_key": "string",
        "product": "string",
        "type": "string",
    },
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>>=|<=|[:~<>])
      | (?P<lbrack>\[)
      | (?P<rbrack>\])
      | (?P<minus>-(?=[A-Za-z]))
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<number>-?\d+(?:\.\d+)?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    """One ``[-]field op value`` term."""

    field: str
    key: str | None
    op: str
    value: Any
    negated: bool


def _error(query: str, detail: str) -> Exception:
    return invalid(f"Invalid search query `{query}`: {detail}", param="query")


def _tokens(query: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            raise _error(query, f"unexpected text at position {pos}: {query[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse(query: str, resource: str) -> tuple[str, list[Clause]]:
    """Parse ``query`` for ``resource`` (product or price) into its joiner and clauses."""
    fields = FIELDS[resource]
    tokens = _tokens(query)
    if not tokens:
        raise _error(query, "the query is empty")
    clauses: list[Clause] = []
    joiner = ""
    i = 0
    while True:
        negated = False
        if i < len(tokens) and tokens[i][0] == "minus":
            negated = True
            i += 1
        if i >= len(tokens) or tokens[i][0] != "word":
            raise _error(query, "expected a field name")
        field = tokens[i][1]
        i += 1
        key = None
        if field == "metadata":
            if (
                i + 2 >= len(tokens)
                or tokens[i][0] != "lbrack"
                or tokens[i + 1][0] != "string"
                or tokens[i + 2][0] != "rbrack"
            ):
                raise _error(query, "metadata must be written metadata['key']")
            key = _unquote(tokens[i + 1][1])
            i += 3
            kind = "string"
        elif field in fields:
            kind = fields[field]
        else:
            raise _error(
                query,
                f"field `{field}` is an unsupported search field for resource `{resource}s`. "
                f"Supported fields: {', '.join(sorted([*fields, 'metadata']))}",
            )
        if i >= len(tokens) or tokens[i][0] != "op":
            raise _error(query, f"expected an operator after `{field}`")
        op = tokens[i][1]
        i += 1
        if i >= len(tokens):
            raise _error(query, f"expected a value after `{field}{op}`")
        vkind, vtext = tokens[i]
        i += 1
        value: Any
        if vkind == "string":
            value = _unquote(vtext)
        elif vkind == "number":
            value = float(vtext)
        elif vkind == "word" and vtext in ("null", "true", "false"):
            value = None if vtext == "null" else vtext
        else:
            raise _error(query, f"the value for `{field}` must be quoted")
        clauses.append(_typed_clause(query, field, key, op, value, negated, kind))
        if i >= len(tokens):
            break
        word = tokens[i][1].upper() if tokens[i][0] == "word" else ""
        if word not in ("AND", "OR"):
            raise _error(query, "clauses must be joined with AND or OR")
        if joiner and word != joiner:
            raise _error(query, "AND and OR cannot be combined in one query")
        joiner = word
        i += 1
    if len(clauses) > MAX_CLAUSES:
        raise _error(query, f"a query can have at most {MAX_CLAUSES} clauses")
    return joiner or "AND", clauses


def _typed_clause(
    query: str, field: str, key: str | None, op: str, value: Any, negated: bool, kind: str
) -> Clause:
    if kind == "number":
        if op == "~":
            raise _error(query, f"`~` cannot be used on `{field}`")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise _error(query, f"`{field}` takes a number") from None
    elif kind == "bool":
        if op != ":" or str(value).lower() not in ("true", "false"):
            raise _error(query, f"`{field}` takes `:'true'` or `:'false'`")
        value = str(value).lower() == "true"
    else:
        if op not in (":", "~"):
            raise _error(query, f"`{op}` cannot be used on `{field}`")
        if op == "~" and (value is None or len(value) < 3):
            raise _error(query, "substring search (`~`) needs at least 3 characters")
        if value is not None:
            value = str(value).lower()
    return Clause(field, key, op, value, negated)


def _matches(clause: Clause, obj: dict[str, Any]) -> bool:
    if clause.key is not None:
        actual = (obj.get("metadata") or {}).get(clause.key)
    else:
        actual = obj.get(clause.field)
    value = clause.value
    op = clause.op
    if value is None:
        result = actual is None
    elif isinstance(value, bool):
        result = actual is value
    elif isinstance(value, float):
        if actual is None:
            result = False
        elif op == ":":
            result = actual == value
        elif op == ">":
            result = actual > value
        elif op == "<":
            result = actual < value
        elif op == ">=":
            result = actual >= value
        else:
            result = actual <= value
    elif actual is None:
        result = False
    elif op == "~":
        result = value in str(actual).lower()
    else:
        result = str(actual).lower() == value
    return not result if clause.negated else result


def compile_query(query: str, resource: str) -> Callable[[dict[str, Any]], bool]:
    """Return a predicate telling whether an object matches ``query`` (raises a 400 if bad)."""
    joiner, clauses = parse(query, resource)
    if joiner == "OR":
        return lambda obj: any(_matches(c, obj) for c in clauses)
    return lambda obj: all(_matches(c, obj) for c in clauses)
