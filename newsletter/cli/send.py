"""`newsletter send`: send an issue to a list (or test copies), schedule it, resume it."""

from __future__ import annotations

from datetime import datetime

import click

from newsletter import clock
from newsletter import sending
from newsletter.cli import CliState
from newsletter.cli import pass_state
from newsletter.cli.worker import run_worker
from newsletter.config import MAX_SEND_CONCURRENCY
from newsletter.models import IssueStatus
from newsletter.pacing import PaceSettings
from newsletter.pacing import decide_settings
from newsletter.pacing import quota_source_for


def _parse_when(value: str) -> datetime:
    try:
        return clock.parse_schedule(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _deliver(
    state: CliState, issue_id: int, concurrency: int | None, pace: PaceSettings | None = None
) -> None:
    try:
        run_worker(state, issue_id=issue_id, until_idle=True, concurrency=concurrency, pace=pace)
    except sending.WorkerBusy as exc:
        click.echo(
            f"{exc}\nThe send is queued; that worker delivers it. "
            f"Watch it with `newsletter status {issue_id}`."
        )
        return
    with state.transaction() as session:
        report = sending.issue_report(session, issue_id, lease=state.config["WORKER_LEASE"])
    issue = report.issue
    if issue.status is IssueStatus.PAUSED:
        raise click.ClickException(f"The send is paused: {issue.paused_reason}")
    if report.unknown:
        click.echo(
            f"{len(report.unknown)} messages are in an unknown state; see `newsletter status "
            f"{issue.id}`.",
            err=True,
        )


@click.command("send")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--list", "list_slug", metavar="SLUG", help="The list to send to.")
@click.option(
    "--test-to",
    multiple=True,
    metavar="ADDRESS",
    help='Send a test copy marked "[TEST]" to this address only (repeatable).',
)
@click.option("--at", "at", metavar="WHEN", help="Schedule, e.g. 2026-12-01T09:00+01:00.")
@click.option("--dry-run", is_flag=True, help="Check and count; send nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--retry-unknown",
    "retry_ref",
    metavar="ISSUE",
    help="Send again the messages of ISSUE whose fate is unknown (SES may have them: some "
    "readers may get a second copy).",
)
@click.option(
    "--retry-failed",
    "retry_failed_ref",
    metavar="ISSUE",
    help="Send again the messages of ISSUE that failed (SES refused or never took them).",
)
@click.option("--resume", "resume_ref", metavar="ISSUE", help="Go on with a paused send.")
@click.option(
    "--cancel",
    "cancel_ref",
    metavar="ISSUE",
    help="Cancel a scheduled, sending or paused send: readers not yet sent to get nothing.",
)
@click.option("--queue-only", is_flag=True, help="Only queue the send; running workers deliver it.")
@click.option(
    "--allow-clipping",
    is_flag=True,
    help="Send even if Gmail would clip the issue (HTML over 102 KB after minifying); "
    "its unsubscribe link is then repeated at the top.",
)
@click.option(
    "--concurrency", type=click.IntRange(1, MAX_SEND_CONCURRENCY), default=None, hidden=True
)
@pass_state
def send(
    state: CliState,
    file: str | None,
    list_slug: str | None,
    test_to: tuple[str, ...],
    at: str | None,
    dry_run: bool,
    yes: bool,
    retry_ref: str | None,
    retry_failed_ref: str | None,
    resume_ref: str | None,
    cancel_ref: str | None,
    queue_only: bool,
    allow_clipping: bool,
    concurrency: int | None,
) -> None:
    """Send the issue FILE to the list SLUG, after showing the audience and asking.

    \b
    newsletter send issue.yaml --list weekly --test-to me@example.com
    newsletter send issue.yaml --list weekly
    newsletter send issue.yaml --list weekly --at 2026-12-01T09:00+01:00
    newsletter send --cancel ISSUE | --resume ISSUE
    newsletter send --retry-failed ISSUE | --retry-unknown ISSUE

    The issue is stored as checked now: later edits of the file change nothing already
    sending. Every reader gets it once; Ctrl-C stops cleanly, and running the same
    command (or `newsletter worker`) again goes on where it stopped.
    """
    config = state.config
    actions = [ref for ref in (retry_ref, retry_failed_ref, resume_ref, cancel_ref) if ref]
    if len(actions) > 1:
        raise click.UsageError(
            "Give one of --cancel, --resume, --retry-failed and --retry-unknown at a time."
        )
    if cancel_ref:
        with state.transaction() as session:
            issue, count = sending.cancel_send(session, cancel_ref)
            click.echo(
                f"Cancelled {issue.slug!r}: {count} readers not yet sent to get nothing. "
                "Messages already in flight finish."
            )
        return
    if actions:
        with state.transaction() as session:
            if retry_ref:
                issue, count = sending.retry_unknown(session, retry_ref)
                click.echo(
                    f"Queued {count} messages of {issue.slug!r} again "
                    "(some of these readers may get a second copy)."
                )
            elif retry_failed_ref:
                issue, count = sending.retry_failed(session, retry_failed_ref)
                click.echo(f"Queued {count} failed messages of {issue.slug!r} again.")
            else:
                assert resume_ref is not None
                issue = sending.resume_issue(session, resume_ref)
                click.echo(f"Resumed {issue.slug!r}.")
            issue_id = issue.id
        if not queue_only:
            _deliver(state, issue_id, concurrency)
        return

    if not file or not list_slug:
        raise click.UsageError("Give the issue FILE and --list SLUG.")
    when = _parse_when(at) if at else None

    with state.transaction() as session:
        plan = sending.plan_send(session, file, list_slug, base_url=config["BASE_URL"])
        refused = plan.compiled.clipped and not (allow_clipping or test_to)
        for warning in plan.compiled.warnings:
            if not (refused and warning.startswith("the HTML is")):  # the error says it
                click.echo(f"warning: {warning}", err=True)
        if test_to:
            if dry_run:
                click.echo(
                    f"Would send test copies of {plan.compiled.subject!r} to: " + ", ".join(test_to)
                )
                return
            sending.send_test_copies(session, state.mailer, plan, test_to, config=config)
            click.echo(f"Sent {len(test_to)} test copies ({', '.join(test_to)}).")
            return
        sending.check_can_send(plan, allow_clipping=allow_clipping)
        audience = plan.audience
        click.echo(
            f"Issue {plan.compiled.title!r} ({plan.compiled.slug}) to list "
            f"{plan.mailing_list.slug!r}: {audience.recipients} readers"
            + (
                f" ({audience.suppressed} suppressed addresses skipped)"
                if audience.suppressed
                else ""
            )
            + "."
        )
        if plan.existing is not None:
            click.echo(
                f"This issue exists already ({plan.existing.status.value}); the stored version "
                "is used and only readers not yet handled get it."
            )
        if dry_run:
            click.echo("Dry run: nothing was sent.")
            return
    pace = None
    if not (when or queue_only):
        # Read the SES quota before storing anything: a send that cannot start stores nothing.
        pace = decide_settings(config.get("SEND_RATE"), quota_source_for(state.mailer))
    if not yes:
        verb = f"Schedule for {when.isoformat()}" if when else "Send now"
        click.confirm(f"{verb} to {audience.recipients} readers?", abort=True)
    with state.transaction() as session:
        plan.mailing_list = session.merge(plan.mailing_list)
        if plan.existing is not None:
            plan.existing = session.merge(plan.existing)
        issue = sending.start_send(session, plan, at=when)
        issue_id, status = issue.id, issue.status
    if status is IssueStatus.SCHEDULED:
        assert when is not None  # only a send with --at is scheduled
        click.echo(f"Scheduled for {when.isoformat()}; a running `newsletter worker` sends it.")
        return
    if queue_only:
        click.echo(f"Queued issue {issue_id}; running workers deliver it (`newsletter status`).")
        return
    _deliver(state, issue_id, concurrency, pace)


COMMANDS = [send]
