"""The `newsletter` command line: thin commands over the core, one transaction each.

Each command's module is imported only when that command runs, and this module imports
nothing heavy (Flask, SQLAlchemy, boto3, MJML...), so `newsletter --help` answers at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING
from typing import Any

import click

from newsletter.config import ConfigError
from newsletter.errors import NewsletterError
from newsletter.logs import LEVELS

if TYPE_CHECKING:
    import sqlalchemy.orm as so
    from flask import Flask

    from newsletter import mail
    from newsletter.db import Database

# Every top-level command: the module that defines it, and its line in `newsletter --help`
# (kept here so listing the commands imports none of them; tests/test_cli_help.py checks
# this table against the commands themselves).
COMMANDS: dict[str, tuple[str, str]] = {
    "admin": ("newsletter.cli.admin", "Manage the editor accounts of the web console (/admin)."),
    "db": ("newsletter.cli.database", "Create or migrate the database, and prune old rows."),
    "issue": ("newsletter.cli.issue", "Check and preview issue files (YAML) before sending them."),
    "lists": ("newsletter.cli.lists", "Show, create and change the lists (publications)."),
    "send": ("newsletter.cli.send", "Send an issue file to a list, or a test copy to yourself."),
    "serve": ("newsletter.cli.serve", "Run the development web server."),
    "status": ("newsletter.cli.status", "Show sends in progress and done, with their counts."),
    "subscribers": ("newsletter.cli.subscribers", "List, import, export and remove subscribers."),
    "suppressions": ("newsletter.cli.suppressions", "Show and change the addresses never mailed."),
    "worker": ("newsletter.cli.worker", "Deliver queued issues (run any number, anywhere)."),
    "workers": ("newsletter.cli.workers", "List the delivery workers and what each holds."),
}
# Commands that only work on a laptop set-up or with production settings in place fail
# with a ConfigError; this hint follows the error when the missing setting is one of these.
DEVELOPMENT_HINT = (
    "To try it on a laptop (SQLite, outbox, fixed dev key), run it with NEWSLETTER_ENV=development."
)


class CliState:
    """What commands share: the application, built on first use."""

    def __init__(self, app: Flask | None = None) -> None:
        # Only `serve` needs the pages; every other command starts faster without them
        # (about a tenth of a second of imports and URL rules).
        self.web = False
        if app is not None:
            self.__dict__["app"] = app

    @cached_property
    def app(self) -> Flask:
        from newsletter import create_app

        return create_app(web=self.web)

    @property
    def config(self) -> dict[str, Any]:
        return self.app.config

    @property
    def database(self) -> Database:
        return self.app.extensions["newsletter.db"]

    @property
    def mailer(self) -> mail.Mailer:
        return self.app.extensions["newsletter.mailer"]

    @contextmanager
    def transaction(self) -> Iterator[so.Session]:
        """Run one command's work in one transaction; queued mail goes after the commit."""
        from newsletter import mail

        session = self.database.session()
        try:
            yield session
            session.commit()
            mail.send_deferred(session, self.mailer)
        except BaseException:
            mail.discard_deferred(session)
            session.rollback()
            raise
        finally:
            session.close()


pass_state = click.make_pass_decorator(CliState, ensure=True)


def help_line(command: click.Command) -> str:
    """A command's line in its group's help: its short help, or its help's first paragraph."""
    if command.short_help:
        return command.short_help
    first = (command.help or "").split("\n\n")[0]
    return " ".join(first.split())


class NewsletterGroup(click.Group):
    """A group that turns expected failures into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        import sqlalchemy.exc

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            message = str(exc)
            if "NEWSLETTER_ENV=production" in message:
                message = f"{message}. {DEVELOPMENT_HINT}"
            raise click.ClickException(message) from None
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise click.ClickException(f"cannot use the database: {reason}") from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with whole sentences (click cuts them at ~45 characters)."""
        rows = []
        for name in self.list_commands(ctx):
            line = self.command_line(ctx, name)
            if line is not None:
                rows.append((name, line))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def command_line(self, ctx: click.Context, name: str) -> str | None:
        """The help line of one subcommand (None: hidden or unknown)."""
        command = self.get_command(ctx, name)
        if command is None or command.hidden:
            return None
        return help_line(command)


class MainGroup(NewsletterGroup):
    """The top-level group: loads a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module = importlib.import_module(COMMANDS[name][0])
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(name)

    def command_line(self, ctx: click.Context, name: str) -> str | None:
        if name in COMMANDS:
            return COMMANDS[name][1]
        return super().command_line(ctx, name)


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default=None,
    help="Least severe log records written to stderr (default: NEWSLETTER_LOG_LEVEL, or info).",
)
def main(log_level: str | None) -> None:
    """Write issues as YAML, manage subscribers, and send through Amazon SES.

    Settings come from NEWSLETTER_* environment variables (see README.md). On a laptop,
    run commands with NEWSLETTER_ENV=development (SQLite and .eml files under instance/).
    Logs go to stderr with timestamps; NEWSLETTER_LOG_FORMAT=json writes them as JSON
    lines. Each command has --help.
    """
    from newsletter import logs

    logs.configure(level=log_level)
