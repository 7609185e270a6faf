"""The tunable numbers of event processing, with the seed's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventSettings:
    """How events are processed, retried and archived.

    - ``max_attempts``: attempts before an event is dead (kept, with its last error, never retried).
    - ``retry_delay_s``: seconds after an attempt started before the event may be tried again.
    - ``retention_days``: events created longer ago than this are moved to ``stripe_events_archive``.
    - ``archive_enabled``: switches archival off.
    - ``batch_size``: events claimed by one processing run.
    - ``max_concurrent_batches``: processing runs in flight at once.
    """

    max_attempts: int = 3
    retry_delay_s: int = 300
    retention_days: int = 180
    archive_enabled: bool = True
    batch_size: int = 100
    max_concurrent_batches: int = 5

    def __post_init__(self) -> None:
        for name in ("max_attempts", "batch_size", "max_concurrent_batches", "retention_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EventSettings.{name} must be a positive integer, got {value!r}")
        if isinstance(self.retry_delay_s, bool) or not isinstance(self.retry_delay_s, int):
            raise ValueError(
                f"EventSettings.retry_delay_s must be an integer, got {self.retry_delay_s!r}"
            )
        if self.retry_delay_s < 0:
            raise ValueError(f"EventSettings.retry_delay_s must be >= 0, got {self.retry_delay_s}")
        if not isinstance(self.archive_enabled, bool):
            raise ValueError(
                f"EventSettings.archive_enabled must be true or false, got {self.archive_enabled!r}"
            )
