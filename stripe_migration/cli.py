"""The ``stripe-migration`` command line: a thin layer over the package's modules.

Configuration comes from the environment and from a ``.env`` file in the current directory (values
already in the environment win).
"""

from __future__ import annotations

import os
import sys

import click
from dotenv import load_dotenv

from stripe_migration.db import migrations
from stripe_migration.db.urls import redact


def _database_url(explicit: str | None) -> str:
    url = explicit or os.environ.get("DATABASE_URL")
    if not url:
        raise click.UsageError(
            "no database: set DATABASE_URL (or pass --database-url), or run "
            "`stripe-migration sandbox up` to start a local one"
        )
    return url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stripe_migration")
def main() -> None:
    """Move a Supabase product catalogue into Stripe, and keep Stripe webhook events healthy."""
    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)


@main.group()
def db() -> None:
    """Schema migrations of the Supabase database (versions in sql/)."""


_db_url_option = click.option(
    "--database-url", envvar="DATABASE_URL", help="PostgreSQL URL [env: DATABASE_URL]"
)


@db.command("upgrade")
@_db_url_option
@click.option("--to", "to", default=None, help="Target version (default: the latest).")
def db_upgrade(database_url: str | None, to: str | None) -> None:
    """Apply pending migrations."""
    url = _database_url(database_url)
    try:
        applied = migrations.upgrade(url, to=to)
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    version = migrations.current_version(url)
    if applied:
        click.echo(f"applied {', '.join(applied)}; {redact(url)} is at {version}")
    else:
        click.echo(f"nothing to apply; {redact(url)} is at {version}")


@db.command("downgrade")
@_db_url_option
@click.option("--to", "to", required=True, help="Target version; 0 for an empty schema.")
def db_downgrade(database_url: str | None, to: str) -> None:
    """Roll back applied migrations newer than --to, newest first."""
    url = _database_url(database_url)
    try:
        rolled_back = migrations.downgrade(url, to=to)
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    version = migrations.current_version(url) or "empty"
    click.echo(f"rolled back {', '.join(rolled_back) or 'nothing'}; now at {version}")


@db.command("status")
@_db_url_option
def db_status(database_url: str | None) -> None:
    """Show every schema version and whether it is applied."""
    url = _database_url(database_url)
    rows = migrations.status(url)
    click.echo(f"{'version':<9} {'state':<8} {'applied at':<26} name")
    for row in rows:
        if not row.applied:
            state = "pending"
        elif row.checksum_matches:
            state = "applied"
        else:
            state = "CHANGED"
        when = row.executed_at.isoformat(timespec="seconds") if row.executed_at else "-"
        click.echo(f"{row.version:<9} {state:<8} {when:<26} {row.name}")
    if any(r.applied and not r.checksum_matches for r in rows):
        sys.exit(1)


@main.group()
def sandbox() -> None:
    """The local stack: embedded PostgreSQL, a Supabase gateway and a Stripe emulator."""


_dir_option = click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the stack's state and its .env file.",
)


@sandbox.command("up")
@_dir_option
def sandbox_up_command(directory: str) -> None:
    """Start the stack on free loopback ports and write DIR/.env with its settings."""
    from stripe_migration.sandbox.stack import SandboxError, sandbox_up

    try:
        state = sandbox_up(directory)
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"sandbox up: Supabase gateway {state.env['SUPABASE_URL']}, "
        f"Stripe emulator {state.env['STRIPE_API_BASE']}, "
        f"PostgreSQL {redact(state.env['DATABASE_URL'])}"
    )
    click.echo(f"settings written to {os.path.join(state.directory, '.env')}")


@sandbox.command("down")
@_dir_option
def sandbox_down_command(directory: str) -> None:
    """Stop the stack started for DIR."""
    from stripe_migration.sandbox.stack import sandbox_down

    if sandbox_down(directory):
        click.echo("sandbox stopped")
    else:
        click.echo("no sandbox running for this folder")


@sandbox.command("seed")
@_db_url_option
@click.option("--products", default=500, show_default=True, help="How many products to add.")
@click.option("--seed", "random_seed", default=7, show_default=True, help="Random seed.")
@click.option("--bad-fraction", default=0.04, show_default=True, help="Share of bad rows.")
def sandbox_seed_command(
    database_url: str | None, products: int, random_seed: int, bad_fraction: float
) -> None:
    """Fill the catalogue with realistic products, a few percent of them bad as CMS rows go."""
    from stripe_migration.sandbox.sample_data import generate_products, insert_products

    url = _database_url(database_url)
    rows = generate_products(products, seed=random_seed, bad_fraction=bad_fraction)
    inserted = insert_products(url, rows)
    click.echo(f"seeded {inserted} products into {redact(url)}")


if __name__ == "__main__":
    main()
