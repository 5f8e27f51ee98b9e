"""End to end: `newsletter send` to 200 subscribers through moto's SES over HTTP."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import tokens
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
# 200 subscribers: who should get the issue and who should not.
MIX = [
    (SubscriptionStatus.ACTIVE, 150),
    (SubscriptionStatus.PENDING, 20),
    (SubscriptionStatus.UNSUBSCRIBED, 15),
    (SubscriptionStatus.BOUNCED, 10),
    (SubscriptionStatus.COMPLAINED, 5),
]
SUPPRESSED_ACTIVE = 6  # active on the list, but on the suppression list


@pytest.fixture
def app_config(app_config, moto_ses):
    """The app sending through moto in server mode, at a fixed rate (moto has no GetAccount)."""
    app_config.pop("MAILER")
    app_config.update(
        MAIL_BACKEND="ses",
        SES_ENDPOINT_URL=moto_ses.url,
        SES_REGION="us-east-1",
        SES_CONFIGURATION_SET="newsletter-events",
        SEND_RATE=500.0,
    )
    return app_config


def _populate(db_session) -> tuple[MailingList, dict[str, int]]:
    mailing_list = MailingList(
        slug="weekly",
        name="o11y weekly",
        from_address="news@example.com",
        postal_address="1 Example Street, Berlin",
    )
    db_session.add(mailing_list)
    db_session.flush()
    wanted: dict[str, int] = {}
    number = 0
    for status, count in MIX:
        for _ in range(count):
            number += 1
            address = f"Reader{number}@Example.com"
            subscriber = Subscriber(
                email=address.lower(), display_email=address, name=f"Lü {number}"
            )
            db_session.add(subscriber)
            db_session.flush()
            subscription = Subscription(
                subscriber_id=subscriber.id, list_id=mailing_list.id, status=status, source="import"
            )
            db_session.add(subscription)
            db_session.flush()
            if status is SubscriptionStatus.ACTIVE:
                if len(wanted) < 150 - SUPPRESSED_ACTIVE:
                    wanted[address] = subscription.id
                else:
                    db_session.add(
                        Suppression(email=address.lower(), reason=SuppressionReason.HARD_BOUNCE)
                    )
    db_session.commit()
    return mailing_list, wanted


def test_send_reaches_every_active_reader_exactly_once(app, db_session, runner, moto_ses):
    _, wanted = _populate(db_session)
    result = runner("send", str(ISSUE_FILE), "--list", "weekly", "--yes")
    assert result.exit_code == 0, result.output
    assert "144 readers" in result.output
    assert "(6 suppressed addresses skipped)" in result.output

    received: dict[str, list[email.message.EmailMessage]] = {}
    for item in moto_ses.sent_messages():
        message = email.message_from_string(item["raw_data"], policy=email.policy.default)
        received.setdefault(message["To"].addresses[0].addr_spec, []).append(message)
    assert sorted(received) == sorted(wanted)
    config = app.config
    for address, messages in received.items():
        assert len(messages) == 1, address
        message = messages[0]
        own_link = tokens.unsubscribe_url(config["BASE_URL"], config["SECRET_KEY"], wanted[address])
        assert message["List-Unsubscribe"] == f"<{own_link}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == "o11y weekly <weekly.news.example.com>"
        assert message["List-Archive"] == "<https://news.example.com/archive?list=weekly>"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Subject"] == "o11y news #42: Unlocking the Kernel — größer"
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert own_link in html and own_link in text
        assert f"{config['BASE_URL']}/archive/unlocking-the-kernel" in text

    db_session.expire_all()
    counts = dict(
        db_session.execute(
            sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)
        ).all()
    )
    assert counts == {DeliveryStatus.SENT: 144, DeliveryStatus.SUPPRESSED: 6}
    ids = db_session.scalars(
        sa.select(Delivery.ses_message_id).where(Delivery.ses_message_id.is_not(None))
    )
    assert sorted(ids) == sorted(item["id"] for item in moto_ses.sent_messages())
    db_session.commit()

    status = runner("status", "unlocking-the-kernel")
    assert status.exit_code == 0, status.output
    assert "Status: sent" in status.output
    assert "  sent: 144" in status.output and "  suppressed: 6" in status.output

    again = runner("send", str(ISSUE_FILE), "--list", "weekly", "--yes")
    assert again.exit_code == 1
    assert "already sent" in again.output
    assert len(moto_ses.sent_messages()) == 144
