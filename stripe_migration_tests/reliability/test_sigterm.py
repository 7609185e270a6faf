"""A migration stopped by SIGTERM (Ctrl+C, a deploy, Kubernetes) records what it wrote.

Issue 12, item 10: a run stopped mid-apply exited, but the products it had already created in
Stripe were not written back (the calls in flight finished, their results were dropped), so
the next run had to rediscover them. Now the apply stops submitting, lets the calls already
sent finish, and checkpoints every result before the run ends.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from stripe_migration.sandbox.sample_data import generate_products, insert_products
from stripe_migration_tests.reliability.harness import (
    Deadline,
    MigrationSandbox,
    SandboxFactory,
    cms_rows,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

#: Slow enough that the apply lasts a few seconds.
EMULATOR_SETTINGS = {
    "latency_ms": 40.0,
    "latency_jitter_ms": 10.0,
    "global_rate_per_s": 400.0,
    "endpoint_rate_per_s": 400.0,
}
STRIPE_ENV = {
    "STRIPE_MAX_REQUESTS_PER_SECOND": "60",
    "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": "60",
}
#: Big batches: a stop finds many finished products not yet checkpointed.
RUN_CONFIG = {"ops": {"stripe_catalog": {"config": {"batch_size": 80, "workers": 8}}}}


@pytest.fixture
def sandbox(emulator: Any, migration_sandbox: SandboxFactory) -> MigrationSandbox:
    """A migration sandbox on the slowed-down emulator."""
    emulator.control.configure(**EMULATOR_SETTINGS)
    return migration_sandbox(stripe_env=STRIPE_ENV, run_config=RUN_CONFIG)


def test_sigterm_mid_apply_writes_back_every_product_it_created(sandbox: MigrationSandbox) -> None:
    rows = generate_products(300, seed=17, bad_fraction=0.0)
    insert_products(sandbox.database_url, rows)

    process = sandbox.start()
    deadline = Deadline(90, "the run to create 40 products")
    while len(sandbox.emulator.control.objects("product")) < 40:
        assert process.alive(), process.outcome().log_tail()
        deadline.check()
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    os.killpg(process.popen.pid, signal.SIGTERM)
    outcome = process.wait(60)
    assert not outcome.success

    created = {
        p["metadata"]["cms_id"]: p["id"] for p in sandbox.emulator.control.objects("product")
    }
    assert len(created) < len(rows), "the stop came after the apply had finished"
    recorded = {
        cms_id: row["stripe_product_id"]
        for cms_id, row in cms_rows(sandbox.database_url).items()
        if row["stripe_product_id"]
    }
    unrecorded = sorted(set(created) - set(recorded))
    assert not unrecorded, f"{len(unrecorded)} products created in Stripe but not written back"
    assert {cms_id: created[cms_id] for cms_id in recorded} == recorded
