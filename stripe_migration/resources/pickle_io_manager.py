"""An IO manager that stores each asset output as one pickle per partition range.

Dagster's filesystem IO manager stores one file per partition and refuses an output that covers
several partitions, which is what a single-run backfill over the catalogue's buckets produces.
This one keys the file by the partition range instead, so a whole-catalogue run and a one-bucket
run both work, and a re-execution from failure finds its upstream outputs.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field


def range_name(start: str | None, end: str | None) -> str:
    """The file name (without ``.pkl``) of an output covering partitions ``start``..``end``."""
    if start is None or end is None:
        return "unpartitioned"
    return start if start == end else f"{start}..{end}"


def stored_output_path(base_dir: str | Path, asset_key: dg.AssetKey, name: str) -> Path:
    """Where the output of ``asset_key`` for the partition range ``name`` is stored."""
    return Path(base_dir, *asset_key.path, f"{name}.pkl")


def _range_name(context: dg.OutputContext | dg.InputContext) -> str:
    if not context.has_asset_partitions:
        return range_name(None, None)
    key_range = context.asset_partition_key_range
    return range_name(key_range.start, key_range.end)


class PartitionRangePickleIOManager(dg.ConfigurableIOManager):
    """Pickles outputs under ``base_dir/<asset key>/<partition range>.pkl``, written atomically."""

    base_dir: str | None = Field(
        default=None,
        description="Folder for the pickles (default: the Dagster instance's storage folder).",
    )

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        base = self.base_dir or context.step_context.instance.storage_directory()
        return stored_output_path(base, context.asset_key, _range_name(context))

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Write ``obj`` to its file (via a temporary file and a rename, so a kill leaves no half file)."""
        if obj is None:
            return
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            pickle.dump(obj, tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp.name, path)

    def load_stored(
        self, instance: dg.DagsterInstance, asset_key: dg.AssetKey, start: str, end: str
    ) -> Any:
        """The output of ``asset_key`` stored by a run over partitions ``start``..``end`` (for a
        consumer outside that run's partitions, such as the once-per-run migration report)."""
        base = self.base_dir or instance.storage_directory()
        name = range_name(start, end)
        return _read(stored_output_path(base, asset_key, name), asset_key, name)

    def load_input(self, context: dg.InputContext) -> Any:
        """Read the upstream output for the same partition range."""
        return _read(self._path(context), context.asset_key, _range_name(context))


def _read(path: Path, asset_key: dg.AssetKey, name: str) -> Any:
    if not path.exists():
        raise FileNotFoundError(
            f"no stored output of {asset_key.to_user_string()} for partitions {name}: "
            "materialize it first"
        )
    with path.open("rb") as handle:
        return pickle.load(handle)
