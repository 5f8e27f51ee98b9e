"""What SES tells us after a send: bounces, complaints, deliveries, and what we do about them.

SNS carries SES events in two styles, identity notifications (`notificationType`, no tags)
and configuration-set events (`eventType`, with the message's tags). Each event is matched
to its ledger row by SES MessageId, else by the `delivery` tag (which also resolves rows
a crash left `unknown`), else to the subscriber by address. The policy:

- a permanent bounce suppresses the address and marks its subscriptions bounced;
- transient bounces are counted; SOFT_BOUNCE_LIMIT of them within SOFT_BOUNCE_DAYS suppress;
- a complaint suppresses the address and marks every subscription complained: only a
  fresh double opt-in lifts it (newsletter.suppressions.lift_after_opt_in);
- Send, Delivery, Reject and Bounce events move the ledger row to what really happened.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from email.utils import parseaddr
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import inbound
from newsletter import suppressions
from newsletter.addresses import InvalidAddress
from newsletter.addresses import normalize_address
from newsletter.errors import NotFound
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import FeedbackEvent
from newsletter.models import FeedbackKind
from newsletter.models import Issue
from newsletter.models import SnsNotification
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import SuppressionReason
from newsletter.sns import NOTIFICATION
from newsletter.sns import SUBSCRIPTION_CONFIRMATION
from newsletter.sns import MalformedMessage
from newsletter.sns import SnsGateway

log = logging.getLogger(__name__)

_KINDS = {
    "Send": FeedbackKind.SEND,
    "Delivery": FeedbackKind.DELIVERY,
    "Bounce": FeedbackKind.BOUNCE,
    "Complaint": FeedbackKind.COMPLAINT,
    "Reject": FeedbackKind.REJECT,
    "DeliveryDelay": FeedbackKind.DELIVERY_DELAY,
}
# Where each event keeps its own timestamp.
_BODY_KEYS = {
    FeedbackKind.SEND: "send",
    FeedbackKind.DELIVERY: "delivery",
    FeedbackKind.BOUNCE: "bounce",
    FeedbackKind.COMPLAINT: "complaint",
    FeedbackKind.REJECT: "reject",
    FeedbackKind.DELIVERY_DELAY: "deliveryDelay",
}
# Rows whose fate we did not know: the ones a crash can leave behind.
_UNRESOLVED = {DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN}

COMPLAINT_RATE_ALERT = 0.001
BOUNCE_RATE_ALERT = 0.05


class MalformedEvent(MalformedMessage):
    """The signed SNS message does not carry an SES event we can read."""


@dataclass(frozen=True)
class Policy:
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 15
    # For mail received by SES (mailto: unsubscribes, newsletter.inbound).
    secret_key: str | None = None
    mailto_domain: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> Policy:
        """Read SOFT_BOUNCE_LIMIT, SOFT_BOUNCE_DAYS and what received mail needs."""
        return cls(
            int(config["SOFT_BOUNCE_LIMIT"]),
            int(config["SOFT_BOUNCE_DAYS"]),
            config.get("SECRET_KEY"),
            config.get("UNSUBSCRIBE_MAILTO_DOMAIN"),
        )


@dataclass(frozen=True)
class Receipt:
    """What happened to one SNS post."""

    # "applied", "duplicate", "ignored", "confirmed", "unsubscribed" (SNS removed us),
    # "mailto-unsubscribed" (a reader's mail to the List-Unsubscribe mailto: address)
    outcome: str
    event_type: str | None = None
    recipients: int = 0


def receive_sns(session: so.Session, gateway: SnsGateway, body: bytes, policy: Policy) -> Receipt:
    """Verify one SNS post and apply what it says, at most once per SNS MessageId."""
    message = gateway.verify(body)
    kind = message["Type"]
    if kind == SUBSCRIPTION_CONFIRMATION:
        gateway.confirm_subscription(message)
        return Receipt("confirmed")
    if kind != NOTIFICATION:
        # Visiting its SubscribeURL would re-subscribe: someone removed us on purpose.
        log.warning("SNS unsubscribed this endpoint from %s", message["TopicArn"])
        return Receipt("unsubscribed")
    payload = parse_event(message["Message"])
    event_type = payload.get("eventType") or payload.get("notificationType")
    try:
        with session.begin_nested():
            session.add(
                SnsNotification(
                    message_id=message["MessageId"][:100],
                    topic_arn=message["TopicArn"][:256],
                    event_type=str(event_type)[:40],
                )
            )
    except sa.exc.IntegrityError:
        log.info("SNS message %s already processed", message["MessageId"])
        return Receipt("duplicate", event_type)
    if event_type == inbound.RECEIVED:
        result = inbound.apply_received(
            session, payload, secret_key=policy.secret_key or "", domain=policy.mailto_domain
        )
        outcome = "mailto-unsubscribed" if result.unsubscribed else "ignored"
        return Receipt(outcome, event_type, result.unsubscribed)
    applied = apply_ses_event(session, payload, policy)
    return Receipt("applied" if applied else "ignored", event_type, applied)


def parse_event(text: str) -> dict[str, Any]:
    """Parse the SES event JSON inside an SNS Message and check its shape."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise MalformedEvent("Message is not SES event JSON") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("Message is not a JSON object")
    event_type = payload.get("eventType") or payload.get("notificationType")
    if not isinstance(event_type, str):
        raise MalformedEvent("Message has no eventType or notificationType")
    kind = _KINDS.get(event_type)
    if kind is None:
        return payload  # Open, Click, ...: acknowledged, not used
    mail = payload.get("mail")
    if not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str):
        raise MalformedEvent("Message has no mail.messageId")
    body = payload.get(_BODY_KEYS[kind], {})
    if not isinstance(body, dict):
        raise MalformedEvent(f"{_BODY_KEYS[kind]} is not an object")
    _recipients(kind, payload)  # raises when the recipient lists are malformed
    if kind is FeedbackKind.BOUNCE and not isinstance(body.get("bounceType"), str):
        raise MalformedEvent("bounce.bounceType is missing")
    return payload


def apply_ses_event(session: so.Session, payload: dict[str, Any], policy: Policy) -> int:
    """Record one SES event and apply the policy; return how many recipients it changed."""
    event_type = payload.get("eventType") or payload.get("notificationType")
    kind = _KINDS.get(str(event_type))
    if kind is None:
        return 0
    mail = payload["mail"]
    message_id = mail["messageId"]
    body = payload.get(_BODY_KEYS[kind]) or {}
    occurred = _timestamp(body.get("timestamp")) or _timestamp(mail.get("timestamp"))
    occurred = occurred or clock.now()
    row = _find_delivery(session, message_id, mail.get("tags"))
    recipients = _recipients(kind, payload)
    applied = 0
    for email, diagnostic in recipients:
        use_row = row is not None and (len(recipients) == 1 or row.subscriber.email == email)
        delivery = row if use_row else None
        key = delivery.subscriber.email if delivery is not None else _address_key(email)
        subscriber_id = (
            delivery.subscriber_id
            if delivery is not None
            else session.scalar(sa.select(Subscriber.id).where(Subscriber.email == key))
        )
        event = FeedbackEvent(
            kind=kind,
            ses_message_id=message_id[:200],
            email=key,
            bounce_type=_short(body.get("bounceType"), 20),
            bounce_subtype=_short(body.get("bounceSubType"), 40),
            delivery_id=delivery.id if delivery is not None else None,
            issue_id=delivery.issue_id if delivery is not None else None,
            subscriber_id=subscriber_id,
            occurred_at=occurred,
            detail=_detail(kind, body, diagnostic),
        )
        try:
            with session.begin_nested():
                session.add(event)
        except sa.exc.IntegrityError:
            continue  # the same event through another topic or a replay: applied already
        if delivery is not None:
            _update_row(delivery, kind, message_id, occurred, event.detail)
        _apply_policy(session, key, kind, body, occurred, event.detail, policy)
        applied += 1
    return applied


def _find_delivery(session: so.Session, message_id: str, tags: Any) -> Delivery | None:
    row = session.scalar(
        sa.select(Delivery).where(Delivery.ses_message_id == message_id).with_for_update()
    )
    if row is not None:
        return row
    # Event publishing echoes our EmailTags: the ledger row id finds rows whose MessageId
    # never got recorded (a crash between SES accepting the message and our commit).
    values = tags.get("delivery") if isinstance(tags, dict) else None
    if not isinstance(values, list) or not values:
        return None
    try:
        delivery_id = int(values[0])
    except (TypeError, ValueError):
        return None
    row = session.scalar(sa.select(Delivery).where(Delivery.id == delivery_id).with_for_update())
    if row is None or row.ses_message_id not in (None, message_id):
        return None
    row.ses_message_id = message_id
    return row


def _update_row(
    row: Delivery, kind: FeedbackKind, message_id: str, occurred: datetime, detail: str | None
) -> None:
    was = row.status
    if kind is FeedbackKind.SEND and was in _UNRESOLVED:
        row.status = DeliveryStatus.SENT
    elif kind is FeedbackKind.DELIVERY and was in _UNRESOLVED | {DeliveryStatus.SENT}:
        row.status = DeliveryStatus.DELIVERED
    elif kind is FeedbackKind.BOUNCE and was is not DeliveryStatus.COMPLAINED:
        row.status = DeliveryStatus.BOUNCED
        row.error = detail
    elif kind is FeedbackKind.COMPLAINT:
        row.status = DeliveryStatus.COMPLAINED
    elif kind is FeedbackKind.REJECT and was in _UNRESOLVED | {DeliveryStatus.SENT}:
        row.status = DeliveryStatus.FAILED
        row.error = detail
    if kind is not FeedbackKind.REJECT and row.sent_at is None:
        row.sent_at = occurred
    if was is not row.status:
        log.info("delivery %s: %s -> %s (%s)", row.id, was, row.status, message_id)


def _apply_policy(
    session: so.Session,
    email: str,
    kind: FeedbackKind,
    body: dict[str, Any],
    occurred: datetime,
    detail: str | None,
    policy: Policy,
) -> None:
    if kind is FeedbackKind.COMPLAINT:
        suppressions.suppress(session, email, SuppressionReason.COMPLAINT, detail)
        suppressions.set_subscriptions(
            session,
            email,
            SubscriptionStatus.COMPLAINED,
            "complaint",
            from_statuses=set(SubscriptionStatus) - {SubscriptionStatus.COMPLAINED},
        )
        return
    if kind is not FeedbackKind.BOUNCE:
        return
    bounce_type = body.get("bounceType")
    if bounce_type == "Permanent":
        reason = (
            SuppressionReason.SES_LIST
            if body.get("bounceSubType") == "OnAccountSuppressionList"
            else SuppressionReason.HARD_BOUNCE
        )
        _suppress_bounced(session, email, reason, detail, "bounce")
    elif bounce_type == "Transient":
        since = occurred - timedelta(days=policy.soft_bounce_days)
        count = session.scalar(
            sa.select(sa.func.count())
            .select_from(FeedbackEvent)
            .where(
                FeedbackEvent.email == email,
                FeedbackEvent.kind == FeedbackKind.BOUNCE,
                FeedbackEvent.bounce_type == "Transient",
                FeedbackEvent.occurred_at > since,
                FeedbackEvent.occurred_at <= occurred,
            )
        )
        if (count or 0) >= policy.soft_bounce_limit:
            note = f"{count} soft bounces within {policy.soft_bounce_days} days; last: {detail}"
            _suppress_bounced(session, email, SuppressionReason.SOFT_BOUNCES, note, "soft-bounces")
    # "Undetermined": recorded only; SES could not tell what happened.


def _suppress_bounced(
    session: so.Session, email: str, reason: SuppressionReason, detail: str | None, why: str
) -> None:
    suppressions.suppress(session, email, reason, detail)
    suppressions.set_subscriptions(
        session,
        email,
        SubscriptionStatus.BOUNCED,
        why,
        from_statuses={SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING},
    )


def _recipients(kind: FeedbackKind, payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Return (address key, diagnostic) for each recipient the event is about."""
    body = payload.get(_BODY_KEYS[kind]) or {}
    if kind is FeedbackKind.BOUNCE:
        entries = body.get("bouncedRecipients")
    elif kind is FeedbackKind.COMPLAINT:
        entries = body.get("complainedRecipients")
    elif kind is FeedbackKind.DELIVERY_DELAY:
        entries = body.get("delayedRecipients")
    elif kind is FeedbackKind.DELIVERY:
        entries = body.get("recipients")
    else:
        entries = None
    if not entries:
        # Send and Reject name no one; ISPs often strip complainants: one recipient per
        # message means the destination is who it was about.
        entries = payload["mail"].get("destination")
    if not isinstance(entries, list) or not entries:
        raise MalformedEvent("the event names no recipient")
    result = []
    for entry in entries:
        if isinstance(entry, dict):
            address, diagnostic = entry.get("emailAddress"), entry.get("diagnosticCode")
        else:
            address, diagnostic = entry, None
        if not isinstance(address, str) or "@" not in parseaddr(address)[1]:
            raise MalformedEvent("a recipient is not an email address")
        result.append((parseaddr(address)[1].lower(), _short(diagnostic, 500)))
    return result


def _address_key(address: str) -> str:
    """Return our key for an address SES reports (ASCII, punycode domain, lower case)."""
    try:
        return normalize_address(address).key
    except InvalidAddress:
        return address


def _detail(kind: FeedbackKind, body: dict[str, Any], diagnostic: str | None) -> str | None:
    if kind is FeedbackKind.BOUNCE:
        text = f"{body.get('bounceType')}/{body.get('bounceSubType')}"
        return f"{text}: {diagnostic}" if diagnostic else text
    if kind is FeedbackKind.COMPLAINT:
        return f"complaint: {body.get('complaintFeedbackType') or 'unspecified'}"
    if kind is FeedbackKind.REJECT:
        return f"SES rejected the message: {body.get('reason') or 'no reason given'}"
    if kind is FeedbackKind.DELIVERY_DELAY:
        return f"delayed: {body.get('delayType') or 'unspecified'}"
    return None


def _short(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return clock.parse_timestamp(value)
    except ValueError:
        return None


# --- Per-issue figures ------------------------------------------------------------------


def issue_feedback_figures(session: so.Session, issue_id: int) -> dict[str, Any]:
    """Count what SES reported for an issue's messages, with the rates and alert lines."""
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise NotFound(f"there is no issue {issue_id}")
    accepted = session.scalar(
        sa.select(sa.func.count())
        .select_from(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.ses_message_id.is_not(None))
    )
    counts: dict[tuple[FeedbackKind, str | None], int] = {}
    for kind, bounce_type, subtype, n in session.execute(
        sa.select(
            FeedbackEvent.kind,
            FeedbackEvent.bounce_type,
            FeedbackEvent.bounce_subtype,
            sa.func.count(),
        )
        .where(FeedbackEvent.issue_id == issue_id)
        .group_by(FeedbackEvent.kind, FeedbackEvent.bounce_type, FeedbackEvent.bounce_subtype)
    ):
        label = bounce_type
        if bounce_type == "Permanent" and subtype == "OnAccountSuppressionList":
            label = "OnAccountSuppressionList"
        counts[(kind, label)] = counts.get((kind, label), 0) + n

    def total(kind: FeedbackKind) -> int:
        return sum(n for (k, _), n in counts.items() if k is kind)

    hard_counted = counts.get((FeedbackKind.BOUNCE, "Permanent"), 0)
    hard = hard_counted + counts.get((FeedbackKind.BOUNCE, "OnAccountSuppressionList"), 0)
    soft = counts.get((FeedbackKind.BOUNCE, "Transient"), 0)
    unsubscribed = unsubscribed_after(session, issue_id)
    accepted = accepted or 0
    complained = total(FeedbackKind.COMPLAINT)
    # SES leaves bounces from its own account list out of the bounce rate: so do we.
    complaint_rate = complained / accepted if accepted else 0.0
    bounce_rate = hard_counted / accepted if accepted else 0.0
    alerts = []
    if complaint_rate > COMPLAINT_RATE_ALERT:
        alerts.append(
            f"ALERT: complaint rate {complaint_rate:.2%} is above 0.1% "
            "(Gmail and Yahoo reject senders above 0.3%)"
        )
    if bounce_rate > BOUNCE_RATE_ALERT:
        alerts.append(
            f"ALERT: bounce rate {bounce_rate:.2%} is above 5% (SES reviews accounts above 5%)"
        )
    return {
        "issue_id": issue_id,
        "accepted": accepted,
        "delivered": total(FeedbackKind.DELIVERY),
        "bounced": total(FeedbackKind.BOUNCE),
        "bounced_hard": hard,
        "bounced_soft": soft,
        "bounced_undetermined": counts.get((FeedbackKind.BOUNCE, "Undetermined"), 0),
        "complained": complained,
        "rejected": total(FeedbackKind.REJECT),
        "delayed": total(FeedbackKind.DELIVERY_DELAY),
        "unsubscribed": unsubscribed or 0,
        "complaint_rate": complaint_rate,
        "bounce_rate": bounce_rate,
        "alerts": alerts,
    }


def format_feedback(figures: dict[str, Any]) -> list[str]:
    """Render the figures as the lines `newsletter status ISSUE` prints."""
    lines = [
        f"Accepted by SES: {figures['accepted']}",
        f"Delivered: {figures['delivered']}",
        f"Bounced: {figures['bounced']} (hard {figures['bounced_hard']}, "
        f"soft {figures['bounced_soft']}, undetermined {figures['bounced_undetermined']}); "
        f"bounce rate {figures['bounce_rate']:.2%}",
        f"Complained: {figures['complained']}; complaint rate {figures['complaint_rate']:.2%}",
        f"Unsubscribed: {figures['unsubscribed']}",
    ]
    if figures["rejected"] or figures["delayed"]:
        lines.append(f"Rejected by SES: {figures['rejected']}; delayed: {figures['delayed']}")
    return lines + list(figures["alerts"])


def unsubscribed_after(session: so.Session, issue_id: int) -> int:
    """Count the readers of an issue who left the list after it reached them."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .join(Subscription, Subscription.id == Delivery.subscription_id)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.sent_at.is_not(None),
                Subscription.status == SubscriptionStatus.UNSUBSCRIBED,
                Subscription.unsubscribed_at >= Delivery.sent_at,
            )
        )
        or 0
    )
