"""The delivery ledger: one row per reader and issue, workers' registration and recovery."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
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
