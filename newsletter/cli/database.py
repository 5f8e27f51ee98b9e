"""`newsletter db`: create or migrate the database."""

from __future__ import annotations

import click

from newsletter import migrations
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state


@click.group("db", cls=NewsletterGroup)
def db() -> None:
    """Create or migrate the database, and delete what is past its retention."""


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


@db.command("prune")
@pass_state
def prune(state: CliState) -> None:
    """Delete rate-limit counters, SNS dedupe rows, drafts and staged uploads past their
    retention (NEWSLETTER_*_RETENTION_DAYS). Workers do it daily; safe to run any time."""
    from newsletter import retention

    with state.transaction() as session:
        pruned = retention.prune(session, state.config)
    click.echo("Deleted " + ", ".join(pruned.lines()) + ".")


COMMANDS = [db]
