"""Shared fixtures. Each part of the local stack has its own plugin module in ``fixtures/``."""

pytest_plugins = [
    "stripe_migration_tests.fixtures.postgres",
    "stripe_migration_tests.fixtures.stripe_emulator",
    "stripe_migration_tests.fixtures.supabase_gateway",
    "stripe_migration_tests.fixtures.migration",
]
