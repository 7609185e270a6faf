"""The Dagster resource for Supabase: typed, validated settings, and the :class:`SupabaseDb` it
builds from them on first use (one httpx client with explicit timeouts, supabase-py's own retries
off). The key never appears in messages, logs or reprs, and is registered for redaction."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import dagster as dg
import httpx
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator
from supabase import ClientOptions, create_client

from stripe_migration import settings
from stripe_migration.resources.redaction import register_secret
from stripe_migration.resources.supabase.client import SupabaseDb


def supabase_url_from_env(environ: Mapping[str, str] | None = None) -> dg.EnvVar:
    """The ``dg.EnvVar`` to build :class:`SupabaseResource`'s ``url`` from, where Definitions are
    assembled: ``SUPABASE_URL``, or the seed's ``VITE_SUPABASE_URL`` when only that one is set.
    The value is read when a run starts, not here."""
    env = os.environ if environ is None else environ
    if not env.get("SUPABASE_URL") and env.get("VITE_SUPABASE_URL"):
        return dg.EnvVar("VITE_SUPABASE_URL")
    return dg.EnvVar("SUPABASE_URL")


class SupabaseResource(dg.ConfigurableResource):
    """Supabase's REST API (PostgREST) through supabase-py. Build it where Definitions are
    assembled::

        SupabaseResource(
            url=supabase_url_from_env(),  # SUPABASE_URL, or VITE_SUPABASE_URL
            service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY"),
        )
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(description="Project URL, e.g. https://<ref>.supabase.co (SUPABASE_URL).")
    service_role_key: str = Field(
        repr=False,
        description="Service-role key (SUPABASE_SERVICE_ROLE_KEY); bypasses row-level security. "
        "Never shown in logs or errors.",
    )
    request_timeout_s: float = Field(
        default=settings.SUPABASE_REQUEST_TIMEOUT_S,
        gt=0,
        description="Seconds to wait for a response.",
    )
    connect_timeout_s: float = Field(
        default=settings.SUPABASE_CONNECT_TIMEOUT_S,
        gt=0,
        description="Seconds to wait for a connection.",
    )
    max_rows: int = Field(
        default=settings.SUPABASE_PAGE_SIZE,
        ge=1,
        description="The server's maximum rows per response (PostgREST db-max-rows; 1000 on "
        "Supabase). Read pages are never larger.",
    )
    upsert_chunk_size: int = Field(
        default=settings.SUPABASE_WRITE_CHUNK_SIZE, ge=1, description="Rows per upsert request."
    )
    retry_attempts: int = Field(
        default=settings.SUPABASE_RETRY_ATTEMPTS,
        ge=1,
        description="Attempts per request, the first included.",
    )
    retry_initial_delay_s: float = Field(
        default=settings.SUPABASE_RETRY_INITIAL_DELAY_S,
        gt=0,
        description="Wait before the first retry (plus up to as much jitter).",
    )
    retry_max_delay_s: float = Field(
        default=settings.SUPABASE_RETRY_MAX_DELAY_S,
        gt=0,
        description="Longest wait between attempts.",
    )

    _db: SupabaseDb | None = PrivateAttr(default=None)
    _db_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("url", mode="before")
    @classmethod
    def _check_url(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):
            return value
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError(f"url must be the project's http(s) URL (SUPABASE_URL), got {value!r}")
        return value.rstrip("/")

    @field_validator("service_role_key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        if isinstance(value, dg.EnvVar):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError("service_role_key is empty: set SUPABASE_SERVICE_ROLE_KEY")
        return value

    @model_validator(mode="after")
    def _check_retry_delays(self) -> SupabaseResource:
        if self.retry_max_delay_s < self.retry_initial_delay_s:
            raise ValueError(
                "retry_max_delay_s must be >= retry_initial_delay_s "
                f"({self.retry_max_delay_s} < {self.retry_initial_delay_s})"
            )
        return self

    def __repr__(self) -> str:
        return f"SupabaseResource(url={self.url!r}, max_rows={self.max_rows})"

    __str__ = __repr__

    def _build(self) -> SupabaseDb:
        holder: list[SupabaseDb] = []

        def on_response(response: httpx.Response) -> None:
            holder[0]._on_response(response)

        http_client = httpx.Client(
            timeout=httpx.Timeout(self.request_timeout_s, connect=self.connect_timeout_s),
            event_hooks={"response": [on_response]},
            follow_redirects=True,
        )
        options = ClientOptions(
            httpx_client=http_client,
            postgrest_client_timeout=self.request_timeout_s,
            postgrest_client_retry=False,  # retries happen once, in SupabaseDb
            auto_refresh_token=False,
            persist_session=False,
        )
        register_secret(self.service_role_key)
        client = create_client(self.url, self.service_role_key, options=options)
        db = SupabaseDb(
            client,
            http_client,
            max_rows=self.max_rows,
            upsert_chunk_size=self.upsert_chunk_size,
            retry_attempts=self.retry_attempts,
            retry_initial_delay_s=self.retry_initial_delay_s,
            retry_max_delay_s=self.retry_max_delay_s,
        )
        holder.append(db)
        return db

    def get_client(self) -> SupabaseDb:
        """The resource's :class:`SupabaseDb` (built on first use, then shared by all threads)."""
        with self._db_lock:
            if self._db is None:
                self._db = self._build()
            return self._db

    def stats_metadata(self) -> dict[str, int]:
        """The client's counters as Dagster metadata (empty before the first request)."""
        return self._db.stats_metadata() if self._db is not None else {}

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the HTTP connections when the step ends."""
        if self._db is not None:
            self._db.close()
