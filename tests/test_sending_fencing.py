"""Fencing and recovery, in one process: a worker that lost its rows stops at once, leases
are judged with the database's clock, rows of stopped workers are recovered, and a quota
pause waits for the calls in flight (driven step by step, so nothing depends on timing)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import mail
from newsletter import sending
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import Worker
from newsletter.models import WorkerStatus
from newsletter.pacing import PaceSettings
from newsletter.pacing import QuotaExhausted
from newsletter.sending.ledger import db_now
from newsletter.sending.slots import SlotBook

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
UNLIMITED = PaceSettings(max_rate=None, quota=None)


@pytest.fixture
def issue(app, db_session, make_list, make_subscriber):
    """An issue queued for 12 readers."""
    mailing_list = make_list()
    for _ in range(12):
        make_subscriber(mailing_list)
    plan = sending.plan_send(
        db_session, ISSUE_FILE, mailing_list.slug, base_url=app.config["BASE_URL"]
    )
    issue = sending.start_send(db_session, plan)
    db_session.commit()
    return issue


def _worker(app, mailer, concurrency=4, batch_size=12):
    settings = sending.WorkerSettings(concurrency=concurrency, batch_size=batch_size, lease=30)
    return sending.DeliveryWorker(
        app.extensions["newsletter.db"], mailer, app.config, UNLIMITED, settings=settings
    )


def _ledger(db_session, issue_id):
    rows = db_session.execute(
        sa.select(Delivery.status, Delivery.claimed_by).where(Delivery.issue_id == issue_id)
    ).all()
    db_session.commit()
    counts: dict = {}
    for status, claimed_by in rows:
        counts[status, claimed_by] = counts.get((status, claimed_by), 0) + 1
    return counts


def _statuses(db_session, issue_id):
    counts: dict = {}
    for (status, _), count in _ledger(db_session, issue_id).items():
        counts[status] = counts.get(status, 0) + count
    return counts


def _issue(db_session, issue_id):
    row = db_session.execute(
        sa.select(Issue.status, Issue.resume_at).where(Issue.id == issue_id)
    ).one()
    db_session.commit()
    return tuple(row)


def _declare_lost(database, worker_id):
    """What another worker does when this one's heartbeat is older than the lease."""
    with database.transaction() as session:
        session.execute(
            sa.update(Worker)
            .where(Worker.id == worker_id)
            .values(heartbeat_at=db_now(session) - timedelta(hours=1), hostname="elsewhere")
        )
        sending.recover_lost_workers(session, lease=30)


class _LostOnCall(mail.MemoryMailer):
    """Sends; on the n-th call, the worker is declared lost by a peer first."""

    def __init__(self, database, worker_id_box, call):
        super().__init__()
        self.database, self.box, self.call, self.calls = database, worker_id_box, call, 0

    def send(self, message):
        self.calls += 1
        if self.calls == self.call:
            _declare_lost(self.database, self.box[0])
        return super().send(message)


def test_a_worker_declared_lost_stops_sending_at_once(app, db_session, issue, caplog):
    database = app.extensions["newsletter.db"]
    box = []
    mailer = _LostOnCall(database, box, call=3)
    worker = _worker(app, mailer, concurrency=1)
    box.append(worker.id)
    progress = worker.run(until_idle=True)

    # The call under way when it was declared lost went out and settled its row; no other.
    assert mailer.calls == 3 and progress.sent == 3
    assert "declared it lost" in progress.lost
    assert "stops sending now" in caplog.text
    assert db_session.get(Worker, worker.id).status is WorkerStatus.LOST
    db_session.commit()
    assert _statuses(db_session, issue.id) == {DeliveryStatus.SENT: 3, DeliveryStatus.QUEUED: 9}

    # The next worker sends the rest; every reader got the issue once.
    other = mail.MemoryMailer()
    assert _worker(app, other).run(until_idle=True).sent == 9
    recipients = [m.recipient for m in mailer.messages + other.messages]
    assert len(recipients) == len(set(recipients)) == 12
    assert _statuses(db_session, issue.id) == {DeliveryStatus.SENT: 12}


def test_a_lost_worker_whose_rows_were_taken_writes_nothing_on_them(app, db_session, issue):
    database = app.extensions["newsletter.db"]
    worker = _worker(app, mail.MemoryMailer())
    worker._register()
    worker._claim()
    assert len(worker._buffer) == 12
    _declare_lost(database, worker.id)
    # Another worker claims what the lost one had in hand.
    peer = _worker(app, mail.MemoryMailer())
    peer._register()
    peer._claim()
    assert len(peer._buffer) == 12

    due = worker._due_jobs()
    assert due and worker._tick(due) == []  # nothing marked, nothing handed to a thread
    assert worker.progress.lost is not None and worker.stopping
    assert _ledger(db_session, issue.id) == {(DeliveryStatus.QUEUED, peer.id): 12}


def _worker_row(db_session, heartbeat_age: timedelta) -> str:
    now = db_now(db_session)
    worker = Worker(
        id=f"elsewhere:1:{heartbeat_age.total_seconds():g}",
        hostname="elsewhere",
        pid=os.getpid(),
        concurrency=4,
        status=WorkerStatus.RUNNING,
        heartbeat_at=now - heartbeat_age,
    )
    db_session.add(worker)
    db_session.commit()
    return worker.id


@pytest.mark.parametrize("host_clock_off", [timedelta(minutes=5), timedelta(hours=-3)])
def test_leases_are_judged_with_the_database_clock(app, db_session, clock, host_clock_off):
    fresh = _worker_row(db_session, timedelta(seconds=1))
    stale = _worker_row(db_session, timedelta(minutes=10))
    # This host's clock is minutes (or hours) off: it changes nothing.
    clock.current = db_now(db_session) + host_clock_off
    db_session.commit()
    sending.recover_lost_workers(db_session, lease=30)
    db_session.commit()
    assert db_session.get(Worker, fresh).status is WorkerStatus.RUNNING
    assert db_session.get(Worker, stale).status is WorkerStatus.LOST
    assert sending.live_worker(db_session, lease=30).id == fresh
    db_session.commit()


def test_heartbeats_are_written_with_the_database_clock(app, db_session, issue, clock):
    clock.current = db_now(db_session) + timedelta(minutes=7)  # this host runs ahead
    db_session.commit()
    worker = _worker(app, mail.MemoryMailer())
    worker._register()
    row = db_session.get(Worker, worker.id)
    assert abs(row.heartbeat_at - db_now(db_session)) < timedelta(seconds=5)
    db_session.commit()
    # Its retry times and claims are on the database's clock too.
    assert abs(worker._now() - db_now(db_session)) < timedelta(seconds=5)
    db_session.commit()


def test_rows_left_sending_by_any_worker_no_longer_alive_are_recovered(app, db_session, issue):
    rows = db_session.scalars(
        sa.select(Delivery).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
    ).all()
    stopped = Worker(
        id="elsewhere:2:stopped",
        hostname="elsewhere",
        pid=1,
        concurrency=4,
        status=WorkerStatus.STOPPED,  # stopped with a drain timeout: two calls never returned
    )
    db_session.add(stopped)
    for row in rows[:2]:
        row.status, row.claimed_by = DeliveryStatus.SENDING, stopped.id
    # A worker whose record is gone altogether (its registration was rolled back).
    rows[2].status, rows[2].claimed_by = DeliveryStatus.SENDING, "vanished:3:x"
    db_session.commit()

    outbox = mail.MemoryMailer()
    progress = _worker(app, outbox).run(until_idle=True)
    assert progress.sent == 9
    statuses = _statuses(db_session, issue.id)
    assert statuses == {DeliveryStatus.SENT: 9, DeliveryStatus.UNKNOWN: 3}
    unknown = db_session.scalars(
        sa.select(Delivery.error).where(Delivery.status == DeliveryStatus.UNKNOWN)
    ).all()
    assert all("may or may not have accepted" in error for error in unknown)
    db_session.commit()


class _QuotaPacer:
    """A daily quota of `left` slots, all due now (the pace does not matter here)."""

    def __init__(self, left, now):
        self.left, self.now, self.rate = left, now, None

    def reserve(self, wanted):
        if self.left <= 0:
            raise QuotaExhausted("The SES daily sending quota is used up.")
        count = min(wanted, self.left)
        self.left -= count
        return [self.now()] * count

    def give_back(self, unused):
        self.left += unused

    def batch(self):
        return 0  # one slot per free thread, not 0.1 s worth at once

    def throttled(self, count=1):
        return None


def _come_back(worker, jobs, *, called):
    for job in jobs:
        outcome = sending.Outcome(job, called=called)
        if called:
            outcome.message_id = f"ses-{job.delivery_id}"
        worker._results.put(outcome)
    worker._collect(0.0)


def test_a_quota_pause_waits_for_the_calls_in_flight(app, db_session, issue):
    """Quota 5, calls coming back unsent (their slots had passed, a busy CPU) while the
    quota runs out: the worker gives their slots back to the quota, does not pause while
    calls are in flight, never has more than 4 rows `sending`, and sends exactly five."""
    now = [1000.0]
    worker = _worker(app, mail.MemoryMailer())
    worker._register()
    worker.pacer = _QuotaPacer(5, lambda: now[0])
    worker.book = SlotBook(4, now=lambda: now[0])

    def sending_rows():
        return _statuses(db_session, issue.id).get(DeliveryStatus.SENDING, 0)

    first = worker._tick(worker._due_jobs())
    assert len(first) == 4 and sending_rows() == 4
    _come_back(worker, first[:2], called=False)
    worker._tick([])
    assert sending_rows() == 2  # late rows are `queued` again, never `sending` in a buffer
    second = worker._tick(worker._due_jobs())
    assert len(second) == 1 and sending_rows() == 3  # the quota's last slot
    third = worker._tick(worker._due_jobs())  # used up: the two unused slots go back
    assert len(third) == 1 and sending_rows() == 4
    assert worker._due_jobs() == []  # no in-flight slot free
    _come_back(worker, first[2:] + second, called=True)
    worker._tick([])
    fourth = worker._tick(worker._due_jobs())  # the other slot given back
    assert len(fourth) == 1 and sending_rows() == 2
    assert worker._due_jobs() == []  # quota used up, two calls in flight: wait, no pause
    assert _issue(db_session, issue.id) == (IssueStatus.SENDING, None)

    _come_back(worker, third, called=True)
    _come_back(worker, fourth, called=False)  # its slot goes back to the quota
    fifth = worker._tick(worker._due_jobs())
    assert len(fifth) == 1
    _come_back(worker, fifth, called=True)
    worker._tick([])
    assert worker._due_jobs() == []  # nothing in hand, quota used up: now it pauses
    status, resume_at = _issue(db_session, issue.id)
    assert status is IssueStatus.PAUSED and resume_at is not None
    assert _ledger(db_session, issue.id) == {
        (DeliveryStatus.SENT, worker.id): 5,
        (DeliveryStatus.QUEUED, None): 7,
    }


@pytest.mark.parametrize(
    "error",
    [
        # What PostgreSQL says to a worker that stalled inside a transaction past the lease.
        sa.exc.InternalError(
            "SELECT", {}, Exception("terminating connection due to idle-in-transaction timeout")
        ),
        sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection")),
        RuntimeError("a bug"),
    ],
)
def test_a_failed_round_loses_nothing_and_doubles_nothing(app, db_session, issue, error):
    worker = _worker(app, mail.MemoryMailer())
    worker._register()
    first = worker._tick(worker._due_jobs())
    assert len(first) == 4
    _come_back(worker, first[:2], called=True)
    due = worker._due_jobs()
    assert len(due) == 2 and worker.book.busy == 4
    real = worker._check_and_mark

    def fail(session, jobs):
        real(session, jobs)  # wrote, then the transaction fails: all rolled back
        raise error

    worker._check_and_mark = fail
    if isinstance(error, RuntimeError):
        with pytest.raises(RuntimeError):
            worker._tick(due)
    else:
        assert worker._tick(due) == []
    # Nothing written, nothing lost: the outcomes wait, the jobs are back in hand, once.
    assert len(worker._pending) == 2 and worker.book.busy == 2
    assert worker.progress.sent == 0  # counted only once written
    ids = [job.delivery_id for job in worker._buffer]
    assert len(ids) == len(set(ids)) == 12 - 4
    assert _statuses(db_session, issue.id) == {DeliveryStatus.SENDING: 4, DeliveryStatus.QUEUED: 8}

    worker._check_and_mark = real
    again = worker._tick(worker._due_jobs())
    assert len(again) == 2 and worker.book.busy == 4
    assert worker.progress.sent == 2  # the round written again counts once
    assert _statuses(db_session, issue.id) == {
        DeliveryStatus.SENT: 2,
        DeliveryStatus.SENDING: 4,
        DeliveryStatus.QUEUED: 6,
    }
