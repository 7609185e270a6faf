"""Decode Stripe's form encoding: ``metadata[k]=v``, ``images[0]=u``, ``expand[]=x``.

Stripe's v1 API (and stripe-python) send nested parameters as bracketed keys. This turns a query
string or form body into nested dicts (named brackets) and lists (empty brackets); numbered
brackets stay dict keys (``{"0": ...}``) until the spec says the parameter is an array.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    """Split ``a[b][0]`` into ``["a", "b", "0"]``; a malformed key is a 400 naming it."""
    start = key.find("[")
    if start == -1:
        return [key]
    head = key[:start]
    parts = [head]
    pos = start
    while pos < len(key):
        match = _SEGMENT.match(key, pos)
        if match is None:
            break
        parts.append(match.group(1))
        pos = match.end()
    if not head or pos != len(key):
        if head == "metadata":
            raise invalid(
                f"Invalid metadata key in '{key}': metadata keys can't contain square brackets "
                "([ or ]).",
                param="metadata",
            )
        raise invalid(f"Invalid parameter name: '{key}'.", param=head or key)
    return parts


def _conflict(key: str) -> Exception:
    head = key.split("[", 1)[0]
    return invalid(
        f"Invalid parameter '{key}': it mixes a plain value and nested values for '{head}'.",
        param=head,
    )


def decode(raw: str) -> dict[str, Any]:
    """Decode a query string or form body into nested parameters (all leaves are strings)."""
    root: dict[str, Any] = {}
    if not raw:
        return root
    for key, value in parse_qsl(raw, keep_blank_values=True):
        path = split_key(key)
        node: Any = root
        last = len(path) - 1
        for depth, seg in enumerate(path):
            if seg == "" and depth > 0:
                if not isinstance(node, list):
                    raise _conflict(key)
                if depth == last:
                    node.append(value)
                    break
                child: Any = {}
                node.append(child)
                node = child
                continue
            if not isinstance(node, dict):
                raise _conflict(key)
            if depth == last:
                if isinstance(node.get(seg), dict | list):
                    raise _conflict(key)
                node[seg] = value
                break
            child = node.get(seg)
            if child is None:
                child = [] if path[depth + 1] == "" else {}
                node[seg] = child
            elif isinstance(child, str):
                raise _conflict(key)
            node = child
    return root
