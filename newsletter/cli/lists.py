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
                click.echo(f"{item.slug}\t{item.name}\t{item.from_address}\t{item.language}")


@lists.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The publication's name, shown to readers.")
@click.option("--from-address", required=True, help="Sender address (verified in SES).")
@click.option("--reply-to", default=None, help="Where replies go, if not the sender.")
@click.option("--postal-address", default=None, help="Postal address shown in every footer.")
@click.option("--description", default=None, help="One line shown on the signup page.")
@click.option(
    "--language",
    default="en",
    show_default=True,
    help="BCP 47 tag (en, de, fr, es, pt, ja, ar, he, pt-BR...): the language of the list's "
    "pages and emails.",
)
@pass_state
def create(
    state: CliState,
    slug: str,
    name: str,
    from_address: str,
    reply_to: str | None,
    postal_address: str | None,
    description: str | None,
    language: str,
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
            language=language,
        )
        click.echo(f"Created list {created.slug!r} ({created.name}, {created.language}).")


@lists.command("update")
@click.argument("slug")
@click.option("--name", default=None, help="The publication's name, shown to readers.")
@click.option("--from-address", default=None, help="Sender address (verified in SES).")
@click.option("--reply-to", default=None, help="Where replies go ('' to remove).")
@click.option("--postal-address", default=None, help="Postal address shown in every footer.")
@click.option("--description", default=None, help="One line shown on the signup page.")
@click.option(
    "--language",
    default=None,
    help="BCP 47 tag (en, de, fr, es, pt, ja, ar, he, pt-BR...): the language of the list's "
    "pages and emails.",
)
@pass_state
def update(
    state: CliState,
    slug: str,
    name: str | None,
    from_address: str | None,
    reply_to: str | None,
    postal_address: str | None,
    description: str | None,
    language: str | None,
) -> None:
    """Change the list SLUG: only the settings given change."""
    with state.transaction() as session:
        mailing_list = lists_core.get_list(session, slug)

        def keep(given: str | None, current: str | None) -> str | None:
            return current if given is None else given

        lists_core.update_list(
            session,
            mailing_list,
            name=keep(name, mailing_list.name) or "",
            from_address=keep(from_address, mailing_list.from_address) or "",
            reply_to=keep(reply_to, mailing_list.reply_to) or None,
            postal_address=keep(postal_address, mailing_list.postal_address),
            description=keep(description, mailing_list.description),
            language=language,
        )
        click.echo(
            f"Updated list {mailing_list.slug!r} ({mailing_list.name}, {mailing_list.language})."
        )


COMMANDS = [lists]
