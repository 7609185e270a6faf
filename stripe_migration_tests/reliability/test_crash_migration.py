"""The catalogue migration killed with SIGKILL at random moments, then allowed to finish.

Each run is a subprocess (:mod:`.run_migration`) on the sandbox: the Stripe emulator (slowed down
so a run's apply phase lasts seconds), the session's Supabase gateway, and a Dagster instance in
PostgreSQL from the repository's ``dagster.yaml``. Kills land mid-apply (after a random number of
Stripe writes), mid-checkpoint (the Supabase write-back held in PostgreSQL) or after a random
delay (anywhere in the run). Afterwards :func:`.harness.check_catalogue` holds: no duplicate
product or price, no CMS row lost or half-written, every valid row synced, and the final run's
verification checks pass.

``RELIABILITY_KILLS`` sets the kills of the long suite (CI: 5; by hand, e.g. 50);
``RELIABILITY_SEED`` replays a failing sequence (each test reports its seed).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from stripe_migration.db.urls import libpq_url
from stripe_migration.sandbox.sample_data import generate_catalog, insert_products
from stripe_migration_tests.reliability.harness import (
    HarnessProcess,
    MigrationSandbox,
    SandboxFactory,
    check_catalogue,
    cms_rows,
    kill_after_delay,
    kill_after_writes,
    kill_during_write_back,
    report,
    run_seed,
    stripe_mismatches,
)

#: Kills of the long suite: 5 in CI, more by hand (``RELIABILITY_KILLS=50``).
KILLS = int(os.environ.get("RELIABILITY_KILLS", "5"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300 + 40 * KILLS)]

#: Slow enough that a run's apply phase lasts a few seconds, fast enough for CI.
EMULATOR_SETTINGS = {
    "latency_ms": 25.0,
    "latency_jitter_ms": 10.0,
    "global_rate_per_s": 400.0,
    "endpoint_rate_per_s": 400.0,
    "search_rate_per_s": 100.0,
}
STRIPE_ENV = {
    "STRIPE_MAX_REQUESTS_PER_SECOND": "100",
    "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": "100",
}
#: Small batches, so a kill often finds a checkpoint in flight; half the new products are born
#: through their price (two calls: a kill may land between them).
RUN_CONFIG = {
    "ops": {"stripe_catalog": {"config": {"batch_size": 20, "workers": 8, "share_by_price": 0.5}}}
}
#: Currencies whose prices the edits below can set as "<major>.<minor>".
DECIMAL_CURRENCIES = ("usd", "eur", "gbp", "cad", "chf", "sek")


@pytest.fixture
def sandbox(emulator: Any, migration_sandbox: SandboxFactory) -> MigrationSandbox:
    """A migration sandbox on the slowed-down emulator."""
    emulator.control.configure(**EMULATOR_SETTINGS)
    return migration_sandbox(stripe_env=STRIPE_ENV, run_config=RUN_CONFIG)


def seed_catalogue(sandbox: MigrationSandbox, n: int, seed: int) -> tuple[set[str], set[str]]:
    """Insert ``n`` sample rows (5% bad); return all ids and the bad ones."""
    catalog = generate_catalog(n, seed=seed, bad_fraction=0.05)
    insert_products(sandbox.database_url, catalog.rows)
    return {str(r["id"]) for r in catalog.rows}, set(catalog.defects)


def writes_left(sandbox: MigrationSandbox, invalid: set[str]) -> int:
    """A low estimate of the Stripe writes the next run makes: one per valid row in scope, but
    none for a row a killed run left marked whose product Stripe already has (that run may have
    applied it: the next run then only confirms it against Stripe)."""
    rows = cms_rows(sandbox.database_url)
    in_stripe = {
        (product.get("metadata") or {}).get("cms_id")
        for product in sandbox.emulator.control.objects("product")
    }
    return sum(
        1
        for cms_id, row in rows.items()
        if row["needs_sync"]
        and cms_id not in invalid
        and (row["sync_run_id"] is None or cms_id not in in_stripe)
    )


def test_killed_three_times_mid_apply_then_finished(
    sandbox: MigrationSandbox, record_property: Any
) -> None:
    """Issue 5: three SIGKILLs at random moments of the apply phase, then a run to the end."""
    seed = run_seed()
    rng = random.Random(seed)
    seeded, invalid = seed_catalogue(sandbox, 200, seed)

    killed: list[str] = []
    for _ in range(3):
        process = sandbox.start()
        left = writes_left(sandbox, invalid)
        assert left > 1, "the kills must leave work to resume"
        # At most a third of what is left (plus the writes in flight when the kill lands), so
        # that whatever the seed, each of the three kills still finds work to interrupt.
        landed = kill_after_writes(sandbox, process, rng.randint(1, max(1, left // 3)))
        assert landed, f"seed {seed}: the run ended before the kill\n{process.outcome().log_tail()}"
        # Killed mid-apply, the run still holds the stripe_api pool's only slot; the next run
        # must give it back (fail_dead_runs) or wait forever.
        [run_id] = sandbox.unfinished_runs()
        assert sandbox.held_pool_slots() == {run_id: "STARTED"}
        killed.append(run_id)

    final = sandbox.run()
    assert final.success, f"seed {seed}:\n{final.log_tail()}"
    assert final.summary and final.summary["checks"] and all(final.summary["checks"].values())
    assert [sandbox.run_status(r) for r in killed] == ["FAILURE"] * 3
    assert sandbox.held_pool_slots() == {}
    counts = check_catalogue(
        sandbox.database_url, sandbox.emulator, seeded_ids=seeded, invalid_ids=invalid
    )
    assert counts.stripe_products == len(seeded) - len(invalid)
    assert counts.stripe_prices == counts.stripe_products
    report(
        record_property,
        "crash/migration (issue 5)",
        seed=seed,
        kills_survived=len(killed),
        rows=counts.rows,
        products=counts.stripe_products,
        failed_rows=counts.failed,
    )


def edit_catalogue(
    sandbox: MigrationSandbox,
    rng: random.Random,
    cycle: int,
    invalid: set[str],
    price_edits: Counter[str],
) -> int:
    """Edit synced rows as CMS editors would between two runs: new prices (each one the product
    never had), new names, deactivations. Return the number of rows edited."""
    rows = cms_rows(sandbox.database_url)
    synced = sorted(i for i, r in rows.items() if r["sync_status"] == "synced" and i not in invalid)
    if len(synced) < 30:
        return 0
    chosen = rng.sample(synced, 30)
    repriced = [i for i in chosen[:16] if rows[i]["currency"] in DECIMAL_CURRENCIES]
    # The last two are renamed and deactivated in the same edit.
    renamed, deactivated = chosen[16:], chosen[28:]
    with psycopg.connect(libpq_url(sandbox.database_url), autocommit=True) as conn:
        for cms_id in repriced:
            # The major part is unique per cycle (the seed's prices stay below 500 or are 1299).
            price = f"{500 + cycle}.{rng.randrange(100):02d}"
            conn.execute("UPDATE products SET price = %s WHERE id = %s", (price, cms_id))
            price_edits[cms_id] += 1
        conn.execute(
            "UPDATE products SET name = name || %s WHERE id = ANY(%s::uuid[])",
            (f" (v{cycle})", renamed),
        )
        conn.execute(
            "UPDATE products SET active = false WHERE id = ANY(%s::uuid[])", (deactivated,)
        )
    return len(repriced) + len(renamed)


def kill_somehow(
    sandbox: MigrationSandbox,
    process: HarnessProcess,
    kind: str,
    rng: random.Random,
    estimate: int,
    run_s: float,
) -> bool:
    """Kill ``process`` the way ``kind`` names (``estimate``: the writes the run should make;
    ``run_s``: how long runs took to reach their apply phase); return whether the kill landed."""
    if kind == "apply":
        return kill_after_writes(sandbox, process, rng.randint(1, max(1, int(estimate * 0.9))))
    if kind == "write_back":
        return kill_during_write_back(sandbox, process, rng.randint(0, max(0, estimate // 2)))
    return kill_after_delay(process, rng.uniform(0.2, 1.2) * run_s)


def test_killed_k_times_with_edits_in_between_then_finished(
    sandbox: MigrationSandbox, record_property: Any
) -> None:
    """Issue 9: K kills (``RELIABILITY_KILLS``, default 5) mid-apply, mid-checkpoint or at a
    random delay; CMS editors change prices, names and active flags between runs; every other
    resume is Dagster's re-execution from failure of the killed run. Then a run to the end."""
    kills_wanted = KILLS
    seed = run_seed()
    rng = random.Random(seed)
    seeded, invalid = seed_catalogue(sandbox, 200, seed)
    price_edits: Counter[str] = Counter()
    kinds = ("apply", "write_back", "timed")
    landed: Counter[str] = Counter()
    missed = edited = reexecutions = 0
    run_s = 8.0  # until measured: how long a run takes to reach its apply phase and be killed
    parent: str | None = None

    cycle = 0
    while sum(landed.values()) < kills_wanted:
        cycle += 1
        assert cycle <= 2 * kills_wanted + 5, f"seed {seed}: too many kills missed ({missed})"
        if cycle > 1:
            edited += edit_catalogue(sandbox, rng, cycle, invalid, price_edits)
        started = time.monotonic()
        if parent is not None and cycle % 2 == 0:
            process = sandbox.start(RELIABILITY_REEXECUTE_FROM=parent)
            reexecutions += 1
        else:
            process = sandbox.start()
        kind = kinds[(cycle - 1) % len(kinds)]
        estimate = writes_left(sandbox, invalid)
        if kill_somehow(sandbox, process, kind, rng, max(estimate, 2), run_s):
            landed[kind] += 1
            if kind != "timed":
                run_s = time.monotonic() - started
            unfinished = sandbox.unfinished_runs()  # none if killed before its run was created
            assert len(unfinished) <= 1
            parent = unfinished[0] if unfinished else None
        else:
            outcome = process.outcome()
            assert outcome.success, (
                f"seed {seed}: {stripe_mismatches(sandbox.database_url, sandbox.emulator)[:10]}\n"
                + outcome.log_tail()
            )
            missed += 1
            parent = None

    final = sandbox.run()
    assert final.success, (
        f"seed {seed}: {stripe_mismatches(sandbox.database_url, sandbox.emulator)[:10]}\n"
        + final.log_tail()
    )
    assert final.summary and final.summary["checks"] and all(final.summary["checks"].values())
    assert sandbox.unfinished_runs() == [] and sandbox.held_pool_slots() == {}
    counts = check_catalogue(
        sandbox.database_url,
        sandbox.emulator,
        seeded_ids=seeded,
        invalid_ids=invalid,
        price_edits=price_edits,
    )
    assert counts.stripe_products == len(seeded) - len(invalid)
    report(
        record_property,
        "crash/migration (issue 9)",
        seed=seed,
        kills_survived=sum(landed.values()),
        kills_mid_apply=landed["apply"],
        kills_mid_write_back=landed["write_back"],
        kills_at_random_delay=landed["timed"],
        runs_finished_before_kill=missed,
        reexecutions_from_failure=reexecutions,
        rows_edited=edited,
        rows=counts.rows,
        products=counts.stripe_products,
        prices=counts.stripe_prices,
        deactivated_prices=counts.inactive_prices,
    )


def test_a_reexecution_verifies_the_version_its_plan_read(sandbox: MigrationSandbox) -> None:
    """A re-execution from failure applies the plan its parent read; a row an editor changed
    after that read (between the kill and the re-execution) is the next run's work, not a
    mismatch of this one. Found by the sequence above (seed 560200637): the verification took
    the re-execution's own start as the time the CMS was read, so it failed a correct run."""
    seeded, invalid = seed_catalogue(sandbox, 60, seed=7)
    assert sandbox.run().success
    rows = cms_rows(sandbox.database_url)
    synced = sorted(i for i, r in rows.items() if r["sync_status"] == "synced")
    repriced, renamed = synced[:10], synced[10]
    with psycopg.connect(libpq_url(sandbox.database_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE products SET price = '777.77', currency = 'usd' WHERE id = ANY(%s::uuid[])",
            (repriced,),
        )
        process = sandbox.start()
        assert kill_after_writes(sandbox, process, 2), "the run ended before the kill"
        [parent] = sandbox.unfinished_runs()
        conn.execute("UPDATE products SET name = name || ' (renamed)' WHERE id = %s", (renamed,))

    resumed = sandbox.run(RELIABILITY_REEXECUTE_FROM=parent)
    assert resumed.success, (
        f"{stripe_mismatches(sandbox.database_url, sandbox.emulator)}\n{resumed.log_tail()}"
    )
    assert cms_rows(sandbox.database_url)[renamed]["needs_sync"], "the rename is the next run's"

    final = sandbox.run()
    assert final.success, final.log_tail()
    check_catalogue(
        sandbox.database_url,
        sandbox.emulator,
        seeded_ids=seeded,
        invalid_ids=invalid,
        price_edits=Counter(repriced),
    )
    [product] = [
        p for p in sandbox.emulator.control.objects("product") if p["metadata"]["cms_id"] == renamed
    ]
    assert product["name"].endswith(" (renamed)")
