"""How close the catalogue migration gets to Stripe's rate limits, run through Dagster on the sandbox.

Each scenario starts its own sandbox (embedded PostgreSQL, Supabase gateway, Stripe emulator in
child processes, in a temporary directory), runs ``migrate_catalog`` over every partition in this
process with the resources wired as ``definitions.py`` wires them, prints a human line and a JSON
line, and stops everything. The emulator answers in 100 ms +/- 50 ms at Stripe's live limits
(100 requests/s for the account, 25/s per endpoint, search 20/s), except ``fresh`` (the sandbox
account's 25/s); the client is set the same way (STRIPE_MAX_REQUESTS_PER_SECOND=100 or 25,
STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND=25, 50 in flight).

Scenarios (``--scenario``):

- ``fresh``: a new catalogue of ``--products`` (5,000) at the sandbox account's 25 requests/s. A
  new product is one ``POST /v1/products`` (its price comes with it), and the limits leave no room
  for the second way (two calls each), so the ceiling is 25 products/s. Target: >= 0.95 of the
  ceiling and <= 1.02 write calls per new product.
- ``fresh-live-split``: the same at the live account's 100 requests/s. New products are split
  between ``POST /v1/products`` and ``POST /v1/prices`` + ``POST /v1/products/{id}`` (the share
  chosen from the limits: half and half), so the ceiling is 25 + 25 = 50 products/s for 75
  requests/s. Target: >= 45 products/s over the apply step, 1.5 writes per new product, no
  duplicate, no half-made product, no 429.
- ``nothing``: the same catalogue again after it was migrated (set up with the limits off).
  Target: zero writes; time and read calls reported.
- ``mixed``: after the catalogue was migrated, 10 % new rows, 10 % renamed, 10 % repriced. A
  rename is ``POST /v1/products/{id}``; a reprice is ``POST /v1/prices`` + ``POST
  /v1/products/{id}`` (switch the default) + ``POST /v1/prices/{id}`` (deactivate the old one).
  The ceiling is the least time the limits allow for the calls made: each endpoint at 25/s, all
  of them at 100/s (for 10/10/10 %: ``POST /v1/products/{id}`` takes 2 of the 5 calls, 40 s for
  5,000 products, so 37.5 changed products/s).
- ``faults``: ``fresh`` with 5 % HTTP 500, 5 % HTTP 503 and 5 % dropped connections (half of them
  after the object was stored). Target: the run completes with no duplicate; ratio reported.

The ratio is reported twice: over the apply step (what the rate limiter governs) and over the
whole job (read, back up, validate, plan, apply, verify against Stripe, report).

    python bench/bench_migration.py --scenario fresh
    python bench/bench_migration.py --scenario all --products 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness import (
    FAST_CLIENT_ENV,
    FAST_EMULATOR,
    LIVE_CLIENT_ENV,
    LIVE_EMULATOR,
    LIVE_GLOBAL_PER_S,
    NO_FAULTS,
    RunFigures,
    Stack,
    Watchdog,
    ceiling_seconds,
    duplicates,
    emit,
    machine,
    run_job,
    sandbox,
    stop_sandbox_now,
)

from stripe_migration.sandbox.sample_data import generate_products

SCENARIOS = ("fresh", "fresh-live-split", "nothing", "mixed", "faults")
#: The sandbox account's limit (Stripe test mode: 25 requests/s).
SANDBOX_GLOBAL_PER_S = 25.0
SANDBOX_EMULATOR = {**LIVE_EMULATOR, "global_rate_per_s": SANDBOX_GLOBAL_PER_S}
SANDBOX_CLIENT_ENV = {
    **LIVE_CLIENT_ENV,
    "STRIPE_MAX_REQUESTS_PER_SECOND": str(SANDBOX_GLOBAL_PER_S),
}
FAULTS = {
    "fault_500_rate": 0.05,
    "fault_503_rate": 0.05,
    "fault_drop_rate": 0.05,
    "drop_after_commit": 0.5,
    "seed": 8,
}


def _common(run: RunFigures, global_per_s: float = LIVE_GLOBAL_PER_S) -> dict[str, Any]:
    """Figures every scenario reports."""
    calls = run.successful_calls()
    ceiling_s = ceiling_seconds(calls, global_per_s=global_per_s)
    applied = int(run.apply.get("products_applied", 0))
    return {
        "success": run.success,
        "failure": run.failure,
        "job_s": round(run.wall_s, 2),
        "apply_s": round(run.apply_s, 2),
        "products_applied": applied,
        "products_per_s": round(applied / run.apply_s, 2) if run.apply_s else 0.0,
        "ceiling_s": round(ceiling_s, 2),
        "ceiling_products_per_s": round(applied / ceiling_s, 2) if ceiling_s else None,
        "ratio_apply": round(ceiling_s / run.apply_s, 3) if run.apply_s else None,
        "ratio_job": round(ceiling_s / run.wall_s, 3) if run.wall_s else None,
        "write_requests": run.emulator.requests("POST"),
        "read_requests": run.emulator.requests("GET"),
        "http_429": run.emulator.rate_limited,
        "client_retries": int(run.apply.get("stripe_retries", 0)),
        "client_limiter_wait_s": run.apply.get("stripe_limiter_wait_s"),
        "client_in_flight_wait_s": run.apply.get("stripe_in_flight_wait_s"),
        "calls_needed": calls,
        "step_s": run.step_s,
        "checks": run.checks,
        "emulator": run.emulator.as_dict(),
    }


def _set_up_catalogue(stack: Stack, products: int) -> list[dict[str, Any]]:
    """Seed ``products`` rows and migrate them with every limit off (not measured)."""
    rows = generate_products(products, seed=1, bad_fraction=0.0)
    stack.seed(rows)
    stack.emulator(**FAST_EMULATOR, **NO_FAULTS)
    with stack.instance() as instance:
        setup = run_job(stack, stack.definitions(FAST_CLIENT_ENV), instance)
    if not setup.success:
        raise RuntimeError(f"setting the catalogue up failed: {setup.failure}")
    return rows


def fresh(
    stack: Stack, products: int, faults: bool = False, live: bool = False
) -> tuple[str, dict[str, Any]]:
    """A new catalogue at the sandbox account's limit, or at live limits when ``live`` or
    ``faults`` (with injected faults when ``faults``)."""
    stack.seed(generate_products(products, seed=1, bad_fraction=0.0))
    at_live = live or faults
    emulator, client = (
        (LIVE_EMULATOR, LIVE_CLIENT_ENV) if at_live else (SANDBOX_EMULATOR, SANDBOX_CLIENT_ENV)
    )
    stack.emulator(**emulator, **(FAULTS if faults else NO_FAULTS))
    with stack.instance() as instance:
        run = run_job(stack, stack.definitions(client), instance)
    global_per_s = LIVE_GLOBAL_PER_S if at_live else SANDBOX_GLOBAL_PER_S
    figures = _common(run, global_per_s)
    created = int(run.apply.get("applied_create", 0))
    figures["created"] = created
    figures["created_by_product"] = int(run.apply.get("created_by_product", 0))
    figures["created_by_price"] = int(run.apply.get("created_by_price", 0))
    figures["create_paths"] = run.apply.get("create_paths")
    figures["writes_per_new_product"] = (
        round(figures["write_requests"] / created, 4) if created else None
    )
    figures["duplicates"] = duplicates(stack)
    name = "faults" if faults else "fresh-live-split" if live else "fresh"
    dup = figures["duplicates"]
    duplicated = dup["cms_ids_with_several_products"] + dup["products_with_several_prices"]
    human = (
        f"{name} (account {global_per_s:.0f}/s): {figures['products_per_s']} products/s over "
        f"the apply step = {figures['ratio_apply']} of the "
        f"{figures['ceiling_products_per_s']}/s ceiling "
        f"(whole job {figures['job_s']} s = {figures['ratio_job']}); "
        f"{figures['created_by_product']} by POST /v1/products, "
        f"{figures['created_by_price']} by POST /v1/prices; "
        f"{dup['half_made_products']} half-made; "
        f"{figures['writes_per_new_product']} writes per new product, "
        f"{figures['read_requests']} reads, {figures['http_429']} 429s, "
        f"{figures['client_retries']} retries, {duplicated} duplicates"
        + ("" if run.success else f"; FAILED: {run.failure}")
    )
    return human, {"bench": f"migration_{name}", "products": products, **figures}


def nothing(stack: Stack, products: int) -> tuple[str, dict[str, Any]]:
    """The same catalogue again, nothing changed since it was migrated."""
    _set_up_catalogue(stack, products)
    stack.emulator(**LIVE_EMULATOR, **NO_FAULTS)
    with stack.instance() as instance:
        run = run_job(stack, stack.definitions(LIVE_CLIENT_ENV), instance)
    figures = _common(run)
    figures["rows_in_scope"] = int(run.plan.get("plan_unchanged", 0)) + sum(
        int(v) for k, v in run.plan.items() if k.startswith("plan_") and k != "plan_unchanged"
    )
    human = (
        f"nothing changed: {figures['write_requests']} writes, {figures['read_requests']} reads, "
        f"job {figures['job_s']} s for {products} products"
        + ("" if run.success else f"; FAILED: {run.failure}")
    )
    return human, {"bench": "migration_nothing", "products": products, **figures}


def mixed(stack: Stack, products: int) -> tuple[str, dict[str, Any]]:
    """10 % new, 10 % renamed, 10 % repriced, after the catalogue was migrated."""
    _set_up_catalogue(stack, products)
    share = products // 10
    new = stack.seed(generate_products(share, seed=2, bad_fraction=0.0))
    # A deterministic random pick (md5 of the id), disjoint sets for renames and reprices.
    ranked = "SELECT id FROM products WHERE stripe_product_id IS NOT NULL ORDER BY md5(id::text)"
    renamed = stack.execute(
        f"UPDATE products SET name = name || ' (2027)' WHERE id IN ({ranked} LIMIT %s)", (share,)
    )
    repriced = stack.execute(
        f"UPDATE products SET price = '4321' WHERE id IN ({ranked} OFFSET %s LIMIT %s)",
        (share, share),
    )
    changed = new + renamed + repriced
    stack.emulator(**LIVE_EMULATOR, **NO_FAULTS)
    with stack.instance() as instance:
        run = run_job(stack, stack.definitions(LIVE_CLIENT_ENV), instance)
    figures = _common(run)
    figures.update(
        new=new,
        renamed=renamed,
        repriced=repriced,
        changed=changed,
        calls_per_changed_product=round(figures["write_requests"] / changed, 3),
        by_action={k: v for k, v in run.apply.items() if k.startswith("applied_") and v},
    )
    human = (
        f"mixed: {changed} changed products ({new} new, {renamed} renamed, {repriced} repriced) "
        f"at {figures['products_per_s']} products/s = {figures['ratio_apply']} of the "
        f"{figures['ceiling_products_per_s']}/s ceiling for this mix (whole job "
        f"{figures['job_s']} s = {figures['ratio_job']}); {figures['calls_per_changed_product']} "
        f"write calls per changed product, {figures['http_429']} 429s"
        + ("" if run.success else f"; FAILED: {run.failure}")
    )
    return human, {"bench": "migration_mixed", "products": products, **figures}


def run_scenario(scenario: str, products: int, timeout_s: float) -> dict[str, Any] | None:
    """Run one scenario in its own sandbox; print and return its figures (None on timeout)."""
    workdir: list[Path] = []
    with (
        Watchdog(timeout_s, lambda: [stop_sandbox_now(d) for d in workdir]) as dog,
        sandbox(f"bench-migration-{scenario}-") as stack,
    ):
        workdir.append(stack.workdir)
        started = time.monotonic()
        if scenario == "fresh":
            human, figures = fresh(stack, products)
        elif scenario == "fresh-live-split":
            human, figures = fresh(stack, products, live=True)
        elif scenario == "faults":
            human, figures = fresh(stack, products, faults=True)
        elif scenario == "nothing":
            human, figures = nothing(stack, products)
        else:
            human, figures = mixed(stack, products)
        figures["scenario_s"] = round(time.monotonic() - started, 1)
        figures["machine"] = machine()
    if dog.fired:
        return None
    emit(human, figures)
    return figures


def main() -> int:
    """Run the chosen scenario(s); exit 1 if a run failed, 124 on the time limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="fresh")
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument(
        "--timeout-s", type=float, default=1200.0, help="per scenario, sandbox included"
    )
    args = parser.parse_args()
    ok = True
    for scenario in SCENARIOS if args.scenario == "all" else (args.scenario,):
        figures = run_scenario(scenario, args.products, args.timeout_s)
        if figures is None:
            return 124
        ok = ok and bool(figures["success"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
