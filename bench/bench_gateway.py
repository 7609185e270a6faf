"""Benchmark the local Supabase gateway: 1,000-row selects/s and 500-row upserts/s on loopback.

Starts its own embedded PostgreSQL (schema at the latest version) and gateway in a temporary
directory, loads 1,000 products, then measures for a bounded time each:

- sequential calls through the official supabase client (what the pipeline does), and
- concurrent raw HTTP calls (httpx, ``--concurrency`` in flight) for the gateway's ceiling.

Prints one human line and one JSON line. Usage: ``python bench/bench_gateway.py [--seconds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from supabase import create_client

from stripe_migration.db import migrations
from stripe_migration.sandbox.postgres import start_local_postgres, stop_local_postgres
from stripe_migration.sandbox.supabase_gateway import make_service_role_key, start_gateway

ROWS = 1000
BATCH = 500


def _products(start: int, count: int, version: int) -> list[dict]:
    return [
        {
            "stripe_product_id": f"prod_{i:05d}",
            "name": f"Product {i} v{version}",
            "description": "A product description of realistic length. " * 3,
            "price": f"{i % 100}.99",
            "currency": "eur",
            "images": [f"https://cdn.example.com/{i}.png"],
            "metadata": {"cms_id": str(i), "version": version},
            "sync_status": "synced",
            "synced_unit_amount": (i % 100) * 100 + 99,
        }
        for i in range(start, start + count)
    ]


def _rate(seconds: float, operation: Callable[[int], None]) -> float:
    """Run ``operation(n)`` repeatedly for about ``seconds``; return operations per second."""
    operation(-1)  # warm up: connections, prepared statements
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        operation(done)
        done += 1
    return done / elapsed


async def _concurrent_rate(
    seconds: float, concurrency: int, request: Callable[[httpx.AsyncClient, int], object]
) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await request(client, -1)
        done = 0
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await request(client, done)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def run(seconds: float, concurrency: int) -> dict[str, float]:
    """Start the stack, measure, stop everything; return the figures."""
    with tempfile.TemporaryDirectory(prefix="bench_gateway_") as tmp:
        pg = start_local_postgres(Path(tmp) / "pg")
        try:
            url = pg.create_database("bench")
            migrations.upgrade(url)
            key = make_service_role_key()
            with start_gateway(url, key, max_rows=ROWS, log_path=Path(tmp) / "gateway.log") as gw:
                return _measure(gw.url, key, seconds, concurrency)
        finally:
            stop_local_postgres(pg.data_dir)


def _measure(url: str, key: str, seconds: float, concurrency: int) -> dict[str, float]:
    client = create_client(url, key)
    products = client.table("products")
    products.insert(_products(0, ROWS, 0)).execute()

    def select(_: int) -> None:
        rows = products.select("*").limit(ROWS).execute().data
        assert len(rows) == ROWS, len(rows)

    def upsert(n: int) -> None:
        start = (n % 2) * BATCH
        rows = products.upsert(_products(start, BATCH, n + 2), on_conflict="stripe_product_id")
        assert len(rows.execute().data) == BATCH

    figures = {
        "select_1000_rows_per_s_client": _rate(seconds, select),
        "upsert_500_rows_per_s_client": _rate(seconds, upsert),
    }
    client.postgrest.aclose()

    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    rest = f"{url}/rest/v1/products"
    bodies = [json.dumps(_products(0, BATCH, 1)), json.dumps(_products(BATCH, BATCH, 1))]

    async def select_http(http: httpx.AsyncClient, _: int) -> None:
        response = await http.get(rest, params={"select": "*", "limit": ROWS}, headers=headers)
        assert response.status_code == 200 and len(response.json()) == ROWS

    async def upsert_http(http: httpx.AsyncClient, n: int) -> None:
        response = await http.post(
            rest,
            params={"on_conflict": "stripe_product_id"},
            content=bodies[n % 2],
            headers={
                **headers,
                "Content-Type": "application/json",
                "Prefer": "resolution=merge-duplicates,return=representation",
            },
        )
        assert response.status_code in (200, 201), response.text

    figures["select_1000_rows_per_s_http"] = asyncio.run(
        _concurrent_rate(seconds, concurrency, select_http)
    )
    figures["upsert_500_rows_per_s_http"] = asyncio.run(
        _concurrent_rate(seconds, concurrency, upsert_http)
    )
    return figures


def main() -> None:
    """Parse arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (http)")
    args = parser.parse_args()
    figures = run(args.seconds, args.concurrency)
    print(
        "gateway: "
        f"{figures['select_1000_rows_per_s_client']:.1f} selects/s of 1,000 rows and "
        f"{figures['upsert_500_rows_per_s_client']:.1f} upserts/s of 500 rows (official client, "
        f"sequential); {figures['select_1000_rows_per_s_http']:.1f} selects/s and "
        f"{figures['upsert_500_rows_per_s_http']:.1f} upserts/s (httpx, "
        f"{args.concurrency} in flight)"
    )
    print(json.dumps({"benchmark": "gateway", "concurrency": args.concurrency, **figures}))


if __name__ == "__main__":
    main()
