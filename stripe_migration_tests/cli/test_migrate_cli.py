"""`stripe-migration check | migrate | rollback` on the sandbox, through click's CliRunner.

The commands run the project's jobs on a Dagster instance stored in the embedded PostgreSQL
(``DAGSTER_HOME`` with the repository's dagster.yaml), against the session's gateway and emulator.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner, Result

from stripe_migration.cli import main
from stripe_migration.cli.errors import EXIT_NOT_CONFIGURED
from stripe_migration.db.migrations import latest_version
from stripe_migration.sandbox.sample_data import generate_catalog, insert_products
from stripe_migration.sandbox.stack import ENV_KEYS
from stripe_migration.sandbox.supabase_gateway import make_service_role_key, start_gateway
from stripe_migration_tests.cli.test_console import PROGRESS_LINE

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
FAST = "5000"

#: Variables a developer's shell or .env may hold that must not leak into these tests.
_LEAKY = (
    *ENV_KEYS,
    "VITE_SUPABASE_URL",
    "DAGSTER_HOME",
    "STRIPE_ALLOW_LIVE",
    "STRIPE_MAX_IN_FLIGHT",
    "STRIPE_POOL_LIMIT",
    "STRIPE_REQUEST_TIMEOUT_S",
    "STRIPE_RETRY_ATTEMPTS",
    "STRIPE_MIGRATION_LOG_LEVEL",
)


@pytest.fixture(scope="module")
def dagster_pg_url(pg_server) -> str:
    """One database for the Dagster instance of this module's runs."""
    return pg_server.create_database("cli_dagster")


@pytest.fixture
def cli_env(
    emulator, gateway, dagster_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The environment `sandbox up` would write, for the session's sandbox, set in os.environ,
    with ``defs`` rebuilt from it (resources read some settings when the code location loads)."""
    emulator.control.configure(
        global_rate_per_s=float(FAST), endpoint_rate_per_s=float(FAST), search_rate_per_s=50.0
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        "SUPABASE_URL": gateway.url,
        "SUPABASE_SERVICE_ROLE_KEY": gateway.key,
        "STRIPE_SECRET_KEY": emulator.secret_key,
        "STRIPE_API_BASE": emulator.url,
        "DATABASE_URL": gateway.database_url,
        "DAGSTER_PG_URL": dagster_pg_url,
        "DAGSTER_HOME": str(home),
        "STRIPE_MAX_REQUESTS_PER_SECOND": FAST,
        "STRIPE_MAX_ENDPOINT_REQUESTS_PER_SECOND": FAST,
    }
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env here: only the variables above count
    definitions = importlib.import_module("stripe_migration.definitions")
    previous = definitions.defs
    importlib.reload(definitions)
    rebuilt = definitions.defs
    definitions.defs = previous
    monkeypatch.setattr(definitions, "defs", rebuilt)
    yield env


def _invoke(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False, **kwargs)


def _one_line_error(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _seed(database_url: str, n: int, bad_fraction: float = 0.1) -> tuple[int, int]:
    catalog = generate_catalog(n, seed=5, bad_fraction=bad_fraction)
    insert_products(database_url, catalog.rows)
    return n - len(catalog.defects), len(catalog.defects)


def _rows(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute("SELECT * FROM products ORDER BY id")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _writes(emulator) -> int:
    stats = emulator.control.stats()
    return sum(
        sum(int(n) for n in by_status.values())
        for endpoint, by_status in stats["by_endpoint"].items()
        if endpoint.startswith("POST")
    )


# ---------------------------------------------------------------------------------------------
# check


def test_check_shows_schema_account_and_mode_and_stores_the_run(cli_env) -> None:
    result = _invoke(["check"])
    assert result.exit_code == 0, result.output
    assert f"Supabase schema {latest_version()}" in result.stdout
    assert "Stripe account acct_" in result.stdout
    assert "test mode" in result.stdout

    result = _invoke(["check", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["success"] is True
    assert summary["schema_version"] == latest_version()
    assert summary["stripe_mode"] == "test"
    assert summary["stripe_account"].startswith("acct_")
    # The run is on the configured instance (PostgreSQL), where the UI finds it.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(summary["run_id"])
        assert run is not None
        assert run.job_name == "preflight"
        assert run.status == dg.DagsterRunStatus.SUCCESS


def test_check_with_a_refused_key_fails_with_one_line(cli_env) -> None:
    bad_key = "sk_test_" + "x" * 24
    result = _invoke(["check", "--json"], env={"STRIPE_SECRET_KEY": bad_key})
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert line.startswith("Error: preflight failed: check_connections:")
    assert "401" in line and "STRIPE_SECRET_KEY" in line
    assert bad_key not in result.output
    assert json.loads(result.stdout)["success"] is False


def test_check_at_an_old_schema_says_to_upgrade(cli_env, migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", [latest_version()])
    key = make_service_role_key()
    with start_gateway(migrated_db, key, log_path=tmp_path / "old_gateway.log") as old:
        result = _invoke(["check"], env={"SUPABASE_URL": old.url, "SUPABASE_SERVICE_ROLE_KEY": key})
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert f"the pipeline needs {latest_version()}" in line
    assert "run `stripe-migration db upgrade`" in line


def test_unconfigured_commands_exit_2_naming_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for command in (["check"], ["migrate", "--dry-run"], ["rollback", "--yes"]):
        result = _invoke(command)
        assert result.exit_code == EXIT_NOT_CONFIGURED, result.output
        line = _one_line_error(result)
        for name in ("STRIPE_SECRET_KEY", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
            assert name in line
        assert "DAGSTER_PG_URL" in line
        assert "sandbox up" in line


# ---------------------------------------------------------------------------------------------
# migrate and rollback


def test_dry_run_then_migrate_then_rollback(cli_env, emulator) -> None:
    database_url = cli_env["DATABASE_URL"]
    valid, bad = _seed(database_url, 60)

    result = _invoke(["migrate", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["job"] == "plan_catalog" and plan["success"] is True
    assert plan["plan"]["create"] == valid
    assert plan["plan"]["invalid"] == bad
    assert plan["plan"]["planned_writes"] == valid
    assert _writes(emulator) == 0

    result = _invoke(["migrate", "--batch-size", "7", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert "# Catalogue migration report" in result.stdout
    assert f"created {valid}, updated 0" in result.stdout
    assert f"failed {bad} (invalid in the CMS {bad}, refused by Stripe 0)" in result.stdout
    # Not a terminal: the run's log lines, progress included, are plain lines on stderr.
    progress = [line for line in result.stderr.splitlines() if PROGRESS_LINE.search(line)]
    assert progress and f"stripe_catalog: applied {valid}/{valid} products" in progress[-1]
    assert "check stripe_matches_cms on stripe_products: passed" in result.stderr
    run_id = result.stdout.strip().splitlines()[-1].split()[1]
    assert _writes(emulator) == valid
    rows = _rows(database_url)
    assert sum(r["sync_status"] == "synced" for r in rows) == valid
    assert all(r["sync_error"] for r in rows if r["sync_status"] == "failed")
    # The run is on the configured instance, with the options as run config and the whole
    # catalogue as one partition range.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.run_config["ops"]["stripe_catalog"]["config"] == {"batch_size": 7, "workers": 3}
        assert run.tags["dagster/asset_partition_range_start"] == "00"
        assert run.tags["dagster/asset_partition_range_end"] == "15"

    # Nothing to do (the invalid rows wait for an edit): no run, no Stripe call.
    calls = emulator.control.stats()["requests_total"]
    with dg.DagsterInstance.get() as instance:
        runs = len(instance.get_run_records())
    idle = _invoke(["migrate", "--json"])
    assert idle.exit_code == 0, idle.output
    assert json.loads(idle.stdout)["run_ids"] == []
    assert "nothing to sync" in idle.stderr
    assert emulator.control.stats()["requests_total"] == calls
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == runs

    result = _invoke(["rollback", "--run-id", run_id, "--json"])
    assert result.exit_code == 0, result.output
    rollback = json.loads(result.stdout)
    assert rollback["success"] is True
    assert rollback["products_archived"] == valid
    assert rollback["rows_restored"] == valid + bad
    products = emulator.control.objects("product")
    assert len(products) == valid and not any(p["active"] for p in products)
    assert all(r["stripe_product_id"] is None for r in _rows(database_url))


@pytest.mark.slow  # several runs; the fast tier keeps dry run, migrate and rollback
def test_dry_run_output_holds_every_change_of_every_partition_range(cli_env, tmp_path) -> None:
    valid, bad = _seed(cli_env["DATABASE_URL"], 60)
    target = tmp_path / "plan.csv"
    result = _invoke(
        [
            "migrate",
            "--dry-run",
            "--partition",
            "00..06",
            "--partition",
            "09..15",
            "--output",
            str(target),
        ]
    )
    assert result.exit_code == 0, result.output
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = [int(n) for n in re.findall(r"(?:create|invalid) (\d+)", result.stdout.split("\n")[0])]
    assert len(rows) == sum(counts) > 20  # partitions 07 and 08 left out
    assert len(rows) < valid + bad
    assert {r["action"] for r in rows} == {"create", "invalid"}
    assert len({r["cms_id"] for r in rows}) == len(rows)
    assert f"{len(rows)} changes written to {target}" in result.stderr
    assert f"... {len(rows) - 20} more changes" in result.stdout

    as_json = tmp_path / "plan.json"
    assert _invoke(["migrate", "--dry-run", "--output", str(as_json)]).exit_code == 0
    assert len(json.loads(as_json.read_text())) == valid + bad
    refused = _invoke(["migrate", "--dry-run", "--output", str(tmp_path / "plan.txt")])
    assert refused.exit_code == 2 and "name a .csv or a .json file" in refused.stderr


@pytest.mark.slow  # several runs; the fast tier keeps dry run, migrate and rollback
def test_migrate_some_partitions_only(cli_env) -> None:
    database_url = cli_env["DATABASE_URL"]
    _seed(database_url, 80, bad_fraction=0.0)
    result = _invoke(["migrate", "--json", "--partition", "3", "--partition", "05..06"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["partitions"] == ["03", "05..06"]
    assert len(summary["run_ids"]) == 2
    rows = _rows(database_url)
    inside = [r for r in rows if r["sync_partition"] in (3, 5, 6)]
    assert inside
    assert all(r["sync_status"] == "synced" for r in inside)
    assert all(r["stripe_product_id"] is None for r in rows if r not in inside)
    assert summary["success"] is True and summary["reason"] is None
    assert summary["report"]["created"] == len(inside)
    assert summary["report"]["api_calls"] == len(inside)
    assert summary["report"]["failed"] == 0
    assert summary["failed_checks"] == []


@pytest.mark.slow  # several runs; the fast tier keeps dry run, migrate and rollback
def test_blocking_check_failure_exits_1_and_force_resync_repairs(cli_env, emulator) -> None:
    _seed(cli_env["DATABASE_URL"], 20, bad_fraction=0.0)
    bucket = f"{_rows(cli_env['DATABASE_URL'])[0]['sync_partition']:02d}"
    assert _invoke(["migrate", "--partition", bucket]).exit_code == 0
    product = emulator.control.objects("product")[0]
    emulator.client().v1.products.update(product["id"], {"name": "Renamed in the dashboard"})

    # An ordinary run verifies what it wrote (nothing); --verify-all reads every row.
    ordinary = _invoke(["migrate", "--json", "--partition", bucket])
    assert ordinary.exit_code == 0, ordinary.output
    result = _invoke(["migrate", "--json", "--verify-all", "--partition", bucket])
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert "blocking check failed: stripe_matches_cms" in line
    assert product["metadata"]["cms_id"] in line
    assert "--force-resync" in line
    summary = json.loads(result.stdout)
    # The check skipped the report step; the command renders the report from what the run stored.
    assert summary["success"] is False
    assert summary["report"]["created"] == summary["report"]["failed"] == 0
    assert summary["failed_checks"][0].startswith("stripe_matches_cms on stripe_products")

    plain = _invoke(["migrate", "--verify-all", "--partition", bucket])
    assert plain.exit_code == 1
    assert "# Catalogue migration report" in plain.stdout
    assert "created 0, updated 0, repriced 0, archived 0" in plain.stdout
    assert "check stripe_matches_cms on stripe_products: FAILED" in plain.stderr

    result = _invoke(["migrate", "--force-resync", "--json", "--partition", bucket])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"]["updated"] == 1


def test_log_level_warning_prints_no_log_line(cli_env) -> None:
    result = _invoke(["check", "--log-level", "WARNING"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "Supabase schema" in result.stdout


def test_rollback_of_an_unknown_run_is_refused(cli_env) -> None:
    result = _invoke(["rollback", "--run-id", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 1
    assert "no migration run 00000000-" in _one_line_error(result)


@pytest.mark.slow  # several runs; the fast tier keeps dry run, migrate and rollback
def test_rollback_of_everything_lists_the_runs_and_asks_first(cli_env) -> None:
    database_url = cli_env["DATABASE_URL"]
    _seed(database_url, 6, bad_fraction=0.0)
    result = _invoke(["migrate", "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]

    result = _invoke(["rollback"], input="n\n")
    assert result.exit_code == 1
    assert "Aborted" in result.output
    # The prompt names each run it would undo: short id, job, start, partitions, rows backed up.
    line = next(line for line in result.stderr.splitlines() if run_id[:8] in line)
    assert line.split()[:2] == [run_id[:8], "migrate_catalog"]
    assert "partitions 00..15  6 rows backed up" in line
    assert all(r["stripe_product_id"] for r in _rows(database_url))  # nothing rolled back


@pytest.mark.slow  # several runs; the fast tier keeps dry run, migrate and rollback
def test_rollback_by_the_short_id_the_ui_shows(cli_env, emulator) -> None:
    database_url = cli_env["DATABASE_URL"]
    _seed(database_url, 8, bad_fraction=0.0)
    result = _invoke(["migrate", "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE products SET name = 'Renamed by an editor' WHERE id = %s",
            [_rows(database_url)[0]["id"]],
        )
    before = {str(r["id"]): (r["name"], r["price"], r["updated_at"]) for r in _rows(database_url)}

    result = _invoke(["rollback", "--run-id", run_id[:8], "--json"])
    assert result.exit_code == 0, result.output
    assert f"rolling back {run_id[:8]}  migrate_catalog" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["success"] is True
    assert summary["rolled_back"] == [run_id]
    assert summary["runs"] == 1
    assert (summary["rows_restored"], summary["rows_kept"], summary["kept"]) == (8, 0, [])
    assert summary["products_archived"] == 8
    assert (summary["prices_restored"], summary["contents_restored"]) == (0, 0)
    after = {str(r["id"]): (r["name"], r["price"], r["updated_at"]) for r in _rows(database_url)}
    assert after == before  # the editor's rename is still there
    assert not any(p["active"] for p in emulator.control.objects("product"))
