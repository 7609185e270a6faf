"""`stripe-migration sandbox ...`: the local stack (embedded PostgreSQL, gateway, emulator)."""

from __future__ import annotations

import os

import click

from stripe_migration.cli import database_url as _database_url
from stripe_migration.cli import database_url_option as _db_url_option
from stripe_migration.cli import main
from stripe_migration.db.urls import redact


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
@click.option(
    "--no-webhook",
    is_flag=True,
    help="Start no webhook receiver (the emulator then posts its events nowhere).",
)
def sandbox_up_command(directory: str, no_webhook: bool) -> None:
    """Start the stack on free loopback ports and write DIR/.env with its settings.

    The stack: embedded PostgreSQL, the Supabase gateway, the Stripe emulator, and a webhook
    receiver the emulator posts its events to (into stripe_events), so that an edit made through
    the emulator's API reaches the events' processing and the catalogue sensor like a dashboard
    edit would.
    """
    from stripe_migration.sandbox.stack import SandboxError, sandbox_up

    try:
        state = sandbox_up(directory, webhook=not no_webhook)
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"sandbox up: Supabase gateway {state.env['SUPABASE_URL']}, "
        f"Stripe emulator {state.env['STRIPE_API_BASE']}, "
        f"PostgreSQL {redact(state.env['DATABASE_URL'])}"
    )
    if state.receiver_url:
        click.echo(f"the emulator's webhook events go to {state.receiver_url}")
    click.echo(f"settings written to {os.path.join(state.directory, '.env')}")


@sandbox.command("down")
@_dir_option
@click.option(
    "--purge",
    is_flag=True,
    help="Also remove what the stack leaves: its settings in .env, .sandbox/ (the database's "
    "files, the logs) and .dagster_home/.",
)
def sandbox_down_command(directory: str, purge: bool) -> None:
    """Stop the stack started for DIR; --purge to start over from nothing."""
    from stripe_migration.sandbox.stack import sandbox_down

    down = sandbox_down(directory, purge=purge)
    click.echo("sandbox stopped" if down.stopped else "no sandbox running for this folder")
    for path in down.removed:
        click.echo(f"removed {path}")
    if down.kept:
        click.echo(
            f"kept {', '.join(down.kept)}: `stripe-migration sandbox down --purge` removes them "
            "(the database's data with them)"
        )


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
