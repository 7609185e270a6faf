"""The catalogue's partitions: stable hash buckets of the product id.

Each bucket is a checkpoint visible in the Dagster UI; a backfill over all of them with the
force-resync tag is the forced resync; a failed bucket can be re-run alone.
"""

from __future__ import annotations

import dagster as dg

from stripe_migration.settings import CATALOG_PARTITION_COUNT

catalog_partitions = dg.StaticPartitionsDefinition(
    [f"{bucket:02d}" for bucket in range(CATALOG_PARTITION_COUNT)]
)

#: The run tags of a run over a range of buckets (what a single-run backfill and the CLI set).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

#: A backfill over many buckets runs as ONE run (one process), not one process per bucket.
catalog_backfill_policy = dg.BackfillPolicy.single_run()


def partition_buckets(partition_keys: list[str] | tuple[str, ...]) -> list[int]:
    """The ``products.sync_partition`` values of the given partition keys."""
    return sorted(int(key) for key in partition_keys)


def contiguous_ranges(buckets: list[int] | set[int]) -> list[tuple[str, str]]:
    """The buckets as contiguous (start, end) partition-key ranges, in order: ``{3, 4, 5, 9}`` →
    ``[("03", "05"), ("09", "09")]``. Each range is one run."""
    ranges: list[tuple[str, str]] = []
    for bucket in sorted(buckets):
        if ranges and int(ranges[-1][1]) == bucket - 1:
            ranges[-1] = (ranges[-1][0], f"{bucket:02d}")
        else:
            ranges.append((f"{bucket:02d}", f"{bucket:02d}"))
    return ranges


def partition_tags(start: str, end: str) -> dict[str, str]:
    """The run tags of a single run over the partitions ``start``..``end``."""
    return {RANGE_START: start, RANGE_END: end}
