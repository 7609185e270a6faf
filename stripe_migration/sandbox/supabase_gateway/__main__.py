"""``python -m stripe_migration.sandbox.supabase_gateway``: run the gateway in the foreground."""

from stripe_migration.sandbox.supabase_gateway.server import main

if __name__ == "__main__":
    raise SystemExit(main())
