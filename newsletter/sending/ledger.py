"""The delivery ledger: one row per reader and issue, workers' registration and recovery."""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter.db import UTCDateTime
from newsletter.db import dialect_insert
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

_DELIVERY = cast(sa.Table, Delivery.__table__)
log = logging.getLogger(__name__)

QUOTA_RECHECK = timedelta(minutes=10)

PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


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
    statement = (
        dialect_insert(session, Delivery)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
    result = session.execute(statement)
    return max(rowcount(result), 0)


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


def db_clock(session: so.Session) -> sa.ColumnElement[datetime]:
    """Return a SQL expression for the database's current time (UTC, timezone-aware).

    Leases are judged with it: every worker writes its heartbeat with the database's
    clock and every judge compares with the same clock, so a host whose clock is off
    changes nothing.
    """
    if session.get_bind().dialect.name == "postgresql":
        expression = sa.func.clock_timestamp()
    else:
        # The format SQLAlchemy stores SQLite timestamps in (microseconds).
        expression = sa.func.strftime("%Y-%m-%d %H:%M:%f000", "now")
    return sa.type_coerce(expression, UTCDateTime())


def db_now(session: so.Session) -> datetime:
    """Return the database's current time."""
    return session.execute(sa.select(db_clock(session))).scalar_one()


# PostgreSQL advisory lock key: one recovery at a time (two sweeping the same rows in
# different orders could deadlock each other).
RECOVERY_LOCK = 0x6E6C7277


def recover_lost_workers(session: so.Session, *, lease: float) -> int:
    """Mark workers that stopped heart-beating as lost and recover rows left by any worker
    that is no longer running; return how many rows became unknown.

    A worker whose heartbeat (database clock) is older than the lease is lost; on this
    machine, a worker whose process is gone is lost at once. Rows left `sending` by a
    worker that is not running (lost, crashed, or stopped with calls still in flight)
    become `unknown`: SES may have taken them. Rows a lost worker had claimed but never
    started go back to the queue.
    """
    if session.get_bind().dialect.name == "postgresql" and not session.scalar(
        sa.select(sa.func.pg_try_advisory_xact_lock(RECOVERY_LOCK))
    ):
        return 0  # another worker is recovering right now
    now = db_now(session)
    host = socket.gethostname()[:255]
    # SKIP LOCKED: a worker whose row is locked is writing its heartbeat right now.
    candidates = session.scalars(
        sa.select(Worker)
        .where(
            Worker.status == WorkerStatus.RUNNING,
            sa.or_(Worker.heartbeat_at < now - timedelta(seconds=lease), Worker.hostname == host),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for worker in candidates:
        stale = now - worker.heartbeat_at > timedelta(seconds=lease)
        dead_here = worker.hostname == host and _process_gone(worker.pid)
        if not (stale or dead_here):
            continue
        worker.status = WorkerStatus.LOST
        worker.stopped_at = now
        log.warning(
            "worker %s is lost (%s); its rows are recovered",
            worker.id,
            "its process is gone" if dead_here else f"no heartbeat for over {lease:g} s",
        )
        claimed = _lockable(
            session,
            sa.select(Delivery.id).where(owned_by(worker.id, DeliveryStatus.QUEUED)),
        )
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(claimed), Delivery.status == DeliveryStatus.QUEUED)
            .values(claimed_by=None, claimed_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    # Rows `sending` under any worker that is not running. Only sends that can still have
    # rows in flight: the statement stays on the (issue, status) index.
    alive = sa.select(Worker.id).where(Worker.status == WorkerStatus.RUNNING)
    open_issues = sa.select(Issue.id).where(
        Issue.status.in_((IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.CANCELLED))
    )
    orphans = _lockable(
        session,
        sa.select(Delivery.id).where(
            Delivery.issue_id.in_(open_issues),
            Delivery.status == DeliveryStatus.SENDING,
            sa.or_(Delivery.claimed_by.is_(None), Delivery.claimed_by.not_in(alive)),
        ),
    )
    if not orphans:
        return 0
    result = session.execute(
        sa.update(Delivery)
        .where(Delivery.id.in_(orphans), Delivery.status == DeliveryStatus.SENDING)
        .values(
            status=DeliveryStatus.UNKNOWN,
            error=sa.literal("worker ")
            + sa.func.coalesce(Delivery.claimed_by, "?")
            + " stopped while sending; SES may or may not have accepted this message",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    unknown = rowcount(result)
    if unknown:
        log.warning("%s rows left sending by stopped workers are now unknown", unknown)
    return unknown or 0


def _lockable(session: so.Session, query: sa.Select) -> list[int]:
    """Return the ids the query finds, skipping rows another transaction holds: a worker
    stalled inside a transaction must not stall its peers' recovery (its rows are
    recovered once its session ends)."""
    return list(session.scalars(query.with_for_update(skip_locked=True)))


def live_worker(session: so.Session, *, lease: float) -> Worker | None:
    """Return a worker that is running and heart-beating (lost ones are recovered first)."""
    recover_lost_workers(session, lease=lease)
    return session.scalar(
        sa.select(Worker)
        .where(
            Worker.status == WorkerStatus.RUNNING,
            Worker.heartbeat_at >= db_now(session) - timedelta(seconds=lease),
        )
        .order_by(Worker.heartbeat_at.desc())
        .limit(1)
    )


# --- A worker's own rows: every write is fenced by ownership --------------------------------


def owned_by(
    worker_id: str | None,
    status: DeliveryStatus,
    *or_statuses: DeliveryStatus,
    running: bool = False,
) -> sa.ColumnElement[bool]:
    """Return the fence on writes to ledger rows: claimed by this worker (None: by no
    worker) and in one of these statuses; with `running`, only while the worker is still
    `running` (not declared lost meanwhile).

    Several statuses are OR-ed, not IN: an executemany UPDATE cannot expand a list.
    """
    in_status = Delivery.status == status
    if or_statuses:
        in_status = sa.or_(*(Delivery.status == each for each in (status, *or_statuses)))
    conditions = [Delivery.claimed_by == worker_id, in_status]
    if running:
        conditions.append(
            sa.select(Worker.id)
            .where(Worker.id == worker_id, Worker.status == WorkerStatus.RUNNING)
            .exists()
        )
    return sa.and_(*conditions)


def heartbeat(session: so.Session, worker_id: str) -> datetime | None:
    """Renew the worker's lease (database clock); return the database time, or None when
    the worker is no longer `running` (another worker declared it lost)."""
    return session.scalar(
        sa.update(Worker)
        .where(Worker.id == worker_id, Worker.status == WorkerStatus.RUNNING)
        .values(heartbeat_at=db_clock(session))
        .returning(Worker.heartbeat_at)
        .execution_options(synchronize_session=False)
    )


def claim(
    session: so.Session, worker_id: str, issue_ids: list[int], limit: int, now: datetime
) -> list[Job]:
    """Claim up to `limit` queued rows of the issues for the worker; return them as jobs.

    `SELECT ... FOR UPDATE SKIP LOCKED` hands each row to one worker on PostgreSQL; the
    UPDATE is fenced as well (unclaimed and queued), so a row is never claimed twice.
    """
    candidates = (
        sa.select(Delivery.id)
        .where(
            Delivery.issue_id.in_(issue_ids),
            owned_by(None, DeliveryStatus.QUEUED),
            sa.or_(Delivery.retry_at.is_(None), Delivery.retry_at <= now),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if not ids:
        return []
    claimed = list(
        session.scalars(
            sa.update(Delivery)
            .where(Delivery.id.in_(ids), owned_by(None, DeliveryStatus.QUEUED))
            .values(claimed_by=worker_id, claimed_at=now)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not claimed:
        return []
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
        .where(Delivery.id.in_(claimed))
        .order_by(Delivery.id)
    ).all()
    return [
        Job(
            delivery_id=row.id,
            issue_id=row.issue_id,
            subscription_id=row.subscription_id,
            email=row.display_email,
            name=row.name,
            attempts=row.attempts,
        )
        for row in rows
    ]


def mark_sending(session: so.Session, worker_id: str, ids: list[int], now: datetime) -> set[int]:
    """Mark the worker's claimed rows `sending` (before their SES call); return the ids marked.

    Fenced: only rows still queued and claimed by this worker, and only while the worker
    is `running`. A row missing from the answer is no longer the worker's to send.
    """
    if not ids:
        return set()
    return set(session.scalars(_mark_sending_statement(worker_id), {"ids": ids, "now": now}))


# The statements of every loop round are built once per worker: building one and its
# cache key costs SQLAlchemy 0.2-0.35 ms each time, in the main thread.
@functools.lru_cache(maxsize=32)
def _mark_sending_statement(worker_id: str) -> sa.Update:
    return (
        sa.update(Delivery)
        .where(
            Delivery.id.in_(sa.bindparam("ids", expanding=True)),
            owned_by(worker_id, DeliveryStatus.QUEUED, running=True),
        )
        .values(
            status=DeliveryStatus.SENDING,
            error=None,
            updated_at=sa.bindparam("now", type_=_DELIVERY.c.updated_at.type),
        )
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )


def mark_suppressed(
    session: so.Session, worker_id: str, reasons: dict[int, str], now: datetime
) -> None:
    """Record claimed rows not sent because the reader left or is suppressed (fenced)."""
    if not reasons:
        return
    _fenced_executemany(
        session,
        (worker_id, (DeliveryStatus.QUEUED,)),
        [
            {
                "id": delivery_id,
                "status": DeliveryStatus.SUPPRESSED,
                "error": reason,
                "updated_at": now,
            }
            for delivery_id, reason in reasons.items()
        ],
    )


def record(session: so.Session, worker_id: str, rows: list[dict[str, Any]]) -> None:
    """Write outcomes on the worker's rows (dicts with "id" and the new values), fenced.

    Only rows this worker still holds (`sending`, or `unknown` after recovery took it for
    lost: its own answer settles them) take the result. A row an SNS event already moved
    on (delivered, bounced), or that the editor queued again, is left alone.
    """
    if not rows:
        return
    _fenced_executemany(
        session, (worker_id, (DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN)), rows
    )


def _fenced_executemany(
    session: so.Session, fence: tuple[str, tuple[DeliveryStatus, ...]], rows: list[dict[str, Any]]
) -> None:
    # One Core UPDATE ... WHERE id = ? AND <fence>, executed for every row: the ORM's bulk
    # update by primary key did the same SQL with about 0.1 ms of bookkeeping per row, in
    # the worker's main thread, on the loop's critical path. Every row has the same keys.
    names = tuple(name for name in rows[0] if name != "id")
    session.connection().execute(
        _fenced_update(*fence, names),
        [{"row_id": row["id"], **{f"new_{name}": row[name] for name in names}} for row in rows],
    )


@functools.lru_cache(maxsize=32)
def _fenced_update(
    worker_id: str, statuses: tuple[DeliveryStatus, ...], names: tuple[str, ...]
) -> sa.Update:
    table = _DELIVERY
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("row_id", type_=table.c.id.type),
            owned_by(worker_id, *statuses),
        )
        .values({name: sa.bindparam(f"new_{name}", type_=table.c[name].type) for name in names})
    )


def release(session: so.Session, worker_id: str, ids: list[int]) -> None:
    """Give the worker's claimed, never-sent rows back to the queue, unclaimed."""
    if not ids:
        return
    session.execute(
        sa.update(Delivery)
        .where(Delivery.id.in_(ids), owned_by(worker_id, DeliveryStatus.QUEUED))
        .values(claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )


def requeue_failed(session: so.Session, worker_id: str, ids: list[int]) -> int:
    """Put the worker's failed rows back in the queue, unclaimed; return how many."""
    return rowcount(
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(ids), owned_by(worker_id, DeliveryStatus.FAILED))
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, retry_at=None)
            .execution_options(synchronize_session=False)
        )
    )


def release_all(session: so.Session, worker_id: str, now: datetime) -> int:
    """A stopping worker's last write: queued rows back unclaimed, and rows still
    `sending` (calls that never came back) `unknown`; return how many became unknown."""
    session.execute(
        sa.update(Delivery)
        .where(owned_by(worker_id, DeliveryStatus.QUEUED))
        .values(claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(
        session.execute(
            sa.update(Delivery)
            .where(owned_by(worker_id, DeliveryStatus.SENDING))
            .values(
                status=DeliveryStatus.UNKNOWN,
                error=(
                    "the worker stopped before SES answered; SES may or may not have "
                    "accepted this message"
                ),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    )


def cancel_queued(session: so.Session, issue_ids: list[int] | sa.Select) -> int:
    """Record the queued rows of cancelled issues `cancelled` (claimed ones too: their
    worker finds them gone and skips them); return how many."""
    return rowcount(
        session.execute(
            sa.update(Delivery)
            .where(Delivery.issue_id.in_(issue_ids), Delivery.status == DeliveryStatus.QUEUED)
            .values(
                status=DeliveryStatus.CANCELLED,
                claimed_by=None,
                claimed_at=None,
                retry_at=None,
                error="the send was cancelled",
                updated_at=clock.now(),
            )
            .execution_options(synchronize_session=False)
        )
    )


def finish_issues(session: so.Session, issue_ids: Iterable[int]) -> list[int]:
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
            if rowcount(result):
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
