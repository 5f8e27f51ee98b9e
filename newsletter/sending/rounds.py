"""A worker's database rounds: claim rows, record what came back, mark the next `sending`.

Only the worker's main thread runs these (the threads never touch the database). One
round is one transaction: the outcomes that came back are written by the outcome rules,
and the next messages are checked and marked `sending`. What the round changes in
memory (counts, metrics, error streaks, throttles, rows given back) takes effect only
after its commit; a round that fails is written again whole, and its jobs go back in
hand exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import metrics
from newsletter.db import Database
from newsletter.db import rowcount
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
from newsletter.sending.ledger import QUOTA_RECHECK
from newsletter.sending.ledger import Job
from newsletter.sending.ledger import cancel_queued
from newsletter.sending.ledger import claim
from newsletter.sending.ledger import heartbeat
from newsletter.sending.ledger import mark_sending
from newsletter.sending.ledger import mark_suppressed
from newsletter.sending.ledger import record
from newsletter.sending.ledger import release
from newsletter.sending.ledger import requeue_failed
from newsletter.sending.outcomes import Happened
from newsletter.sending.outcomes import Outcome
from newsletter.sending.outcomes import Pause
from newsletter.sending.outcomes import RowChange
from newsletter.sending.outcomes import decide
from newsletter.sending.outcomes import describe
from newsletter.sending.outcomes import happened
from newsletter.sending.renderer import IssueRenderer
from newsletter.sending.slots import SlotBook

if TYPE_CHECKING:
    from newsletter.sending.worker import Progress
    from newsletter.sending.worker import WorkerSettings

# The worker's name: operators filter its records by it (docs/operations.md).
log = logging.getLogger("newsletter.sending.worker")

# Database errors a worker waits out and retries: the server is briefly away, or it ended
# a session (idle in a transaction too long, a restart).
DB_HICCUPS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InternalError)


# Where each due message's reader, issue and row stand, just before the send (built once:
# building it and its cache key every round cost the main thread 0.2 ms).
_CHECK_READERS = (
    sa.select(
        Delivery.id,
        Delivery.status,
        Delivery.claimed_by,
        Issue.status.label("issue_status"),
        Subscription.status.label("subscription_status"),
        Subscriber.erased_at,
        Suppression.reason.label("suppression"),
    )
    .join(Issue, Issue.id == Delivery.issue_id)
    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
    .outerjoin(Subscription, Subscription.id == Delivery.subscription_id)
    .outerjoin(Suppression, Suppression.email == Subscriber.email)
    .where(Delivery.id.in_(sa.bindparam("ids", expanding=True)))
)


class Rounds:
    """The database rounds of a DeliveryWorker (newsletter.sending.worker), which sets up
    the state below; the loop, the threads and the lifecycle stay there."""

    id: str
    database: Database
    config: Mapping[str, Any]
    settings: WorkerSettings
    issue_id: int | None
    pacer: Pacer
    book: SlotBook
    latency: LatencyGauge
    progress: Progress
    _stop: threading.Event
    _halt: threading.Event
    _buffer: deque[Job]
    _released: set[int]
    _paused: dict[int, str]
    _pending: list[Outcome]
    _renderers: dict[int, IssueRenderer]
    _streaks: dict[int, list[int]]
    _throttles: int
    _last_heartbeat: float
    _db_offset: timedelta

    def _now(self) -> datetime:
        """The database's time, as this host best knows it."""
        return clock.now() + self._db_offset

    def _lose(self, reason: str) -> None:
        """Stop sending at once: this worker no longer owns its rows."""
        if self.progress.lost is None:
            self.progress.lost = reason
            log.error("worker %s stops sending now: %s", self.id, reason)
        self._halt.set()
        self._stop.set()

    def _heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_heartbeat >= min(self.settings.lease / 4, 5.0)

    def _beat(self, session: so.Session) -> None:
        at = heartbeat(session, self.id)
        if at is None:
            self._lose(
                "another worker declared it lost (no heartbeat within "
                f"{self.settings.lease:g} s, NEWSLETTER_WORKER_LEASE); its rows were recovered"
            )
            return
        self._db_offset = at - clock.now()
        self.pacer.clock_offset = at.timestamp() - time.time()
        self._last_heartbeat = time.monotonic()

    def _claim(self) -> None:
        with self.database.transaction() as session:
            issues = sa.select(Issue.id).where(Issue.status == IssueStatus.SENDING)
            if self.issue_id is not None:
                issues = issues.where(Issue.id == self.issue_id)
            issue_ids = list(session.scalars(issues))
            if not issue_ids:
                return
            jobs = claim(session, self.id, issue_ids, self.settings.batch_size, self._now())
            for issue_id in {job.issue_id for job in jobs} - set(self._renderers):
                issue = session.get(Issue, issue_id)
                assert issue is not None  # the rows just claimed reference it
                self._renderers[issue_id] = IssueRenderer.for_issue(issue, issue.list, self.config)
        self._buffer.extend(jobs)

    # -- one transaction per round: outcomes in, next messages marked sending --

    def _tick(self, due: list[Job]) -> list[Job]:
        outcomes, self._pending = self._pending, []
        checked = False
        try:
            with self.database.transaction() as session:
                if self._heartbeat_due():
                    self._beat(session)
                back, settle = self._record(session, outcomes)
                ready: list[Job] = []
                if not self._halt.is_set():
                    checked = True
                    ready = self._check_and_mark(session, due)
        except BaseException as exc:
            # Nothing of this round was written: keep the outcomes for the next round, and
            # put the jobs back in hand (still claimed and `queued` on the ledger).
            self._pending = outcomes + self._pending
            self._buffer.extendleft(reversed(due))
            self.book.done(len(due), unused=len(due))
            self._released.clear()
            self._paused.clear()
            if not isinstance(exc, DB_HICCUPS):
                raise
            # The database is briefly away (or ended a session left idle too long).
            log.error("database error, retrying: %s", exc)
            time.sleep(1.0)
            return []
        # Committed: only now do the round's counts, metrics, streaks and throttles count
        # (a round that failed above is written again next round and must count once).
        settle()
        for outcome in outcomes:
            if outcome.called:
                self.latency.add(outcome.seconds)
        self._apply_released()
        self._announce_pauses()
        if checked:
            # Every due job not sent gives its in-flight and pace slots back.
            self.book.done(len(due) - len(ready), unused=len(due) - len(ready))
        else:
            # Halting before the check: none of `due` was marked; the drain gives them back.
            self.book.done(len(due), unused=len(due))
            self._buffer.extendleft(reversed(due))
        # Messages whose thread never called SES are `queued` and ours again: back in line.
        self._buffer.extendleft(reversed(back))
        if self._throttles:
            # Counted for the pace's window: the shared rate changes at most once per
            # window, by the share of calls throttled (newsletter.pacing.next_rate).
            self.pacer.throttled(self._throttles)
            self._throttles = 0
        # Marked `sending` in this round: threads take them (and call SES only if the
        # worker is not halting meanwhile; if it is, they come back never called).
        return ready

    def _record(
        self, session: so.Session, outcomes: list[Outcome]
    ) -> tuple[list[Job], Callable[[], None]]:
        """Write the outcomes by the outcome rules; return the jobs back in this worker's
        hands (SES never called), and what to count once the round has committed."""
        if not outcomes:
            return [], lambda: None
        now = self._now()
        streaks = {issue_id: list(ids) for issue_id, ids in self._streaks.items()}
        counted: list[tuple[Happened, RowChange, Outcome]] = []
        throttles = 0
        halted = self._halt.is_set()
        rows, back = [], []
        pauses: dict[int, tuple[Pause, str]] = {}
        for outcome in outcomes:
            job = outcome.job
            detail = describe(outcome.error)
            what = happened(outcome.error, called=outcome.called)
            change = decide(what, job.attempts, detail)
            keep = change.keep_claim and not halted
            row = {
                "id": job.delivery_id,
                "status": change.status,
                "attempts": change.attempts,
                "error": change.error,
                "ses_message_id": outcome.message_id if what is Happened.SENT else None,
                "sent_at": now if what is Happened.SENT else None,
                "retry_at": (now + timedelta(seconds=change.retry_in) if change.retry_in else None),
                # A queued row leaves this worker's hands unless it stays in its buffer;
                # the others keep the name of the worker that made the call.
                "claimed_by": (
                    self.id if keep or change.status is not DeliveryStatus.QUEUED else None
                ),
                "updated_at": now,
            }
            rows.append(row)
            if keep:
                back.append(job)
            counted.append((what, change, outcome))
            streak = streaks.setdefault(job.issue_id, [])
            if what is Happened.SENT:
                streak.clear()
            elif change.streak:
                streak.append(job.delivery_id)
                if what is Happened.BROKEN:
                    log.error(
                        "could not render delivery %s: %s",
                        job.delivery_id,
                        detail,
                        exc_info=outcome.error,
                        extra={"issue_id": job.issue_id},
                    )
            if change.slow_down:
                throttles += 1
            if change.pause is not None:
                pauses[job.issue_id] = (change.pause, detail)
        record(session, self.id, rows)
        for issue_id, (pause, detail) in pauses.items():
            if pause is Pause.QUOTA:
                self._pause(
                    session,
                    issue_id,
                    "The SES daily sending quota is used up; the send resumes by itself "
                    "when the quota frees.",
                    resume_at=now + QUOTA_RECHECK,
                )
            else:
                self._pause(
                    session,
                    issue_id,
                    f"SES refused to send for this account ({detail}). Fix the account, "
                    "then run `newsletter send --resume ISSUE`.",
                )
        requeued = 0
        for issue_id, streak in streaks.items():
            if len(streak) >= self.settings.max_consecutive_errors:
                requeued += self._pause_for_errors(session, issue_id, streak)

        def settle() -> None:
            self._streaks = streaks
            self._throttles += throttles
            for what, change, outcome in counted:
                self._count(what, change)
                if outcome.called or outcome.error is not None:
                    metrics.message_done(
                        outcome.job.issue_id,
                        outcome.error,
                        change.status is DeliveryStatus.FAILED,
                        unknown=change.status is DeliveryStatus.UNKNOWN,
                    )
            # After this round's own failures are counted: the streak may include them.
            self.progress.failed = max(self.progress.failed - requeued, 0)

        return back, settle

    def _count(self, what: Happened, change: RowChange) -> None:
        status = change.status
        if status is DeliveryStatus.SENT:
            self.progress.sent += 1
        elif status is DeliveryStatus.FAILED:
            self.progress.failed += 1
        elif status is DeliveryStatus.UNKNOWN:
            self.progress.unknown += 1
        elif what is Happened.THROTTLED:
            self.progress.throttled += 1
        elif what is Happened.NOT_TAKEN:
            self.progress.retried += 1

    def _pause_for_errors(self, session: so.Session, issue_id: int, streak: list[int]) -> int:
        """Pause the issue after a streak of errors; return how many failed rows went back
        to the queue (no longer failed: the round's settle counts them out)."""
        last = session.scalar(sa.select(Delivery.error).where(Delivery.id == streak[-1]))
        # The streak most likely failed for a common cause, not the readers: give their
        # failed rows back to the queue so resuming sends to them. Unknown rows stay
        # unknown: SES may have taken them.
        requeued = requeue_failed(session, self.id, streak)
        self._pause(
            session,
            issue_id,
            f"{len(streak)} messages in a row could not be sent (last error: {last}). "
            "Check the account and the issue, then run `newsletter send --resume ISSUE`.",
        )
        streak.clear()
        return requeued

    def _pause(
        self, session: so.Session, issue_id: int, reason: str, resume_at: datetime | None = None
    ) -> None:
        result = session.execute(
            sa.update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
            .values(status=IssueStatus.PAUSED, paused_reason=reason, resume_at=resume_at)
        )
        if rowcount(result):
            # Said once the transaction has committed (_announce_pauses): a round that
            # fails is written again, and would say it twice.
            self._paused[issue_id] = reason
        self._release_buffered(session, {issue_id})

    def _announce_pauses(self) -> None:
        for issue_id, reason in self._paused.items():
            self.progress.paused[issue_id] = reason
            log.warning("issue paused: %s", reason, extra={"issue_id": issue_id})
        self._paused.clear()

    def _release_buffered(self, session: so.Session, issue_ids: set[int]) -> None:
        """Give the rows in hand of these issues back to the queue; they leave the buffer
        once the transaction commits (_apply_released)."""
        drop = [
            job.delivery_id
            for job in self._buffer
            if job.issue_id in issue_ids and job.delivery_id not in self._released
        ]
        release(session, self.id, drop)
        self._released.update(drop)

    def _apply_released(self) -> None:
        if self._released:
            self._buffer = deque(j for j in self._buffer if j.delivery_id not in self._released)
            self._released.clear()

    def _pause_buffered_for_quota(self) -> None:
        try:
            with self.database.transaction() as session:
                for issue_id in {job.issue_id for job in self._buffer}:
                    self._pause(
                        session,
                        issue_id,
                        "The SES daily sending quota is used up; the send resumes by itself "
                        "when the quota frees.",
                        resume_at=self._now() + QUOTA_RECHECK,
                    )
        except BaseException:
            self._released.clear()
            self._paused.clear()
            raise
        self._apply_released()
        self._announce_pauses()

    def _check_and_mark(self, session: so.Session, due: list[Job]) -> list[Job]:
        """Check each reader just before the send; mark the ones still wanted `sending`."""
        if not due:
            return []
        rows = session.execute(_CHECK_READERS, {"ids": [job.delivery_id for job in due]}).all()
        by_id = {row.id: row for row in rows}
        now = self._now()
        candidates, suppressed, stopped_issues, cancelled, stopped = [], {}, set(), [], []
        taken = False
        for job in due:
            row = by_id.get(job.delivery_id)
            if row is None or row.status is not DeliveryStatus.QUEUED:
                continue  # deleted or cancelled meanwhile: not to be sent
            if row.claimed_by != self.id:
                taken = True
                continue
            if row.issue_status is IssueStatus.CANCELLED:
                cancelled.append(job.delivery_id)
                continue
            if row.issue_status is not IssueStatus.SENDING:
                stopped_issues.add(job.issue_id)
                stopped.append(job.delivery_id)
                continue
            reason = None
            if row.suppression is not None:
                reason = f"on the suppression list ({row.suppression.value})"
            elif row.erased_at is not None:
                reason = "subscriber erased"
            elif row.subscription_status is None:
                reason = "subscription removed"
            elif row.subscription_status is not SubscriptionStatus.ACTIVE:
                reason = f"reader is {row.subscription_status.value}"
            if reason is not None:
                suppressed[job.delivery_id] = reason
            else:
                candidates.append(job)
        if cancelled:
            # Came back to the queue after the editor cancelled (a call never made).
            cancel_queued(session, sa.select(Issue.id).where(Issue.status == IssueStatus.CANCELLED))
        mark_suppressed(session, self.id, suppressed, now)
        self.progress.suppressed += len(suppressed)
        for job in due:
            if job.delivery_id in suppressed:
                metrics.SUPPRESSED.labels(issue=str(job.issue_id)).inc()
        marked = mark_sending(session, self.id, [job.delivery_id for job in candidates], now)
        ready = [job for job in candidates if job.delivery_id in marked]
        if taken or len(ready) < len(candidates):
            status = session.scalar(sa.select(Worker.status).where(Worker.id == self.id))
            if status is not WorkerStatus.RUNNING:
                self._lose(
                    "its rows were taken over: another worker declared it lost (no heartbeat "
                    f"within {self.settings.lease:g} s, NEWSLETTER_WORKER_LEASE)"
                )
                return ready  # marked in this transaction while still running: ours
        if stopped_issues:
            # Paused meanwhile: these and the others in hand go back to the queue.
            release(session, self.id, stopped)
            self._release_buffered(session, stopped_issues)
        return ready
