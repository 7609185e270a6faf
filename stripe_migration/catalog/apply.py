"""Applying a catalogue plan to Stripe: worker threads, batches, and a checkpoint after each batch.

No Dagster here. The caller passes the Stripe API wrapper (rate-limited, retrying) and a
``checkpoint`` callable that writes a batch's sync results back to Supabase; that write is the
durable checkpoint, so a run killed at any point redoes at most the batch in flight. What each
action sends, and why repeating it never duplicates anything, is in
:mod:`stripe_migration.catalog.writes`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from stripe_migration.catalog.actions import Action, PlannedAction
from stripe_migration.catalog.create_paths import CreatePaths
from stripe_migration.catalog.sync_results import (
    FatalApplyError,
    RecordKeyGeneration,
    StripeWriter,
    SyncResult,
    bookkeeping_results,
    error_text,
)
from stripe_migration.catalog.writes import apply_one
from stripe_migration.settings import PROGRESS_LOG_INTERVAL_S


@dataclass
class ApplyStats:
    """Counts of one apply, for the report."""

    done: int = 0
    total: int = 0
    #: Products applied successfully, by planned action.
    by_action: dict[str, int] = field(default_factory=dict)
    #: Rows failed: refused by the validation (invalid in the CMS) or by Stripe.
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: Valid rows Stripe refused (a subset of ``failed``), with Stripe's message.
    refused: int = 0
    refusals: list[tuple[str, str]] = field(default_factory=list)
    #: Rows the validation refused (a subset of ``failed``).
    invalid: int = 0
    adopted: int = 0
    #: New products created by ``POST /v1/products`` and through their price (see create_paths).
    created_by_product: int = 0
    created_by_price: int = 0
    #: The share of new products aimed at the second way, and how it was chosen.
    create_paths: str = ""
    batches: int = 0
    seconds: float = 0.0
    #: The Stripe client's counters (requests, retries, 429s, limiter waits), filled by the caller.
    api: dict[str, float | int] = field(default_factory=dict)

    @property
    def products_per_second(self) -> float:
        """Products applied per second of wall time."""
        return self.done / self.seconds if self.seconds > 0 else 0.0


def apply_plan(
    api: StripeWriter,
    plan: Sequence[PlannedAction],
    checkpoint: Callable[[list[SyncResult]], None],
    *,
    run_id: str,
    batch_size: int,
    workers: int,
    progress: Callable[[ApplyStats], None] | None = None,
    progress_interval_s: float = PROGRESS_LOG_INTERVAL_S,
    mark: Callable[[list[str]], None] | None = None,
    record_generation: RecordKeyGeneration | None = None,
    paths: CreatePaths | None = None,
) -> ApplyStats:
    """Apply every write action of ``plan``, checkpointing every ``batch_size`` results.

    ``mark`` is called with the CMS ids of each next ``batch_size`` products before the first
    of their Stripe calls (the caller records them as being applied by this run; the checkpoint
    clears the mark, so a mark that survives tells the next run this one was interrupted).
    Invalid and unchanged rows are checkpointed first (no Stripe call). Calls run on ``workers``
    threads with a sliding window (no barrier between batches, so the rate limiter, not the
    slowest call of a batch, sets the pace). A refusal of one product is recorded as its failure;
    an error that stops every product (a bad key, live mode refused, Stripe still failing after
    its retries) stops submitting, checkpoints what finished, and raises :class:`FatalApplyError`:
    the next run resumes from there. An interruption (Ctrl+C, SIGTERM: Dagster raises it in this
    thread) stops submitting too, lets the calls already sent finish, checkpoints every result,
    and is raised again: what Stripe was told is never left unrecorded.
    """
    started = time.monotonic()
    writes = [item for item in plan if item.writes > 0]
    stats = ApplyStats(total=len(writes))
    bookkeeping = bookkeeping_results(plan)
    chunk = max(batch_size, 500)
    for start in range(0, len(bookkeeping), chunk):
        checkpoint(bookkeeping[start : start + chunk])
    stats.failed = sum(1 for r in bookkeeping if r.sync_status == "failed")
    stats.failures = [(r.id, r.sync_error or "") for r in bookkeeping if r.sync_status == "failed"]
    stats.invalid = stats.failed

    finished: list[SyncResult] = []
    last_report = time.monotonic()

    def flush() -> None:
        nonlocal last_report
        if not finished:
            return
        checkpoint(list(finished))
        stats.batches += 1
        for result in finished:
            stats.done += 1
            if result.sync_status != "failed":  # a refused create created nothing
                stats.by_action[result.action] = stats.by_action.get(result.action, 0) + 1
            if result.sync_status == "failed":
                stats.failed += 1
                stats.failures.append((result.id, result.sync_error or ""))
            if result.created_product and result.action == Action.CREATE.value:
                if result.created_by_price:
                    stats.created_by_price += 1
                else:
                    stats.created_by_product += 1
            if result.refused:
                stats.refused += 1
                stats.refusals.append((result.id, result.sync_error or ""))
        finished.clear()
        stats.seconds = time.monotonic() - started
        if progress and time.monotonic() - last_report >= progress_interval_s:
            progress(stats)
            last_report = time.monotonic()

    fatal: FatalApplyError | None = None
    submitted = marked = 0
    window = max(1, workers) * 2
    pending: set[Future[SyncResult]] = set()
    uncollected: set[Future[SyncResult]] = set()  # submitted, result not yet in `finished`

    def collect(done: Iterable[Future[SyncResult]]) -> None:
        nonlocal fatal
        for future in list(done):
            uncollected.discard(future)
            try:
                finished.append(future.result())
            except FatalApplyError as exc:
                fatal = fatal or exc
            except Exception as exc:  # retries exhausted: Stripe is down for every product
                fatal = fatal or FatalApplyError(
                    f"stopped: a Stripe call still failed after its retries ({error_text(exc)}); "
                    "the work done so far is checkpointed, run the migration again to resume"
                )

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stripe-apply")
    try:
        while True:
            while fatal is None and len(pending) < window and submitted < len(writes):
                if mark is not None and submitted == marked:
                    marked = min(submitted + batch_size, len(writes))
                    mark([str(item.cms_id) for item in writes[submitted:marked]])
                item = writes[submitted]
                by_price = paths is not None and item.action is Action.CREATE and paths.by_price()
                future = pool.submit(
                    apply_one, api, item, run_id, record_generation, by_price=by_price
                )
                pending.add(future)
                uncollected.add(future)
                submitted += 1
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            collect(done)
            if len(finished) >= batch_size:
                flush()
    except BaseException:
        # Interrupted (or the checkpoint failed): calls not yet started are dropped, calls in
        # flight finish, and everything that reached Stripe is recorded before giving up.
        pool.shutdown(wait=True, cancel_futures=True)
        collect(f for f in uncollected if f.done() and not f.cancelled())
        with contextlib.suppress(Exception):
            flush()
        raise
    finally:
        pool.shutdown(wait=True)
    flush()
    stats.seconds = time.monotonic() - started
    if paths is not None:
        stats.create_paths = paths.summary()
    if progress:
        progress(stats)
    if fatal is not None:
        raise fatal
    return stats
