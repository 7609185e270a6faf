"""The ``stripe-migration`` command group, on which the command modules register.

A thin layer over the package's modules. One module per command group (``db``, ``demo``,
``events``, ``migrate``, ``sandbox``, ``webhook``); ``runner`` runs a Dagster job, ``console`` shows it,
``partitions``, ``report`` and ``errors`` serve the commands. Configuration comes from the
environment and from a ``.env`` file in the current directory (values already in the environment
win).
"""

from __future__ import annotations

import os

import click
from dotenv import load_dotenv


def database_url(explicit: str | None) -> str:
    """The database URL from --database-url or DATABASE_URL, or a usage error saying what to do."""
    url = explicit or os.environ.get("DATABASE_URL")
    if not url:
        raise click.UsageError(
            "no database: set DATABASE_URL (or pass --database-url), or run "
            "`stripe-migration sandbox up` to start a local one"
        )
    return url


database_url_option = click.option(
    "--database-url", envvar="DATABASE_URL", help="PostgreSQL URL [env: DATABASE_URL]"
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stripe_migration")
def main() -> None:
    """Move a Supabase product catalogue into Stripe, and keep Stripe webhook events healthy."""
    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)


def _register() -> None:
    # Imported here so each command module can import `main` and the helpers above.
    from stripe_migration.cli import db, demo, events, migrate, sandbox, webhook  # noqa: F401


_register()

if __name__ == "__main__":
    main()
