"""Subscribers as operators see them: listing, filtering (import, export and erase build on it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.lists import get_list
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus


@dataclass(frozen=True)
class SubscriberRow:
    email: str
    name: str | None
    list_slug: str
    status: SubscriptionStatus
    created_at: datetime
    confirmed_at: datetime | None


def iter_subscriptions(
    session: so.Session,
    *,
    list_slug: str | None = None,
    status: SubscriptionStatus | None = None,
    batch_size: int = 1000,
) -> Iterator[SubscriberRow]:
    """Yield one row per subscription, by address, streaming in batches."""
    query = (
        sa.select(
            Subscriber.display_email,
            Subscriber.name,
            MailingList.slug,
            Subscription.status,
            Subscription.created_at,
            Subscription.confirmed_at,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .order_by(Subscriber.email, MailingList.slug)
    )
    if list_slug is not None:
        query = query.where(Subscription.list_id == get_list(session, list_slug).id)
    if status is not None:
        query = query.where(Subscription.status == status)
    result = session.execute(query.execution_options(yield_per=batch_size))
    for row in result:
        yield SubscriberRow(*row)
