"""mailto: unsubscribe through SES receiving: List-Unsubscribe's second URI, end to end."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sns_fixtures import notification
from sns_fixtures import received_mail

from newsletter import sending
from newsletter import tokens
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus

DOMAIN = "unsubscribe.news.example.com"
ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8"}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "UNSUBSCRIBE_MAILTO_DOMAIN": DOMAIN}


def _post(client, message):
    return client.post("/webhooks/ses", data=json.dumps(message), headers=SNS_HEADERS)


def _status(db_session, subscription_id):
    db_session.rollback()
    try:
        return db_session.scalar(
            sa.select(Subscription.status).where(Subscription.id == subscription_id)
        )
    finally:
        db_session.rollback()


def _mailto(app, subscription_id):
    return tokens.unsubscribe_mailto(DOMAIN, app.config["SECRET_KEY"], subscription_id)


def test_issues_offer_the_mailto_address_never_encoded(
    app, db_session, make_list, make_subscriber, outbox
):
    weekly = make_list()
    reader = make_subscriber(weekly, email="ada@example.org")
    plan = sending.plan_send(db_session, ISSUE_FILE, weekly.slug, base_url=app.config["BASE_URL"])
    sending.send_test_copies(db_session, outbox, plan, ["ada@example.org"], config=app.config)
    (message,) = outbox.messages
    head = message.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = head.replace("\r\n ", " ")
    (line,) = [h for h in unfolded.split("\r\n") if h.startswith("List-Unsubscribe:")]
    https = tokens.unsubscribe_url(app.config["BASE_URL"], app.config["SECRET_KEY"], reader.id)
    assert line == f"List-Unsubscribe: <{https}>, <{_mailto(app, reader.id)}>"
    assert "=?" not in line
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_signed_received_mail_unsubscribes_like_one_click(
    app, client, sns, db_session, make_list, make_subscriber
):
    weekly = make_list()
    reader = make_subscriber(weekly, email="ada@example.org")
    other = make_subscriber(weekly, email="bob@example.org")
    reader_id, other_id = reader.id, other.id
    db_session.rollback()
    address = _mailto(app, reader_id).removeprefix("mailto:")
    message = notification(sns.signer, received_mail([address]))
    response = _post(client, message)
    assert response.status_code == 200, response.text
    assert response.text.strip() == "mailto-unsubscribed"
    assert _status(db_session, reader_id) is SubscriptionStatus.UNSUBSCRIBED
    assert _status(db_session, other_id) is SubscriptionStatus.ACTIVE
    reasons = db_session.scalars(
        sa.select(SubscriptionEvent.reason).where(SubscriptionEvent.subscription_id == reader.id)
    ).all()
    db_session.rollback()
    assert reasons == ["mailto"]
    # SNS redelivers: applied once. A second mail (another MessageId) changes nothing more.
    assert _post(client, message).text.strip() == "duplicate"
    again = _post(client, notification(sns.signer, received_mail([address])))
    assert (
        again.status_code == 200
        and _status(db_session, reader.id) is SubscriptionStatus.UNSUBSCRIBED
    )


@pytest.mark.parametrize(
    "forge",
    [
        "bad-signature",
        "unknown-topic",
        "forged-token",
        "other-domain",
        "virus",
    ],
)
def test_forged_received_mail_unsubscribes_nobody(
    app, client, sns, db_session, make_list, make_subscriber, forge
):
    weekly = make_list()
    reader = make_subscriber(weekly, email="ada@example.org")
    address = _mailto(app, reader.id).removeprefix("mailto:")
    mail = received_mail([address])
    if forge == "forged-token":
        local, domain = address.split("@")
        mail = received_mail([f"{local[:-3]}xyz@{domain}", f"u+{reader.id}@{domain}"])
    elif forge == "other-domain":
        mail = received_mail([address.replace(DOMAIN, "evil.example")])
    elif forge == "virus":
        mail = received_mail([address], virus="FAIL")
    message = notification(sns.signer, mail)
    if forge == "bad-signature":
        message["Message"] = message["Message"].replace("unsubscribe", "hello")
    elif forge == "unknown-topic":
        message = notification(sns.signer, mail, topic_arn="arn:aws:sns:eu-west-1:1:other")
    response = _post(client, message)
    expected = {"bad-signature": 403, "unknown-topic": 403}.get(forge, 200)
    assert response.status_code == expected, response.text
    assert _status(db_session, reader.id) is SubscriptionStatus.ACTIVE


def test_mailto_tokens_are_read_only_from_our_domain():
    assert (
        tokens.token_from_mailto_address("u+1a.XyZ@Unsubscribe.News.Example.com", DOMAIN)
        == "1a.XyZ"
    )
    assert tokens.token_from_mailto_address("u+1a.XyZ@evil.example", DOMAIN) is None
    assert tokens.token_from_mailto_address("news@" + DOMAIN, DOMAIN) is None
    assert tokens.token_from_mailto_address("u+@" + DOMAIN, DOMAIN) is None
