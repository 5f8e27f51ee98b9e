"""Worker processes for real: SIGKILL at random points, and several workers sharing the rate."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import sending
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import MailingList
from newsletter.models import SendPace
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.pacing import AccountQuota
from newsletter.pacing import PaceSettings

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
CONCURRENCY = 4
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def ses_fake():
    from sesfake import SesFake

    fake = SesFake(latency=0.02)
    fake.start()
    yield fake
    fake.stop()


def _populate(app, db_session, readers: int) -> int:
    """A list with `readers` active subscribers and an issue queued for them; its id."""
    mailing_list = MailingList(slug="weekly", name="o11y weekly", from_address="news@example.com")
    db_session.add(mailing_list)
    db_session.flush()
    db_session.execute(
        sa.insert(Subscriber),
        [
            {"email": f"r{n}@example.com", "display_email": f"r{n}@example.com", "name": None}
            for n in range(readers)
        ],
    )
    ids = db_session.scalars(sa.select(Subscriber.id)).all()
    db_session.execute(
        sa.insert(Subscription),
        [
            {
                "subscriber_id": sid,
                "list_id": mailing_list.id,
                "status": SubscriptionStatus.ACTIVE,
                "source": "import",
            }
            for sid in ids
        ],
    )
    plan = sending.plan_send(db_session, ISSUE_FILE, "weekly", base_url=app.config["BASE_URL"])
    issue_id = sending.start_send(db_session, plan).id
    db_session.commit()
    return issue_id


def _worker_process(
    app,
    fake,
    rate: float,
    *args: str,
    log: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    env = {
        **os.environ,
        "NEWSLETTER_ENV": "production",
        "NEWSLETTER_DATABASE_URL": app.config["DATABASE_URL"],
        "NEWSLETTER_SECRET_KEY": app.config["SECRET_KEY"],
        "NEWSLETTER_BASE_URL": app.config["BASE_URL"],
        "NEWSLETTER_MAIL_BACKEND": "ses",
        "NEWSLETTER_SES_ENDPOINT_URL": fake.url,
        "NEWSLETTER_SES_REGION": "us-east-1",
        "NEWSLETTER_SEND_RATE": str(rate),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **(extra_env or {}),
    }
    command = [NEWSLETTER, "worker", "--concurrency", str(CONCURRENCY), *args]
    output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(command, env=env, stdout=output, stderr=output)


def _counts(db_session, issue_id):
    counts = dict(
        db_session.execute(
            sa.select(Delivery.status, sa.func.count())
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.status)
        ).all()
    )
    db_session.commit()
    return counts


def test_sigkill_at_random_points_then_resume(app, db_session, ses_fake):
    readers = 240
    issue_id = _populate(app, db_session, readers)
    rng = random.Random(20261204)  # the same kill points in every run
    kills = 3
    for _ in range(kills):
        before = len(ses_fake.accepted)
        process = _worker_process(app, ses_fake, 400)
        # Kill it mid-send: after a random number of messages went out.
        target = before + rng.randint(5, 50)
        deadline = time.monotonic() + 20
        while len(ses_fake.accepted) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        in_flight = _counts(db_session, issue_id).get(DeliveryStatus.SENDING, 0)
        assert in_flight <= CONCURRENCY

    process = _worker_process(app, ses_fake, 400, "--once")
    assert process.wait(timeout=60) == 0

    received = ses_fake.recipients()
    assert len(received) == len(set(received)), "a reader got a second copy"
    counts = _counts(db_session, issue_id)
    unknown = counts.get(DeliveryStatus.UNKNOWN, 0)
    assert set(counts) <= {DeliveryStatus.SENT, DeliveryStatus.UNKNOWN}, counts
    assert counts[DeliveryStatus.SENT] + unknown == readers  # nobody skipped
    assert unknown <= CONCURRENCY * kills
    rows = db_session.execute(
        sa.select(Delivery.status, Delivery.ses_message_id, Subscriber.email).join(Subscriber)
    ).all()
    accepted = {m.message_id: m.recipients[0] for m in ses_fake.accepted}
    for status, message_id, address in rows:
        if status is DeliveryStatus.SENT:
            assert accepted[message_id] == address
    # Every message SES took is on the ledger as sent, or listed as unknown.
    unknown_addresses = {a for s, _, a in rows if s is DeliveryStatus.UNKNOWN}
    sent_ids = {m for s, m, _ in rows if s is DeliveryStatus.SENT}
    for message_id, address in accepted.items():
        assert message_id in sent_ids or address in unknown_addresses
    issue = db_session.get(Issue, issue_id)
    assert issue.status is IssueStatus.SENT
    db_session.commit()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_workers_share_the_rate_and_never_claim_the_same_row(app, db_session, ses_fake):
    readers, rate = 180, 60.0
    issue_id = _populate(app, db_session, readers)
    ARTIFACTS.mkdir(exist_ok=True)
    logs = [ARTIFACTS / f"sending-worker{n}.log" for n in range(3)]
    for log in logs:
        log.unlink(missing_ok=True)
    processes = [_worker_process(app, ses_fake, rate, "--once", log=log) for log in logs]
    for process, log in zip(processes, logs, strict=True):
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]

    received = ses_fake.recipients()
    assert sorted(received) == sorted(f"r{n}@example.com" for n in range(readers))
    times = sorted(m.at for m in ses_fake.accepted)
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= rate * 1.05, busiest
    # They really shared the work.
    claimed_by = Counter(
        db_session.scalars(sa.select(Delivery.claimed_by).where(Delivery.issue_id == issue_id))
    )
    assert len(claimed_by) >= 2, claimed_by
    db_session.commit()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_claims_skip_rows_locked_by_another_worker(app, db_session, outbox):
    issue_id = _populate(app, db_session, 20)
    database = app.extensions["newsletter.db"]
    with database.transaction() as other:
        locked = other.scalars(
            sa.select(Delivery.id)
            .where(Delivery.issue_id == issue_id)
            .order_by(Delivery.id)
            .limit(8)
            .with_for_update(skip_locked=True)
        ).all()
        worker = sending.DeliveryWorker(
            database, outbox, app.config, PaceSettings(max_rate=None, quota=None)
        )
        worker._claim()
        claimed = {job.delivery_id for job in worker._buffer}
    assert len(claimed) == 12
    assert not claimed & set(locked)


def _marked_sending(app, db_session, outbox, readers):
    """A worker that has marked `readers` rows `sending`, and those jobs."""
    issue_id = _populate(app, db_session, readers)
    database = app.extensions["newsletter.db"]
    worker = sending.DeliveryWorker(
        database, outbox, app.config, PaceSettings(max_rate=None, quota=None)
    )
    worker._register()
    worker._claim()
    due = list(worker._buffer)
    worker._buffer.clear()
    for job in due:
        job.slot = time.time()
    worker.book.busy = len(due)
    ready = worker._tick(due)
    assert _counts(db_session, issue_id) == {DeliveryStatus.SENDING: readers}
    assert worker.book.busy == len(ready) == readers
    return issue_id, worker, ready


def _came_back_unsent(worker, jobs):
    """Their threads found the slots gone (a busy CPU): SES was never called."""
    for job in jobs:
        worker._results.put(sending.Outcome(job))
    worker._collect(0.0)


def _ledger(db_session, issue_id):
    rows = db_session.execute(
        sa.select(Delivery.status, Delivery.claimed_by).where(Delivery.issue_id == issue_id)
    ).all()
    db_session.commit()
    return Counter(rows)


def test_sends_that_come_back_late_when_the_worker_stops_go_back_to_the_queue(
    app, db_session, outbox
):
    issue_id, worker, ready = _marked_sending(app, db_session, outbox, 3)
    _came_back_unsent(worker, ready)
    worker._drain()
    assert _ledger(db_session, issue_id) == {(DeliveryStatus.QUEUED, None): 3}
    assert outbox.messages == []


def test_sends_that_came_back_late_go_back_to_the_queue_when_their_issue_pauses(
    app, db_session, outbox
):
    issue_id, worker, ready = _marked_sending(app, db_session, outbox, 3)
    _came_back_unsent(worker, ready)
    worker._tick([])  # back in line for new slots: `queued` again, and still ours
    assert len(worker._buffer) == 3
    assert _ledger(db_session, issue_id) == {(DeliveryStatus.QUEUED, worker.id): 3}
    db_session.execute(
        sa.update(Issue).where(Issue.id == issue_id).values(status=IssueStatus.PAUSED)
    )
    db_session.commit()
    due = list(worker._buffer)
    worker._buffer.clear()
    assert worker._tick(due) == []
    assert not worker._buffer
    assert _ledger(db_session, issue_id) == {(DeliveryStatus.QUEUED, None): 3}


def test_slots_a_stopping_worker_never_used_go_back_to_the_daily_quota(app, db_session, outbox):
    quota = AccountQuota(max_send_rate=1000, max_24_hour_send=1000, sent_last_24_hours=0)
    worker = sending.DeliveryWorker(
        app.extensions["newsletter.db"], outbox, app.config, PaceSettings(max_rate=100, quota=quota)
    )
    worker.pacer.setup()

    def used() -> float:
        value = db_session.scalar(sa.select(SendPace.quota_used_since))
        db_session.commit()
        return value

    before = used()
    slots = worker._reserve(7)
    assert len(slots) == 7 and used() == before + 7
    # Five still waiting for a message, two given up late by their threads (a busy CPU).
    worker.book.add(slots[:5])
    worker.book.unused = 2
    worker._drain()
    assert used() == before
    assert not worker.book.held and worker.book.unused == 0


def test_ctrl_c_stops_cleanly_and_a_new_worker_goes_on(app, db_session, ses_fake):
    readers = 150
    issue_id = _populate(app, db_session, readers)
    process = _worker_process(app, ses_fake, 300)
    deadline = time.monotonic() + 20
    while len(ses_fake.accepted) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    counts = _counts(db_session, issue_id)
    # Clean stop: what was in flight was recorded, nothing is left `sending` or `unknown`.
    assert DeliveryStatus.SENDING not in counts and DeliveryStatus.UNKNOWN not in counts
    assert 0 < counts[DeliveryStatus.SENT] < readers
    assert counts[DeliveryStatus.SENT] == len(ses_fake.accepted)

    assert _worker_process(app, ses_fake, 300, "--once").wait(timeout=60) == 0
    received = ses_fake.recipients()
    assert sorted(received) == sorted(f"r{n}@example.com" for n in range(readers))
    assert _counts(db_session, issue_id) == {DeliveryStatus.SENT: readers}


def _wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _check_nothing_twice_nothing_lost(db_session, fake, issue_id, readers):
    received = fake.recipients()
    assert len(received) == len(set(received)), "a reader got a second copy"
    counts = _counts(db_session, issue_id)
    assert set(counts) <= {DeliveryStatus.SENT, DeliveryStatus.UNKNOWN}, counts
    assert sum(counts.values()) == readers
    rows = db_session.execute(
        sa.select(Delivery.id, Delivery.status, Delivery.ses_message_id).where(
            Delivery.issue_id == issue_id
        )
    ).all()
    db_session.commit()
    by_id = {row.id: row for row in rows}
    for message in fake.accepted:
        # Every message SES took is on its row: `sent` with its MessageId, or `unknown`.
        row = by_id[int(message.tags["delivery"])]
        assert row.status is DeliveryStatus.UNKNOWN or row.ses_message_id == message.message_id
    # Nobody skipped: every row not accepted is unknown (listed for the editor), none sent.
    accepted = {int(m.tags["delivery"]) for m in fake.accepted}
    for row in rows:
        if row.id not in accepted:
            assert row.status is DeliveryStatus.UNKNOWN, row
    return counts


# Two workers at once: PostgreSQL only (with SQLite one worker sends at a time, and a
# process stopped inside a transaction holds the one write lock).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_stopped_past_its_lease_sends_nothing_twice(app, db_session, ses_fake):
    """SIGSTOP a worker mid-send past its lease; another takes over; SIGCONT the first:
    it finds it was declared lost and stops at once. No reader gets two copies."""
    readers, lease = 240, 3
    issue_id = _populate(app, db_session, readers)
    ARTIFACTS.mkdir(exist_ok=True)
    logs = [ARTIFACTS / f"sending-sigstop-{name}.log" for name in ("first", "second")]
    for log in logs:
        log.unlink(missing_ok=True)
    env = {"NEWSLETTER_WORKER_LEASE": str(lease)}
    first = _worker_process(app, ses_fake, 60, log=logs[0], extra_env=env)
    processes = [first]
    try:
        _wait_for(lambda: len(ses_fake.accepted) >= 20)
        first.send_signal(signal.SIGSTOP)
        try:
            time.sleep(lease + 2)  # past its lease, on the database's clock
            stalled_at = len(ses_fake.accepted)
            second = _worker_process(app, ses_fake, 60, "--once", log=logs[1], extra_env=env)
            processes.append(second)
            _wait_for(lambda: len(ses_fake.accepted) >= stalled_at + 30)
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=30) == 1, logs[0].read_text()[-3000:]
        assert "declared it lost" in logs[0].read_text()
        assert "Traceback" not in logs[0].read_text(), logs[0].read_text()[-3000:]
        assert second.wait(timeout=60) == 0, logs[1].read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    counts = _check_nothing_twice_nothing_lost(db_session, ses_fake, issue_id, readers)
    assert counts.get(DeliveryStatus.UNKNOWN, 0) <= CONCURRENCY
    assert db_session.get(Issue, issue_id).status is IssueStatus.SENT
    db_session.commit()


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# Only the wall clock is wrong (a host whose clock is set wrong); timers still run true.
# (CLOCK_MONOTONIC cannot be set on a real host; libfaketime offsetting it too makes every
# timed wait of Python's threads, Event.wait(0.1) included, last the offset: 5 minutes.)
AHEAD = {
    "LD_PRELOAD": LIBFAKETIME,
    "FAKETIME": "+5m",
    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    "FAKETIME_NO_CACHE": "1",
}


def test_a_worker_whose_clock_runs_ahead_changes_nothing(app, db_session, ses_fake, database_url):
    """A worker whose wall clock is five minutes ahead (libfaketime) beside a true one: no
    duplicate, no failure, no worker declared lost, and the shared rate still holds."""
    assert Path(LIBFAKETIME).exists(), "apt-get install faketime libfaketime (.ci/run does)"
    ahead = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env={**os.environ, **AHEAD},
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(ahead.stdout) - time.time() > 250  # that process's clock is 5 minutes ahead
    readers, rate = 180, 60.0
    issue_id = _populate(app, db_session, readers)
    ARTIFACTS.mkdir(exist_ok=True)
    # SQLite allows one worker at a time: there the worker ahead sends alone.
    names = ["ahead"] if database_url.startswith("sqlite") else ["ahead", "true"]
    logs = [ARTIFACTS / f"sending-clock-{name}.log" for name in names]
    for log in logs:
        log.unlink(missing_ok=True)
    processes = [
        _worker_process(
            app, ses_fake, rate, "--once", log=log, extra_env=AHEAD if name == "ahead" else {}
        )
        for name, log in zip(names, logs, strict=True)
    ]
    for process, log in zip(processes, logs, strict=True):
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
        text = log.read_text()
        assert "stops sending now" not in text and "is lost" not in text, text[-3000:]

    counts = _check_nothing_twice_nothing_lost(db_session, ses_fake, issue_id, readers)
    assert counts == {DeliveryStatus.SENT: readers}
    times = sorted(m.at for m in ses_fake.accepted)
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= rate * 1.05, busiest
    if len(names) == 2:
        claimed_by = Counter(
            db_session.scalars(sa.select(Delivery.claimed_by).where(Delivery.issue_id == issue_id))
        )
        assert len(claimed_by) == 2, claimed_by  # both really sent
        db_session.commit()
