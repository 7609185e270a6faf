"""Dagster's PostgreSQL storage, accepting any PostgreSQL URL a user has.

dagster-postgres hands its URL to SQLAlchemy, and SQLAlchemy 2.1 maps a plain ``postgresql://``
URL to psycopg 3, on which Dagster's event log fails (``NOTIFY run_events, $1``). These subclasses
rewrite the URL to ``postgresql+psycopg2://`` (:func:`stripe_migration.db.urls.dagster_storage_url`)
before the storage is built, so ``DAGSTER_PG_URL`` can be a plain URL, a Supabase connection string
or one that already names psycopg2. ``dagster.yaml`` names :class:`PostgresStorage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster_postgres
from dagster._serdes import ConfigurableClassData
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from stripe_migration.db.urls import dagster_storage_url

_MODULE = __name__


def _kwargs(inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> dict:
    return {
        "inst_data": inst_data,
        "postgres_url": dagster_storage_url(pg_url_from_config(config_value)),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class _NormalisedUrl:
    """Builds a dagster-postgres storage from its config with the URL normalised for psycopg2
    (listed first among the bases, so this ``from_config_value`` is the one used)."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(**_kwargs(inst_data, config_value))


class PostgresRunStorage(_NormalisedUrl, dagster_postgres.PostgresRunStorage):
    """Dagster's PostgreSQL run storage with the URL normalised for psycopg2."""


class PostgresEventLogStorage(_NormalisedUrl, dagster_postgres.PostgresEventLogStorage):
    """Dagster's PostgreSQL event-log storage with the URL normalised for psycopg2."""


class PostgresScheduleStorage(_NormalisedUrl, dagster_postgres.PostgresScheduleStorage):
    """Dagster's PostgreSQL schedule storage with the URL normalised for psycopg2."""


class PostgresStorage(_NormalisedUrl, dagster_postgres.DagsterPostgresStorage):
    """Run, event-log and schedule storage in one PostgreSQL database, from any PostgreSQL URL."""

    def _data(self, class_name: str) -> ConfigurableClassData | None:
        if not self.inst_data:
            return None
        return ConfigurableClassData(_MODULE, class_name, self.inst_data.config_yaml)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return self._data("PostgresEventLogStorage")

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return self._data("PostgresRunStorage")

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return self._data("PostgresScheduleStorage")
