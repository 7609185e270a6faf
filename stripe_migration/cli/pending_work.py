"""Whether the catalogue has work for `stripe-migration migrate`: the catalogue sensor's question.

A `migrate` with nothing to do would still cost a Dagster run (~10-20 s of steps over sixteen
partitions, a process's imports and exit) to write nothing: it asks the database first, with the
same ``catalog_pending_work()`` the sensor asks every tick (schema 1.5.0).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: What `migrate` says when there is nothing to do, and how to run anyway.
NOTHING_TO_SYNC = (
    "nothing to sync: no row added, edited or deleted, and no drift in Stripe, since the last "
    "run (a row that failed waits for an edit); --partition all runs anyway, --verify-all "
    "checks Stripe against the CMS"
)


def catalogue_has_work() -> bool:
    """Whether any row is in scope for a migration (new, edited, drifted, left by a killed run)
    or any deleted row's product is still to archive. True when the question cannot be asked
    (a schema before 1.5.0, a database error): the run then finds out, and says why it fails."""
    from stripe_migration.resources.supabase.resource import (
        SupabaseResource,
        supabase_url_from_env,
    )

    try:
        # The resource's settings are dg.EnvVar names, read by Dagster when a run starts; outside
        # a run, read them here.
        resource = SupabaseResource(
            url=os.environ[supabase_url_from_env().env_var_name],
            service_role_key=os.environ["SUPABASE_SERVICE_ROLE_KEY"],
        )
        rows = resource.get_client().rpc("catalog_pending_work") or []
    except Exception as exc:  # the run that follows reports the real problem
        log.debug("catalog_pending_work() not answered (%s): running anyway", type(exc).__name__)
        return True
    return any(int(r["rows_pending"]) or int(r["deletions_pending"]) for r in rows)
