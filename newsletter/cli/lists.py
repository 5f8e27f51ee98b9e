"""`newsletter lists`: the publications readers subscribe to."""

from __future__ import annotations

import click

from newsletter import lists as lists_core
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state


@click.group("lists", cls=NewsletterGroup, invoke_without_command=True)
@click.pass_context
def lists(ctx: click.Context) -> None:
    """Show the lists, or create one with `newsletter lists create`."""
    if ctx.invoked_subcommand is None:
        state = ctx.ensure_object(CliState)
        with state.transaction() as session:
            rows = lists_core.all_lists(session)
            if not rows:
                click.echo("No lists yet. Create one with: newsletter lists create SLUG ...")
            for item in rows:
                click.echo(f"{item.slug}\t{item.name}\t{item.from_address}")


@lists.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The publication's name, shown to readers.")
@click.option("--from-address", required=True, help="Sender address (verified in SES).")
@click.option("--reply-to", default=None, help="Where replies go, if not the sender.")
@click.option("--postal-address", default=None, help="Postal address shown in every footer.")
@click.option("--description", default=None, help="One line shown on the signup page.")
@pass_state
def create(
    state: CliState,
    slug: str,
    name: str,
    from_address: str,
    reply_to: str | None,
    postal_address: str | None,
    description: str | None,
) -> None:
    """Create the list SLUG (lowercase letters, digits and hyphens)."""
    with state.transaction() as session:
        created = lists_core.create_list(
            session,
            slug,
            name=name,
            from_address=from_address,
            reply_to=reply_to,
            postal_address=postal_address,
            description=description,
        )
        click.echo(f"Created list {created.slug!r} ({created.name}).")


COMMANDS = [lists]
