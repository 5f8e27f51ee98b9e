"""The sending engine: ledger, worker, just-in-time suppression, errors, pauses, status."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import mail
from newsletter import sending
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import IssueStatus
from newsletter.models import SendPace
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason
from newsletter.models import Worker
from newsletter.models import WorkerStatus
from newsletter.pacing import AccountQuota
from newsletter.pacing import FixedQuotaSource
from newsletter.pacing import PaceSettings
from newsletter.sending import DeliveryWorker
from newsletter.sending import WorkerSettings

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
UNLIMITED = PaceSettings(max_rate=None, quota=None)


def _statuses(db_session, issue_id):
    db_session.expire_all()
    statuses = dict(
        db_session.execute(
            sa.select(Delivery.subscriber_id, Delivery.status).where(Delivery.issue_id == issue_id)
        ).all()
    )
    db_session.commit()  # SQLite: do not hold the write lock while the worker runs
    return statuses


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


def test_a_starting_worker_looks_for_work_without_waiting(
    app, db_session, weekly, outbox, monkeypatch
):
    # Its first round has nothing in hand to wait for: waiting the idle 0.05 s there
    # only delayed every send's first message.
    mailing_list, _active = weekly
    _start(app, db_session, mailing_list)
    waits: list[float] = []
    collect = DeliveryWorker._collect

    def spy(self, timeout):
        waits.append(timeout)
        return collect(self, timeout)

    monkeypatch.setattr(DeliveryWorker, "_collect", spy)
    assert _worker(app, outbox).run(until_idle=True).sent == 12
    assert waits[0] == 0.0


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


class DeliveredBeforeRecorded(mail.MemoryMailer):
    """A transport whose Delivery event is recorded before the worker records the send."""

    def __init__(self, database):
        super().__init__()
        self.database = database

    def send(self, message):
        message_id = super().send(message)
        with self.database.transaction() as session:
            session.execute(
                sa.update(Delivery)
                .where(Delivery.id == int(message.tags["delivery"]))
                .values(status=DeliveryStatus.DELIVERED, ses_message_id=message_id)
            )
        return message_id


def test_an_earlier_delivery_event_is_not_turned_back_into_sent(app, db_session, weekly):
    mailing_list, active = weekly
    issue = _start(app, db_session, mailing_list)
    mailer = DeliveredBeforeRecorded(app.extensions["newsletter.db"])
    assert _worker(app, mailer).run(until_idle=True).sent == len(active)
    rows = db_session.scalars(sa.select(Delivery).where(Delivery.issue_id == issue.id)).all()
    delivered = [r for r in rows if r.status is DeliveryStatus.DELIVERED]
    assert len(delivered) == len(active)
    assert all(r.ses_message_id for r in delivered)


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
    ses_fake.misbehave("error500", 1, recipient=addresses[1])  # names its cause: retried
    ses_fake.misbehave("hang", 1, recipient=addresses[2], seconds=2.0)  # read timeout
    ses_fake.misbehave("reject", 1, recipient=addresses[3])
    ses_fake.misbehave("drop", 1, recipient=addresses[4])  # taken, then the line drops
    ses_fake.misbehave("late", 1, recipient=addresses[5], seconds=1.8)  # answer too late
    ses_fake.misbehave("reset", 1, recipient=addresses[6])  # taken, then reset
    ses_fake.misbehave("bare500", 1, recipient=addresses[7])  # a 5xx naming nothing
    ses_fake.misbehave("slow", 2, seconds=0.1)  # slower, within the timeout
    issue = _start(app, db_session, mailing_list)
    # A generous read timeout: a loaded machine must not turn a plain answer into `unknown`.
    worker = _worker(app, _ses_mailer(ses_fake, timeout=1.2), PaceSettings(max_rate=50, quota=None))
    # Retries wait for their back-off on the real clock; keep them short for the test.
    monkeypatch_backoff = pytest.MonkeyPatch()
    monkeypatch_backoff.setattr(
        sending.outcomes, "backoff", lambda attempt: sending.timedelta(seconds=0.2)
    )
    try:
        progress = worker.run(until_idle=True)
    finally:
        monkeypatch_backoff.undo()
    received = ses_fake.recipients()
    assert len(received) == len(set(received)), "a reader got a second copy"
    never_taken = {addresses[2], addresses[3], addresses[7]}
    assert sorted(received) == sorted(a for a in addresses if a not in never_taken)
    # One HTTP request per SES call: botocore retried nothing behind the ledger's back
    # (12 readers, 3 throttled and 1 named 500 retried once each).
    assert ses_fake.requests == 12 + 3 + 1
    statuses = _statuses(db_session, issue.id)
    by_subscriber = {s.subscriber_id: a for s, a in zip(active, addresses, strict=True)}
    by_status = {}
    for subscriber_id, status in statuses.items():
        by_status.setdefault(status, set()).add(by_subscriber[subscriber_id])
    assert by_status[DeliveryStatus.FAILED] == {addresses[3]}
    assert by_status[DeliveryStatus.UNKNOWN] == {addresses[i] for i in (2, 4, 5, 6, 7)}
    assert len(by_status[DeliveryStatus.SENT]) == 6
    assert progress.throttled == 3 and progress.retried == 1 and progress.unknown == 5
    # Three throttles in a run this short may fall in a window that never closes: how the
    # shared rate answers them is tests/test_pacing.py's (fake clock) and the next test's.
    rows = db_session.execute(
        sa.select(Delivery.id, Delivery.status, Delivery.ses_message_id, Delivery.error).where(
            Delivery.issue_id == issue.id
        )
    ).all()
    db_session.commit()
    by_id = {row.id: row for row in rows}
    for message in ses_fake.accepted:
        # Every message SES took is `sent` with its MessageId, or `unknown` on its row.
        row = by_id[int(message.tags["delivery"])]
        assert message.tags == {"issue": str(issue.id), "delivery": str(row.id), "list": "weekly"}
        assert message.configuration_set == "newsletter-events"
        if row.status is DeliveryStatus.SENT:
            assert row.ses_message_id == message.message_id
        else:
            assert row.status is DeliveryStatus.UNKNOWN
            assert "may or may not have accepted" in row.error


def test_a_dropped_connection_row_is_settled_by_the_ses_event(
    app, client, sns, db_session, weekly, ses_fake
):
    from sns_fixtures import notification
    from sns_fixtures import ses_event

    mailing_list, active = weekly
    address = active[0].subscriber.display_email
    ses_fake.misbehave("drop", 1, recipient=address)
    issue = _start(app, db_session, mailing_list)
    progress = _worker(app, _ses_mailer(ses_fake)).run(until_idle=True)
    assert progress.unknown == 1 and progress.sent == len(active) - 1
    row = db_session.scalar(
        sa.select(Delivery).where(Delivery.subscriber_id == active[0].subscriber_id)
    )
    assert row.status is DeliveryStatus.UNKNOWN and row.ses_message_id is None
    db_session.commit()
    (taken,) = [m for m in ses_fake.accepted if m.recipients == [address]]

    # SES publishes the Send event with our tags: the ledger id finds the row.
    event = ses_event("Send", address, message_id=taken.message_id, tags=taken.tags)
    body = json.dumps(notification(sns.signer, event))
    response = client.post("/webhooks/ses", data=body, content_type="text/plain; charset=UTF-8")
    assert response.status_code == 200, response.text
    db_session.expire_all()
    row = db_session.get(Delivery, row.id)
    assert row.status is DeliveryStatus.SENT and row.ses_message_id == taken.message_id
    report = sending.issue_report(db_session, issue.id)
    assert report.unknown == [] and report.counts[DeliveryStatus.SENT] == len(active)
    db_session.commit()


class _Hooked:
    """Wraps a mailer: runs a hook before the n-th send, or raises errors from a script."""

    name = "hooked"

    def __init__(self, inner, before=None, errors=None):
        self.inner = inner
        self.before = before or {}
        self.errors = list(errors or [])
        self.calls = 0

    def send(self, message):
        self.calls += 1
        if self.calls in self.before:
            self.before[self.calls]()
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error
        return self.inner.send(message)


def test_reader_who_leaves_mid_send_gets_nothing_more(app, db_session, weekly, outbox):
    mailing_list, active = weekly
    issue = _start(app, db_session, mailing_list)
    database = app.extensions["newsletter.db"]
    ids = sorted(s.id for s in active)
    leaver, suppressed = ids[-1], ids[-2]

    def leave():
        with database.transaction() as session:
            session.get(Subscription, leaver).status = SubscriptionStatus.UNSUBSCRIBED
            email = session.get(Subscription, suppressed).subscriber.email
            session.add(Suppression(email=email, reason=SuppressionReason.COMPLAINT))

    mailer = _Hooked(outbox, before={1: leave})
    settings = WorkerSettings(concurrency=1, batch_size=100, lease=30)
    progress = _worker(app, mailer, settings=settings).run(until_idle=True)
    assert progress.sent == 10 and progress.suppressed == 2
    sent_to = {m.recipient for m in outbox.messages}
    by_id = {s.id: s.subscriber for s in active}
    assert by_id[leaver].display_email not in sent_to
    assert by_id[suppressed].display_email not in sent_to
    rows = {
        r.subscription_id: r
        for r in db_session.scalars(sa.select(Delivery).where(Delivery.issue_id == issue.id))
    }
    assert rows[leaver].status is DeliveryStatus.SUPPRESSED
    assert rows[leaver].error == "reader is unsubscribed"
    assert rows[suppressed].error == "on the suppression list (complaint)"


def test_consecutive_errors_pause_and_resume_loses_nobody(app, db_session, weekly, outbox):
    mailing_list, active = weekly
    issue = _start(app, db_session, mailing_list)
    rejected = mail.RecipientRejectedError("MessageRejected: Email address is not verified.")
    mailer = _Hooked(outbox, errors=[None, None] + [rejected] * 3)
    settings = WorkerSettings(concurrency=1, batch_size=100, lease=30, max_consecutive_errors=3)
    progress = _worker(app, mailer, settings=settings).run(until_idle=True)
    db_session.refresh(issue)
    assert issue.status is IssueStatus.PAUSED
    assert "3 messages in a row" in issue.paused_reason
    assert "not verified" in issue.paused_reason
    assert progress.sent == 2
    assert progress.failed == 0  # the streak's rows went back to the queue (it said 1)
    statuses = _statuses(db_session, issue.id)
    assert sum(s is DeliveryStatus.SENT for s in statuses.values()) == 2
    assert sum(s is DeliveryStatus.QUEUED for s in statuses.values()) == 10  # none dropped

    sending.resume_issue(db_session, issue.slug)
    db_session.commit()
    _worker(app, outbox, settings=settings).run(until_idle=True)
    db_session.refresh(issue)
    assert issue.status is IssueStatus.SENT
    assert sorted(m.recipient for m in outbox.messages) == sorted(
        s.subscriber.display_email for s in active
    )


@pytest.mark.parametrize(
    ("error", "resumes_by_itself"),
    [
        (mail.AccountPausedError("SendingPausedException: paused"), False),
        (mail.QuotaExceededError("LimitExceededException: Daily message quota exceeded."), True),
    ],
)
def test_account_errors_pause_the_send(app, db_session, weekly, outbox, error, resumes_by_itself):
    mailing_list, _ = weekly
    issue = _start(app, db_session, mailing_list)
    mailer = _Hooked(outbox, errors=[None, error])
    settings = WorkerSettings(concurrency=1, batch_size=100, lease=30)
    _worker(app, mailer, settings=settings).run(until_idle=True)
    db_session.refresh(issue)
    assert issue.status is IssueStatus.PAUSED
    assert (issue.resume_at is not None) is resumes_by_itself
    statuses = _statuses(db_session, issue.id)
    assert sum(s is DeliveryStatus.SENT for s in statuses.values()) == 1
    assert sum(s is DeliveryStatus.QUEUED for s in statuses.values()) == 11
    assert not any(s is DeliveryStatus.FAILED for s in statuses.values())


def test_daily_quota_pauses_then_resumes_when_it_frees(app, db_session, weekly, outbox):
    mailing_list, _ = weekly
    issue = _start(app, db_session, mailing_list)
    quota = AccountQuota(max_send_rate=1000, max_24_hour_send=5, sent_last_24_hours=0)
    source = FixedQuotaSource(quota)
    pace = PaceSettings(max_rate=500, quota=quota)
    _worker(app, outbox, pace, quota_source=source).run(until_idle=True)
    db_session.refresh(issue)
    assert len(outbox.messages) == 5
    assert issue.status is IssueStatus.PAUSED and issue.resume_at is not None

    # A day later the quota has room again and the pause has run out.
    source.quota = AccountQuota(max_send_rate=1000, max_24_hour_send=100, sent_last_24_hours=5)
    issue.resume_at = sending.clock.now()
    db_session.commit()
    pace = PaceSettings(max_rate=500, quota=source.read())
    _worker(app, outbox, pace, quota_source=source).run(until_idle=True)
    db_session.refresh(issue)
    assert issue.status is IssueStatus.SENT
    assert len(outbox.messages) == 12


def test_rows_of_a_dead_worker_become_unknown_and_retry_only_on_request(
    app, db_session, weekly, outbox, runner
):
    mailing_list, active = weekly
    issue = _start(app, db_session, mailing_list)
    # A worker that died (its process is gone) with two rows in flight and three claimed.
    dead = Worker(
        id="gone:999999:x",
        hostname=socket.gethostname(),
        pid=2**22 + 12345,
        concurrency=2,
        status=WorkerStatus.RUNNING,
    )
    db_session.add(dead)
    rows = db_session.scalars(
        sa.select(Delivery).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
    ).all()
    for row in rows[:2]:
        row.status, row.claimed_by = DeliveryStatus.SENDING, dead.id
    for row in rows[2:5]:
        row.claimed_by = dead.id
    in_flight = [(row.subscriber_id, row.subscriber.display_email) for row in rows[:2]]
    slug, issue_id = issue.slug, issue.id
    db_session.commit()

    _worker(app, outbox).run(until_idle=True)
    assert len(outbox.messages) == 10  # the claimed-but-unstarted three were sent
    statuses = _statuses(db_session, issue_id)
    assert [statuses[sid] for sid, _ in in_flight] == [DeliveryStatus.UNKNOWN] * 2

    result = runner("status", slug)
    assert result.exit_code == 0, result.output
    assert "unknown: 2" in result.output
    for _, address in in_flight:
        assert address in result.output

    result = runner("send", "--retry-unknown", str(issue_id))
    assert result.exit_code == 0, result.output
    assert len(outbox.messages) == 12
    assert len({m.recipient for m in outbox.messages}) == 12


def test_status_of_unknown_issue_fails(runner):
    result = runner("status", "no-such-issue")
    assert result.exit_code == 1
    assert "There is no issue 'no-such-issue'" in result.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ses_enforcing_its_rate_slows_the_shared_rate(app, db_session, weekly, ses_fake):
    mailing_list, active = weekly
    ses_fake.max_rate = 4  # SES allows 4 a second; we were told 40
    issue = _start(app, db_session, mailing_list)
    worker = _worker(app, _ses_mailer(ses_fake), PaceSettings(max_rate=40, quota=None))
    progress = worker.run(until_idle=True)
    received = ses_fake.recipients()
    assert sorted(received) == sorted(s.subscriber.display_email for s in active)
    assert progress.throttled >= 1 and ses_fake.throttled == progress.throttled
    pace = db_session.get(SendPace, "ses")
    assert pace.rate < pace.max_rate == 40  # slowed down; it comes back 10% every 2 s
    assert _statuses(db_session, issue.id) == {s.subscriber_id: DeliveryStatus.SENT for s in active}
