"""The webhook events' database, and the settings every operation on it follows.

The receiver writes ``stripe_events``; the processing job, the sensor, archival and gap filling read
and write it through this resource. It carries the event settings too (max attempts, retry delay,
retention...), so the sensor that launches runs and the runs themselves agree on them; a run can
override any of them in its run config (``resources: events_db: config: ...``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from pydantic import ConfigDict, Field, field_validator, model_validator

from stripe_migration.db.urls import libpq_url
from stripe_migration.events.config import EventSettings

_DEFAULTS = EventSettings()

#: Environment variable → (EventsDatabaseResource field, type), read where Definitions are built.
EVENT_SETTINGS_ENV = {
    "STRIPE_EVENTS_MAX_ATTEMPTS": ("max_attempts", int),
    "STRIPE_EVENTS_RETRY_DELAY_S": ("retry_delay_s", int),
    "STRIPE_EVENTS_RETENTION_DAYS": ("retention_days", int),
    "STRIPE_EVENTS_ARCHIVE_ENABLED": ("archive_enabled", bool),
    "STRIPE_EVENTS_BATCH_SIZE": ("batch_size", int),
    "STRIPE_EVENTS_MAX_CONCURRENT_BATCHES": ("max_concurrent_batches", int),
}


class EventsDatabaseResource(dg.ConfigurableResource):
    """PostgreSQL holding ``stripe_events`` (``DATABASE_URL``), with the event settings.

    Build it where Definitions are assembled with :func:`events_db_resource_from_env`.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    database_url: str = Field(
        repr=False,
        description="PostgreSQL URL of the database holding stripe_events; set it from "
        "dg.EnvVar('DATABASE_URL'). Never shown in logs or errors.",
    )
    connect_timeout_s: int = Field(
        default=10, ge=1, description="Seconds to wait for a connection to PostgreSQL."
    )
    max_attempts: int = Field(
        default=_DEFAULTS.max_attempts,
        ge=1,
        description="Attempts before an event is dead (kept with its last error, not retried).",
    )
    retry_delay_s: int = Field(
        default=_DEFAULTS.retry_delay_s,
        ge=0,
        description="Seconds after an attempt started before the event may be tried again.",
    )
    retention_days: int = Field(
        default=_DEFAULTS.retention_days,
        ge=1,
        description="Events created longer ago are moved to stripe_events_archive.",
    )
    archive_enabled: bool = Field(
        default=_DEFAULTS.archive_enabled,
        description="Off: the archive schedule skips and the archive asset moves nothing.",
    )
    batch_size: int = Field(
        default=_DEFAULTS.batch_size, ge=1, description="Events claimed by one processing run."
    )
    max_concurrent_batches: int = Field(
        default=_DEFAULTS.max_concurrent_batches,
        ge=1,
        description="Processing runs the sensor keeps in flight (queued or running) at once.",
    )

    @field_validator("database_url", mode="before")
    @classmethod
    def _check_url(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):  # resolved, and checked again, when it is used
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("database_url is empty: set DATABASE_URL")
        libpq_url(value)  # raises "not a PostgreSQL URL ..." without echoing the value
        return value

    @model_validator(mode="after")
    def _check_settings(self) -> EventsDatabaseResource:
        self.settings()
        return self

    def __repr__(self) -> str:
        return f"EventsDatabaseResource({self.settings()!r})"

    __str__ = __repr__

    def settings(self) -> EventSettings:
        """The event settings this resource carries."""
        return EventSettings(
            max_attempts=self.max_attempts,
            retry_delay_s=self.retry_delay_s,
            retention_days=self.retention_days,
            archive_enabled=self.archive_enabled,
            batch_size=self.batch_size,
            max_concurrent_batches=self.max_concurrent_batches,
        )

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


def _parse(name: str, raw: str, kind: type) -> Any:
    text = raw.strip().lower()
    if kind is bool:
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={raw!r}: expected true or false")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer") from None


def event_settings_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The event settings set in the environment (:data:`EVENT_SETTINGS_ENV`), by field name."""
    env = os.environ if environ is None else environ
    return {
        field: _parse(name, env[name], kind)
        for name, (field, kind) in EVENT_SETTINGS_ENV.items()
        if env.get(name, "").strip()
    }


def event_settings_from_env(environ: Mapping[str, str] | None = None) -> EventSettings:
    """:class:`EventSettings` with the seed's defaults, overridden by the environment."""
    return EventSettings(**event_settings_overrides(environ))


def events_db_resource_from_env(environ: Mapping[str, str] | None = None) -> EventsDatabaseResource:
    """The EventsDatabaseResource: ``DATABASE_URL`` (read when used), settings from the variables
    in :data:`EVENT_SETTINGS_ENV` when set (read now)."""
    settings = event_settings_from_env(environ)  # a bad value fails here, naming the variable
    return EventsDatabaseResource(
        database_url=dg.EnvVar("DATABASE_URL"),
        **{field: getattr(settings, field) for field, _ in EVENT_SETTINGS_ENV.values()},
    )
