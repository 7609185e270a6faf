"""What a run's tags ask of the catalogue: a forced resync, a verification of every row."""

from __future__ import annotations

from collections.abc import Mapping

from stripe_migration.settings import FORCE_RESYNC_TAG, VERIFY_TAG


def forces_resync(tags: Mapping[str, str]) -> bool:
    """Whether the run is a forced resync (the tag, set by the CLI or a backfill's tags)."""
    return str(tags.get(FORCE_RESYNC_TAG, "")).lower() in ("1", "true", "yes")


def asks_full_verification(tags: Mapping[str, str]) -> bool:
    """Whether the run asks its verification to read every row (``migrate --verify-all``)."""
    return tags.get(VERIFY_TAG) == "full"
