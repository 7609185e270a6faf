"""Run ``migrate_catalog`` over every partition in this process, as a crash harness's victim.

``python -m stripe_migration_tests.reliability.run_migration`` executes production's job, from
``stripe_migration.definitions`` (resources from the environment: ``STRIPE_SECRET_KEY``,
``STRIPE_API_BASE``, the ``STRIPE_*`` tuning variables, ``SUPABASE_URL``,
``SUPABASE_SERVICE_ROLE_KEY``), on the Dagster instance of ``DAGSTER_HOME`` (the repository's
``dagster.yaml``: PostgreSQL at ``DAGSTER_PG_URL``). ``RELIABILITY_RUN_CONFIG`` (JSON) is the run
config, e.g. the apply batch size. With ``RELIABILITY_REEXECUTE_FROM=<run id>`` it re-executes
that failed run from its failure (Dagster's "re-execute from failure") instead of starting a new
run.

Like the CLI, it tags its run with its pid (:func:`~stripe_migration.db.dagster_runs.runner_tags`)
and first marks the runs of killed processes failed, freeing their pool slots
(:func:`~stripe_migration.db.dagster_runs.fail_dead_runs`). It prints one JSON line
(``success``, ``run_id``, ``errors``, ``checks``, ``dead_runs_failed``) and exits 0 when the run
succeeded, 1 when it failed. A test may SIGKILL it at any moment.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import dagster as dg

from stripe_migration.db.dagster_runs import fail_dead_runs, runner_tags
from stripe_migration.settings import CATALOG_PARTITION_COUNT
from stripe_migration_tests.reliability.harness import failure_messages

RUN_CONFIG_ENV = "RELIABILITY_RUN_CONFIG"
REEXECUTE_ENV = "RELIABILITY_REEXECUTE_FROM"

ALL_PARTITIONS = {
    "dagster/asset_partition_range_start": "00",
    "dagster/asset_partition_range_end": f"{CATALOG_PARTITION_COUNT - 1:02d}",
}


def _json_env(name: str) -> dict[str, Any]:
    raw = os.environ.get(name, "").strip()
    value = json.loads(raw) if raw else {}
    if not isinstance(value, dict):
        raise SystemExit(f"{name} must hold a JSON object, got {raw[:80]!r}")
    return value


def migrate_catalog_job() -> dg.JobDefinition:
    """Production's migration job (``stripe_migration.definitions``), reconstructable by Dagster
    (needed to re-execute a run). Importing the definitions reads the tuning variables."""
    from stripe_migration.definitions import defs

    return defs.resolve_job_def("migrate_catalog")


def _errors(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> list[str]:
    """The messages of failed steps and of failed blocking checks."""
    errors = failure_messages(result)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            errors.append(f"check {evaluation.check_name} failed")
    return errors


def main() -> int:
    """Execute the migration once; return the process's exit status."""
    tags = {**ALL_PARTITIONS, **runner_tags()}
    run_config = _json_env(RUN_CONFIG_ENV) or None
    parent = os.environ.get(REEXECUTE_ENV, "").strip()
    with dg.DagsterInstance.get() as instance:
        # As the CLI does: runs whose process was killed are marked failed and give back their
        # slot of the stripe_api pool, or this run would wait for that slot forever.
        recovered = fail_dead_runs(instance)
        if parent:
            result: dg.ExecuteInProcessResult | dg.JobExecutionResult = dg.execute_job(
                dg.reconstructable(migrate_catalog_job),
                instance,
                run_config=run_config,
                tags=tags,
                reexecution_options=dg.ReexecutionOptions.from_failure(parent, instance),
            )
        else:
            result = migrate_catalog_job().execute_in_process(
                instance=instance, tags=tags, run_config=run_config, raise_on_error=False
            )
    summary = {
        "success": result.success,
        "run_id": result.run_id,
        "errors": _errors(result),
        "checks": {e.check_name: e.passed for e in result.get_asset_check_evaluations()},
        "dead_runs_failed": recovered,
    }
    print(json.dumps(summary), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
