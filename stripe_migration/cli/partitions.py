"""Which catalogue partitions a command runs: ``--partition`` values as contiguous ranges."""

from __future__ import annotations

import re
from collections.abc import Sequence

import click

from stripe_migration.catalog.partitions import contiguous_ranges


def parse_partitions(values: Sequence[str], count: int) -> list[tuple[str, str]]:
    """Contiguous (start, end) partition ranges from ``--partition`` values (``7``, ``03``,
    ``3..7``, ``03-07``, ``all``); every partition when none is given."""
    keys: set[int] = set()
    for raw in values or ("all",):
        text = raw.strip().lower()
        if text in ("all", "*"):
            keys.update(range(count))
            continue
        match = re.fullmatch(r"(\d{1,2})(?:\s*(?:\.\.|-|:)\s*(\d{1,2}))?", text)
        if not match:
            raise click.BadParameter(
                f"{raw!r}: expected a partition (00 to {count - 1:02d}), a range like 03..07, "
                "or all",
                param_hint="--partition",
            )
        start = int(match[1])
        end = int(match[2]) if match[2] is not None else start
        if start > end or end >= count:
            raise click.BadParameter(
                f"{raw!r}: partitions are 00 to {count - 1:02d}", param_hint="--partition"
            )
        keys.update(range(start, end + 1))
    return contiguous_ranges(keys)
