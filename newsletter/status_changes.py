"""One way to change a subscription's status: the row, its timestamps and its history event.

Readers (signup, confirm, unsubscribe, resubscribe), editors (`subscribers remove`, the
console) and SES feedback (bounces, complaints) all change statuses through
change_status, so every change leaves its `subscription_event` row and is counted in the
metrics once it commits.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy.orm as so

from newsletter import clock
from newsletter import metrics
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus

# Statuses that end a subscription: an old confirmation link must not undo them.
ENDED = frozenset(
    {SubscriptionStatus.UNSUBSCRIBED, SubscriptionStatus.COMPLAINED, SubscriptionStatus.BOUNCED}
)
_LIVE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING})
# What each new status counts in the metrics (signups include re-signups).
_COUNTERS = {
    SubscriptionStatus.PENDING: metrics.SIGNUPS,
    SubscriptionStatus.ACTIVE: metrics.CONFIRMATIONS,
    SubscriptionStatus.UNSUBSCRIBED: metrics.UNSUBSCRIBES,
}


def record_event(
    session: so.Session,
    subscription: Subscription,
    reason: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> None:
    """Write the history row for the subscription's current status (flushed rows only)."""
    session.add(
        SubscriptionEvent(
            subscription_id=subscription.id,
            status=subscription.status,
            at=now or clock.now(),
            reason=reason,
            ip=(ip or "")[:45] or None,
        )
    )
    counter = _COUNTERS.get(subscription.status)
    if counter is not None:
        metrics.count_on_commit(session, counter)


def change_status(
    session: so.Session,
    subscription: Subscription,
    status: SubscriptionStatus,
    reason: str,
    *,
    ip: str | None = None,
    now: datetime | None = None,
) -> None:
    """Move a subscription to `status` for `reason` and record the event.

    Leaving (unsubscribed, complained) sets `unsubscribed_at` when the subscription was
    live; ending it in any way voids its confirmation link.
    """
    now = now or clock.now()
    was = subscription.status
    subscription.status = status
    subscription.status_changed_at = now
    if status in (SubscriptionStatus.UNSUBSCRIBED, SubscriptionStatus.COMPLAINED):
        if was in _LIVE or subscription.unsubscribed_at is None:
            subscription.unsubscribed_at = now
    if status in ENDED:
        subscription.confirm_nonce = None
    record_event(session, subscription, reason, ip, now)
