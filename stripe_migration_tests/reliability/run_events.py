"""Process every pending Stripe event, then archive the old ones, as a crash harness's victim.

``python -m stripe_migration_tests.reliability.run_events`` runs the events core
(:func:`~stripe_migration_tests.fixtures.events.process_pending` batch after batch until nothing is
pending, then :func:`~stripe_migration.events.processing.archive_events`) on ``DATABASE_URL``, with
the real handlers. Settings come from ``RELIABILITY_EVENTS`` (JSON: ``batch_size``,
``max_attempts``, ``retry_delay_s``, ``retention_days``, ``archive_batch_size``,
``handler_delay_ms``). ``handler_delay_ms`` makes each handler hold its transaction that long after
its writes, so a kill often lands between a handler's writes and their commit.

It prints one JSON line with what it did and exits 0. A test may SIGKILL it at any moment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from stripe_migration.events.handlers import HandlerOutcome, handle_event
from stripe_migration.events.processing import archive_events
from stripe_migration_tests.fixtures.events import process_pending

SETTINGS_ENV = "RELIABILITY_EVENTS"


def main() -> int:
    """Process, then archive; return the exit status."""
    url = os.environ["DATABASE_URL"]
    settings: dict[str, Any] = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    delay_s = float(settings.get("handler_delay_ms", 0)) / 1000.0

    def handler(conn: psycopg.Connection, event: Mapping[str, Any]) -> HandlerOutcome:
        outcome = handle_event(conn, event)
        if delay_s:
            time.sleep(delay_s)  # the work of a slower handler, inside its transaction
        return outcome

    batches = processed = failed = 0
    while True:
        result = process_pending(
            url,
            batch_size=int(settings.get("batch_size", 50)),
            max_attempts=int(settings.get("max_attempts", 3)),
            retry_delay_s=int(settings.get("retry_delay_s", 0)),
            handler=handler,
        )
        if result is None:
            break
        batches += 1
        processed += result.processed
        failed += result.failed
    with psycopg.connect(url, autocommit=True) as conn:
        archived = archive_events(
            conn,
            retention_days=int(settings.get("retention_days", 180)),
            batch_size=int(settings.get("archive_batch_size", 100)),
        )
    summary = {
        "batches": batches,
        "processed": processed,
        "failed": failed,
        "archived": archived.archived,
        "remaining": archived.remaining,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
