"""`newsletter suppressions`: addresses that are never mailed, on any list."""

from __future__ import annotations

import click
from tqdm import tqdm

from newsletter import suppressions as suppressions_core
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state
from newsletter.errors import NewsletterError


@click.group("suppressions", cls=NewsletterGroup)
def suppressions() -> None:
    """Show and change the addresses never mailed (bounced, complained, or added by hand).

    Hard bounces and complaints reported by Amazon SES are added automatically.
    """


@suppressions.command("list")
@pass_state
def list_command(state: CliState) -> None:
    """Show every suppressed address.

    One a line: address, reason (hard_bounce, soft_bounces, complaint, manual, ses_list),
    since when, and detail.
    """
    with state.transaction() as session:
        count = 0
        for row in suppressions_core.iter_suppressions(session):
            count += 1
            since = row.created_at.strftime("%Y-%m-%d %H:%M UTC")
            click.echo(f"{row.email}\t{row.reason.value}\t{since}\t{row.detail or ''}")
        if count == 0:
            click.echo("No suppressed addresses.", err=True)


@suppressions.command("add")
@click.argument("email")
@click.option("--note", default=None, help="Why, for whoever reads the list later.")
@pass_state
def add(state: CliState, email: str, note: str | None) -> None:
    """Never mail EMAIL again, on any list.

    Until `newsletter suppressions remove EMAIL`.
    """
    with state.transaction() as session:
        suppression = suppressions_core.add(session, email, note)
        click.echo(f"Suppressed {suppression.email} ({suppression.reason.value}).")


@suppressions.command("remove")
@click.argument("email")
@pass_state
def remove(state: CliState, email: str) -> None:
    """Mail EMAIL again (a complaint needs a fresh signup).

    Bounced subscriptions of the address become active again. Subscriptions marked
    complained stay so: the reader must sign up again and confirm by email.
    """
    with state.transaction() as session:
        removal = suppressions_core.remove(session, email)
    click.echo(
        f"Removed {suppressions_core.address_key(email)} (was {removal.reason.value}); "
        f"{removal.reactivated} bounced subscription(s) active again."
    )
    if removal.still_complained:
        click.echo(
            f"{removal.still_complained} subscription(s) stay 'complained': the reader must "
            "sign up again and confirm by email.",
            err=True,
        )


@suppressions.command("import-ses")
@pass_state
def import_ses(state: CliState) -> None:
    """Copy the SES account suppression list.

    Reads the Amazon SES account-level suppression list (bounces and complaints SES
    recorded) and adds its addresses here. Needs NEWSLETTER_MAIL_BACKEND=ses.
    """
    client = getattr(state.mailer, "client", None)
    if client is None or not hasattr(client, "list_suppressed_destinations"):
        raise NewsletterError("import-ses needs NEWSLETTER_MAIL_BACKEND=ses")
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError

    with (
        state.transaction() as session,
        tqdm(desc="SES suppression list", unit=" addr", disable=None) as bar,
    ):
        try:
            result = suppressions_core.import_ses(session, client, progress=bar)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise NewsletterError(
                f"SES refused: {error.get('Code', 'error')}: {error.get('Message', '')}"
            ) from None
        except BotoCoreError as exc:
            raise NewsletterError(f"cannot reach SES: {exc}") from None
    click.echo(f"Read {result.seen} address(es) from SES; {result.added} newly suppressed.")


COMMANDS = [suppressions]
