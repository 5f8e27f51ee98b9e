"""`newsletter subscribers`: look at and manage subscribers."""

from __future__ import annotations

import click

from newsletter import subscribers as subscribers_core
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state
from newsletter.models import SubscriptionStatus

STATUS_CHOICE = click.Choice([s.value for s in SubscriptionStatus])


@click.group("subscribers", cls=NewsletterGroup)
def subscribers() -> None:
    """List, import, export and remove subscribers."""


@subscribers.command("list")
@click.option("--list", "list_slug", default=None, help="Only this list.")
@click.option("--status", default=None, type=STATUS_CHOICE, help="Only this status.")
@pass_state
def list_command(state: CliState, list_slug: str | None, status: str | None) -> None:
    """Print one subscription a line: address, list, status, name."""
    with state.transaction() as session:
        count = 0
        for row in subscribers_core.iter_subscriptions(
            session,
            list_slug=list_slug,
            status=SubscriptionStatus(status) if status else None,
        ):
            count += 1
            click.echo(f"{row.email}\t{row.list_slug}\t{row.status.value}\t{row.name or ''}")
        if count == 0:
            click.echo("No subscribers.", err=True)


COMMANDS = [subscribers]
