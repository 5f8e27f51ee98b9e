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
from newsletter.models import SendPace
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


# --- Against an SES-compatible HTTP server that misbehaves on command ----------------------


@pytest.fixture
def ses_fake(monkeypatch):
    """The tests' own SES v2 server on loopback."""
    from sesfake import SesFake

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    fake = SesFake()
    fake.start()
    yield fake
    fake.stop()


def _ses_mailer(fake, timeout=15.0):
    return mail.SesMailer(
        region="us-east-1",
        endpoint_url=fake.url,
        configuration_set="newsletter-events",
        max_pool_connections=8,
        timeout=timeout,
    )


def test_faults_nothing_lost_nothing_twice(app, db_session, weekly, ses_fake):
    mailing_list, active = weekly
    addresses = [s.subscriber.display_email for s in active]
    ses_fake.misbehave("throttle", 3)
    ses_fake.misbehave("error500", 1, recipient=addresses[1])
    ses_fake.misbehave("hang", 1, recipient=addresses[2], seconds=0.8)
    ses_fake.misbehave("slow", 2, seconds=0.3)
    ses_fake.misbehave("reject", 1, recipient=addresses[3])
    issue = _start(app, db_session, mailing_list)
    worker = _worker(app, _ses_mailer(ses_fake, timeout=0.3), PaceSettings(max_rate=50, quota=None))
    # Retries wait for their back-off on the real clock; keep them short for the test.
    monkeypatch_backoff = pytest.MonkeyPatch()
    monkeypatch_backoff.setattr(sending, "_backoff", lambda attempt: sending.timedelta(seconds=0.2))
    try:
        progress = worker.run(until_idle=True)
    finally:
        monkeypatch_backoff.undo()
    received = ses_fake.recipients()
    assert sorted(received) == sorted(a for a in addresses if a != addresses[3])
    assert len(received) == len(set(received))
    statuses = _statuses(db_session, issue.id)
    failed = [sid for sid, status in statuses.items() if status is DeliveryStatus.FAILED]
    assert failed == [active[3].subscriber_id]
    assert progress.throttled == 3 and progress.retried == 2
    pace = db_session.get(SendPace, "ses")
    assert pace.rate < pace.max_rate == 50  # SES said "too many": everyone slowed down
    rows = db_session.scalars(
        sa.select(Delivery).where(Delivery.status == DeliveryStatus.SENT)
    ).all()
    accepted = {m.message_id: m for m in ses_fake.accepted}
    for row in rows:
        message = accepted[row.ses_message_id]
        assert message.tags == {"issue": str(issue.id), "delivery": str(row.id), "list": "weekly"}
        assert message.configuration_set == "newsletter-events"
