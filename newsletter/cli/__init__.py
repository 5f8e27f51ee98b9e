"""The `newsletter` command line: thin commands over the core, one transaction each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import click
import sqlalchemy.exc
import sqlalchemy.orm as so
from flask import Flask

from newsletter import logs
from newsletter import mail
from newsletter.config import ConfigError
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.logs import LEVELS


class CliState:
    """What commands share: the application, built on first use."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.__dict__["app"] = app

    @cached_property
    def app(self) -> Flask:
        from newsletter import create_app

        return create_app()

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


class NewsletterGroup(click.Group):
    """A group that turns expected failures into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NewsletterError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise click.ClickException(f"cannot use the database: {reason}") from None


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default=None,
    help="Least severe log records written to stderr (default: NEWSLETTER_LOG_LEVEL, or info).",
)
def main(log_level: str | None) -> None:
    """Write issues as YAML, manage subscribers, and send through Amazon SES.

    Settings come from NEWSLETTER_* environment variables (see README.md). Logs go to
    stderr with timestamps; NEWSLETTER_LOG_FORMAT=json writes them as JSON lines.
    """
    logs.configure(level=log_level)


def register_commands() -> None:
    """Attach every command module's commands to the main group."""
    from newsletter.cli import admin
    from newsletter.cli import database
    from newsletter.cli import issue
    from newsletter.cli import lists
    from newsletter.cli import send
    from newsletter.cli import serve
    from newsletter.cli import status
    from newsletter.cli import subscribers
    from newsletter.cli import suppressions
    from newsletter.cli import worker

    for module in (
        database,
        issue,
        lists,
        serve,
        subscribers,
        send,
        worker,
        status,
        suppressions,
        admin,
    ):
        for command in module.COMMANDS:
            main.add_command(command)


register_commands()
