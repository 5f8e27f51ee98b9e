"""`newsletter db`: create or migrate the database."""

from __future__ import annotations

import click

from newsletter import migrations
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state


@click.group("db", cls=NewsletterGroup)
def db() -> None:
    """Create or migrate the database."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_state
def upgrade(state: CliState, revision: str) -> None:
    """Create the database, or bring it up to date (safe to run on every deploy)."""
    migrations.upgrade(state.database.engine, revision)
    click.echo(f"Database is at revision {migrations.current(state.database.engine)}.")


@db.command("current")
@pass_state
def current(state: CliState) -> None:
    """Show the database's migration revision."""
    click.echo(migrations.current(state.database.engine) or "empty (run: newsletter db upgrade)")


COMMANDS = [db]
