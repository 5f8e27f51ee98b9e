"""One subscriber's history for the console: consent, status changes, deliveries, feedback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from typing import Any
from typing import TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import FeedbackEvent
from newsletter.models import FeedbackKind
from newsletter.models import Issue
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.paging import MAX_ROW_ID
from newsletter.paging import Count
from newsletter.paging import PageOf
from newsletter.paging import Position

HISTORY_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

Row = TypeVar("Row")


class HistoryError(NewsletterError):
    """A page of a subscriber's history asked for in a way no link makes."""


@dataclass(frozen=True)
class Cursor:
    """Which page of a list: the first (newest), older than `after`, newer than `before`
    (row ids), or the last (oldest)."""

    after: int | None = None
    before: int | None = None
    last: bool = False


@dataclass(frozen=True)
class SubscriptionHistory:
    """A subscription with its consent record and its status changes, oldest first."""

    subscription: Subscription
    list_slug: str
    list_name: str
    events: list[SubscriptionEvent]


@dataclass(frozen=True)
class DeliveryRow:
    """One ledger row: what happened to one issue sent to this subscriber."""

    id: int
    issue_id: int
    issue_title: str
    list_slug: str
    status: DeliveryStatus
    attempts: int
    sent_at: datetime | None
    updated_at: datetime
    error: str | None


@dataclass(frozen=True)
class FeedbackRow:
    """A bounce, complaint or delivery report from SES."""

    id: int
    kind: FeedbackKind
    occurred_at: datetime
    issue_title: str | None
    bounce_type: str | None
    bounce_subtype: str | None
    detail: str | None


@dataclass(frozen=True)
class DeliveryPage(PageOf[DeliveryRow]):
    """A page of a subscriber's ledger rows, newest first."""

    # Why the list shows its newest page rather than the one asked for (an old link).
    notice: str | None = None

    def row_id(self, row: DeliveryRow) -> int:
        return row.id


@dataclass(frozen=True)
class FeedbackPage(PageOf[FeedbackRow]):
    """A page of a subscriber's feedback events, newest first."""

    # Why the list shows its newest page rather than the one asked for (an old link).
    notice: str | None = None

    def row_id(self, row: FeedbackRow) -> int:
        return row.id


@dataclass(frozen=True)
class History:
    """Everything the console shows about one subscriber (newest deliveries and feedback first)."""

    subscriber: Subscriber
    subscriptions: list[SubscriptionHistory]
    deliveries: DeliveryPage
    feedback: FeedbackPage


def get_subscriber(session: so.Session, subscriber_id: int) -> Subscriber:
    """Return the subscriber with this id, or raise NotFound."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("There is no such subscriber (erased records keep their page).")
    return subscriber


def subscriber_history(
    session: so.Session,
    subscriber_id: int,
    *,
    deliveries: Cursor = Cursor(),
    feedback: Cursor = Cursor(),
    size: int = HISTORY_PAGE_SIZE,
) -> History:
    """Return a subscriber's subscriptions, consent, status changes, and a page each of
    ledger rows and feedback (HistoryError for a cursor no link makes).

    A cursor whose page is gone (an old link) gets its list's newest page, with a notice.
    """
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise HistoryError(f"A page holds 1 to {MAX_PAGE_SIZE} rows.")
    deliveries, feedback = _checked(deliveries), _checked(feedback)
    subscriber = get_subscriber(session, subscriber_id)
    subscriptions = []
    for subscription, slug, name in session.execute(
        sa.select(Subscription, MailingList.slug, MailingList.name)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.subscriber_id == subscriber.id)
        .order_by(MailingList.slug)
    ).all():
        events = list(
            session.scalars(
                sa.select(SubscriptionEvent)
                .where(SubscriptionEvent.subscription_id == subscription.id)
                .order_by(SubscriptionEvent.at, SubscriptionEvent.id)
            )
        )
        subscriptions.append(SubscriptionHistory(subscription, slug, name, events))

    delivery_page = _or_newest(
        lambda cursor: _delivery_page(session, subscriber, cursor, size), deliveries, "deliveries"
    )
    feedback_page = _or_newest(
        lambda cursor: _feedback_page(session, subscriber, cursor, size),
        feedback,
        "bounces and complaints",
    )
    return History(subscriber, subscriptions, delivery_page, feedback_page)


Page = TypeVar("Page", "DeliveryPage", "FeedbackPage")


def _or_newest(read: Callable[[Cursor], Page | None], cursor: Cursor, label: str) -> Page:
    """The cursor's page, or the newest page with a notice when the cursor's is gone."""
    page = read(cursor)
    if page is not None:
        return page
    newest = read(Cursor())
    assert newest is not None  # the first page always exists, empty or not
    # Any cursor is out of date on an empty list, and there is nothing to say.
    notice = f"That page of {label} is out of date: showing the newest."
    return replace(newest, notice=notice if newest.rows else None)


def _checked(cursor: Cursor) -> Cursor:
    """The cursor with its id within the ids' range (HistoryError if no link makes it)."""
    if sum((cursor.after is not None, cursor.before is not None, cursor.last)) > 1:
        raise HistoryError("Ask for one page: after, before or last.")
    if any(value is not None and value < 0 for value in (cursor.after, cursor.before)):
        raise HistoryError("A page starts at a row id, which is never negative.")
    return Cursor(
        after=None if cursor.after is None else min(cursor.after, MAX_ROW_ID),
        before=None if cursor.before is None else min(cursor.before, MAX_ROW_ID),
        last=cursor.last,
    )


def _delivery_page(
    session: so.Session, subscriber: Subscriber, cursor: Cursor, size: int
) -> DeliveryPage | None:
    """A page of ledger rows, or None if the cursor's page is empty though the list is not.

    The id orders the rows, so an id that is gone still bounds a page; reads the
    (subscriber_id, id) index.
    """
    mine = Delivery.subscriber_id == subscriber.id
    query = (
        sa.select(
            Delivery.id,
            Delivery.issue_id,
            Issue.title,
            MailingList.slug,
            Delivery.status,
            Delivery.attempts,
            Delivery.sent_at,
            Delivery.updated_at,
            Delivery.error,
        )
        .join(Issue, Issue.id == Delivery.issue_id)
        .join(MailingList, MailingList.id == Issue.list_id)
        .where(mine)
    )
    row_id = cursor.after if cursor.after is not None else cursor.before
    bound = None if row_id is None else (row_id,)
    found = _keyset(session, query, Delivery, mine, (Delivery.id,), cursor, bound, size)
    if found is None:
        return None
    rows, total, newer = found
    return DeliveryPage(*_pager([DeliveryRow(*row) for row in rows], total, newer))


def _feedback_page(
    session: so.Session, subscriber: Subscriber, cursor: Cursor, size: int
) -> FeedbackPage | None:
    """A page of feedback events in (occurred_at, id) order, or None for a cursor that is
    not one of this subscriber's events or whose page is empty though the list is not.

    The cursor is an event id; its time is looked up, so events at the same instant page
    by id and none is shown twice or skipped.
    """
    mine = sa.or_(
        FeedbackEvent.subscriber_id == subscriber.id,
        FeedbackEvent.email == subscriber.email,
    )
    query = (
        sa.select(
            FeedbackEvent.id,
            FeedbackEvent.kind,
            FeedbackEvent.occurred_at,
            Issue.title,
            FeedbackEvent.bounce_type,
            FeedbackEvent.bounce_subtype,
            FeedbackEvent.detail,
        )
        .outerjoin(Issue, Issue.id == FeedbackEvent.issue_id)
        .where(mine)
    )
    bound: tuple[datetime, int] | None = None
    event_id = cursor.after if cursor.after is not None else cursor.before
    if event_id is not None:
        at = session.scalar(
            sa.select(FeedbackEvent.occurred_at).where(mine, FeedbackEvent.id == event_id)
        )
        if at is None:
            return None
        bound = (at, event_id)
    keys = (FeedbackEvent.occurred_at, FeedbackEvent.id)
    found = _keyset(session, query, FeedbackEvent, mine, keys, cursor, bound, size)
    if found is None:
        return None
    rows, total, newer = found
    return FeedbackPage(*_pager([FeedbackRow(*row) for row in rows], total, newer))


def _keyset(
    session: so.Session,
    query: sa.Select[*tuple[Any, ...]],
    entity: type[Delivery] | type[FeedbackEvent],
    mine: sa.ColumnElement[bool],
    keys: tuple[so.InstrumentedAttribute[Any], ...],
    cursor: Cursor,
    bound: tuple[Any, ...] | None,
    size: int,
) -> tuple[list[Any], int, int] | None:
    """A page of `query` (which selects the `keys`) in descending `keys`, the
    number of rows in the list, and how many of them are newer than the page.

    `bound` is the key value of the cursor's row. None if the cursor's page is empty
    though the list is not (an out-of-date link).
    """
    if bound is not None:
        pair, value = _row_value(keys, bound)
        query = query.where(pair < value if cursor.after is not None else pair > value)
    # Before a row, and the last page, are read oldest first and flipped.
    backwards = cursor.last or cursor.before is not None
    order = [key.asc() if backwards else key.desc() for key in keys]
    rows = list(session.execute(query.order_by(*order).limit(size)).all())
    if backwards:
        rows.reverse()
    count = sa.select(sa.func.count()).select_from(entity).where(mine)
    total = session.scalar(count) or 0
    if not rows:
        return None if total and cursor != Cursor() else ([], total, 0)
    pair, first = _row_value(keys, tuple(rows[0]._mapping[key] for key in keys))
    newer = session.scalar(count.where(pair > first)) or 0
    return rows, total, newer


def _row_value(
    keys: tuple[so.InstrumentedAttribute[Any], ...], values: tuple[Any, ...]
) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
    """The keys and the values as SQL to compare (row values for more than one key)."""
    literals = [sa.literal(value, key.type) for key, value in zip(keys, values, strict=True)]
    if len(keys) == 1:
        return keys[0].expression, literals[0]
    return sa.tuple_(*keys), sa.tuple_(*literals)


def _pager(
    rows: list[Row], total: int, newer: int
) -> tuple[list[Row], bool, bool, Count, Position | None]:
    """A page's rows with what its pager needs, from the exact counts."""
    position = Position(newer + 1) if rows else None
    return rows, newer > 0, newer + len(rows) < total, Count(total), position
