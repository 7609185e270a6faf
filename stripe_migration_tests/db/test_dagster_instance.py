"""Dagster's run storage in the embedded PostgreSQL, from a plain postgresql:// URL."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from stripe_migration.db.urls import dagster_storage_url, libpq_url, redact

REPO = Path(__file__).resolve().parents[2]


@dg.asset
def answer() -> int:
    """A trivial asset to run through the instance."""
    return 42


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+psycopg2://u@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_dagster_storage_url_names_psycopg2(url: str, expected: str) -> None:
    assert dagster_storage_url(url) == expected


def test_libpq_url_drops_the_driver() -> None:
    assert libpq_url("postgresql+psycopg2://u@h/db") == "postgresql://u@h/db"


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://user:s3cret@host/db") == "postgresql://user:***@host/db"


def test_non_postgres_url_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        dagster_storage_url("mysql://u@h/db")


def test_job_runs_on_instance_in_postgres_given_a_plain_url(
    empty_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert empty_db.startswith("postgresql://")
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_URL", empty_db)

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([answer], instance=instance)
        assert result.success
        run_id = result.run_id

    # A second instance built from the same dagster.yaml reads the run back from PostgreSQL.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey("answer")) is not None
        # The storage was handed the psycopg2 form of the user's plain URL.
        assert instance.run_storage.postgres_url == dagster_storage_url(empty_db)
