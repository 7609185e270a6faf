"""Requests per second the Stripe emulator serves with 200 requests in flight and simulated latency.

Starts an emulator subprocess on loopback (latency 100 ms +/- 50 ms by default, rate limits off),
seeds some products, then keeps ``--concurrency`` requests in flight for ``--duration`` seconds
from ``--procs`` client processes, with a mix of product reads (70 %), creates with idempotency
keys (20 %) and list pages (10 %). Prints one human line and one JSON line.

The load comes from a minimal keep-alive HTTP/1.1 client on asyncio (one connection per request
in flight), not httpx: httpx's async connection pool itself collapses at this concurrency (measured
here: 183 requests/s with 20 connections but 47 with 100, against the same server), so it would
measure httpx rather than the emulator.

    python bench/bench_emulator.py [--concurrency 200] [--duration 10] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import httpx

from stripe_migration.sandbox.stripe_emulator import EmulatorControl, start_emulator

MAX_REQUESTS = 200_000  # hard cap per client process, whatever the duration


class _Connection:
    """One keep-alive HTTP/1.1 connection sending one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auth: str):
        self.reader = reader
        self.writer = writer
        self.auth = auth

    async def request(self, method: str, target: str, body: bytes = b"", headers: str = "") -> int:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {self.auth}\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


async def _client_loop(
    url: str, key: str, product_ids: list[str], workers: int, duration_s: float, seed: int
) -> dict:
    rng = random.Random(seed)
    parts = urlsplit(url)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    budget = MAX_REQUESTS
    form = "Content-Type: application/x-www-form-urlencoded\r\n"

    async def worker(deadline: float) -> None:
        nonlocal budget
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        conn = _Connection(reader, writer, f"Bearer {key}")
        try:
            while time.monotonic() < deadline and budget > 0:
                budget -= 1
                pick = rng.random()
                started = time.monotonic()
                try:
                    if pick < 0.7:
                        status = await conn.request(
                            "GET", f"/v1/products/{rng.choice(product_ids)}"
                        )
                    elif pick < 0.9:
                        status = await conn.request(
                            "POST",
                            "/v1/products",
                            b"name=bench&metadata[source]=bench",
                            f"{form}Idempotency-Key: {uuid.uuid4()}\r\n",
                        )
                    else:
                        status = await conn.request("GET", "/v1/products?limit=10")
                    statuses[str(status)] += 1
                except (OSError, asyncio.IncompleteReadError) as exc:
                    statuses[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                    conn = _Connection(reader, writer, f"Bearer {key}")
                latencies.append(time.monotonic() - started)
        finally:
            writer.close()

    started = time.monotonic()
    deadline = started + duration_s
    await asyncio.gather(*(worker(deadline) for _ in range(workers)))
    elapsed = time.monotonic() - started
    return {"statuses": dict(statuses), "latencies": latencies, "elapsed": elapsed}


def _run_client(args: tuple) -> dict:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_client_loop(*args))


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--jitter-ms", type=float, default=50.0)
    args = parser.parse_args()
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be between 1 and 120 seconds")

    process = start_emulator(
        latency_ms=0,
        search_lag_s=0,
        global_rate_per_s=None,
        endpoint_rate_per_s=None,
        search_rate_per_s=None,
        rate_burst_s=1.0,  # the default, explicit; with every rate off no bucket applies
        max_in_flight=None,
    )
    try:
        control = EmulatorControl(process.url)
        with httpx.Client(
            base_url=process.url,
            headers={"Authorization": f"Bearer {process.secret_key}"},
            trust_env=False,
        ) as http:
            product_ids = [
                http.post("/v1/products", data={"name": f"seed {i}"}).json()["id"]
                for i in range(200)
            ]
        control.configure(latency_ms=args.latency_ms, latency_jitter_ms=args.jitter_ms)

        procs = max(1, args.procs)
        per_proc = [
            args.concurrency // procs + (1 if i < args.concurrency % procs else 0)
            for i in range(procs)
        ]
        jobs = [
            (process.url, process.secret_key, product_ids, n, args.duration, seed)
            for seed, n in enumerate(per_proc)
        ]
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            results = pool.map(_run_client, jobs)
        stats = control.stats()
        control.close()
    finally:
        process.stop()

    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    for result in results:
        statuses.update(result["statuses"])
        latencies.extend(result["latencies"])
    elapsed = max(r["elapsed"] for r in results)
    total = sum(statuses.values())
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    figures = {
        "benchmark": "stripe_emulator",
        "concurrency": args.concurrency,
        "client_processes": procs,
        "simulated_latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "duration_s": round(elapsed, 2),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "statuses": dict(statuses),
        "latency_p50_ms": round(quantiles[49] * 1000, 1),
        "latency_p99_ms": round(quantiles[98] * 1000, 1),
        "server_peak_in_flight": stats["peak_in_flight"],
    }
    print(
        f"emulator: {figures['requests_per_s']:.0f} requests/s with {args.concurrency} in flight "
        f"(latency {args.latency_ms:.0f}±{args.jitter_ms:.0f} ms simulated; p50 "
        f"{figures['latency_p50_ms']} ms, p99 {figures['latency_p99_ms']} ms; server peak in "
        f"flight {figures['server_peak_in_flight']}; statuses {dict(statuses)})"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
