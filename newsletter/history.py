"""One subscriber's history for the console: consent, status changes, deliveries, feedback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

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

HISTORY_LIMIT = 200


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

    kind: FeedbackKind
    occurred_at: datetime
    issue_title: str | None
    bounce_type: str | None
    bounce_subtype: str | None
    detail: str | None


@dataclass(frozen=True)
class History:
    """Everything the console shows about one subscriber (newest deliveries and feedback first)."""

    subscriber: Subscriber
    subscriptions: list[SubscriptionHistory]
    deliveries: list[DeliveryRow]
    feedback: list[FeedbackRow]
    more_deliveries: bool
    more_feedback: bool


def get_subscriber(session: so.Session, subscriber_id: int) -> Subscriber:
    """Return the subscriber with this id, or raise NotFound."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("There is no such subscriber (erased records keep their page).")
    return subscriber


def subscriber_history(
    session: so.Session, subscriber_id: int, *, limit: int = HISTORY_LIMIT
) -> History:
    """Return a subscriber's subscriptions, consent, status changes, ledger rows and feedback."""
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

    ledger = session.execute(
        sa.select(
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
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id.desc())
        .limit(limit + 1)
    ).all()
    feedback = session.execute(
        sa.select(
            FeedbackEvent.kind,
            FeedbackEvent.occurred_at,
            Issue.title,
            FeedbackEvent.bounce_type,
            FeedbackEvent.bounce_subtype,
            FeedbackEvent.detail,
        )
        .outerjoin(Issue, Issue.id == FeedbackEvent.issue_id)
        .where(
            sa.or_(
                FeedbackEvent.subscriber_id == subscriber.id,
                FeedbackEvent.email == subscriber.email,
            )
        )
        .order_by(FeedbackEvent.occurred_at.desc(), FeedbackEvent.id.desc())
        .limit(limit + 1)
    ).all()
    return History(
        subscriber=subscriber,
        subscriptions=subscriptions,
        deliveries=[DeliveryRow(*row) for row in ledger[:limit]],
        feedback=[FeedbackRow(*row) for row in feedback[:limit]],
        more_deliveries=len(ledger) > limit,
        more_feedback=len(feedback) > limit,
    )
