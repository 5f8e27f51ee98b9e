"""The suppression list: addresses never mailed, whatever list they are on.

Bounces and complaints add to it (newsletter.feedback), operators add and remove by hand,
and the SES account-level list can be imported. Every send and every confirmation email
checks it. A complaint lifts only through a fresh double opt-in: the subscribe flow calls
`may_send_confirmation` before mailing a confirmation link and `lift_after_opt_in` when
the reader clicks it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import status_changes
from newsletter.addresses import InvalidAddress
from newsletter.addresses import address_key as key_of
from newsletter.addresses import normalize_address
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason

log = logging.getLogger(__name__)

# Reasons that a reader's own confirmed signup clears: they asked to be mailed again.
_LIFTED_BY_OPT_IN = {SuppressionReason.COMPLAINT}


def address_key(raw: str) -> str:
    """Return the suppression key of an address typed by an operator, or raise NewsletterError."""
    try:
        return normalize_address(raw).key
    except InvalidAddress as exc:
        raise NewsletterError(str(exc)) from None


def is_suppressed(session: so.Session, email: str) -> bool:
    """Tell whether an address (in any form: its one address key is looked up) is suppressed."""
    return (
        session.scalar(sa.select(Suppression.id).where(Suppression.email == key_of(email)))
        is not None
    )


def may_send_confirmation(session: so.Session, email: str) -> bool:
    """Tell whether a confirmation email may go to this address.

    A bounced address would bounce again; a complained one may sign up afresh, because
    double opt-in is the one way back after a complaint.
    """
    suppression = session.scalar(sa.select(Suppression).where(Suppression.email == key_of(email)))
    return suppression is None or suppression.reason in _LIFTED_BY_OPT_IN


def lift_after_opt_in(session: so.Session, email: str) -> bool:
    """Remove a complaint suppression once the reader confirmed a fresh signup; True if lifted."""
    suppression = session.scalar(sa.select(Suppression).where(Suppression.email == key_of(email)))
    if suppression is None or suppression.reason not in _LIFTED_BY_OPT_IN:
        return False
    log.info("suppression of %s lifted by a confirmed signup", email)
    session.delete(suppression)
    return True


def suppress(
    session: so.Session, email: str, reason: SuppressionReason, detail: str | None = None
) -> Suppression:
    """Add an address to the list (a complaint outranks any other reason already there)."""
    key = key_of(email)
    suppression = session.scalar(sa.select(Suppression).where(Suppression.email == key))
    if suppression is None:
        # A savepoint, so a concurrent insert of the same address (two webhooks at
        # once) costs a retry of this lookup rather than the whole transaction.
        try:
            with session.begin_nested():
                suppression = Suppression(email=key, reason=reason, detail=detail)
                session.add(suppression)
        except sa.exc.IntegrityError:
            suppression = session.scalar(sa.select(Suppression).where(Suppression.email == key))
            assert suppression is not None
    if reason is SuppressionReason.COMPLAINT and suppression.reason is not reason:
        suppression.reason = reason
        suppression.detail = detail
    return suppression


def set_subscriptions(
    session: so.Session,
    email: str,
    status: SubscriptionStatus,
    reason: str,
    *,
    from_statuses: set[SubscriptionStatus],
) -> int:
    """Move every subscription of an address in `from_statuses` to `status`; return how many."""
    subscriptions = session.scalars(
        sa.select(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.email == key_of(email), Subscription.status.in_(from_statuses))
        .with_for_update(of=Subscription)
    ).all()
    now = clock.now()
    for subscription in subscriptions:
        status_changes.change_status(session, subscription, status, reason, now=now)
    return len(subscriptions)


@dataclass(frozen=True)
class SuppressionRow:
    email: str
    reason: SuppressionReason
    created_at: datetime
    detail: str | None


def iter_suppressions(session: so.Session) -> Iterator[SuppressionRow]:
    """Yield every suppressed address, alphabetically."""
    query = sa.select(
        Suppression.email, Suppression.reason, Suppression.created_at, Suppression.detail
    ).order_by(Suppression.email)
    for row in session.execute(query.execution_options(yield_per=1000)):
        yield SuppressionRow(*row)


def add(session: so.Session, raw_email: str, detail: str | None = None) -> Suppression:
    """Suppress an address by hand (the operator's `suppressions add`)."""
    return suppress(session, address_key(raw_email), SuppressionReason.MANUAL, detail)


@dataclass(frozen=True)
class Removal:
    reason: SuppressionReason
    reactivated: int  # bounced subscriptions made active again
    still_complained: int  # complained subscriptions, which need a fresh signup


def remove(session: so.Session, raw_email: str) -> Removal:
    """Lift a suppression; bounced subscriptions become active, complained ones stay."""
    key = address_key(raw_email)
    suppression = session.scalar(sa.select(Suppression).where(Suppression.email == key))
    if suppression is None:
        raise NotFound(f"{key} is not on the suppression list")
    reason = suppression.reason
    session.delete(suppression)
    reactivated = set_subscriptions(
        session,
        key,
        SubscriptionStatus.ACTIVE,
        "suppression-removed",
        from_statuses={SubscriptionStatus.BOUNCED},
    )
    complained = session.scalar(
        sa.select(sa.func.count())
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.email == key, Subscription.status == SubscriptionStatus.COMPLAINED)
    )
    return Removal(reason=reason, reactivated=reactivated, still_complained=complained or 0)


@dataclass(frozen=True)
class ImportResult:
    seen: int
    added: int


_SES_REASONS = {"BOUNCE": "bounce", "COMPLAINT": "complaint"}


def import_ses(session: so.Session, client: Any, progress: Any = None) -> ImportResult:
    """Copy the SES account-level suppression list (sesv2 client) into ours."""
    seen = added = 0
    kwargs: dict[str, Any] = {"PageSize": 1000}
    while True:
        page = client.list_suppressed_destinations(**kwargs)
        for summary in page.get("SuppressedDestinationSummaries", []):
            seen += 1
            key = key_of(str(summary["EmailAddress"]))
            ses_reason = _SES_REASONS.get(summary.get("Reason", ""), "unknown reason")
            if not is_suppressed(session, key):
                suppress(
                    session, key, SuppressionReason.SES_LIST, f"SES account list: {ses_reason}"
                )
                added += 1
            if progress is not None:
                progress.update(1)
        token = page.get("NextToken")
        if not token:
            return ImportResult(seen=seen, added=added)
        kwargs["NextToken"] = token
