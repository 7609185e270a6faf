"""Fixtures of the reliability suites: a Dagster database per test, and migration sandboxes."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from stripe_migration.sandbox.postgres import LocalPostgres
from stripe_migration_tests.reliability.harness import (
    REPO,
    MigrationSandbox,
    SandboxFactory,
    make_sandbox,
)

_DAGSTER_TEMPLATE = "template_reliability_dagster"
_counter = itertools.count()


@pytest.fixture(scope="session")
def dagster_template_db(pg_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding Dagster's (empty) tables, created once: cloning it costs far less than
    letting every test's first run create them."""
    url = pg_server.create_database(_DAGSTER_TEMPLATE)
    home = tmp_path_factory.mktemp("dagster_template")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    previous = os.environ.get("DAGSTER_PG_URL")
    os.environ["DAGSTER_PG_URL"] = url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = previous
    return _DAGSTER_TEMPLATE


@pytest.fixture
def dagster_db(pg_server: LocalPostgres, dagster_template_db: str) -> Iterator[str]:
    """URL of a fresh database with Dagster's tables, for one test's Dagster instance."""
    name = f"reliability_dagster_{next(_counter)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(dagster_template_db)
            )
        )
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def migration_sandbox(
    emulator: Any, gateway: Any, dagster_db: str, tmp_path: Path
) -> Iterator[SandboxFactory]:
    """Build migration sandboxes on the session's emulator and gateway (or another gateway given
    as ``gateway_url``, ``gateway_key`` and ``database_url``); their leftover subprocesses are
    killed after the test."""
    made: list[MigrationSandbox] = []

    def make(**options: Any) -> MigrationSandbox:
        options.setdefault("gateway_url", gateway.url)
        options.setdefault("gateway_key", gateway.key)
        options.setdefault("database_url", gateway.database_url)
        box = make_sandbox(
            emulator=emulator,
            dagster_pg_url=dagster_db,
            workdir=tmp_path / f"sandbox{len(made)}",
            **options,
        )
        made.append(box)
        return box

    try:
        yield make
    finally:
        for box in made:
            box.close()
