"""Figures for the console's dashboard: subscribers per list and status, growth, recent sends.

Everything is computed with a few grouped queries, never by loading subscribers, so the
dashboard costs the same at a hundred readers as at a million.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import MailingList
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus

# Statuses of readers who were active once and left.
LEFT = (
    SubscriptionStatus.UNSUBSCRIBED,
    SubscriptionStatus.BOUNCED,
    SubscriptionStatus.COMPLAINED,
)


@dataclass
class ListFigures:
    """One list: subscriptions by status, and active readers at the end of each day."""

    mailing_list: MailingList
    counts: dict[SubscriptionStatus, int]
    active_by_day: list[tuple[date, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class SendFigures:
    """One recent issue's ledger, by delivery status."""

    issue: Issue
    counts: dict[DeliveryStatus, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, *statuses: DeliveryStatus) -> int:
        return sum(self.counts.get(status, 0) for status in statuses)

    @property
    def accepted(self) -> int:
        """Messages SES took: sent, and what became of them since."""
        return self.count(
            DeliveryStatus.SENT,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.BOUNCED,
            DeliveryStatus.COMPLAINED,
        )


def _day(session: so.Session, column: Any) -> Any:
    """The UTC calendar day of a timestamp column, in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)  # SQLite stores UTC text: 'YYYY-MM-DD HH:MM:SS...'


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def list_figures(session: so.Session, *, days: int = 90) -> list[ListFigures]:
    """Return every list's counts by status and its active readers over the last `days` days.

    The growth line is drawn from each subscription's current record: it rises on the day
    a reader was confirmed and falls on the day one who is no longer active left. A reader
    who left and came back counts from the later confirmation.
    """
    today = clock.now().date()
    start_day = today - timedelta(days=days - 1)
    start = datetime.combine(start_day, time(), tzinfo=clock.now().tzinfo)
    lists = list(session.scalars(sa.select(MailingList).order_by(MailingList.slug)))
    counts: dict[int, dict[SubscriptionStatus, int]] = defaultdict(dict)
    for list_id, status, number in session.execute(
        sa.select(Subscription.list_id, Subscription.status, sa.func.count()).group_by(
            Subscription.list_id, Subscription.status
        )
    ):
        counts[list_id][SubscriptionStatus(status)] = number

    counted = sa.and_(
        Subscription.confirmed_at.is_not(None),
        Subscription.status.in_((SubscriptionStatus.ACTIVE, *LEFT)),
    )
    left = Subscription.status.in_(LEFT)
    baseline = dict(
        session.execute(
            sa.select(Subscription.list_id, sa.func.count())
            .where(
                counted,
                Subscription.confirmed_at < start,
                sa.or_(sa.not_(left), Subscription.status_changed_at >= start),
            )
            .group_by(Subscription.list_id)
        ).all()
    )
    change: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    joined = _day(session, Subscription.confirmed_at)
    for row in session.execute(
        sa.select(Subscription.list_id, joined, sa.func.count())
        .where(counted, Subscription.confirmed_at >= start)
        .group_by(Subscription.list_id, joined)
    ):
        change[row[0]][_as_date(row[1])] += row[2]
    gone = _day(session, Subscription.status_changed_at)
    for row in session.execute(
        sa.select(Subscription.list_id, gone, sa.func.count())
        .where(counted, left, Subscription.status_changed_at >= start)
        .group_by(Subscription.list_id, gone)
    ):
        change[row[0]][_as_date(row[1])] -= row[2]

    figures = []
    for mailing_list in lists:
        running = baseline.get(mailing_list.id, 0)
        series = []
        for offset in range(days):
            day = start_day + timedelta(days=offset)
            running += change[mailing_list.id].get(day, 0)
            series.append((day, running))
        figures.append(ListFigures(mailing_list, counts.get(mailing_list.id, {}), series))
    return figures


def recent_sends(session: so.Session, *, limit: int = 10) -> list[SendFigures]:
    """Return the ledgers of the latest issues that started sending, oldest first."""
    issues = list(
        session.scalars(
            sa.select(Issue)
            .where(Issue.status.not_in((IssueStatus.DRAFT, IssueStatus.CANCELLED)))
            .order_by(Issue.id.desc())
            .limit(limit)
            .options(so.joinedload(Issue.list))
        )
    )
    by_issue: dict[int, dict[DeliveryStatus, int]] = defaultdict(dict)
    if issues:
        for issue_id, status, number in session.execute(
            sa.select(Delivery.issue_id, Delivery.status, sa.func.count())
            .where(Delivery.issue_id.in_([issue.id for issue in issues]))
            .group_by(Delivery.issue_id, Delivery.status)
        ):
            by_issue[issue_id][DeliveryStatus(status)] = number
    return [SendFigures(issue, by_issue.get(issue.id, {})) for issue in reversed(issues)]
