"""POST /webhooks/ses: signed SNS posts in both signature versions and both SES styles."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from sns_fixtures import BOUNCE_TYPES
from sns_fixtures import CERT_URL
from sns_fixtures import TOPIC_ARN
from sns_fixtures import notification
from sns_fixtures import ses_event
from sns_fixtures import subscription_confirmation

from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import FeedbackEvent
from newsletter.models import SnsNotification
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason

SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8"}


def post(client, message: dict | bytes | str):
    body = message if isinstance(message, bytes | str) else json.dumps(message)
    return client.post("/webhooks/ses", data=body, headers=SNS_HEADERS)


def snapshot(db_session) -> dict:
    """Everything a webhook post could change."""
    db_session.expire_all()
    state = {
        "sns": db_session.scalar(sa.select(sa.func.count()).select_from(SnsNotification)),
        "events": db_session.scalar(sa.select(sa.func.count()).select_from(FeedbackEvent)),
        "suppressed": sorted(db_session.scalars(sa.select(Suppression.email))),
        "deliveries": sorted(
            (d.id, d.status.value, d.ses_message_id)
            for d in db_session.scalars(sa.select(Delivery))
        ),
        "subscriptions": sorted(
            (s.id, s.status.value) for s in db_session.scalars(sa.select(Subscription))
        ),
    }
    db_session.rollback()  # SQLite: release the lock before the app writes
    return state


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("style", ["event", "identity"])
@pytest.mark.parametrize(("bounce_type", "subtype"), BOUNCE_TYPES)
def test_every_bounce_type_in_both_styles_and_signature_versions(
    client, sns, db_session, make_ledger, version, style, bounce_type, subtype
):
    issue, (row, other) = make_ledger(["jane@example.com", "sam@example.com"])
    event = ses_event(
        "Bounce",
        "jane@example.com",
        style=style,
        message_id=row.ses_message_id,
        bounce=(bounce_type, subtype),
    )
    response = post(client, notification(sns.signer, event, version=version))
    assert response.status_code == 200, response.text
    assert response.text.strip() == "applied"

    db_session.expire_all()
    assert db_session.get(Delivery, row.id).status is DeliveryStatus.BOUNCED
    assert db_session.get(Delivery, other.id).status is DeliveryStatus.SENT
    recorded = db_session.scalars(sa.select(FeedbackEvent)).one()
    assert (recorded.bounce_type, recorded.bounce_subtype) == (bounce_type, subtype)
    assert recorded.issue_id == issue.id and recorded.delivery_id == row.id
    subscription = db_session.get(Subscription, row.subscription_id)
    suppression = db_session.scalar(sa.select(Suppression))
    if bounce_type == "Permanent":
        assert suppression.email == "jane@example.com"
        expected = "ses_list" if subtype == "OnAccountSuppressionList" else "hard_bounce"
        assert suppression.reason.value == expected
        assert subscription.status is SubscriptionStatus.BOUNCED
    else:  # one soft or undetermined bounce: recorded only
        assert suppression is None
        assert subscription.status is SubscriptionStatus.ACTIVE


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("style", ["event", "identity"])
def test_complaint_unsubscribes_from_every_list_and_suppresses(
    client, sns, db_session, make_ledger, make_list, make_subscriber, version, style
):
    _, (row,) = make_ledger(["jane@example.com"])
    other_list = make_list(slug="monthly", name="Monthly")
    make_subscriber(other_list, email="jane@example.com")
    event = ses_event("Complaint", "jane@example.com", style=style, message_id=row.ses_message_id)
    assert post(client, notification(sns.signer, event, version=version)).status_code == 200

    db_session.expire_all()
    statuses = set(db_session.scalars(sa.select(Subscription.status)))
    assert statuses == {SubscriptionStatus.COMPLAINED}
    assert db_session.scalar(sa.select(Suppression.reason)) is SuppressionReason.COMPLAINT
    assert db_session.get(Delivery, row.id).status is DeliveryStatus.COMPLAINED


@pytest.mark.parametrize("style", ["event", "identity"])
def test_delivery_marks_the_row_delivered(client, sns, db_session, make_ledger, style):
    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Delivery", "jane@example.com", style=style, message_id=row.ses_message_id)
    assert post(client, notification(sns.signer, event)).status_code == 200
    db_session.expire_all()
    assert db_session.get(Delivery, row.id).status is DeliveryStatus.DELIVERED
    assert db_session.scalar(sa.select(Suppression)) is None


def test_reject_and_delay_are_recorded(client, sns, db_session, make_ledger):
    _, (rejected, delayed) = make_ledger(["a@example.com", "b@example.com"])
    for kind, row, email in (
        ("Reject", rejected, "a@example.com"),
        ("DeliveryDelay", delayed, "b@example.com"),
    ):
        event = ses_event(kind, email, message_id=row.ses_message_id)
        assert post(client, notification(sns.signer, event)).status_code == 200
    db_session.expire_all()
    assert db_session.get(Delivery, rejected.id).status is DeliveryStatus.FAILED
    assert "Bad content" in db_session.get(Delivery, rejected.id).error
    assert db_session.get(Delivery, delayed.id).status is DeliveryStatus.SENT
    kinds = set(db_session.scalars(sa.select(FeedbackEvent.kind)))
    assert {k.value for k in kinds} == {"reject", "delivery_delay"}


def test_bounce_without_a_ledger_row_is_matched_by_address(
    client, sns, db_session, make_list, make_subscriber
):
    # A confirmation email bounced: no Delivery row, but the subscriber is known.
    subscription = make_subscriber(
        make_list(), email="new@example.com", status=SubscriptionStatus.PENDING
    )
    event = ses_event("Bounce", "New@Example.com", style="identity")
    assert post(client, notification(sns.signer, event)).status_code == 200
    db_session.expire_all()
    assert db_session.get(Subscription, subscription.id).status is SubscriptionStatus.BOUNCED
    assert db_session.scalar(sa.select(Suppression.email)) == "new@example.com"
    recorded = db_session.scalars(sa.select(FeedbackEvent)).one()
    assert recorded.subscriber_id == subscription.subscriber_id and recorded.delivery_id is None


def test_replayed_notification_is_applied_once(client, sns, db_session, make_ledger):
    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Bounce", "jane@example.com", message_id=row.ses_message_id)
    message = notification(sns.signer, event, version="1")
    assert post(client, message).text.strip() == "applied"
    after_first = snapshot(db_session)
    replay = post(client, message)
    assert replay.status_code == 200 and replay.text.strip() == "duplicate"
    assert snapshot(db_session) == after_first
    assert after_first["events"] == 1 and after_first["sns"] == 1
    # The same SES event through a second SNS message (another topic): applied once too.
    again = post(client, notification(sns.signer, event))
    assert again.status_code == 200 and again.text.strip() == "ignored"
    assert snapshot(db_session)["events"] == 1
    assert sns.fetched == [CERT_URL]  # the certificate was fetched once, then cached


def _tampered(message: dict) -> dict:
    message["Message"] = message["Message"].replace("jane@", "joan@")
    return message


REJECTIONS = [
    ("bad signature", lambda s, e: _tampered(notification(s, e)), 403),
    (
        "signature v1 on v2 message",
        lambda s, e: {**notification(s, e), "SignatureVersion": "1"},
        403,
    ),
    ("wrong topic", lambda s, e: notification(s, e, topic_arn=TOPIC_ARN + "-other"), 403),
    (
        "certificate on a foreign host",
        lambda s, e: s.sign(
            {**notification(s, e), "SigningCertURL": "https://evil.example.com/cert.pem"}
        ),
        403,
    ),
    (
        "certificate in an S3 bucket",
        lambda s, e: s.sign(
            {
                **notification(s, e),
                "SigningCertURL": "https://sns-certs.s3.amazonaws.com/SimpleNotificationService.pem",
            }
        ),
        403,
    ),
    (
        "certificate over http",
        lambda s, e: s.sign(
            {**notification(s, e), "SigningCertURL": CERT_URL.replace("https", "http")}
        ),
        403,
    ),
    (
        "certificate URL with a port",
        lambda s, e: s.sign(
            {**notification(s, e), "SigningCertURL": CERT_URL.replace(".com/", ".com:8443/")}
        ),
        403,
    ),
    (
        "certificate URL not .pem",
        lambda s, e: s.sign({**notification(s, e), "SigningCertURL": CERT_URL[:-4] + ".txt"}),
        403,
    ),
    ("SignatureVersion 3", lambda s, e: {**notification(s, e), "SignatureVersion": "3"}, 400),
    (
        "unsigned",
        lambda s, e: {k: v for k, v in notification(s, e).items() if k != "Signature"},
        400,
    ),
    ("signature not base64", lambda s, e: {**notification(s, e), "Signature": "%%%"}, 403),
    ("malformed JSON", lambda s, e: b'{"Type": "Notification", ', 400),
    ("not an object", lambda s, e: b"[1, 2]", 400),
    ("not UTF-8", lambda s, e: b"\xff\xfe{}", 400),
    ("unknown Type", lambda s, e: {**notification(s, e), "Type": "Other"}, 400),
    ("Message not SES JSON", lambda s, e: s.sign({**notification(s, e), "Message": "hello"}), 400),
    (
        "event without recipients",
        lambda s, e: notification(
            s,
            {
                "eventType": "Bounce",
                "mail": {**e["mail"], "destination": []},
                "bounce": {**e["bounce"], "bouncedRecipients": []},
            },
        ),
        400,
    ),
    ("1 MB body", lambda s, e: b" " * (1024 * 1024), 413),
]


@pytest.mark.parametrize(
    ("make", "status"), [(m, s) for _, m, s in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections_change_nothing(client, sns, db_session, make_ledger, caplog, make, status):
    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Bounce", "jane@example.com", message_id=row.ses_message_id)
    before = snapshot(db_session)
    response = post(client, make(sns.signer, event))
    assert response.status_code == status, response.text
    assert snapshot(db_session) == before
    assert "refused" in caplog.text


def test_subscribe_url_elsewhere_is_not_visited(client, sns, db_session):
    elsewhere = [
        "https://evil.example.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
        "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC_ARN,
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:other",
        "https://127.0.0.1/?TopicArn=" + TOPIC_ARN,
    ]
    for url in elsewhere:
        message = subscription_confirmation(sns.signer, subscribe_url=url)
        assert post(client, message).status_code == 403
    assert sns.visited == []


@pytest.mark.parametrize("version", ["1", "2"])
def test_subscription_confirmation_visits_the_checked_url(client, sns, version):
    message = subscription_confirmation(sns.signer, version=version)
    response = post(client, message)
    assert response.status_code == 200 and response.text.strip() == "confirmed"
    assert sns.visited == [message["SubscribeURL"]]


def test_unsubscribe_confirmation_is_only_logged(client, sns, db_session, caplog):
    before = snapshot(db_session)
    message = subscription_confirmation(sns.signer, kind="UnsubscribeConfirmation")
    response = post(client, message)
    assert response.status_code == 200 and response.text.strip() == "unsubscribed"
    assert sns.visited == [] and snapshot(db_session) == before
    assert "unsubscribed this endpoint" in caplog.text


def test_unused_event_types_are_acknowledged(client, sns, db_session):
    event = {"eventType": "Open", "mail": {"messageId": "m1", "destination": ["a@example.com"]}}
    response = post(client, notification(sns.signer, event))
    assert response.status_code == 200 and response.text.strip() == "ignored"
    assert snapshot(db_session)["events"] == 0


def test_database_down_answers_503_so_sns_retries(app, sns, make_ledger):
    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Delivery", "jane@example.com", message_id=row.ses_message_id)
    message = notification(sns.signer, event)
    from newsletter.db import Database

    real = app.extensions["newsletter.db"]
    app.extensions["newsletter.db"] = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        response = post(app.test_client(), message)
    finally:
        app.extensions["newsletter.db"].dispose()
        app.extensions["newsletter.db"] = real
    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_max_age_rejects_old_messages(client, sns, clock, db_session, make_ledger):
    from datetime import timedelta

    _, (row,) = make_ledger(["jane@example.com"])
    client.application.extensions["newsletter.sns"].max_age = timedelta(hours=1)
    event = ses_event("Delivery", "jane@example.com", message_id=row.ses_message_id)
    clock.advance(hours=2)
    old = notification(sns.signer, event)  # signed Timestamp 2026-03-02T09:00Z, now 11:00
    assert post(client, old).status_code == 403
    fresh = notification(sns.signer, event, timestamp="2026-03-02T10:30:00Z")
    assert post(client, fresh).status_code == 200


def test_webhook_over_real_http(live_server, sns, db_session, make_ledger):
    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Bounce", "jane@example.com", message_id=row.ses_message_id)
    body = json.dumps(notification(sns.signer, event)).encode()
    request = urllib.request.Request(
        f"{live_server}/webhooks/ses",
        data=body,
        method="POST",
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
            "User-Agent": "Amazon Simple Notification Service Agent",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    db_session.expire_all()
    assert db_session.get(Delivery, row.id).status is DeliveryStatus.BOUNCED
    forged = json.loads(body)
    forged["Message"] = forged["Message"].replace("Permanent", "Transient")
    request = urllib.request.Request(
        f"{live_server}/webhooks/ses", data=json.dumps(forged).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_concurrent_redeliveries_apply_once(live_server, sns, db_session, make_ledger):
    from concurrent.futures import ThreadPoolExecutor

    _, (row,) = make_ledger(["jane@example.com"])
    event = ses_event("Complaint", "jane@example.com", message_id=row.ses_message_id)
    body = json.dumps(notification(sns.signer, event)).encode()

    def deliver(_: int) -> str:
        request = urllib.request.Request(f"{live_server}/webhooks/ses", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode().strip()

    with ThreadPoolExecutor(6) as pool:
        outcomes = sorted(pool.map(deliver, range(6)))
    assert outcomes == ["applied"] + ["duplicate"] * 5
    state = snapshot(db_session)
    assert (state["sns"], state["events"], state["suppressed"]) == (1, 1, ["jane@example.com"])
