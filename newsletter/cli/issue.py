"""`newsletter issue`: check and preview an issue file while writing it."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from contextlib import nullcontext
from typing import Any

import click

from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state
from newsletter.composer import IssueFileError
from newsletter.composer import preview as preview_core
from newsletter.config import ConfigError


def _fail(exc: IssueFileError, after: str = "") -> None:
    for line in exc.errors:
        click.echo(line, err=True)
    count = len(exc.errors)
    click.echo(f"{count} error{'s' if count != 1 else ''} in the issue file{after}.", err=True)
    sys.exit(1)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def _summary(compiled) -> str:
    html_kb = len(compiled.html.encode("utf-8")) / 1000
    text_kb = len(compiled.text.encode("utf-8")) / 1000
    return f"HTML {html_kb:.0f} KB, text {text_kb:.0f} KB"


@click.group("issue", cls=NewsletterGroup)
def issue() -> None:
    """Check and preview issue files (YAML) before sending them."""


@issue.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Check the issue FILE: every mistake with its line, and warnings (e.g. Gmail clipping).

    Exits with status 1 when the file has errors.
    """
    try:
        compiled = preview_core.check_issue(file)
    except IssueFileError as exc:
        _fail(exc)
    _warn(compiled.warnings)
    click.echo(f"{file}: OK: {compiled.subject!r} ({_summary(compiled)}).")


@issue.command("preview")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default="preview",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder to write SLUG.html and SLUG.txt into.",
)
@click.option("--list", "list_slug", default=None, help="Show it as sent to this list.")
@click.option("--name", default=None, help="A reader's name, to see the greeting.")
@pass_state
def preview(
    state: CliState, file: str, out_dir: str, list_slug: str | None, name: str | None
) -> None:
    """Write the HTML and plain-text versions of the issue FILE, as a reader gets them.

    Open the .html file in a browser; `newsletter serve` has a live preview at
    /preview?file=FILE that follows your edits.
    """
    try:
        base_url = state.config["BASE_URL"]
        transaction: AbstractContextManager[Any] = state.transaction()
    except ConfigError:
        # Without settings there is no database: a placeholder list still shows the issue.
        if list_slug:
            raise
        base_url, transaction = preview_core.PLACEHOLDER_BASE_URL, nullcontext()
    with transaction as session:
        chosen = preview_core.choose_list(session, list_slug)
        if chosen.note:
            click.echo(chosen.note, err=True)
        try:
            compiled, html_path, text_path = preview_core.write_preview(
                file, out_dir, chosen.mailing_list, base_url=base_url, name=name
            )
        except IssueFileError as exc:
            _fail(exc, ": nothing was written")
    _warn(compiled.warnings)
    click.echo(f"Wrote {html_path} and {text_path} ({_summary(compiled)}).")


COMMANDS = [issue]
