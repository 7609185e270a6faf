"""Group commit: events arriving within a few milliseconds share one transaction.

A request hands its event to :meth:`GroupCommit.store` and waits. A writer task takes every event
waiting (at most ``max_batch``): under load, those that arrived while the previous commit was in
flight, a few milliseconds' worth. It stores them in one ``INSERT … SELECT FROM unnest(…)``
statement, one transaction, and only after that commit answers each waiting request: new or
duplicate. A request is never
answered before its event is committed, so a 2xx still means "stored"; if the commit fails,
every request of the batch gets the error (and the receiver answers 503, so Stripe retries).

The same event id twice in one batch is inserted once; the later copies are duplicates. An event
PostgreSQL refuses (``DataError``: e.g. ``\\u0000`` in a JSON string) would fail its whole batch, so
the batch is then stored one event at a time and only the bad one gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import psycopg

from stripe_migration.webhook.store import EventStore, StripeEventRecord

DEFAULT_WINDOW_S = 0.0
"""How long a writer waits for company before a commit. None by default: batches form on their own
while the previous commit runs, and a quiet receiver then adds no latency (measured: 0 ms gave
2,760-3,096 events/s, 2 ms 2,632-2,708, bench_webhook_ingest.py at load 3-4)."""
DEFAULT_MAX_BATCH = 500

_Waiter = tuple[StripeEventRecord, "asyncio.Future[bool]"]


class GroupCommit:
    """Batches concurrent :meth:`store` calls of one process into shared transactions."""

    def __init__(
        self,
        store: EventStore,
        window_s: float = DEFAULT_WINDOW_S,
        max_batch: int = DEFAULT_MAX_BATCH,
        writers: int = 1,
    ):
        if window_s < 0 or max_batch < 1 or writers < 1:
            raise ValueError("window_s must be >= 0, max_batch and writers >= 1")
        self._store = store
        self.window_s = window_s
        self.max_batch = max_batch
        self._writers = writers
        self._queue: list[_Waiter] = []
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0

    def start(self) -> None:
        """Start the writer tasks (in the running event loop)."""
        self._tasks = [asyncio.create_task(self._write()) for _ in range(self._writers)]

    async def close(self, timeout_s: float = 30.0) -> None:
        """Commit what is waiting (for at most ``timeout_s``), then stop the writers."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._queue or self._busy:
                    await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail(self._queue, RuntimeError("the receiver stopped before storing the event"))
        self._queue.clear()

    async def store(self, record: StripeEventRecord) -> bool:
        """Store ``record`` in the next group transaction; return False for a duplicate.

        Returns only once that transaction has committed; raises what the commit raised.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        self._ready.set()
        return await future

    async def _write(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            if self.window_s and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.window_s)
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            if not batch:
                continue
            self._busy += 1
            try:
                await self._commit(batch)
            finally:
                self._busy -= 1

    async def _commit(self, batch: list[_Waiter]) -> None:
        by_id: dict[str, list[_Waiter]] = {}
        for waiter in batch:
            by_id.setdefault(waiter[0].event_id, []).append(waiter)
        try:
            new = await self._store.store_many([group[0][0] for group in by_id.values()])
        except psycopg.DataError as exc:
            if len(by_id) == 1:
                self._fail(batch, exc)
                return
            for group in by_id.values():  # find the bad one: one transaction each
                await self._commit(group)
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        for event_id, group in by_id.items():
            for i, (_, future) in enumerate(group):
                if not future.done():
                    future.set_result(i == 0 and event_id in new)

    @staticmethod
    def _fail(waiters: Iterable[_Waiter], exc: BaseException) -> None:
        for _, future in waiters:
            if not future.done():
                future.set_exception(exc)
