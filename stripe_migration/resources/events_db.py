"""The PostgreSQL database holding ``stripe_events``: its URL and a connection with a timeout.

The receiver writes ``stripe_events``; the processing job, the sensor, archival and gap filling
read and write it through :meth:`EventsDatabaseResource.connect`. How events are processed
(attempts, retry delay, retention...) is the event policy's, ``events/policy.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from pydantic import ConfigDict, Field

from stripe_migration.db.urls import libpq_url
from stripe_migration.resources.setting_checks import checked_unless_env_var, required_text
from stripe_migration.settings import EVENTS_DB_CONNECT_TIMEOUT_S


def _checked_database_url(value: Any) -> str:
    url = required_text(value, "database_url", "DATABASE_URL")
    libpq_url(url)  # raises "not a PostgreSQL URL ..." without echoing the value
    return url


class EventsDatabaseResource(dg.ConfigurableResource):
    """PostgreSQL holding ``stripe_events`` (``DATABASE_URL``).

    Build it where Definitions are assembled with :func:`events_db_resource_from_env`.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    database_url: str = Field(
        repr=False,
        description="PostgreSQL URL of the database holding stripe_events; set it from "
        "dg.EnvVar('DATABASE_URL'). Never shown in logs or errors.",
    )
    connect_timeout_s: int = Field(
        default=EVENTS_DB_CONNECT_TIMEOUT_S,
        ge=1,
        description="Seconds to wait for a connection to PostgreSQL.",
    )

    _check_url = checked_unless_env_var("database_url", _checked_database_url)

    def __repr__(self) -> str:
        return f"EventsDatabaseResource(connect_timeout_s={self.connect_timeout_s})"

    __str__ = __repr__

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A new autocommit connection, closed on exit."""
        with psycopg.connect(
            libpq_url(self.database_url),
            autocommit=True,
            connect_timeout=self.connect_timeout_s,
            application_name="stripe_migration-events",
        ) as conn:
            yield conn


def events_db_resource_from_env() -> EventsDatabaseResource:
    """The EventsDatabaseResource on ``DATABASE_URL`` (read when a run uses it)."""
    return EventsDatabaseResource(database_url=dg.EnvVar("DATABASE_URL"))
