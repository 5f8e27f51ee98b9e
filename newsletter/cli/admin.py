"""`newsletter admin`: editor accounts for the web console."""

from __future__ import annotations

import sys

import click

from newsletter import accounts
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state


@click.group("admin", cls=NewsletterGroup)
def admin() -> None:
    """Manage the editor accounts of the web console (/admin)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(
        f"Password (at least {accounts.MIN_PASSWORD_LENGTH} characters)",
        hide_input=True,
        confirmation_prompt=True,
    )


@admin.command("create-user")
@click.argument("email")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_state
def create_user(state: CliState, email: str, password_stdin: bool) -> None:
    """Create an editor account for EMAIL; the password is asked for twice.

    The password is stored only as an argon2id hash. Sign in at BASE_URL/admin.
    """
    password = _read_password(password_stdin)
    with state.transaction() as session:
        user = accounts.create_user(session, email, password)
        click.echo(
            f"Created editor account {user.email}. Sign in at {state.config['BASE_URL']}/admin"
        )


@admin.command("set-password")
@click.argument("email")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_state
def set_password(state: CliState, email: str, password_stdin: bool) -> None:
    """Change the password of EMAIL's account; its open sessions are signed out."""
    with state.transaction() as session:
        user = accounts.find_user(session, email)
        accounts.set_password(session, user, _read_password(password_stdin))
        click.echo(f"Changed the password of {user.email}.")


@admin.command("users")
@pass_state
def users(state: CliState) -> None:
    """List the editor accounts and when each last signed in."""
    with state.transaction() as session:
        rows = accounts.all_users(session)
        if not rows:
            click.echo("No editor accounts. Create one with: newsletter admin create-user EMAIL")
        for user in rows:
            last = (
                user.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if user.last_login_at else "never"
            )
            click.echo(f"{user.email}\tlast sign-in: {last}")


COMMANDS = [admin]
