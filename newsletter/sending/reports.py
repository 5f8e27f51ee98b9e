"""Reports: where a send stands (counts by status, failure reasons, unknown rows, rate)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import Subscriber
from newsletter.sending.ledger import recover_lost_workers
from newsletter.sending.plan import find_issue


@dataclass
class IssueReport:
    """Where a send stands: counts by status, failure reasons, unknown rows, rate."""

    issue: Issue
    list_slug: str
    counts: dict[DeliveryStatus, int]
    failures: list[tuple[str, int]]
    unknown: list[str]
    rate: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _report_for(session: so.Session, issue: Issue) -> IssueReport:
    counts = Counter(
        {
            status: count
            for status, count in session.execute(
                sa.select(Delivery.status, sa.func.count())
                .where(Delivery.issue_id == issue.id)
                .group_by(Delivery.status)
            )
        }
    )
    failures = [
        (error or "unknown reason", count)
        for error, count in session.execute(
            sa.select(Delivery.error, sa.func.count())
            .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.FAILED)
            .group_by(Delivery.error)
            .order_by(sa.func.count().desc())
            .limit(10)
        )
    ]
    unknown = list(
        session.scalars(
            sa.select(Subscriber.display_email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.UNKNOWN)
            .order_by(Subscriber.email)
            .limit(100)
        )
    )
    first, last, sent = session.execute(
        sa.select(
            sa.func.min(Delivery.sent_at), sa.func.max(Delivery.sent_at), sa.func.count()
        ).where(Delivery.issue_id == issue.id, Delivery.sent_at.is_not(None))
    ).one()
    rate = None
    if sent and first is not None and last is not None:
        start = issue.started_at or first
        seconds = (last - start).total_seconds()
        rate = sent / seconds if seconds > 0 else None
    return IssueReport(
        issue=issue,
        list_slug=issue.list.slug,
        counts=dict(counts),
        failures=failures,
        unknown=unknown,
        rate=rate,
    )


def issue_report(
    session: so.Session, ref: str | int, *, lease: float = 30.0, recover: bool = True
) -> IssueReport:
    """Return the state of one issue's send (recovering rows of lost workers first, unless
    `recover` is False: `newsletter status` only reads)."""
    if recover:
        recover_lost_workers(session, lease=lease)
    return _report_for(session, find_issue(session, ref))


def recent_reports(
    session: so.Session, *, limit: int = 20, lease: float = 30.0, recover: bool = True
) -> list[IssueReport]:
    """Return the state of the most recent sends, newest first (see issue_report)."""
    if recover:
        recover_lost_workers(session, lease=lease)
    issues = session.scalars(sa.select(Issue).order_by(Issue.id.desc()).limit(limit))
    return [_report_for(session, issue) for issue in issues]
