"""The sending engine: ledger, worker, just-in-time suppression, errors, pauses, status."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import mail
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason
from newsletter.pacing import AccountQuota
from newsletter.pacing import FixedQuotaSource
from newsletter.pacing import PaceSettings
from newsletter.sending import DeliveryWorker
from newsletter.sending import WorkerSettings
from newsletter import sending

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
UNLIMITED = PaceSettings(max_rate=None, quota=None)


def _statuses(db_session, issue_id):
    db_session.expire_all()
    return dict(
        db_session.execute(
            sa.select(Delivery.subscriber_id, Delivery.status).where(Delivery.issue_id == issue_id)
        ).all()
    )


@pytest.fixture
def weekly(make_list, make_subscriber):
    """A list with 12 active readers, 2 pending, 2 unsubscribed, 1 bounced, 1 suppressed."""
    mailing_list = make_list()
    active = [make_subscriber(mailing_list) for _ in range(12)]
    for status in (SubscriptionStatus.PENDING,) * 2 + (SubscriptionStatus.UNSUBSCRIBED,) * 2:
        make_subscriber(mailing_list, status=status)
    make_subscriber(mailing_list, status=SubscriptionStatus.BOUNCED)
    return mailing_list, active


def _start(app, db_session, mailing_list, **kwargs):
    config = app.config
    plan = sending.plan_send(db_session, ISSUE_FILE, mailing_list.slug, base_url=config["BASE_URL"])
    issue = sending.start_send(db_session, plan, **kwargs)
    db_session.commit()
    return issue


def _worker(app, mailer, pace=UNLIMITED, **kwargs):
    settings = kwargs.pop("settings", WorkerSettings(concurrency=4, batch_size=5, lease=30))
    return DeliveryWorker(
        app.extensions["newsletter.db"], mailer, app.config, pace, settings=settings, **kwargs
    )


def test_ledger_has_one_row_per_active_reader_and_is_idempotent(app, db_session, weekly):
    mailing_list, active = weekly
    db_session.add(Suppression(email=active[0].subscriber.email, reason=SuppressionReason.MANUAL))
    db_session.commit()
    issue = _start(app, db_session, mailing_list)
    statuses = _statuses(db_session, issue.id)
    assert set(statuses) == {s.subscriber_id for s in active}
    assert statuses[active[0].subscriber_id] is DeliveryStatus.SUPPRESSED
    assert sum(s is DeliveryStatus.QUEUED for s in statuses.values()) == 11
    assert sending.create_ledger(db_session, issue) == 0
    db_session.commit()
    assert len(_statuses(db_session, issue.id)) == 12


def test_worker_sends_each_reader_once_with_own_links(app, db_session, weekly, outbox):
    mailing_list, active = weekly
    issue = _start(app, db_session, mailing_list)
    progress = _worker(app, outbox).run(until_idle=True)
    assert progress.sent == 12
    recipients = sorted(m.recipient for m in outbox.messages)
    assert recipients == sorted(s.subscriber.display_email for s in active)
    rows = db_session.scalars(sa.select(Delivery).where(Delivery.issue_id == issue.id)).all()
    assert all(r.status is DeliveryStatus.SENT and r.ses_message_id for r in rows)
    by_address = {s.subscriber.display_email: s for s in active}
    for message in outbox.messages:
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        subscription = by_address[message.recipient]
        token_url = sending.tokens.unsubscribe_url(
            app.config["BASE_URL"], app.config["SECRET_KEY"], subscription.id
        )
        assert parsed["List-Unsubscribe"] == f"<{token_url}>"
        assert token_url in parsed.get_body(("plain",)).get_content()
        delivery = next(r for r in rows if r.subscriber_id == subscription.subscriber_id)
        assert message.tags == {
            "issue": str(issue.id),
            "delivery": str(delivery.id),
            "list": mailing_list.slug,
        }
    db_session.refresh(issue)
    assert issue.status is IssueStatus.SENT and issue.finished_at is not None
