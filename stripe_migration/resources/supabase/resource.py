"""The Dagster resource for Supabase: typed, validated settings, and the :class:`SupabaseDb` it
builds from them on first use (one httpx client with explicit timeouts, supabase-py's own retries
off). The key never appears in messages, logs or reprs, and is registered for redaction."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
import httpx
from pydantic import Field
from supabase import ClientOptions, create_client

from stripe_migration import settings
from stripe_migration.resources.api_client_resource import ApiClientResource
from stripe_migration.resources.redaction import register_secret
from stripe_migration.resources.retry import (
    retry_attempts_field,
    retry_initial_delay_field,
    retry_max_delay_field,
)
from stripe_migration.resources.setting_checks import checked_unless_env_var, required_text
from stripe_migration.resources.setting_fields import at_least_one, timeout_field
from stripe_migration.resources.supabase.client import SupabaseDb


def supabase_url_from_env(environ: Mapping[str, str] | None = None) -> dg.EnvVar:
    """The ``dg.EnvVar`` to build :class:`SupabaseResource`'s ``url`` from, where Definitions are
    assembled: ``SUPABASE_URL``, or the seed's ``VITE_SUPABASE_URL`` when only that one is set.
    The value is read when a run starts, not here."""
    env = os.environ if environ is None else environ
    if not env.get("SUPABASE_URL") and env.get("VITE_SUPABASE_URL"):
        return dg.EnvVar("VITE_SUPABASE_URL")
    return dg.EnvVar("SUPABASE_URL")


def _checked_url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"url must be the project's http(s) URL (SUPABASE_URL), got {value!r}")
    return value.rstrip("/")


def _checked_key(value: Any) -> str:
    return required_text(value, "service_role_key", "SUPABASE_SERVICE_ROLE_KEY")


class SupabaseResource(ApiClientResource):
    """Supabase's REST API (PostgREST) through supabase-py. Build it where Definitions are
    assembled::

        SupabaseResource(
            url=supabase_url_from_env(),  # SUPABASE_URL, or VITE_SUPABASE_URL
            service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY"),
        )
    """

    url: str = Field(description="Project URL, e.g. https://<ref>.supabase.co (SUPABASE_URL).")
    service_role_key: str = Field(
        repr=False,
        description="Service-role key (SUPABASE_SERVICE_ROLE_KEY); bypasses row-level security. "
        "Never shown in logs or errors.",
    )
    request_timeout_s: float = timeout_field(settings.SUPABASE_REQUEST_TIMEOUT_S, "a response")
    connect_timeout_s: float = timeout_field(settings.SUPABASE_CONNECT_TIMEOUT_S, "a connection")
    max_rows: int = at_least_one(
        settings.SUPABASE_PAGE_SIZE,
        "The server's maximum rows per response (PostgREST db-max-rows; 1000 on "
        "Supabase). Read pages are never larger.",
    )
    upsert_chunk_size: int = at_least_one(
        settings.SUPABASE_WRITE_CHUNK_SIZE, "Rows per upsert request."
    )
    retry_attempts: int = retry_attempts_field(settings.SUPABASE_RETRY_ATTEMPTS, per="request")
    retry_initial_delay_s: float = retry_initial_delay_field(
        settings.SUPABASE_RETRY_INITIAL_DELAY_S
    )
    retry_max_delay_s: float = retry_max_delay_field(settings.SUPABASE_RETRY_MAX_DELAY_S)

    _check_url = checked_unless_env_var("url", _checked_url)
    _check_key = checked_unless_env_var("service_role_key", _checked_key)

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
            retry_policy=self._retry_policy(),
        )
        holder.append(db)
        return db

    def get_client(self) -> SupabaseDb:
        """The resource's :class:`SupabaseDb` (built on first use, then shared by all threads)."""
        return self._shared_client(self._build)
