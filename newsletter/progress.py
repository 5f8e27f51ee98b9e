"""An issue's figures for the console: where its send stands and what SES reported since.

Built from the ledger (sending.issue_report) and the feedback figures (feedback.py), so the
console shows the same numbers as `newsletter status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import feedback
from newsletter import sending
from newsletter.errors import NotFound
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.paging import Count
from newsletter.paging import PageOf
from newsletter.paging import Position

SENDS_PAGE_SIZE = 20

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
    cancelled: int
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
                "cancelled": self.cancelled,
                "delivered": self.delivered,
                "bounced": self.bounced,
                "complained": self.complained,
                "unsubscribed": self.unsubscribed,
            },
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _from_counts(
    issue: Issue,
    list_slug: str,
    counts: dict[DeliveryStatus, int],
    *,
    unsubscribed: int,
    rate: float | None,
) -> IssueFigures:
    def count(*statuses: DeliveryStatus) -> int:
        return sum(counts.get(status, 0) for status in statuses)

    return IssueFigures(
        issue=issue,
        list_slug=list_slug,
        total=sum(counts.values()),
        queued=count(DeliveryStatus.QUEUED),
        sending=count(DeliveryStatus.SENDING),
        sent=count(*ACCEPTED),
        failed=count(DeliveryStatus.FAILED),
        unknown=count(DeliveryStatus.UNKNOWN),
        suppressed=count(DeliveryStatus.SUPPRESSED),
        cancelled=count(DeliveryStatus.CANCELLED),
        # A complaint comes from a reader whose mailbox had the message.
        delivered=count(DeliveryStatus.DELIVERED, DeliveryStatus.COMPLAINED),
        bounced=count(DeliveryStatus.BOUNCED),
        complained=count(DeliveryStatus.COMPLAINED),
        unsubscribed=unsubscribed,
        rate=rate,
    )


def _figures(session: so.Session, report: sending.IssueReport) -> IssueFigures:
    reported = feedback.issue_feedback_figures(session, report.issue.id)
    figures = _from_counts(
        report.issue,
        report.list_slug,
        report.counts,
        unsubscribed=reported["unsubscribed"],
        rate=report.rate,
    )
    figures.failures = report.failures
    figures.unknown_addresses = report.unknown
    figures.alerts = list(reported["alerts"])
    return figures


def live_figures(session: so.Session, issue_id: int, *, lease: float = 30.0) -> IssueFigures:
    """Return the counts and rate of issue_figures, in one pass over the ledger.

    For the progress endpoint, polled every second while a send runs: about a third of
    the cost of issue_figures (no failure reasons, unknown addresses or alerts). Only
    reads: recovering the rows of stopped workers belongs to the workers.
    """
    issue = session.get(Issue, int(issue_id))
    if issue is None:
        raise NotFound(f"There is no issue {issue_id}.")
    counts: dict[DeliveryStatus, int] = {}
    first = last = None
    with_sent_at = 0
    for status, number, low, high, stamped in session.execute(
        sa.select(
            Delivery.status,
            sa.func.count(),
            sa.func.min(Delivery.sent_at),
            sa.func.max(Delivery.sent_at),
            sa.func.count(Delivery.sent_at),
        )
        .where(Delivery.issue_id == issue.id)
        .group_by(Delivery.status)
    ):
        counts[DeliveryStatus(status)] = number
        with_sent_at += stamped
        first = low if first is None or (low is not None and low < first) else first
        last = high if last is None or (high is not None and high > last) else last
    # The same rate as `newsletter status` (sending.issue_report).
    rate = None
    if with_sent_at and first is not None and last is not None:
        seconds = (last - (issue.started_at or first)).total_seconds()
        rate = with_sent_at / seconds if seconds > 0 else None
    unsubscribed = feedback.unsubscribed_after(session, issue.id)
    return _from_counts(issue, issue.list.slug, counts, unsubscribed=unsubscribed, rate=rate)


def issue_figures(session: so.Session, issue_id: int, *, lease: float = 30.0) -> IssueFigures:
    """Return one issue's figures (NotFound for an unknown id)."""
    return _figures(
        session, sending.issue_report(session, int(issue_id), lease=lease, recover=False)
    )


@dataclass(frozen=True)
class SendsPage(PageOf[IssueFigures]):
    """A page of the issues page's sends, newest first, and what the pager needs."""

    def row_id(self, row: IssueFigures) -> int:
        return row.issue.id


def sends_page(
    session: so.Session,
    *,
    after: int | None = None,
    before: int | None = None,
    last: bool = False,
    size: int = SENDS_PAGE_SIZE,
    lease: float = 30.0,
) -> SendsPage:
    """Return a page of sends, newest first: the first, older than `after`, newer than
    `before` (issue ids), or the last, each with its figures.

    Keyset pages on the issue id; the count and the position are exact (a site has
    thousands of issues at most, and the id index counts them).
    """
    backwards = last or before is not None
    query = sa.select(Issue)
    if after is not None:
        query = query.where(Issue.id < after)
    if before is not None:
        query = query.where(Issue.id > before)
    # One extra row tells whether there is a further page in the reading direction.
    order = Issue.id.asc() if backwards else Issue.id.desc()
    found = list(session.scalars(query.order_by(order).limit(size + 1)))
    more = len(found) > size
    found = found[:size]
    if backwards:
        found.reverse()
        has_prev, has_next = more, before is not None
    else:
        has_prev, has_next = after is not None, more
    total = session.scalar(sa.select(sa.func.count(Issue.id))) or 0
    position = None
    if found:
        newer = session.scalar(sa.select(sa.func.count(Issue.id)).where(Issue.id > found[0].id))
        position = Position((newer or 0) + 1)
    rows = [issue_figures(session, issue.id, lease=lease) for issue in found]
    return SendsPage(rows, has_prev, has_next, Count(total), position)
