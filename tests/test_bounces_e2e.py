"""End to end: send through the ses backend to moto, feed back a bounce and a complaint over
the signed webhook, send the next issue: the bounced and complaining readers get nothing."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sns_fixtures import notification
from sns_fixtures import ses_event

from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"


@pytest.fixture
def app_config(app_config, moto_ses):
    """The real SES client (boto3 over HTTP) pointed at moto in server mode."""
    config = dict(app_config)
    config.pop("MAILER")
    config.update(
        MAIL_BACKEND="ses",
        SES_ENDPOINT_URL=moto_ses.url,
        SES_REGION="us-east-1",
        SES_CONFIGURATION_SET="newsletter",
        # moto has no sesv2 GetAccount: give the rate instead of reading the quota.
        SEND_RATE=200.0,
    )
    return config


def _recipients(raw_messages):
    to = []
    for item in raw_messages:
        parsed = email.message_from_string(item["raw_data"], policy=email.policy.default)
        to.append(parsed["To"].addresses[0].addr_spec)
    return sorted(to)


def _post(client, signer, event, version):
    body = json.dumps(notification(signer, event, version=version))
    response = client.post("/webhooks/ses", data=body, content_type="text/plain; charset=UTF-8")
    assert response.status_code == 200, response.text


def test_bounced_and_complaining_readers_get_nothing_more(
    app, client, sns, runner, db_session, moto_ses, make_list, make_subscriber, tmp_path
):
    weekly = make_list()
    readers = [f"reader{i}@example.com" for i in range(5)]
    for address in readers:
        make_subscriber(weekly, email=address)

    first = runner("send", str(ISSUE_FILE), "--list", "weekly", "--yes")
    assert first.exit_code == 0, first.output
    sent = moto_ses.sent_messages()
    assert _recipients(sent) == readers

    issue_id = db_session.scalar(sa.select(Issue.id))
    rows = dict(
        db_session.execute(
            sa.select(Delivery.ses_message_id, Delivery.subscriber_id).where(
                Delivery.issue_id == issue_id
            )
        ).all()
    )
    db_session.rollback()
    # The ledger holds the MessageIds SES (moto) answered: feedback matches on them.
    assert set(rows) == {item["id"] for item in sent}
    by_address = {}
    for item in sent:
        parsed = email.message_from_string(item["raw_data"], policy=email.policy.default)
        by_address[parsed["To"].addresses[0].addr_spec] = item["id"]

    bounced, complained = readers[1], readers[3]
    _post(
        client,
        sns.signer,
        ses_event("Bounce", bounced, style="identity", message_id=by_address[bounced]),
        version="1",
    )
    _post(
        client,
        sns.signer,
        ses_event("Complaint", complained, style="event", message_id=by_address[complained]),
        version="2",
    )
    assert sorted(db_session.scalars(sa.select(Suppression.email))) == [bounced, complained]
    db_session.rollback()

    next_issue = tmp_path / "next.yaml"
    next_issue.write_text(
        ISSUE_FILE.read_text(encoding="utf-8")
        .replace("Unlocking the Kernel", "The Next One")
        .replace("slug: unlocking-the-kernel", "slug: the-next-one"),
        encoding="utf-8",
    )
    second = runner("send", str(next_issue), "--list", "weekly", "--yes")
    assert second.exit_code == 0, second.output
    new_messages = moto_ses.sent_messages()[len(sent) :]
    assert _recipients(new_messages) == [r for r in readers if r not in (bounced, complained)]

    db_session.expire_all()
    first_rows = {
        row.subscriber.email: row.status
        for row in db_session.scalars(sa.select(Delivery).where(Delivery.issue_id == issue_id))
    }
    assert first_rows[bounced] is DeliveryStatus.BOUNCED
    assert first_rows[complained] is DeliveryStatus.COMPLAINED
    statuses = {s.subscriber.email: s.status for s in db_session.scalars(sa.select(Subscription))}
    assert statuses[bounced] is SubscriptionStatus.BOUNCED
    assert statuses[complained] is SubscriptionStatus.COMPLAINED
    db_session.rollback()

    status = runner("status", str(issue_id))
    assert status.exit_code == 0, status.output
    assert "Bounced: 1 (hard 1, soft 0, undetermined 0); bounce rate 20.00%" in status.stdout
    assert "Complained: 1; complaint rate 20.00%" in status.stdout
    assert "ALERT: complaint rate 20.00%" in status.stdout
    overview = runner("status")
    assert overview.exit_code == 0, overview.output
    assert overview.stdout.count("ALERT: complaint rate 20.00%") == 1  # issue 1 only
