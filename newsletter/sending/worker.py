"""The worker loop: claims ledger rows, sends them with a pool of threads, records them."""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import logs
from newsletter import metrics
from newsletter.db import Database
from newsletter.mail import AccountPausedError
from newsletter.mail import Mailer
from newsletter.mail import QuotaExceededError
from newsletter.mail import RecipientRejectedError
from newsletter.mail import SesMailer
from newsletter.mail import ThrottledError
from newsletter.mail import TransientError
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import Worker
from newsletter.models import WorkerStatus
from newsletter.pacing import LatencyGauge
from newsletter.pacing import Pacer
from newsletter.pacing import PaceSettings
from newsletter.pacing import QuotaExhausted
from newsletter.pacing import in_flight_for
from newsletter.sending.ledger import QUOTA_RECHECK
from newsletter.sending.ledger import Job
from newsletter.sending.ledger import finish_issues
from newsletter.sending.ledger import new_worker_id
from newsletter.sending.ledger import promote_due_issues
from newsletter.sending.ledger import recover_lost_workers
from newsletter.sending.outcomes import MAX_ATTEMPTS
from newsletter.sending.outcomes import Outcome
from newsletter.sending.outcomes import backoff
from newsletter.sending.plan import WorkerBusy
from newsletter.sending.renderer import IssueRenderer
from newsletter.sending.slots import LATE_SLOT
from newsletter.sending.slots import SLOT_LEAD
from newsletter.sending.slots import STALE_SLOT

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Counts a worker reports as it goes (for the progress bar)."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0
    throttled: int = 0
    paused: dict[int, str] = field(default_factory=dict)
    finished: list[int] = field(default_factory=list)


@dataclass
class WorkerSettings:
    """How a worker runs; defaults come from the configuration."""

    # The most SES calls in flight; the worker keeps fewer, as many as its rate needs
    # at the latency it measures (newsletter.pacing.in_flight_for).
    concurrency: int = 64
    batch_size: int = 200
    lease: float = 30.0
    max_consecutive_errors: int = 10

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> WorkerSettings:
        values = {
            "concurrency": int(config.get("SEND_CONCURRENCY") or 64),
            "lease": float(config.get("WORKER_LEASE") or 30),
            "max_consecutive_errors": int(config.get("SEND_MAX_CONSECUTIVE_ERRORS") or 10),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("batch_size", max(50, values["concurrency"] * 10))
        return cls(**values)


def worker_mailer(mailer: Mailer, config: Mapping[str, Any], concurrency: int) -> Mailer:
    """Return the mailer a worker uses: an SES client with one connection per thread."""
    if isinstance(mailer, SesMailer):
        return SesMailer(
            region=config.get("SES_REGION"),
            endpoint_url=config.get("SES_ENDPOINT_URL"),
            configuration_set=config.get("SES_CONFIGURATION_SET"),
            max_pool_connections=max(concurrency, 10),
            timeout=float(config.get("SES_TIMEOUT") or 15),
        )
    return mailer


class DeliveryWorker:
    """Claims ledger rows in batches and sends them with a pool of threads, at the shared pace.

    The main thread owns the database; the threads only render and call SES. Each loop
    round writes the finished outcomes and marks the next messages `sending` in one
    transaction, so at most `concurrency` rows are ever `sending` for this worker: that
    bounds how many can become `unknown` if the process is killed.
    """

    def __init__(
        self,
        database: Database,
        mailer: Mailer,
        config: Mapping[str, Any],
        pace: PaceSettings,
        *,
        settings: WorkerSettings | None = None,
        quota_source: Any = None,
        issue_id: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        # Its own engine: the loop commits hundreds of times a second, and a liveness
        # ping on every pool checkout would double the round trips. A dropped connection
        # fails one round, which is retried (see _tick).
        self.database = Database(database.url, pool_pre_ping=False, pool_size=2)
        self.mailer = mailer
        self.config = config
        self.settings = settings or WorkerSettings.from_config(config)
        self.pacer = Pacer(self.database, pace, quota_source)
        self.issue_id = issue_id
        self.on_progress = on_progress
        self.id = new_worker_id()
        self.progress = Progress()
        self._stop = threading.Event()
        self._results: queue.Queue[Outcome] = queue.Queue()
        self._buffer: deque[Job] = deque()
        self._slots: deque[float] = deque()
        self._pending: list[Outcome] = []
        self._in_flight = 0
        self._renderers: dict[int, IssueRenderer] = {}
        self._streaks: dict[int, list[int]] = {}
        self._last_heartbeat = 0.0
        self._last_housekeeping = 0.0
        self._unused_slots = 0
        self._throttles = 0
        # SES call times, measured by the threads, read by the main thread only.
        self.latency = LatencyGauge()

    # -- lifecycle --

    def stop(self) -> None:
        """Ask the worker to finish what is in flight and stop (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once asked to stop (Ctrl-C, SIGTERM or stop())."""
        return self._stop.is_set()

    def _register(self) -> None:
        with self.database.transaction() as session:
            recover_lost_workers(session, lease=self.settings.lease)
            if self.database.is_sqlite:
                other = session.scalar(
                    sa.select(Worker).where(Worker.status == WorkerStatus.RUNNING).limit(1)
                )
                if other is not None:
                    raise WorkerBusy(
                        f"Another worker is running (process {other.pid} on {other.hostname}). "
                        "With SQLite only one worker can send; use PostgreSQL for more."
                    )
            session.add(
                Worker(
                    id=self.id,
                    hostname=socket.gethostname()[:255],
                    pid=os.getpid(),
                    concurrency=self.settings.concurrency,
                    status=WorkerStatus.RUNNING,
                )
            )
        self._last_heartbeat = time.monotonic()

    def _unregister(self) -> None:
        with self.database.transaction() as session:
            session.execute(
                sa.update(Delivery)
                .where(Delivery.claimed_by == self.id, Delivery.status == DeliveryStatus.QUEUED)
                .values(claimed_by=None, claimed_at=None)
            )
            session.execute(
                sa.update(Worker)
                .where(Worker.id == self.id)
                .values(status=WorkerStatus.STOPPED, stopped_at=clock.now())
            )

    def run(self, *, until_idle: bool = False) -> Progress:
        """Deliver until stopped (or, with until_idle, until nothing is left to send)."""
        previous = self._install_signal_handlers()
        bound = logs.WORKER_ID.set(self.id)  # on every record logged by this worker
        try:
            self._register()
            self.pacer.setup()
            with ThreadPoolExecutor(
                max_workers=self.settings.concurrency,
                thread_name_prefix="send",
                initializer=functools.partial(logs.bind, worker_id=self.id),
            ) as pool:
                try:
                    self._loop(pool, until_idle)
                finally:
                    self._drain()
            self._unregister()
        finally:
            self.database.dispose()
            self._restore_signal_handlers(previous)
            logs.WORKER_ID.reset(bound)
        return self.progress

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                # A second Ctrl-C: stop at once; in-flight rows become `unknown`.
                raise KeyboardInterrupt
            self.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    # -- the loop --

    def _loop(self, pool: ThreadPoolExecutor, until_idle: bool) -> None:
        while not self._stop.is_set():
            self._collect(self._wait_time())
            since = time.monotonic() - self._last_housekeeping
            looks_idle = not (self._buffer or self._in_flight or self._pending)
            if since >= 1.0 or (looks_idle and since >= 0.1):
                if self._housekeeping() and until_idle:
                    return
            due = self._due_jobs()
            if self._pending or due or self._heartbeat_due():
                for job in self._tick(due):
                    self._in_flight += 1
                    pool.submit(self._send, job)
                self._report()

    def in_flight_limit(self) -> int:
        """How many calls to keep in flight now: the rate in force x measured latency."""
        return in_flight_for(self.pacer.rate, self.latency.value(), self.settings.concurrency)

    def _wait_time(self) -> float:
        if self._pending:
            return 0.0
        if self._in_flight - len(self._pending) >= self.in_flight_limit():
            return 0.25
        if self._buffer and self._slots:
            return min(max(self._slots[0] - SLOT_LEAD - time.time(), 0.0), 0.25)
        if self._buffer:
            return 0.0
        return 0.25 if self._in_flight else 0.05

    def _collect(self, timeout: float) -> None:
        try:
            outcome = (
                self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait()
            )
        except queue.Empty:
            return
        self._pending.append(outcome)
        while True:
            try:
                self._pending.append(self._results.get_nowait())
            except queue.Empty:
                break

    def _heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_heartbeat >= min(self.settings.lease / 4, 5.0)

    def _due_jobs(self) -> list[Job]:
        # Finished outcomes are written in the same transaction that marks the next rows
        # `sending`, so their threads count as free already.
        free = self.in_flight_limit() - self._in_flight + len(self._pending)
        if free <= 0:
            return []
        if len(self._buffer) < free:
            self._claim()
        if not self._buffer:
            return []
        wanted = min(free, len(self._buffer)) - len(self._slots)
        if wanted > 0:
            try:
                self._slots.extend(self._reserve(wanted))
            except QuotaExhausted:
                self._pause_buffered_for_quota()
                return []
        now = time.time()
        while self._slots and self._slots[0] < now - STALE_SLOT:
            self._slots.popleft()
            self._unused_slots += 1
        due = []
        while free > 0 and self._buffer and self._slots and self._slots[0] <= now + SLOT_LEAD:
            job = self._buffer.popleft()
            job.slot = self._slots.popleft()
            due.append(job)
            free -= 1
        return due

    def _reserve(self, wanted: int) -> list[float]:
        try:
            return self.pacer.reserve(wanted)
        except QuotaExhausted:
            if not self._unused_slots:
                raise
            # Slots given up late still count against the quota until given back.
            self._give_back_unused()
            return self.pacer.reserve(wanted)

    def _give_back_unused(self, more: int = 0) -> None:
        """Return the slots given up late, and `more` never used, to the daily quota."""
        unused = self._unused_slots + more
        self._unused_slots = 0
        if unused:
            self.pacer.give_back(unused)

    def _claim(self) -> None:
        with self.database.transaction() as session:
            issues = sa.select(Issue.id).where(Issue.status == IssueStatus.SENDING)
            if self.issue_id is not None:
                issues = issues.where(Issue.id == self.issue_id)
            issue_ids = list(session.scalars(issues))
            if not issue_ids:
                return
            now = clock.now()
            candidates = (
                sa.select(Delivery.id)
                .where(
                    Delivery.issue_id.in_(issue_ids),
                    Delivery.status == DeliveryStatus.QUEUED,
                    Delivery.claimed_by.is_(None),
                    sa.or_(Delivery.retry_at.is_(None), Delivery.retry_at <= now),
                )
                .limit(self.settings.batch_size)
                .with_for_update(skip_locked=True)
            )
            ids = list(session.scalars(candidates))
            if not ids:
                return
            session.execute(
                sa.update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(claimed_by=self.id, claimed_at=now)
            )
            rows = session.execute(
                sa.select(
                    Delivery.id,
                    Delivery.issue_id,
                    Delivery.subscription_id,
                    Delivery.attempts,
                    Subscriber.display_email,
                    Subscriber.name,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.id.in_(ids))
                .order_by(Delivery.id)
            ).all()
            for issue_id in {row.issue_id for row in rows} - set(self._renderers):
                issue = session.get(Issue, issue_id)
                self._renderers[issue_id] = IssueRenderer.for_issue(issue, issue.list, self.config)
        self._buffer.extend(
            Job(
                delivery_id=row.id,
                issue_id=row.issue_id,
                subscription_id=row.subscription_id,
                email=row.display_email,
                name=row.name,
                attempts=row.attempts,
            )
            for row in rows
        )

    def _send(self, job: Job) -> None:
        outcome = Outcome(job)
        started = time.perf_counter()
        bound = logs.ISSUE_ID.set(job.issue_id)
        try:
            message = self._renderers[job.issue_id].message(
                email=job.email,
                name=job.name,
                subscription_id=job.subscription_id,
                delivery_id=job.delivery_id,
            )
            message.as_bytes()
            delay = job.slot - time.time()
            if delay > 0:
                time.sleep(delay)
            elif delay < -LATE_SLOT:
                outcome.late = True
                self._results.put(outcome)
                return
            outcome.message_id = self.mailer.send(message)
        except Exception as exc:  # every failure is recorded on the row, none is lost
            outcome.error = exc
        finally:
            logs.ISSUE_ID.reset(bound)
        # How long this message held its place in flight (Little's law's W).
        outcome.seconds = time.perf_counter() - started
        self._results.put(outcome)

    # -- one transaction per round: outcomes in, next messages marked sending --

    def _tick(self, due: list[Job]) -> list[Job]:
        outcomes, self._pending = self._pending, []
        self._in_flight -= len(outcomes)
        late = [outcome.job for outcome in outcomes if outcome.late]
        if late:
            # Still `sending` on the ledger and still ours: they go out with the next slots.
            self._buffer.extendleft(reversed(late))
            self._unused_slots += len(late)
            outcomes = [outcome for outcome in outcomes if not outcome.late]
        for outcome in outcomes:
            self.latency.add(outcome.seconds)
        try:
            with self.database.transaction() as session:
                self._record(session, outcomes)
                ready = self._check_and_mark(session, due)
                if self._heartbeat_due():
                    session.execute(
                        sa.update(Worker)
                        .where(Worker.id == self.id)
                        .values(heartbeat_at=clock.now())
                    )
                    self._last_heartbeat = time.monotonic()
        except sqlalchemy.exc.OperationalError as exc:
            # The database is briefly away: keep the outcomes, give the jobs back, retry.
            log.error("database error, retrying: %s", exc)
            self._pending = outcomes + self._pending
            self._in_flight += len(outcomes)
            self._buffer.extendleft(reversed(due))
            time.sleep(1.0)
            return []
        if self._throttles:
            # Counted for the pace's window: the shared rate changes at most once per
            # window, by the share of calls throttled (newsletter.pacing.next_rate).
            self.pacer.throttled(self._throttles)
            self._throttles = 0
        return ready

    def _record(self, session: so.Session, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        now = clock.now()
        updates = []
        for outcome in outcomes:
            job, error = outcome.job, outcome.error
            row = {
                "id": job.delivery_id,
                "status": DeliveryStatus.SENT,
                "ses_message_id": None,
                "sent_at": None,
                "error": None,
                "attempts": job.attempts + 1,
                "claimed_by": self.id,
                "retry_at": None,
                "updated_at": now,
            }
            streak = self._streaks.setdefault(job.issue_id, [])
            if error is None:
                row["ses_message_id"] = outcome.message_id
                row["sent_at"] = now
                self.progress.sent += 1
                streak.clear()
            elif isinstance(error, ThrottledError):
                # Not a failed attempt: SES dropped it unseen. Back in the queue, slower.
                row.update(status=DeliveryStatus.QUEUED, attempts=job.attempts, claimed_by=None)
                row["retry_at"] = now + backoff(1)
                row["error"] = str(error)
                self.progress.throttled += 1
                self._throttles += 1
            elif isinstance(error, (QuotaExceededError, AccountPausedError)):
                row.update(status=DeliveryStatus.QUEUED, attempts=job.attempts, claimed_by=None)
                row["error"] = str(error)
                if isinstance(error, QuotaExceededError):
                    self._pause(
                        session,
                        job.issue_id,
                        "The SES daily sending quota is used up; the send resumes by itself "
                        "when the quota frees.",
                        resume_at=now + QUOTA_RECHECK,
                    )
                else:
                    self._pause(
                        session,
                        job.issue_id,
                        f"SES refused to send for this account ({error}). Fix the account, "
                        "then run `newsletter send --resume ISSUE`.",
                    )
            elif isinstance(error, TransientError) and job.attempts + 1 < MAX_ATTEMPTS:
                row.update(status=DeliveryStatus.QUEUED, claimed_by=None)
                row["retry_at"] = now + backoff(job.attempts + 1)
                row["error"] = str(error)
                self.progress.retried += 1
                streak.append(job.delivery_id)
            else:
                row["status"] = DeliveryStatus.FAILED
                if isinstance(error, RecipientRejectedError):
                    row["error"] = str(error)
                elif isinstance(error, TransientError):
                    row["error"] = f"gave up after {job.attempts + 1} attempts: {error}"
                else:
                    log.error(
                        "could not send delivery %s",
                        job.delivery_id,
                        exc_info=error,
                        extra={"issue_id": job.issue_id},
                    )
                    row["error"] = f"{type(error).__name__}: {error}"
                self.progress.failed += 1
                streak.append(job.delivery_id)
            metrics.message_done(job.issue_id, error, row["status"] is DeliveryStatus.FAILED)
            updates.append(row)
        # Only rows still in flight take our result: an SNS event (delivery, bounce) may
        # already have recorded a later state, and must not be turned back into "sent".
        session.execute(
            sa.update(Delivery).where(
                # (not IN: executemany cannot expand a list parameter)
                sa.or_(
                    Delivery.status == DeliveryStatus.SENDING,
                    Delivery.status == DeliveryStatus.UNKNOWN,
                )
            ),
            updates,
            execution_options={"synchronize_session": None},
        )
        for issue_id, streak in self._streaks.items():
            if len(streak) >= self.settings.max_consecutive_errors:
                self._pause_for_errors(session, issue_id, streak)

    def _pause_for_errors(self, session: so.Session, issue_id: int, streak: list[int]) -> None:
        last = session.scalar(sa.select(Delivery.error).where(Delivery.id == streak[-1]))
        # The streak most likely failed for a common cause, not the readers: give their
        # rows back to the queue so resuming sends to them.
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(streak), Delivery.status == DeliveryStatus.FAILED)
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, retry_at=None)
        )
        self.progress.failed = max(self.progress.failed - len(streak), 0)
        self._pause(
            session,
            issue_id,
            f"{len(streak)} messages in a row could not be sent (last error: {last}). "
            "Check the account and the issue, then run `newsletter send --resume ISSUE`.",
        )
        streak.clear()

    def _pause(
        self, session: so.Session, issue_id: int, reason: str, resume_at: datetime | None = None
    ) -> None:
        session.execute(
            sa.update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
            .values(status=IssueStatus.PAUSED, paused_reason=reason, resume_at=resume_at)
        )
        self.progress.paused[issue_id] = reason
        log.warning("issue paused: %s", reason, extra={"issue_id": issue_id})
        self._release_buffered(session, {issue_id})

    def _release_buffered(self, session: so.Session, issue_ids: set[int]) -> None:
        keep, drop = deque(), []
        for job in self._buffer:
            (drop if job.issue_id in issue_ids else keep).append(job)
        self._buffer = keep
        self._give_back(session, drop)

    def _give_back(self, session: so.Session, jobs: Iterable[Job]) -> None:
        """Return buffered rows to the queue, unclaimed: none of them was handed to SES.

        A buffered row is `queued`, or `sending` when its thread found the slot gone and
        brought it back (late); both go back to `queued`, or the late one would stay
        `sending` under a stopped worker and never go out.
        """
        ids = [job.delivery_id for job in jobs]
        if not ids:
            return
        session.execute(
            sa.update(Delivery)
            .where(
                Delivery.id.in_(ids),
                Delivery.claimed_by == self.id,
                Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.SENDING)),
            )
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, claimed_at=None)
        )

    def _pause_buffered_for_quota(self) -> None:
        with self.database.transaction() as session:
            for issue_id in {job.issue_id for job in self._buffer}:
                self._pause(
                    session,
                    issue_id,
                    "The SES daily sending quota is used up; the send resumes by itself "
                    "when the quota frees.",
                    resume_at=clock.now() + QUOTA_RECHECK,
                )

    def _check_and_mark(self, session: so.Session, due: list[Job]) -> list[Job]:
        """Check each reader just before the send; mark the ones still wanted `sending`."""
        if not due:
            return []
        rows = session.execute(
            sa.select(
                Delivery.id,
                Issue.status.label("issue_status"),
                Subscription.status.label("subscription_status"),
                Subscriber.erased_at,
                Suppression.reason.label("suppression"),
            )
            .join(Issue, Issue.id == Delivery.issue_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .outerjoin(Subscription, Subscription.id == Delivery.subscription_id)
            .outerjoin(Suppression, Suppression.email == Subscriber.email)
            .where(Delivery.id.in_([job.delivery_id for job in due]))
        ).all()
        by_id = {row.id: row for row in rows}
        now = clock.now()
        ready, marks, stopped_issues = [], [], set()
        for job in due:
            row = by_id.get(job.delivery_id)
            reason = None
            if row is None or row.issue_status is not IssueStatus.SENDING:
                stopped_issues.add(job.issue_id)
                self._buffer.appendleft(job)
                continue
            if row.suppression is not None:
                reason = f"on the suppression list ({row.suppression.value})"
            elif row.erased_at is not None:
                reason = "subscriber erased"
            elif row.subscription_status is None:
                reason = "subscription removed"
            elif row.subscription_status is not SubscriptionStatus.ACTIVE:
                reason = f"reader is {row.subscription_status.value}"
            base = {"id": job.delivery_id, "updated_at": now, "claimed_by": self.id}
            if reason is not None:
                marks.append({**base, "status": DeliveryStatus.SUPPRESSED, "error": reason})
                self.progress.suppressed += 1
                metrics.SUPPRESSED.labels(issue=str(job.issue_id)).inc()
            else:
                marks.append({**base, "status": DeliveryStatus.SENDING, "error": None})
                ready.append(job)
        if marks:
            session.execute(sa.update(Delivery), marks)
        if stopped_issues:
            self._release_buffered(session, stopped_issues)
        return ready

    # -- housekeeping --

    def _housekeeping(self) -> bool:
        """Recover lost workers, start due issues, finish done ones; True when idle."""
        self._last_housekeeping = time.monotonic()
        self.pacer.refresh_quota()
        self.pacer.recover_rate()
        # Slots given up were counted against the daily quota: give them back.
        self._give_back_unused()
        quota_left = self.pacer.quota_left()
        with self.database.transaction() as session:
            recover_lost_workers(session, lease=self.settings.lease)
            promote_due_issues(session, quota_left)
            query = sa.select(Issue.id).where(Issue.status == IssueStatus.SENDING)
            if self.issue_id is not None:
                query = query.where(Issue.id == self.issue_id)
            sending = list(session.scalars(query))
            if not self._buffer and not self._in_flight and not self._pending:
                self.progress.finished.extend(finish_issues(session, sending))
            queued = (
                session.scalar(
                    sa.select(Delivery.id)
                    .where(Delivery.issue_id.in_(sending), Delivery.status == DeliveryStatus.QUEUED)
                    .limit(1)
                )
                if sending
                else None
            )
        self._report()
        idle = queued is None and not self._buffer and not self._in_flight and not self._pending
        if self.issue_id is not None and self.issue_id not in sending:
            idle = not self._in_flight and not self._pending
        return idle

    def _drain(self) -> None:
        """Wait for in-flight sends and record them; give back rows not yet started."""
        deadline = time.monotonic() + 120
        while self._in_flight > len(self._pending) and time.monotonic() < deadline:
            try:
                self._pending.append(self._results.get(timeout=0.5))
            except queue.Empty:
                continue
        unused = len(self._slots)
        self._slots.clear()
        try:
            self._tick([])
            if self._buffer:
                with self.database.transaction() as session:
                    self._give_back(session, self._buffer)
        finally:
            self._buffer.clear()
            # Slots reserved and never used were counted against the daily quota: a
            # worker restarted often would otherwise eat it.
            try:
                self._give_back_unused(unused)
            except sa.exc.SQLAlchemyError:
                log.warning("could not give the unused slots back to the quota")
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
