"""An issue's figures for the console: where its send stands and what SES reported since.

Built from the ledger (sending.issue_report) and the feedback figures (feedback.py), so the
console shows the same numbers as `newsletter status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

import sqlalchemy.orm as so

from newsletter import feedback
from newsletter import sending
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus

# Ledger states SES accepted the message in (what became of it since: delivered, ...).
ACCEPTED = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
)


@dataclass
class IssueFigures:
    """One issue's send, counted by what happened to each reader's message."""

    issue: Issue
    list_slug: str
    total: int
    queued: int
    sending: int
    sent: int  # accepted by SES, whatever happened since
    failed: int
    unknown: int
    suppressed: int
    delivered: int
    bounced: int
    complained: int
    unsubscribed: int
    rate: float | None
    failures: list[tuple[str, int]] = field(default_factory=list)
    unknown_addresses: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Readers whose message reached a final state."""
        return self.total - self.queued - self.sending

    @property
    def finished(self) -> bool:
        return self.issue.status is IssueStatus.SENT

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as plain JSON values (the progress endpoint)."""
        issue = self.issue
        return {
            "id": issue.id,
            "slug": issue.slug,
            "list": self.list_slug,
            "status": issue.status.value,
            "finished": self.finished,
            "paused_reason": issue.paused_reason,
            "scheduled_at": _iso(issue.scheduled_at),
            "started_at": _iso(issue.started_at),
            "finished_at": _iso(issue.finished_at),
            "total": self.total,
            "done": self.done,
            "percent": round(self.percent, 1),
            "rate": round(self.rate, 1) if self.rate else None,
            "counts": {
                "queued": self.queued,
                "sending": self.sending,
                "sent": self.sent,
                "failed": self.failed,
                "unknown": self.unknown,
                "suppressed": self.suppressed,
                "delivered": self.delivered,
                "bounced": self.bounced,
                "complained": self.complained,
                "unsubscribed": self.unsubscribed,
            },
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _figures(session: so.Session, report: sending.IssueReport) -> IssueFigures:
    counts = report.counts

    def count(*statuses: DeliveryStatus) -> int:
        return sum(counts.get(status, 0) for status in statuses)

    reported = feedback.issue_feedback_figures(session, report.issue.id)
    return IssueFigures(
        issue=report.issue,
        list_slug=report.list_slug,
        total=report.total,
        queued=count(DeliveryStatus.QUEUED),
        sending=count(DeliveryStatus.SENDING),
        sent=count(*ACCEPTED),
        failed=count(DeliveryStatus.FAILED),
        unknown=count(DeliveryStatus.UNKNOWN),
        suppressed=count(DeliveryStatus.SUPPRESSED),
        # A complaint comes from a reader whose mailbox had the message.
        delivered=count(DeliveryStatus.DELIVERED, DeliveryStatus.COMPLAINED),
        bounced=count(DeliveryStatus.BOUNCED),
        complained=count(DeliveryStatus.COMPLAINED),
        unsubscribed=reported["unsubscribed"],
        rate=report.rate,
        failures=report.failures,
        unknown_addresses=report.unknown,
        alerts=list(reported["alerts"]),
    )


def issue_figures(session: so.Session, issue_id: int, *, lease: float = 30.0) -> IssueFigures:
    """Return one issue's figures (NotFound for an unknown id)."""
    return _figures(session, sending.issue_report(session, int(issue_id), lease=lease))


def recent_issue_figures(
    session: so.Session, *, limit: int = 20, lease: float = 30.0
) -> list[IssueFigures]:
    """Return the figures of the latest issues, newest first."""
    return [
        _figures(session, report)
        for report in sending.recent_reports(session, limit=limit, lease=lease)
    ]
