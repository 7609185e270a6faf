"""`stripe-migration db ...`: the schema migrations in sql/."""

from __future__ import annotations

import sys

import click

from stripe_migration.cli import database_url as _database_url
from stripe_migration.cli import database_url_option as _db_url_option
from stripe_migration.cli import main
from stripe_migration.db import migrations
from stripe_migration.db.urls import redact


@main.group()
def db() -> None:
    """Schema migrations of the Supabase database (versions in sql/)."""


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
