"""Sending an issue: the delivery ledger, workers that claim and send it, crash recovery.

Every recipient of an issue has one `Delivery` row (unique per issue and subscriber), and
that row's status is the truth about their email:

    queued -> sending -> sent | failed (with the reason)
    queued -> suppressed          (checked just before the send)
    sending -> unknown            (the worker died while SES had the message in hand)

A row becomes `sending` in a committed transaction *before* SES is called, so a crash
can never lead to a silent second copy: a row left `sending` by a dead worker becomes
`unknown` and is sent again only when the editor asks (`newsletter send --retry-unknown`).
Workers coordinate only through the database: `SELECT ... FOR UPDATE SKIP LOCKED` hands
each row to one worker, and the shared `send_pace` row (newsletter.pacing) holds the rate.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import tokens
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.lists import get_list
from newsletter.lists import list_id_header
from newsletter.mail import AccountPausedError
from newsletter.mail import Mailer
from newsletter.mail import MailerError
from newsletter.mail import OutgoingMessage
from newsletter.mail import QuotaExceededError
from newsletter.mail import RecipientRejectedError
from newsletter.mail import SesMailer
from newsletter.mail import ThrottledError
from newsletter.mail import TransientError
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import Worker
from newsletter.models import WorkerStatus
from newsletter.pacing import Pacer
from newsletter.pacing import PaceSettings
from newsletter.pacing import QuotaExhausted
from newsletter.wire import MessageTemplate

log = logging.getLogger(__name__)

TEST_PREFIX = "[TEST] "
# A network error is retried this many times in all before the row is marked failed.
MAX_ATTEMPTS = 5
# How long a quota pause lasts before workers look at the quota again.
QUOTA_RECHECK = timedelta(minutes=10)
# A slot older than this is dropped rather than used late: late sends would bunch up
# and break the rate in some one-second window.
STALE_SLOT = 0.01
# A thread that gets to the SES call this late (a busy CPU) gives its slot up and the
# message goes back in line for a new one: sending anyway would bunch messages up.
LATE_SLOT = 0.02
# Hand a message to a thread this long before its slot (the thread waits the rest).
SLOT_LEAD = 0.005
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


class SendError(NewsletterError):
    """A send cannot be started or changed as asked."""


class WorkerBusy(SendError):
    """SQLite allows one worker, and another one is running."""


# --- Starting a send ----------------------------------------------------------------------


@dataclass
class Audience:
    """Who a send would reach right now."""

    active: int
    suppressed: int

    @property
    def recipients(self) -> int:
        return self.active - self.suppressed


@dataclass
class SendPlan:
    """A checked, compiled issue and where it would go; nothing stored yet."""

    compiled: Any  # newsletter.composer.CompiledIssue
    mailing_list: MailingList
    audience: Audience
    existing: Issue | None  # the same issue (list + slug) sent or started before


def web_url(base_url: str, slug: str) -> str:
    """Return the public web version's URL of an issue."""
    return f"{base_url}/archive/{slug}"


def count_audience(session: so.Session, mailing_list: MailingList) -> Audience:
    """Count the list's active readers, and how many of them are on the suppression list."""
    active = (
        sa.select(Subscriber.email)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.list_id == mailing_list.id,
            Subscription.status == SubscriptionStatus.ACTIVE,
        )
        .subquery()
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(active)) or 0
    suppressed = (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(active)
            .join(Suppression, Suppression.email == active.c.email)
        )
        or 0
    )
    return Audience(active=total, suppressed=suppressed)


def plan_send(session: so.Session, path: str | Path, list_slug: str, *, base_url: str) -> SendPlan:
    """Check and compile an issue file for a list and count its audience (writes nothing)."""
    from newsletter.composer import load_issue

    mailing_list = get_list(session, list_slug)
    return _plan(session, load_issue(path), mailing_list, base_url)


def plan_send_text(
    session: so.Session,
    text: str,
    list_slug: str,
    *,
    base_url: str,
    source_name: str = "<issue>",
) -> SendPlan:
    """Like plan_send, for YAML text (pasted or uploaded); errors name source_name and line."""
    from newsletter.composer import load_issue_text

    mailing_list = get_list(session, list_slug)
    return _plan(session, load_issue_text(text, filename=source_name), mailing_list, base_url)


def _plan(session: so.Session, document: Any, mailing_list: MailingList, base_url: str) -> SendPlan:
    from newsletter.composer import compile_issue

    compiled = compile_issue(document, mailing_list, base_url=base_url)
    existing = session.scalar(
        sa.select(Issue).where(Issue.list_id == mailing_list.id, Issue.slug == compiled.slug)
    )
    return SendPlan(
        compiled=compiled,
        mailing_list=mailing_list,
        audience=count_audience(session, mailing_list),
        existing=existing,
    )


def create_ledger(session: so.Session, issue: Issue) -> int:
    """Record one queued row per active reader of the issue's list; return how many are new.

    One INSERT ... SELECT, so a million readers take seconds, not a Python loop. Rows that
    exist already are left alone (ON CONFLICT DO NOTHING): running it twice adds nobody
    twice. Readers on the suppression list are recorded as suppressed straight away.
    """
    suppressed = sa.exists().where(Suppression.email == Subscriber.email)
    now = clock.now()
    source = (
        sa.select(
            sa.literal(issue.id),
            Subscription.subscriber_id,
            Subscription.id,
            sa.case(
                (suppressed, sa.literal(DeliveryStatus.SUPPRESSED.value)),
                else_=sa.literal(DeliveryStatus.QUEUED.value),
            ),
            sa.case((suppressed, sa.literal("on the suppression list")), else_=sa.null()),
            sa.literal(0),
            sa.literal(now, type_=Delivery.__table__.c.updated_at.type),
        )
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.list_id == issue.list_id,
            Subscription.status == SubscriptionStatus.ACTIVE,
        )
    )
    columns = ["issue_id", "subscriber_id", "subscription_id", "status", "error", "attempts"]
    columns.append("updated_at")
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (
        insert(Delivery.__table__)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
    result = session.execute(statement)
    return max(result.rowcount or 0, 0)


def check_can_send(plan: SendPlan) -> None:
    """Refuse a send that was done before, or that would reach nobody."""
    issue = plan.existing
    if issue is None and plan.audience.recipients == 0:
        raise SendError(
            f"The list {plan.mailing_list.slug!r} has no active readers: nothing to send."
        )
    if issue is not None and issue.status in (IssueStatus.SENT, IssueStatus.CANCELLED):
        raise SendError(
            f"Issue {issue.slug!r} was already sent to {plan.mailing_list.slug!r} "
            f"({issue.status.value}). Give the new issue another slug to send it."
        )


def start_send(session: so.Session, plan: SendPlan, *, at: datetime | None = None) -> Issue:
    """Store the compiled issue and its ledger (or schedule it); resume an interrupted send."""
    now = clock.now()
    check_can_send(plan)
    issue = plan.existing
    if issue is not None:
        if issue.status is IssueStatus.SENDING:
            return issue
        # Paused, scheduled or draft: carry on with the version stored first.
        issue.paused_reason = None
        issue.resume_at = None
    else:
        compiled = plan.compiled
        issue_date = compiled.issue_date
        if not isinstance(issue_date, datetime):
            issue_date = datetime(
                issue_date.year, issue_date.month, issue_date.day, tzinfo=now.tzinfo
            )
        issue = Issue(
            list_id=plan.mailing_list.id,
            slug=compiled.slug,
            title=compiled.title,
            subject=compiled.subject,
            preheader=compiled.preheader,
            issue_date=issue_date,
            status=IssueStatus.DRAFT,
            source_yaml=compiled.source_yaml,
            compiled_html=compiled.html,
            compiled_text=compiled.text,
        )
        session.add(issue)
    if at is not None and at > now:
        issue.status = IssueStatus.SCHEDULED
        issue.scheduled_at = at
        session.flush()
        return issue
    issue.status = IssueStatus.SENDING
    issue.started_at = issue.started_at or now
    session.flush()
    create_ledger(session, issue)
    return issue


def find_issue(session: so.Session, ref: str | int) -> Issue:
    """Return an issue by id or slug (the newest with that slug), or raise NotFound."""
    text = str(ref).strip()
    issue = None
    if text.isdigit():
        issue = session.get(Issue, int(text))
    if issue is None:
        issue = session.scalar(
            sa.select(Issue).where(Issue.slug == text).order_by(Issue.id.desc()).limit(1)
        )
    if issue is None:
        raise NotFound(f"There is no issue {text!r}. `newsletter status` lists them.")
    return issue


def resume_issue(session: so.Session, ref: str | int) -> Issue:
    """Let a paused send go on (after the editor fixed what paused it)."""
    issue = find_issue(session, ref)
    if issue.status is not IssueStatus.PAUSED:
        raise SendError(f"Issue {issue.slug!r} is {issue.status.value}, not paused.")
    issue.status = IssueStatus.SENDING
    issue.paused_reason = None
    issue.resume_at = None
    session.flush()
    return issue


def retry_unknown(session: so.Session, ref: str | int) -> tuple[Issue, int]:
    """Queue the issue's `unknown` rows again (the editor accepts a possible second copy)."""
    issue = find_issue(session, ref)
    result = session.execute(
        sa.update(Delivery)
        .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.UNKNOWN)
        .values(
            status=DeliveryStatus.QUEUED,
            claimed_by=None,
            claimed_at=None,
            retry_at=None,
            error=None,
            updated_at=clock.now(),
        )
    )
    count = result.rowcount or 0
    if count:
        issue.status = IssueStatus.SENDING
        issue.paused_reason = None
        issue.resume_at = None
        issue.finished_at = None
        session.flush()
    return issue, count


# --- The message ---------------------------------------------------------------------------


@dataclass
class Job:
    """One ledger row in a worker's hands."""

    delivery_id: int
    issue_id: int
    subscription_id: int | None
    email: str
    name: str | None
    attempts: int
    slot: float = 0.0


class IssueRenderer:
    """An issue compiled once, personalised per reader (unsubscribe link, name)."""

    def __init__(
        self,
        *,
        issue_id: int | None,
        slug: str,
        subject: str,
        html: str,
        text: str,
        mailing_list: MailingList,
        base_url: str,
        secret_key: str,
        mailto_domain: str | None = None,
    ) -> None:
        self.issue_id = issue_id
        self.mailto_domain = mailto_domain
        self.subject = subject
        self.html = html
        self.text = text
        self.base_url = base_url
        self.secret_key = secret_key
        self.web_url = web_url(base_url, slug)
        self.from_address = mailing_list.from_address
        self.from_name = mailing_list.name
        self.reply_to = mailing_list.reply_to
        self.list_slug = mailing_list.slug
        self.list_id = list_id_header(mailing_list, base_url)
        self._templates: dict[str, MessageTemplate] = {}

    @classmethod
    def for_issue(cls, issue: Issue, mailing_list: MailingList, config: Mapping[str, Any]):
        """Build the renderer for a stored issue."""
        return cls(
            issue_id=issue.id,
            slug=issue.slug,
            subject=issue.subject,
            html=issue.compiled_html,
            text=issue.compiled_text,
            mailing_list=mailing_list,
            base_url=config["BASE_URL"],
            secret_key=config["SECRET_KEY"],
            mailto_domain=config.get("UNSUBSCRIBE_MAILTO_DOMAIN"),
        )

    def message(
        self,
        *,
        email: str,
        name: str | None,
        subscription_id: int | None,
        delivery_id: int | None = None,
        subject_prefix: str = "",
    ) -> OutgoingMessage:
        """Return one reader's message with their own unsubscribe link and SES tags."""
        from newsletter.composer import render_for_reader

        mailto = None
        if subscription_id is not None:
            unsubscribe = tokens.unsubscribe_url(self.base_url, self.secret_key, subscription_id)
            if self.mailto_domain:
                mailto = tokens.unsubscribe_mailto(
                    self.mailto_domain, self.secret_key, subscription_id
                )
        else:
            # A test copy to someone who is not on the list: the link leads to a polite 4xx.
            unsubscribe = f"{self.base_url}/u/test-copy"
        html, text = render_for_reader(
            self.html, self.text, unsubscribe_url=unsubscribe, web_url=self.web_url, name=name
        )
        # Tags are the contract with bounce handling: SES returns them in every event.
        tags = {"list": self.list_slug}
        if self.issue_id is not None and delivery_id is not None:
            tags["issue"] = str(self.issue_id)
            tags["delivery"] = str(delivery_id)
        else:
            tags["test"] = "true"
        template = self._templates.get(subject_prefix)
        if template is None:
            template = self._templates[subject_prefix] = MessageTemplate(
                from_address=self.from_address,
                from_name=self.from_name,
                subject=f"{subject_prefix}{self.subject}",
                reply_to=self.reply_to,
                list_id=self.list_id,
            )
        return template.fill(
            to_address=email,
            to_name=name,
            unsubscribe_url=unsubscribe,
            unsubscribe_mailto=mailto,
            text=text,
            html=html,
            tags=tags,
        )


def _active_reader(session: so.Session, mailing_list: MailingList, key: str) -> Any:
    """Return (subscription id, name) of the address's active subscription to the list."""
    return session.execute(
        sa.select(Subscription.id, Subscriber.name)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscriber.email == key,
            Subscription.list_id == mailing_list.id,
            Subscription.status == SubscriptionStatus.ACTIVE,
        )
    ).first()


def preview_for_reader(
    session: so.Session, plan: SendPlan, address: str, *, config: Mapping[str, Any]
) -> tuple[str, str]:
    """Return the HTML and text the address would get: its own links, else a test copy's."""
    from newsletter.addresses import InvalidAddress
    from newsletter.addresses import normalize_address
    from newsletter.composer import render_for_reader

    base_url = config["BASE_URL"]
    try:
        key = normalize_address(address).key
    except InvalidAddress:
        row = None
    else:
        row = _active_reader(session, plan.mailing_list, key)
    if row is not None:
        unsubscribe = tokens.unsubscribe_url(base_url, config["SECRET_KEY"], row.id)
    else:
        unsubscribe = f"{base_url}/u/test-copy"
    compiled = plan.compiled
    return render_for_reader(
        compiled.html,
        compiled.text,
        unsubscribe_url=unsubscribe,
        web_url=web_url(base_url, compiled.slug),
        name=row.name if row else None,
    )


def send_test_copies(
    session: so.Session,
    mailer: Mailer,
    plan: SendPlan,
    addresses: Iterable[str],
    *,
    config: Mapping[str, Any],
) -> list[str]:
    """Send "[TEST]" copies to the given addresses only; nothing is recorded in the ledger."""
    from newsletter.addresses import InvalidAddress
    from newsletter.addresses import normalize_address

    compiled = plan.compiled
    renderer = IssueRenderer(
        issue_id=None,
        slug=compiled.slug,
        subject=compiled.subject,
        html=compiled.html,
        text=compiled.text,
        mailing_list=plan.mailing_list,
        base_url=config["BASE_URL"],
        secret_key=config["SECRET_KEY"],
        mailto_domain=config.get("UNSUBSCRIBE_MAILTO_DOMAIN"),
    )
    messages = []
    for raw in addresses:
        try:
            address = normalize_address(raw)
        except InvalidAddress as exc:
            raise SendError(f"--test-to {raw!r}: {exc}") from None
        if session.scalar(sa.select(Suppression.id).where(Suppression.email == address.key)):
            raise SendError(f"{address.display} is on the suppression list; it is never mailed.")
        row = _active_reader(session, plan.mailing_list, address.key)
        messages.append(
            renderer.message(
                email=address.ascii,
                name=row.name if row else None,
                subscription_id=row.id if row else None,
                subject_prefix=TEST_PREFIX,
            )
        )
    try:
        return [mailer.send(message) for message in messages]
    except MailerError as exc:
        raise SendError(f"The test copy could not be sent: {exc}") from None


# --- Workers: registration, heartbeat, recovery after a crash ------------------------------


def new_worker_id() -> str:
    """Return a unique, readable worker id: host, process, random suffix."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_lost_workers(session: so.Session, *, lease: float) -> int:
    """Mark workers that stopped heart-beating as lost; their in-flight rows become unknown.

    A worker on this machine whose process is gone is lost at once; elsewhere, after the
    lease. Rows it had claimed but not started go back to the queue (never attempted).
    Returns how many rows became unknown.
    """
    now = clock.now()
    host = socket.gethostname()[:255]
    running = session.scalars(
        sa.select(Worker).where(Worker.status == WorkerStatus.RUNNING).with_for_update()
    ).all()
    unknown = 0
    for worker in running:
        stale = now - worker.heartbeat_at > timedelta(seconds=lease)
        dead_here = worker.hostname == host and _process_gone(worker.pid)
        if not (stale or dead_here):
            continue
        worker.status = WorkerStatus.LOST
        worker.stopped_at = now
        result = session.execute(
            sa.update(Delivery)
            .where(Delivery.claimed_by == worker.id, Delivery.status == DeliveryStatus.SENDING)
            .values(
                status=DeliveryStatus.UNKNOWN,
                error=(
                    f"worker {worker.id} stopped while sending; SES may or may not have "
                    "accepted this message"
                ),
                updated_at=now,
            )
        )
        unknown += result.rowcount or 0
        session.execute(
            sa.update(Delivery)
            .where(Delivery.claimed_by == worker.id, Delivery.status == DeliveryStatus.QUEUED)
            .values(claimed_by=None, claimed_at=None, updated_at=now)
        )
        log.warning("worker %s was lost; %s in-flight rows marked unknown", worker.id, unknown)
    session.flush()
    return unknown


def live_worker(session: so.Session, *, lease: float) -> Worker | None:
    """Return a worker that is running and heart-beating (lost ones are recovered first)."""
    recover_lost_workers(session, lease=lease)
    return session.scalar(
        sa.select(Worker)
        .where(
            Worker.status == WorkerStatus.RUNNING,
            Worker.heartbeat_at >= clock.now() - timedelta(seconds=lease),
        )
        .order_by(Worker.heartbeat_at.desc())
        .limit(1)
    )


def _finish_issues(session: so.Session, issue_ids: Iterable[int]) -> list[int]:
    """Mark sending issues with nothing queued or in flight as sent; return their ids."""
    finished = []
    for issue_id in issue_ids:
        pending = session.scalar(
            sa.select(Delivery.id)
            .where(Delivery.issue_id == issue_id, Delivery.status.in_(PENDING))
            .limit(1)
        )
        if pending is None:
            result = session.execute(
                sa.update(Issue)
                .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
                .values(status=IssueStatus.SENT, finished_at=clock.now())
            )
            if result.rowcount:
                finished.append(issue_id)
    return finished


def promote_due_issues(session: so.Session, quota_left: float | None) -> list[int]:
    """Start scheduled issues that are due and resume quota pauses that have ended."""
    now = clock.now()
    started = []
    due = session.scalars(
        sa.select(Issue)
        .where(Issue.status == IssueStatus.SCHEDULED, Issue.scheduled_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for issue in due:
        issue.status = IssueStatus.SENDING
        issue.started_at = issue.started_at or now
        session.flush()
        create_ledger(session, issue)
        started.append(issue.id)
    waiting = session.scalars(
        sa.select(Issue)
        .where(Issue.status == IssueStatus.PAUSED, Issue.resume_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    if waiting:
        for issue in waiting:
            if quota_left is None or quota_left >= 1:
                issue.status = IssueStatus.SENDING
                issue.paused_reason = None
                issue.resume_at = None
                started.append(issue.id)
            else:
                issue.resume_at = now + QUOTA_RECHECK
    session.flush()
    return started


# --- The worker ----------------------------------------------------------------------------


@dataclass
class Outcome:
    job: Job
    message_id: str | None = None
    error: BaseException | None = None
    late: bool = False  # not sent: the slot had passed


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

    concurrency: int = 8
    batch_size: int = 200
    lease: float = 30.0
    max_consecutive_errors: int = 10

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> WorkerSettings:
        values = {
            "concurrency": int(config.get("SEND_CONCURRENCY") or 8),
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


def _backoff(attempt: int) -> timedelta:
    # Exponential with full jitter, capped: many rows retrying do not come back at once.
    return timedelta(seconds=random.uniform(0.5, 1.0) * min(2**attempt, 60))


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
        self._throttled = False

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
        try:
            self._register()
            self.pacer.setup()
            with ThreadPoolExecutor(
                max_workers=self.settings.concurrency, thread_name_prefix="send"
            ) as pool:
                try:
                    self._loop(pool, until_idle)
                finally:
                    self._drain()
            self._unregister()
        finally:
            self.database.dispose()
            self._restore_signal_handlers(previous)
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

    def _wait_time(self) -> float:
        if self._pending:
            return 0.0
        if self._in_flight - len(self._pending) >= self.settings.concurrency:
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
        free = self.settings.concurrency - self._in_flight + len(self._pending)
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
        if self._throttled:
            # After the commit: the shared row has its own short transaction (SQLite
            # would wait on our own write lock otherwise).
            self._throttled = False
            self._slots.clear()
            try:
                self.pacer.throttled()
            except sqlalchemy.exc.OperationalError as exc:
                log.error("could not slow the shared rate down: %s", exc)
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
                row["retry_at"] = now + _backoff(1)
                row["error"] = str(error)
                self.progress.throttled += 1
                self._throttled = True
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
                row["retry_at"] = now + _backoff(job.attempts + 1)
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
                    log.error("could not send delivery %s", job.delivery_id, exc_info=error)
                    row["error"] = f"{type(error).__name__}: {error}"
                self.progress.failed += 1
                streak.append(job.delivery_id)
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
                self.progress.finished.extend(_finish_issues(session, sending))
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


# --- Status --------------------------------------------------------------------------------


@dataclass
class IssueReport:
    """Where a send stands: counts by status, failure reasons, unknown rows, rate."""

    issue: Issue
    list_slug: str
    counts: dict[DeliveryStatus, int]
    failures: list[tuple[str, int]]
    unknown: list[str]
    rate: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _report_for(session: so.Session, issue: Issue) -> IssueReport:
    counts = Counter(
        {
            status: count
            for status, count in session.execute(
                sa.select(Delivery.status, sa.func.count())
                .where(Delivery.issue_id == issue.id)
                .group_by(Delivery.status)
            )
        }
    )
    failures = [
        (error or "unknown reason", count)
        for error, count in session.execute(
            sa.select(Delivery.error, sa.func.count())
            .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.FAILED)
            .group_by(Delivery.error)
            .order_by(sa.func.count().desc())
            .limit(10)
        )
    ]
    unknown = list(
        session.scalars(
            sa.select(Subscriber.display_email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.UNKNOWN)
            .order_by(Subscriber.email)
            .limit(100)
        )
    )
    first, last, sent = session.execute(
        sa.select(
            sa.func.min(Delivery.sent_at), sa.func.max(Delivery.sent_at), sa.func.count()
        ).where(Delivery.issue_id == issue.id, Delivery.sent_at.is_not(None))
    ).one()
    rate = None
    if sent and first is not None and last is not None:
        start = issue.started_at or first
        seconds = (last - start).total_seconds()
        rate = sent / seconds if seconds > 0 else None
    return IssueReport(
        issue=issue,
        list_slug=issue.list.slug,
        counts=dict(counts),
        failures=failures,
        unknown=unknown,
        rate=rate,
    )


def issue_report(session: so.Session, ref: str | int, *, lease: float = 30.0) -> IssueReport:
    """Return the state of one issue's send (recovering rows of lost workers first)."""
    recover_lost_workers(session, lease=lease)
    return _report_for(session, find_issue(session, ref))


def recent_reports(
    session: so.Session, *, limit: int = 20, lease: float = 30.0
) -> list[IssueReport]:
    """Return the state of the most recent sends, newest first."""
    recover_lost_workers(session, lease=lease)
    issues = session.scalars(sa.select(Issue).order_by(Issue.id.desc()).limit(limit))
    return [_report_for(session, issue) for issue in issues]
