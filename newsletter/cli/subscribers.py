"""`newsletter subscribers`: look at, import, export, remove and erase subscribers."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from newsletter import imports
from newsletter import subscribers as subscribers_core
from newsletter.cli import CliState
from newsletter.cli import NewsletterGroup
from newsletter.cli import pass_state
from newsletter.models import SubscriptionStatus

STATUS_CHOICE = click.Choice([s.value for s in SubscriptionStatus])
# Bad rows printed after an import; the rest are counted.
SHOWN_BAD_ROWS = 20


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


@subscribers.command("import")
@click.argument("file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option("--list", "list_slug", required=True, metavar="SLUG", help="The list to add to.")
@click.option(
    "--consented",
    is_flag=True,
    help="The readers already agreed (e.g. moving from another tool): add them as active "
    "at once. Without it, each new address is emailed a confirmation link.",
)
@click.option(
    "--email-column",
    metavar="NAME",
    help='The column with the addresses (default: "email", "e-mail", "mail"...).',
)
@click.option(
    "--name-column",
    metavar="NAME",
    help='The column with the names (default: "name", "full name", "first name"...).',
)
@pass_state
def import_command(
    state: CliState,
    file: Path,
    list_slug: str,
    consented: bool,
    email_column: str | None,
    name_column: str | None,
) -> None:
    """Add the subscribers of a CSV file to a list.

    FILE.csv is UTF-8 (Excel: "CSV UTF-8"), separated by commas, semicolons or tabs, and
    its first line names the columns, e.g. `email,name`. Rows with a bad address or name
    are listed by line number and the rest is imported. Addresses already on the list are
    merged (a missing name is filled in); readers who unsubscribed, bounced or complained,
    and suppressed addresses, are never subscribed again. Running the same import twice
    is harmless.
    """
    mode = imports.ImportMode.CONSENTED if consented else imports.ImportMode.DOUBLE_OPT_IN
    total = file.stat().st_size if file.is_file() else 0
    # disable=None: a bar on a terminal only, not in logs or pipes (cron, CI).
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=file.name,
        leave=False,
        disable=None,
    ) as bar:

        def progress(rows: int, done: int, size: int) -> None:
            bar.total = size
            bar.set_postfix_str(f"{rows:,} rows", refresh=False)
            bar.update(done - bar.n)

        report = imports.import_csv(
            state.database,
            file,
            list_slug,
            mode=mode,
            email_column=email_column,
            name_column=name_column,
            mailer=state.mailer,
            config=state.config,
            source_label=f"import: {file.name}",
            progress=progress,
        )
    _print_report(file.name, list_slug, mode, report)


def _print_report(
    filename: str, list_slug: str, mode: imports.ImportMode, report: imports.ImportReport
) -> None:
    how = "active" if mode is imports.ImportMode.CONSENTED else "pending until confirmed"
    lines = [
        ("rows read", report.rows, ""),
        ("imported", report.imported, f"new subscriptions, {how}"),
        ("confirmations sent", report.confirmations, ""),
        ("merged", report.merged, "already on the list, or repeated in the file"),
        ("refused", report.refused, "unsubscribed, bounced, complained or suppressed"),
        ("blank lines", report.blank, ""),
        ("bad rows", report.bad_count, "not imported, see below" if report.bad_count else ""),
    ]
    click.echo(f"Imported {filename} into {list_slug}:")
    for label, value, note in lines:
        click.echo(f"  {label + ':':<20}{value:>9,}" + (f"  ({note})" if note else ""))
    if report.bad_count:
        click.echo("Bad rows:")
        for bad in report.bad[:SHOWN_BAD_ROWS]:
            click.echo(f"  line {bad.line}: {bad.reason}")
        if report.bad_count > SHOWN_BAD_ROWS:
            click.echo(f"  ... and {report.bad_count - SHOWN_BAD_ROWS:,} more")


@subscribers.command("export")
@click.option("--list", "list_slug", default=None, metavar="SLUG", help="Only this list.")
@click.option("--status", default=None, type=STATUS_CHOICE, help="Only this status.")
@click.option(
    "--search",
    default=None,
    metavar="TEXT",
    help="Only subscribers whose address or name contains TEXT (any case).",
)
@pass_state
def export(state: CliState, list_slug: str | None, status: str | None, search: str | None) -> None:
    """Write subscribers as CSV to standard output.

    One row per subscription: email, name, list, status, created_at, confirmed_at (UTC,
    ISO 8601). Save it with `newsletter subscribers export > subscribers.csv`. --list,
    --status and --search narrow it as the console's filters do. Cells that
    a spreadsheet would take for a formula start with an apostrophe; importing the file
    again takes it off.
    """
    # click.echo, not click.get_text_stream (deprecated in Click 8.3): it writes to
    # whatever stdout is now, which is also what CliRunner captures.
    with state.transaction() as session:
        chunks = subscribers_core.export_csv(
            session, list_slug=list_slug, status=status, search=search
        )
        for chunk in chunks:
            click.echo(chunk, nl=False)


@subscribers.command("remove")
@click.argument("email")
@click.option(
    "--erase",
    is_flag=True,
    help="Also delete their address, name and history for good (a GDPR erasure request).",
)
@click.option("--yes", is_flag=True, help="Do not ask before erasing.")
@pass_state
def remove(state: CliState, email: str, erase: bool, yes: bool) -> None:
    """Unsubscribe EMAIL from every list.

    The record is kept, marked unsubscribed, so that no import brings them back. With
    --erase the personal data goes instead: the address and name are deleted everywhere,
    and only anonymous counts remain (after which a new import could add the address
    again).
    """
    if not erase:
        with state.transaction() as session:
            removal = subscribers_core.remove(session, email)
        if removal.lists:
            click.echo(
                f"Unsubscribed {removal.email} from {', '.join(removal.lists)}. The record is "
                "kept, so imports will not add them again."
            )
        else:
            click.echo(f"{removal.email} was not subscribed to any list: nothing changed.")
        return
    with state.transaction() as session:
        subscribers_core.find_subscriber(session, email)  # a clear error before asking
    if not yes:
        click.confirm(
            f"Erase {email.strip()} for good? Their address, name and history are deleted; "
            "this cannot be undone.",
            abort=True,
        )
    with state.transaction() as session:
        erasure = subscribers_core.erase(session, email)
    if erasure.already_erased:
        click.echo(f"{erasure.placeholder} was already erased: nothing changed.")
        return
    click.echo(
        f"Erased {email.strip()}: now {erasure.placeholder}, "
        f"{erasure.subscriptions} subscription(s) kept as anonymous counts."
    )


COMMANDS = [subscribers]
