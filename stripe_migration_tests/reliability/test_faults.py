"""The catalogue migration under faults: 429 storms, 5xx, dropped connections (also after the
write committed), answers past the client's timeout, and the Supabase gateway or its database down
for ten seconds in the middle of a run.

The rule for each: the run completes, or fails with a clear message and a state the next run
resumes from. So each test runs the migration until it succeeds (a few attempts at most), checks
that every failure named its cause, then checks the end state with
:func:`.harness.check_catalogue`: no duplicate product or price, no row lost, every valid row
synced. Runs happen in this process (``execute_in_process`` on a test instance); the faults are
the emulator's and real processes stopping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from stripe_migration.db.urls import libpq_url
from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration.sandbox.sample_data import generate_catalog, insert_products
from stripe_migration.sandbox.supabase_gateway import make_service_role_key, start_gateway
from stripe_migration_tests.fixtures.migration import ALL_PARTITIONS, build_definitions
from stripe_migration_tests.reliability.harness import (
    Deadline,
    check_catalogue,
    emulator_writes,
    failure_messages,
    report,
    run_seed,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Most runs a faulty migration may need before it completes.
MAX_RUNS = 4
#: Emulator latency: enough for requests to overlap, little enough for CI.
LATENCY = {"latency_ms": 10.0, "latency_jitter_ms": 5.0}
#: The emulator's fault settings, and the client's, per scenario. A 429 storm comes from a client
#: far faster than the account allows; the other faults are drawn per request (``seed`` fixes the
#: draws): 500s and 503s, connections dropped before or after the write committed, and answers
#: held back past the client's timeout.
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "429_storm": (
        {"global_rate_per_s": 15.0, "endpoint_rate_per_s": 15.0},
        {"max_requests_per_second": 200.0, "max_endpoint_requests_per_second": 200.0},
    ),
    "5xx_drops_timeouts": (
        {
            "fault_500_rate": 0.05,
            "fault_503_rate": 0.05,
            "fault_drop_rate": 0.12,
            "drop_after_commit": 0.6,
            "fault_slow_rate": 0.12,
            "slow_response_s": 5.0,
            "seed": 7,
        },
        {"request_timeout_s": 0.5},
    ),
}
EXPECTED_FAULTS = {
    "429_storm": {"429"},
    "5xx_drops_timeouts": {"500", "503", "dropped", "dropped_after_commit", "slow"},
}
#: Half the new products are born through their price, so every fault also hits the second way.
RUN_CONFIG = {
    "ops": {"stripe_catalog": {"config": {"batch_size": 10, "workers": 6, "share_by_price": 0.5}}}
}


class Migrations:
    """Runs the migration job in this process against one emulator and one gateway."""

    def __init__(
        self,
        emulator: Any,
        gateway: Any,
        instance: dg.DagsterInstance,
        storage: Path,
        **stripe: Any,
    ) -> None:
        self.emulator = emulator
        self.instance = instance
        self.defs = build_definitions(emulator, gateway, storage, **stripe)
        self.errors: list[str] = []

    def run_once(self) -> dg.ExecuteInProcessResult:
        """One run over every partition; its failure messages are kept in :attr:`errors`."""
        result = self.defs.get_job_def("migrate_catalog").execute_in_process(
            instance=self.instance,
            tags=dict(ALL_PARTITIONS),
            run_config=RUN_CONFIG,
            raise_on_error=False,
        )
        if not result.success:
            self.errors += failure_messages(result)
        return result

    def run_until_done(self) -> int:
        """Run until a run succeeds; return how many runs it took."""
        for attempt in range(1, MAX_RUNS + 1):
            if self.run_once().success:
                return attempt
        raise AssertionError(f"no success in {MAX_RUNS} runs; failures: {self.errors}")


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance for in-process runs."""
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as test_instance:
        yield test_instance


def seed(database_url: str, n: int, seed_value: int) -> tuple[set[str], set[str]]:
    """Insert ``n`` sample rows (5% bad); return all ids and the bad ones."""
    catalog = generate_catalog(n, seed=seed_value, bad_fraction=0.05)
    insert_products(database_url, catalog.rows)
    return {str(r["id"]) for r in catalog.rows}, set(catalog.defects)


def edit_prices_and_names(database_url: str, invalid: set[str], n: int) -> Counter[str]:
    """Give ``n`` valid decimal-currency rows a new price and ``n`` others a new name; return the
    price edits by id."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id::text, currency FROM products WHERE sync_status = 'synced' ORDER BY id"
        ).fetchall()
        ids = [i for i, currency in rows if i not in invalid and currency != "jpy"]
        repriced, renamed = ids[:n], ids[n : 2 * n]
        conn.execute("UPDATE products SET price = '777.77' WHERE id = ANY(%s::uuid[])", (repriced,))
        conn.execute(
            "UPDATE products SET name = name || ' (faulty)' WHERE id = ANY(%s::uuid[])",
            (renamed,),
        )
    return Counter(repriced)


def clear_message(message: str) -> bool:
    """Whether a failure names its cause: Stripe or Supabase, and what went wrong."""
    text = message.lower()
    names_system = "stripe" in text or "supabase" in text
    names_problem = any(
        word in text
        for word in ("retries", "timeout", "connection", "http 5", "http 429", "failed")
    )
    return names_system and names_problem


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_migration_survives_stripe_faults(
    scenario: str, emulator: Any, gateway: Any, instance: dg.DagsterInstance, tmp_path: Path,
    record_property: Any,
) -> None:  # fmt: skip
    """Create 40 products, then reprice and rename a few, all under the faults."""
    seed_value = run_seed()
    faults, client = SCENARIOS[scenario]
    emulator.control.configure(**LATENCY, **faults)
    migrations = Migrations(emulator, gateway, instance, tmp_path / "storage", **client)
    seeded, invalid = seed(gateway.database_url, 40, seed_value)

    runs = migrations.run_until_done()
    price_edits = edit_prices_and_names(gateway.database_url, invalid, 6)
    runs += migrations.run_until_done()

    assert all(clear_message(m) for m in migrations.errors), migrations.errors
    counts = check_catalogue(
        gateway.database_url,
        emulator,
        seeded_ids=seeded,
        invalid_ids=invalid,
        price_edits=price_edits,
    )
    assert counts.inactive_prices == len(price_edits)
    stats = emulator.control.stats()
    injected = {**stats["faults"], "429": stats["rate_limited_total"]}
    assert {kind for kind, n in injected.items() if n} >= EXPECTED_FAULTS[scenario], injected
    report(
        record_property,
        f"faults/{scenario}",
        seed=seed_value,
        runs=runs,
        failed_runs=runs - 2,
        **{f"injected_{kind}": n for kind, n in sorted(injected.items())},
        products=counts.stripe_products,
        prices=counts.stripe_prices,
    )


# -- the gateway or its database down --------------------------------------------------------------


@pytest.fixture
def own_gateway(
    pg_server: LocalPostgres, migrated_db: str, tmp_path: Path
) -> Iterator[SimpleNamespace]:
    """A gateway for this test alone (so it can be stopped), on a fresh migrated database."""
    key = make_service_role_key()
    holder = SimpleNamespace(
        key=key, database_url=migrated_db, log=tmp_path / "gateway.log", pg=pg_server
    )
    holder.process = start_gateway(migrated_db, key, log_path=holder.log)
    holder.url = holder.process.url
    holder.port = int(holder.url.rsplit(":", 1)[1])
    try:
        yield holder
    finally:
        holder.process.stop()


def outage(own_gateway: SimpleNamespace, what: str, seconds: float) -> None:
    """Take the gateway process (``what="gateway"``) or its database (``"database"``) away for
    ``seconds``, then bring it back (the gateway on the same port)."""
    if what == "gateway":
        own_gateway.process.stop()
        time.sleep(seconds)  # the outage itself
        own_gateway.process = start_gateway(
            own_gateway.database_url,
            own_gateway.key,
            port=own_gateway.port,
            log_path=own_gateway.log,
        )
        return
    name = psycopg.conninfo.conninfo_to_dict(libpq_url(own_gateway.database_url))["dbname"]
    with psycopg.connect(own_gateway.pg.admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        time.sleep(seconds)  # the outage itself
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name))
        )


@pytest.mark.parametrize("what", ["gateway", "database"])
def test_migration_survives_supabase_down_for_ten_seconds(
    what: str, emulator: Any, own_gateway: SimpleNamespace, instance: dg.DagsterInstance,
    tmp_path: Path, record_property: Any,
) -> None:  # fmt: skip
    """Ten seconds without Supabase in the middle of the apply phase."""
    seed_value = run_seed()
    emulator.control.configure(
        latency_ms=20.0, latency_jitter_ms=5.0, global_rate_per_s=None, endpoint_rate_per_s=None
    )
    migrations = Migrations(
        emulator, own_gateway, instance, tmp_path / "storage", max_requests_per_second=30.0,
        max_endpoint_requests_per_second=30.0,
    )  # fmt: skip
    seeded, invalid = seed(own_gateway.database_url, 120, seed_value)

    def take_down() -> None:
        deadline = Deadline(120, "the apply phase")
        while emulator_writes(emulator.control.stats()) < 30:
            deadline.check()
            time.sleep(0.01)
        outage(own_gateway, what, 10.0)

    saboteur = threading.Thread(target=take_down, daemon=True)
    saboteur.start()
    first = migrations.run_once()
    saboteur.join(timeout=60)
    assert not saboteur.is_alive()
    runs = 1 if first.success else 1 + migrations.run_until_done()

    assert all("supabase" in m.lower() for m in migrations.errors), migrations.errors
    counts = check_catalogue(
        own_gateway.database_url, emulator, seeded_ids=seeded, invalid_ids=invalid
    )
    report(
        record_property,
        f"faults/{what}_down_10s",
        seed=seed_value,
        first_run_succeeded=first.success,
        runs=runs,
        products=counts.stripe_products,
    )
