"""The SES event policy: soft-bounce counting, reconciliation of unknown rows, figures."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sns_fixtures import notification
from sns_fixtures import ses_event

from newsletter import feedback
from newsletter import sending
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason

POLICY = feedback.Policy(soft_bounce_limit=3, soft_bounce_days=15)


def apply(session, event):
    applied = feedback.apply_ses_event(session, feedback.parse_event(json.dumps(event)), POLICY)
    session.commit()
    return applied


def soft_bounce(email, day):
    return ses_event(
        "Bounce",
        email,
        bounce=("Transient", "MailboxFull"),
        timestamp=f"2026-03-{day:02d}T10:00:00Z",
    )


def test_soft_bounces_suppress_only_when_enough_fall_in_the_window(
    db_session, make_list, make_subscriber
):
    subscription = make_subscriber(make_list(), email="full@example.com")
    apply(db_session, soft_bounce("full@example.com", 1))
    apply(db_session, soft_bounce("full@example.com", 17))  # 16 days later: first one expired
    apply(db_session, soft_bounce("full@example.com", 20))
    assert db_session.scalar(sa.select(Suppression)) is None
    assert db_session.get(Subscription, subscription.id).status is SubscriptionStatus.ACTIVE
    apply(db_session, soft_bounce("full@example.com", 25))  # 17, 20, 25: three within 15 days
    suppression = db_session.scalar(sa.select(Suppression))
    assert suppression.reason is SuppressionReason.SOFT_BOUNCES
    assert "3 soft bounces within 15 days" in suppression.detail
    db_session.expire_all()
    assert db_session.get(Subscription, subscription.id).status is SubscriptionStatus.BOUNCED


def test_soft_bounce_limit_comes_from_config(app):
    policy = feedback.Policy.from_config(dict(app.config, SOFT_BOUNCE_LIMIT=5, SOFT_BOUNCE_DAYS=7))
    assert (policy.soft_bounce_limit, policy.soft_bounce_days) == (5, 7)


def test_same_event_twice_is_applied_once(db_session, make_ledger):
    _, (row,) = make_ledger(["full@example.com"])
    event = ses_event("Bounce", "full@example.com", message_id=row.ses_message_id)
    assert apply(db_session, event) == 1
    assert apply(db_session, event) == 0


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Send", DeliveryStatus.SENT),
        ("Delivery", DeliveryStatus.DELIVERED),
        ("Bounce", DeliveryStatus.BOUNCED),
    ],
)
def test_event_with_delivery_tag_resolves_an_unknown_row(
    client, sns, db_session, make_ledger, kind, expected
):
    issue, (row, other) = make_ledger(
        ["lost@example.com", "other@example.com"], status=DeliveryStatus.UNKNOWN
    )
    # SES took the message but the crash came before its MessageId was recorded.
    event = ses_event(
        kind,
        "lost@example.com",
        message_id="0100018e-never-recorded-000000",
        tags={"issue": str(issue.id), "delivery": str(row.id), "list": "weekly"},
    )
    response = client.post(
        "/webhooks/ses",
        data=json.dumps(notification(sns.signer, event)),
        content_type="text/plain; charset=UTF-8",
    )
    assert response.status_code == 200, response.text
    db_session.expire_all()
    resolved = db_session.get(Delivery, row.id)
    assert resolved.status is expected
    assert resolved.ses_message_id == "0100018e-never-recorded-000000"
    unknown = db_session.scalars(
        sa.select(Delivery.id).where(
            Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.UNKNOWN
        )
    ).all()
    assert unknown == [other.id]
    # The editor's retry list (`newsletter status`, `send --retry-unknown`) drops it too.
    assert sending.issue_report(db_session, issue.id).unknown == ["other@example.com"]
    assert sending.retry_unknown(db_session, issue.id)[1] == 1
    db_session.commit()
    db_session.expire_all()
    assert db_session.get(Delivery, row.id).status is expected


def test_delivery_tag_of_another_message_is_not_trusted(db_session, make_ledger):
    _, (row,) = make_ledger(["jane@example.com"])  # row has its own MessageId already
    event = ses_event(
        "Delivery", "jane@example.com", message_id="someone-else", tags={"delivery": str(row.id)}
    )
    apply(db_session, event)
    db_session.expire_all()
    assert db_session.get(Delivery, row.id).status is DeliveryStatus.SENT


def test_issue_figures_and_alerts(db_session, make_ledger, clock):
    emails = [f"r{i}@example.com" for i in range(20)]
    issue, rows = make_ledger(emails)
    for row, email in zip(rows[:15], emails[:15], strict=True):
        apply(db_session, ses_event("Delivery", email, message_id=row.ses_message_id))
    apply(db_session, ses_event("Bounce", emails[15], message_id=rows[15].ses_message_id))
    apply(
        db_session,
        ses_event(
            "Bounce",
            emails[16],
            message_id=rows[16].ses_message_id,
            bounce=("Transient", "MailboxFull"),
        ),
    )
    apply(
        db_session,
        ses_event(
            "Bounce",
            emails[17],
            message_id=rows[17].ses_message_id,
            bounce=("Permanent", "OnAccountSuppressionList"),
        ),
    )
    figures = feedback.issue_feedback_figures(db_session, issue.id)
    # 1 counted hard bounce of 20 is exactly 5%: not above the threshold.
    assert figures["alerts"] == []
    assert (figures["delivered"], figures["bounced"]) == (15, 3)
    assert (figures["bounced_hard"], figures["bounced_soft"]) == (2, 1)

    apply(db_session, ses_event("Complaint", emails[0], message_id=rows[0].ses_message_id))
    clock.advance(hours=1)
    leaver = db_session.get(Subscription, rows[1].subscription_id)
    leaver.status = SubscriptionStatus.UNSUBSCRIBED
    leaver.unsubscribed_at = clock()
    db_session.commit()
    apply(db_session, ses_event("Bounce", emails[18], message_id=rows[18].ses_message_id))

    figures = feedback.issue_feedback_figures(db_session, issue.id)
    assert figures["complained"] == 1 and figures["unsubscribed"] == 1
    assert figures["accepted"] == 20
    assert figures["complaint_rate"] == pytest.approx(0.05)
    assert figures["bounce_rate"] == pytest.approx(0.10)
    lines = feedback.format_feedback(figures)
    assert "Bounced: 4 (hard 3, soft 1, undetermined 0); bounce rate 10.00%" in lines
    assert any(line.startswith("ALERT: complaint rate 5.00%") for line in lines)
    assert any(line.startswith("ALERT: bounce rate 10.00%") for line in lines)


def test_figures_for_a_missing_issue(db_session):
    from newsletter.errors import NotFound

    with pytest.raises(NotFound):
        feedback.issue_feedback_figures(db_session, 999)


def test_event_time_defaults_to_now_when_missing(db_session, make_ledger, clock):
    from newsletter.models import FeedbackEvent

    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Delivery", "jane@example.com", message_id=row.ses_message_id)
    del event["delivery"]["timestamp"], event["mail"]["timestamp"]
    clock.advance(minutes=5)
    apply(db_session, event)
    assert db_session.scalar(sa.select(FeedbackEvent.occurred_at)) == clock()


def test_bounce_for_an_internationalised_domain_finds_the_subscriber(
    db_session, make_list, make_subscriber
):
    subscription = make_subscriber(make_list(), email="anna@bücher.example")
    # SES reports the address as it went on the wire: the domain in IDNA form.
    apply(db_session, ses_event("Bounce", "anna@xn--bcher-kva.example", style="identity"))
    db_session.expire_all()
    assert db_session.get(Subscription, subscription.id).status is SubscriptionStatus.BOUNCED
    assert db_session.scalar(sa.select(Suppression.email)) == "anna@xn--bcher-kva.example"
