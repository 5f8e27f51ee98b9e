"""The worker: its loop, its threads and its lifecycle (the database rounds: rounds.py)."""

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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc

from newsletter import logs
from newsletter import retention
from newsletter.config import Settings
from newsletter.config import settings_of
from newsletter.db import Database
from newsletter.mail import Mailer
from newsletter.mail import SesMailer
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import Worker
from newsletter.models import WorkerStatus
from newsletter.pacing import LatencyGauge
from newsletter.pacing import Pacer
from newsletter.pacing import PaceSettings
from newsletter.pacing import QuotaExhausted
from newsletter.pacing import in_flight_for
from newsletter.sending.ledger import Job
from newsletter.sending.ledger import cancel_queued
from newsletter.sending.ledger import finish_issues
from newsletter.sending.ledger import new_worker_id
from newsletter.sending.ledger import promote_due_issues
from newsletter.sending.ledger import recover_lost_workers
from newsletter.sending.ledger import release
from newsletter.sending.ledger import release_all
from newsletter.sending.outcomes import Outcome
from newsletter.sending.plan import WorkerBusy
from newsletter.sending.renderer import IssueRenderer
from newsletter.sending.rounds import DB_HICCUPS
from newsletter.sending.rounds import Rounds
from newsletter.sending.slots import LATE_SLOT
from newsletter.sending.slots import MAX_WAIT
from newsletter.sending.slots import SlotBook

log = logging.getLogger(__name__)

MAX_CLAIM = 1000


@dataclass
class Progress:
    """Counts a worker reports as it goes (for the progress bar)."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0
    throttled: int = 0
    unknown: int = 0
    paused: dict[int, str] = field(default_factory=dict)
    finished: list[int] = field(default_factory=list)
    lost: str | None = None  # why the worker stopped at once (it no longer owned its rows)


@dataclass
class WorkerSettings:
    """How a worker runs; defaults come from the configuration."""

    # The most SES calls in flight; the worker keeps fewer, as many as its rate needs
    # at the latency it measures (newsletter.pacing.in_flight_for).
    concurrency: int = Settings.send_concurrency
    batch_size: int = 200
    lease: float = Settings.worker_lease
    max_consecutive_errors: int = Settings.send_max_consecutive_errors

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> WorkerSettings:
        settings = settings_of(config)
        values: dict[str, Any] = {
            "concurrency": settings.send_concurrency,
            "lease": float(settings.worker_lease),
            "max_consecutive_errors": settings.send_max_consecutive_errors,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        # Rows claimed at a time: ten rounds of calls in flight, but not so many that one
        # worker holds the end of a send while the others have nothing (nor that the first
        # claim keeps a starting worker from its first call: ~25 ms per 1,000 rows).
        values.setdefault("batch_size", max(50, min(values["concurrency"] * 10, MAX_CLAIM)))
        return cls(**values)


def worker_mailer(mailer: Mailer, config: Mapping[str, Any], concurrency: int) -> Mailer:
    """Return the mailer a worker uses: an SES client with one connection per thread (the
    given mailer itself when its client was built that way already)."""
    if not isinstance(mailer, SesMailer):
        return mailer
    options: dict[str, Any] = {
        "region": config.get("SES_REGION"),
        "endpoint_url": config.get("SES_ENDPOINT_URL"),
        "max_pool_connections": max(concurrency, 10),
        "timeout": float(settings_of(config).ses_timeout),
        "transport": settings_of(config).ses_transport,
    }
    built = mailer.client_options
    if (
        built is not None
        and mailer.configuration_set == config.get("SES_CONFIGURATION_SET")
        and built["max_pool_connections"] >= options["max_pool_connections"]
        and all(
            built[key] == options[key] for key in ("region", "endpoint_url", "timeout", "transport")
        )
    ):
        return mailer
    return SesMailer(configuration_set=config.get("SES_CONFIGURATION_SET"), **options)


class DeliveryWorker(Rounds):
    """Claims ledger rows in batches and sends them with a pool of threads, at the shared pace.

    The main thread owns the database (its rounds: newsletter.sending.rounds); the threads
    only render and call SES. Each loop round writes the finished outcomes and marks the
    next messages `sending` in one transaction, so at most `capacity` rows (the slot
    book's) are ever `sending` for this worker: that bounds how many can become `unknown`
    if the process is killed.

    Every write to a claimed row is fenced by ownership (newsletter.sending.ledger). A
    worker that finds it no longer owns its rows, or that another worker declared it lost,
    stops sending at once: no thread calls SES any more, what was in flight is recorded,
    and `progress.lost` says why.
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
        self.settings = settings or WorkerSettings.from_config(config)
        engine_options: dict[str, Any] = {"pool_pre_ping": False, "pool_size": 2}
        if not database.is_sqlite:
            # A worker stalled inside a transaction (SIGSTOP, a frozen VM) would hold its row
            # locks for ever; PostgreSQL ends such a session after the lease, so the others
            # can recover its rows. (Our transactions never wait on SES.)
            timeout = int(self.settings.lease * 1000)
            engine_options["connect_args"] = {
                "options": f"-c idle_in_transaction_session_timeout={timeout}"
            }
        self.database = Database(database.url, **engine_options)
        self.mailer = mailer
        self.config = config
        self.pacer = Pacer(self.database, pace, quota_source)
        self.book = SlotBook(self.settings.concurrency)
        self.issue_id = issue_id
        self.on_progress = on_progress
        self.id = new_worker_id()
        self.progress = Progress()
        self._stop = threading.Event()
        # Set when the threads must not call SES any more (stopping, or ownership lost).
        self._halt = threading.Event()
        self._results: queue.Queue[Outcome] = queue.Queue()
        self._buffer: deque[Job] = deque()
        # Rows given back in the open transaction: they leave the buffer when it commits.
        self._released: set[int] = set()
        # Issues paused in the open transaction: said (log, progress) when it commits.
        self._paused: dict[int, str] = {}
        self._pending: list[Outcome] = []
        self._renderers: dict[int, IssueRenderer] = {}
        self._streaks: dict[int, list[int]] = {}
        self._last_heartbeat = 0.0
        self._last_housekeeping = 0.0
        self._next_prune = 0.0  # `newsletter db prune`, at start and then daily
        self._throttles = 0
        # SES call times, measured by the threads, read by the main thread only.
        self.latency = LatencyGauge()
        # The quota had no room: wait for calls in flight before asking (or pausing) again.
        self._quota_blocked = False
        # The database's clock minus this host's, measured at every heartbeat: timestamps
        # this worker writes (retry times, claims) are on the database's clock.
        self._db_offset = timedelta(0)

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
            session.flush()
            self._beat(session)

    def _unregister(self) -> None:
        with self.database.transaction() as session:
            unknown = release_all(session, self.id, self._now())
            if unknown:
                log.warning("%s calls never came back before the stop: marked unknown", unknown)
                self.progress.unknown += unknown
            session.execute(
                sa.update(Worker)
                .where(Worker.id == self.id, Worker.status == WorkerStatus.RUNNING)
                .values(status=WorkerStatus.STOPPED, stopped_at=self._now())
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
            # Every thread has ended: record what came back after the drain gave up.
            self._collect(0.0)
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
        previous: dict[int, Any] = {}

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
        # Whether the last round had messages in hand: when it ends with none, housekeeping
        # looks at once whether the send is done (a `--once` run then exits without
        # waiting 0.05-0.1 s more), then at its usual pace. The first round looks at once
        # too: a worker that has just started has nothing in hand to wait for.
        was_busy = True
        while not self._stop.is_set():
            self.book.capacity = self.in_flight_limit()
            emptied = was_busy and not (self._buffer or self.book.busy or self._pending)
            self._collect(0.0 if emptied else self._wait_time())
            since = time.monotonic() - self._last_housekeeping
            looks_idle = not (self._buffer or self.book.busy or self._pending)
            was_busy = not looks_idle
            if since >= 1.0 or (looks_idle and (since >= 0.1 or emptied)):
                try:
                    idle = self._housekeeping()
                except DB_HICCUPS as exc:
                    # The database is briefly away (or chose us as a deadlock victim): the
                    # next round tries again; nothing in hand depends on it.
                    log.error("database error in housekeeping, retrying: %s", exc)
                    idle = False
                if idle and until_idle:
                    return
                if self._stop.is_set():
                    return
            try:
                due = self._due_jobs()
            except DB_HICCUPS as exc:
                log.error("database error, retrying: %s", exc)
                time.sleep(1.0)
                continue
            if self._pending or due or self._heartbeat_due():
                for job in self._tick(due):
                    pool.submit(self._send, job)
                self._report()

    def in_flight_limit(self) -> int:
        """How many calls to keep in flight now: the rate in force x measured latency."""
        rate, latency = self.pacer.rate, self.latency.value()
        # Whether the rate may bind: unless the cap on calls in flight keeps the send far
        # below it (twice over), a message sent after its slot could bunch up with others.
        # Unbounded, a message a busy CPU made late went round the loop ~16 times.
        self.book.strict = rate is not None and (
            latency is None or rate * latency < 2 * self.settings.concurrency
        )
        return in_flight_for(rate, latency, self.settings.concurrency)

    def _wait_time(self) -> float:
        if self._pending:
            return 0.0
        if self._quota_blocked and self.book.busy and not self.book.held:
            return MAX_WAIT  # until a call comes back
        return self.book.wait(len(self._buffer))

    def _collect(self, timeout: float) -> None:
        try:
            outcome = (
                self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait()
            )
        except queue.Empty:
            return
        outcomes = [outcome]
        while True:
            try:
                outcomes.append(self._results.get_nowait())
            except queue.Empty:
                break
        # Their rows are still `sending` until the next round records them, in the same
        # transaction that marks the next ones: their in-flight slots are free already.
        self.book.done(len(outcomes), unused=sum(1 for o in outcomes if o.late))
        self._pending.extend(outcomes)
        self._quota_blocked = False

    def _due_jobs(self) -> list[Job]:
        free = self.book.free
        if free <= 0 or self._halt.is_set():
            return []
        if len(self._buffer) < max(free, min(self.pacer.batch(), self.settings.batch_size // 2)):
            self._claim()
        if not self._buffer:
            return []
        if self._quota_blocked and not (self.book.busy or self.book.held):
            self._quota_blocked = False  # nothing left in hand: ask the quota once more
        wanted = self.book.wanted(len(self._buffer), self.pacer.batch())
        if wanted > 0 and not self._quota_blocked:
            try:
                self.book.add(self._reserve(wanted))
            except QuotaExhausted:
                if self.book.busy or self.book.held:
                    # A quota pause waits for the calls in flight (one coming back late
                    # gives its slot back) and uses the slots held first.
                    self._quota_blocked = True
                else:
                    self._pause_buffered_for_quota()
                    return []
        due = []
        for slot in self.book.take(len(self._buffer)):
            job = self._buffer.popleft()
            job.slot = slot
            due.append(job)
        return due

    def _reserve(self, wanted: int) -> list[float]:
        try:
            return self.pacer.reserve(wanted)
        except QuotaExhausted:
            if not self.book.unused:
                raise
            # Slots given up late still count against the quota until given back.
            self._give_back_unused()
            return self.pacer.reserve(wanted)

    def _give_back_unused(self) -> None:
        """Return the slots given up late or dropped to the daily quota."""
        unused, self.book.unused = self.book.unused, 0
        if unused:
            self.pacer.give_back(unused)

    def _send(self, job: Job) -> None:
        """Render and send one message (in a pool thread: no database here)."""
        outcome = Outcome(job)
        started = time.perf_counter()
        bound = logs.ISSUE_ID.set(job.issue_id)
        try:
            self._call(job, outcome)
        finally:
            logs.ISSUE_ID.reset(bound)
        # How long this message held its place in flight (Little's law's W).
        outcome.seconds = time.perf_counter() - started
        self._results.put(outcome)

    def _call(self, job: Job, outcome: Outcome) -> None:
        try:
            message = self._renderers[job.issue_id].message(
                email=job.email,
                name=job.name,
                subscription_id=job.subscription_id,
                delivery_id=job.delivery_id,
            )
            message.as_bytes()
        except Exception as exc:  # a rendering bug: recorded on the row, SES never called
            outcome.error = exc
            return
        delay = job.slot - time.time()
        if delay > 0:
            self._halt.wait(delay)  # wakes at once when the worker halts
        if self._halt.is_set() or (delay < -LATE_SLOT and self.book.strict):
            # Not called: the worker halts, or the slot passed (the message would bunch up).
            return
        outcome.called = True
        try:
            outcome.message_id = self.mailer.send(message)
        except Exception as exc:  # every failure is recorded on the row, none is lost
            outcome.error = exc

    # -- housekeeping --

    def _housekeeping(self) -> bool:
        """Recover lost workers, start due issues, finish done ones; True when idle."""
        self._last_housekeeping = time.monotonic()
        if self._last_housekeeping >= self._next_prune:
            self._next_prune = self._last_housekeeping + retention.EVERY
            retention.prune_in_background(self.database, self.config)
        self.pacer.refresh_quota()
        self.pacer.recover_rate()
        # Slots given up were counted against the daily quota: give them back.
        self._give_back_unused()
        quota_left = self.pacer.quota_left()
        with self.database.transaction() as session:
            # Our own lease first: after a long stall (SIGSTOP, a suspended VM) this
            # worker learns here whether another one declared it lost.
            self._beat(session)
            if self._halt.is_set():
                return False
            recover_lost_workers(session, lease=self.settings.lease)
            # Rows that went back to the queue (a retry, a throttle) after their send was
            # cancelled: they are not sent either.
            cancel_queued(session, sa.select(Issue.id).where(Issue.status == IssueStatus.CANCELLED))
            promote_due_issues(session, quota_left)
            query = sa.select(Issue.id).where(Issue.status == IssueStatus.SENDING)
            if self.issue_id is not None:
                query = query.where(Issue.id == self.issue_id)
            sending = list(session.scalars(query))
            in_hand = self._buffer or self.book.busy or self._pending
            if not in_hand:
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
        idle = queued is None and not in_hand
        if self.issue_id is not None and self.issue_id not in sending:
            idle = not self.book.busy and not self._pending
        return idle

    def _drain(self) -> None:
        """Stop the threads that have not called SES yet, wait for the calls in flight and
        record them; give back the rows not started and the slots not used."""
        self._halt.set()
        deadline = time.monotonic() + 120
        while self.book.busy and time.monotonic() < deadline:
            self._collect(0.5)
        try:
            if self._pending:
                self._tick([])
            if self._buffer:
                with self.database.transaction() as session:
                    release(session, self.id, [job.delivery_id for job in self._buffer])
        finally:
            self._buffer.clear()
            # Slots reserved and never used were counted against the daily quota: a
            # worker restarted often would otherwise eat it.
            unused = self.book.release()
            try:
                if unused:
                    self.pacer.give_back(unused)
            except sa.exc.SQLAlchemyError:
                log.warning("could not give the unused slots back to the quota")
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
