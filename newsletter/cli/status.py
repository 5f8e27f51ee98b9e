"""`newsletter status`: sends in progress and done, with counts."""

from __future__ import annotations

import click

from newsletter import feedback
from newsletter import sending
from newsletter.cli import CliState
from newsletter.cli import pass_state
from newsletter.models import DeliveryStatus

ORDER = [
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
]


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


@click.command("status")
@click.argument("issue", required=False)
@pass_state
def status(state: CliState, issue: str | None) -> None:
    """Show sends in progress and done; with ISSUE (id or slug), its full detail.

    Read-only: messages held by a worker that stopped are shown as such; the next
    worker to run recovers them (see `newsletter workers`).
    """
    from newsletter import workers

    lease = state.config["WORKER_LEASE"]
    with state.transaction() as session:
        held = workers.held_by_silent_workers(session, lease=lease)
        if held:
            click.echo(
                f"{held} messages are held by workers that stopped or went silent; the next "
                "worker to run recovers them (sending ones become unknown)."
            )
        if issue is None:
            reports = sending.recent_reports(session, lease=lease, recover=False)
            if not reports:
                click.echo("No issues sent yet.")
            for report in reports:
                counts = report.counts
                click.echo(
                    f"{report.issue.id}\t{report.issue.slug}\t{report.list_slug}\t"
                    f"{report.issue.status.value}\tsent {counts.get(DeliveryStatus.SENT, 0)}"
                    f"/{report.total}\tfailed {counts.get(DeliveryStatus.FAILED, 0)}\t"
                    f"unknown {counts.get(DeliveryStatus.UNKNOWN, 0)}"
                )
                figures = feedback.issue_feedback_figures(session, report.issue.id)
                for alert in figures["alerts"]:
                    click.echo(f"  {alert}")
            return
        report = sending.issue_report(session, issue, lease=lease, recover=False)
        item = report.issue
        click.echo(f"Issue {item.id}: {item.title} ({item.slug}) to list {report.list_slug}")
        click.echo(f"Status: {item.status.value}")
        if item.paused_reason:
            click.echo(f"Paused: {item.paused_reason}")
        if item.scheduled_at:
            click.echo(f"Scheduled: {_when(item.scheduled_at)}")
        click.echo(f"Started: {_when(item.started_at)}")
        click.echo(f"Finished: {_when(item.finished_at)}")
        click.echo(f"Rate: {report.rate:.1f} messages/s" if report.rate else "Rate: -")
        click.echo(f"Recipients: {report.total}")
        for key in ORDER:
            if report.counts.get(key) or key in (DeliveryStatus.QUEUED, DeliveryStatus.SENT):
                click.echo(f"  {key.value}: {report.counts.get(key, 0)}")
        if report.failures:
            click.echo("Failed, by reason:")
            for reason, count in report.failures:
                click.echo(f"  {count}\t{reason}")
        if report.unknown:
            click.echo(
                "Unknown (a worker stopped while sending; SES may or may not have them). "
                f"Send again with `newsletter send --retry-unknown {item.id}`:"
            )
            for address in report.unknown:
                click.echo(f"  {address}")
        # What SES reported afterwards (bounces, complaints; see docs/bounces.md).
        click.echo("Feedback from SES:")
        for line in feedback.format_feedback(feedback.issue_feedback_figures(session, item.id)):
            click.echo(line if line.startswith("ALERT") else f"  {line}")


COMMANDS = [status]
