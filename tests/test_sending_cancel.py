"""Cancel a send, retry its failed rows, retry its unknown rows: core, CLI and console."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import mail
from newsletter import progress
from newsletter import sending
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.pacing import PaceSettings
from tests.conftest import csrf_token_from

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"


@pytest.fixture
def issue(app, db_session, make_list, make_subscriber):
    """An issue queued for 12 readers of the list "weekly"."""
    mailing_list = make_list(slug="weekly")
    for _ in range(12):
        make_subscriber(mailing_list)
    plan = sending.plan_send(db_session, ISSUE_FILE, "weekly", base_url=app.config["BASE_URL"])
    issue = sending.start_send(db_session, plan)
    db_session.commit()
    return issue


def _run(app, mailer, concurrency=1):
    settings = sending.WorkerSettings(concurrency=concurrency, batch_size=100, lease=30)
    worker = sending.DeliveryWorker(
        app.extensions["newsletter.db"],
        mailer,
        app.config,
        PaceSettings(max_rate=None, quota=None),
        settings=settings,
    )
    return worker.run(until_idle=True)


def _statuses(db_session, issue_id):
    rows = db_session.execute(
        sa.select(Delivery.status, sa.func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ).all()
    db_session.commit()
    return dict(rows)


def _issue_status(db_session, issue_id):
    status = db_session.scalar(sa.select(Issue.status).where(Issue.id == issue_id))
    db_session.commit()
    return status


class _Script(mail.MemoryMailer):
    """Sends; runs `hook` before the n-th call; raises the scripted errors for addresses."""

    def __init__(self, hook_at=None, hook=None, errors=None):
        super().__init__()
        self.hook_at, self.hook, self.errors, self.calls = hook_at, hook, errors or {}, 0

    def send(self, message):
        self.calls += 1
        if self.calls == self.hook_at:
            self.hook()
        error = self.errors.pop(self.calls, None) or self.errors.pop(message.recipient, None)
        if error is not None:
            raise error
        return super().send(message)


def test_cancel_mid_send_stops_claims_and_records_the_rest_cancelled(app, db_session, issue):
    database = app.extensions["newsletter.db"]

    def cancel():
        with database.transaction() as session:
            _, count = sending.cancel_send(session, issue.id)
            assert count == 12 - 3  # the row in flight is `sending`, not queued

    mailer = _Script(hook_at=3, hook=cancel)
    progress_ = _run(app, mailer)
    assert progress_.sent == 3 and mailer.calls == 3  # the call under way finished; no other
    assert _statuses(db_session, issue.id) == {
        DeliveryStatus.SENT: 3,
        DeliveryStatus.CANCELLED: 9,
    }
    assert _issue_status(db_session, issue.id) is IssueStatus.CANCELLED
    figures = progress.issue_figures(db_session, issue.id)
    assert figures.cancelled == 9 and figures.done == 12
    assert figures.as_dict()["counts"]["cancelled"] == 9
    db_session.commit()
    # A later worker sends nothing for it.
    assert _run(app, mail.MemoryMailer()).sent == 0


def test_rows_that_come_back_after_a_cancel_are_cancelled_too(app, db_session, issue):
    """A message throttled after the cancel goes back to the queue: it is not sent either."""
    database = app.extensions["newsletter.db"]

    def cancel():
        with database.transaction() as session:
            sending.cancel_send(session, issue.id)

    throttle = mail.ThrottledError("TooManyRequestsException: Maximum sending rate exceeded.")
    mailer = _Script(hook_at=1, hook=cancel, errors={1: throttle})
    assert _run(app, mailer).sent == 0
    assert _statuses(db_session, issue.id) == {DeliveryStatus.CANCELLED: 12}


def test_only_open_sends_can_be_cancelled(app, db_session, issue):
    _run(app, mail.MemoryMailer(), concurrency=4)
    with pytest.raises(sending.SendError, match="is sent: only a scheduled, sending or paused"):
        sending.cancel_send(db_session, issue.id)
    db_session.rollback()


def test_retry_failed_sends_the_failed_rows_again(app, db_session, issue):
    rows = db_session.scalars(
        sa.select(Delivery).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
    ).all()
    refused = [row.subscriber.display_email for row in rows[:2]]
    db_session.commit()
    reject = mail.RecipientRejectedError("MessageRejected: Email address is not verified.")
    mailer = _Script(errors={address: reject for address in refused})
    assert _run(app, mailer).failed == 2
    assert _issue_status(db_session, issue.id) is IssueStatus.SENT

    issue_row, count = sending.retry_failed(db_session, issue.slug)
    assert count == 2 and issue_row.status is IssueStatus.SENDING
    db_session.commit()
    attempts = db_session.scalars(
        sa.select(Delivery.attempts).where(Delivery.status == DeliveryStatus.QUEUED)
    ).all()
    assert attempts == [0, 0]
    db_session.commit()
    assert _run(app, mailer).sent == 2
    assert _statuses(db_session, issue.id) == {DeliveryStatus.SENT: 12}
    recipients = [m.recipient for m in mailer.messages]
    assert len(recipients) == len(set(recipients)) == 12


def test_a_cancelled_send_is_not_retried(app, db_session, issue):
    sending.cancel_send(db_session, issue.id)
    db_session.commit()
    for retry in (sending.retry_failed, sending.retry_unknown):
        with pytest.raises(sending.SendError, match="was cancelled"):
            retry(db_session, issue.id)
        db_session.rollback()


def test_cli_cancel_and_retry_failed(runner, app, db_session, issue):
    result = runner("send", "--cancel", str(issue.id), "--retry-failed", str(issue.id))
    assert result.exit_code == 2 and "one of --cancel" in result.output
    result = runner("send", "--cancel", issue.slug)
    assert result.exit_code == 0, result.output
    assert "12 readers not yet sent to get nothing" in result.output
    assert _statuses(db_session, issue.id) == {DeliveryStatus.CANCELLED: 12}
    result = runner("send", "--cancel", issue.slug)
    assert result.exit_code == 1 and "is cancelled: only a scheduled" in result.output
    assert "Traceback" not in result.output
    result = runner("send", "--retry-failed", issue.slug)
    assert result.exit_code == 1 and "was cancelled" in result.output
    result = runner("status", str(issue.id))
    assert result.exit_code == 0, result.output
    assert "cancelled" in result.output


def test_console_cancel_and_retry(admin_client, app, db_session, issue):
    # Paused (by a quota, say): the console does not deliver it in-process meanwhile, so
    # the figures below stay put.
    db_session.execute(
        sa.update(Issue).where(Issue.id == issue.id).values(status=IssueStatus.PAUSED)
    )
    db_session.commit()
    page = admin_client.get(f"/admin/issues/{issue.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Cancel the send" in html
    token = csrf_token_from(html)
    # Unknown rows (a dropped connection): retried only when the editor accepts copies.
    rows = db_session.scalars(
        sa.select(Delivery).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
    ).all()
    for row in rows[:2]:
        row.status = DeliveryStatus.UNKNOWN
    db_session.commit()
    html = admin_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "some of these readers may get a second copy" in html
    response = admin_client.post(
        f"/admin/issues/{issue.id}/retry", data={"which": "unknown", "csrf_token": token}
    )
    assert response.status_code == 302
    assert _statuses(db_session, issue.id)[DeliveryStatus.UNKNOWN] == 2  # nothing queued
    page = admin_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "Tick the box to accept" in page

    response = admin_client.post(f"/admin/issues/{issue.id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Cancelled: 10 readers not yet sent to get nothing." in page
    assert 'data-count="cancelled">10<' in page
    assert "Cancel the send" not in page
    assert _issue_status(db_session, issue.id) is IssueStatus.CANCELLED
    data = admin_client.get(f"/admin/issues/{issue.id}.json").get_json()
    assert data["counts"]["cancelled"] == 10 and data["status"] == "cancelled"
    response = admin_client.post(
        f"/admin/issues/{issue.id}/retry",
        data={"which": "unknown", "accept_second_copy": "1", "csrf_token": token},
    )
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "was cancelled" in page
    assert (
        admin_client.post(
            f"/admin/issues/{issue.id}/retry", data={"which": "all", "csrf_token": token}
        ).status_code
        == 400
    )


def test_console_retry_unknown_with_consent(admin_client, app, db_session, issue, outbox):
    rows = db_session.scalars(
        sa.select(Delivery).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
    ).all()
    for row in rows:
        row.status = DeliveryStatus.SENT if row is not rows[0] else DeliveryStatus.UNKNOWN
    db_session.get(Issue, issue.id).status = IssueStatus.SENT
    db_session.commit()
    token = csrf_token_from(admin_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True))
    response = admin_client.post(
        f"/admin/issues/{issue.id}/retry",
        data={"which": "unknown", "accept_second_copy": "1", "csrf_token": token},
    )
    assert response.status_code == 302
    runner = app.extensions.get("newsletter.background")
    if runner is not None:
        assert runner.wait(30)
    else:
        _run(app, outbox)
    assert _statuses(db_session, issue.id) == {DeliveryStatus.SENT: 12}
    assert [m.recipient for m in outbox.messages] == [rows[0].subscriber.display_email]
