"""A local Supabase gateway: PostgREST's ``/rest/v1`` API over PostgreSQL, for the official client.

- :func:`create_app` builds the ASGI app (``app.py`` for reads and function calls, ``writes.py``
  for inserts, updates and deletes); :func:`start_gateway` runs it in a subprocess
  (``server.py``); ``python -m stripe_migration.sandbox.supabase_gateway`` runs it in the
  foreground.
- ``catalog.py`` reads the schema cache and ``relationships.py`` its foreign keys; ``query.py``
  and ``select_parser.py`` (over ``scanner.py``) parse PostgREST's query grammar into the tree of
  ``syntax.py``; ``embedding.py`` resolves embedded resources; ``sql_builder.py``, ``sql_read.py``,
  ``sql_rpc.py`` and ``sql_writes.py`` turn all that into SQL; ``headers.py`` reads
  Prefer/Accept/Range and ``errors.py`` renders PostgREST's errors.
"""

from stripe_migration.sandbox.supabase_gateway.app import create_app
from stripe_migration.sandbox.supabase_gateway.keys import make_service_role_key
from stripe_migration.sandbox.supabase_gateway.server import start_gateway

__all__ = ["create_app", "make_service_role_key", "start_gateway"]
