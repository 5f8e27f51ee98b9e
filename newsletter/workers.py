"""The delivery workers as operators see them: alive or not, their heartbeat, what each holds.

Read-only: judging a worker lost and recovering its rows is the workers' own job
(newsletter.sending.ledger.recover_lost_workers, run by every worker as it goes).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Worker
from newsletter.models import WorkerStatus
from newsletter.sending.ledger import db_now


@dataclass
class WorkerView:
    """One worker: its row, how long since its heartbeat, and the rows it holds by issue."""

    worker: Worker
    silent_for: timedelta
    overdue: bool  # running, but no heartbeat within the lease: a worker will recover it
    # issue id -> {"queued": claimed, not started; "sending": handed to SES, no answer yet}
    holds: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def held(self) -> int:
        return sum(sum(counts.values()) for counts in self.holds.values())


def list_workers(
    session: so.Session, *, lease: float, everyone: bool = False, limit: int = 50
) -> list[WorkerView]:
    """Return the running workers (with `everyone`, also stopped and lost), newest first."""
    now = db_now(session)
    query = sa.select(Worker).order_by(Worker.started_at.desc(), Worker.id).limit(limit)
    if not everyone:
        query = query.where(Worker.status == WorkerStatus.RUNNING)
    workers = list(session.scalars(query))
    holds: dict[str, dict[int, dict[str, int]]] = defaultdict(dict)
    if workers:
        rows = session.execute(
            sa.select(Delivery.claimed_by, Delivery.issue_id, Delivery.status, sa.func.count())
            .where(
                Delivery.claimed_by.in_([w.id for w in workers]),
                Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
            )
            .group_by(Delivery.claimed_by, Delivery.issue_id, Delivery.status)
        )
        for worker_id, issue_id, status, count in rows:
            holds[str(worker_id)].setdefault(issue_id, {})[status.value] = count
    views = []
    for worker in workers:
        silent = max(now - worker.heartbeat_at, timedelta(0))
        overdue = worker.status is WorkerStatus.RUNNING and silent > timedelta(seconds=lease)
        views.append(WorkerView(worker, silent, overdue, holds.get(worker.id, {})))
    return views


def held_by_silent_workers(session: so.Session, *, lease: float) -> int:
    """Count rows `sending` or claimed by workers that are not running or have gone silent.

    What `newsletter status` shows instead of recovering them: the next worker to run
    marks them `unknown` (sending) or queues them again (claimed).
    """
    cutoff = db_now(session) - timedelta(seconds=lease)
    alive = sa.select(Worker.id).where(
        Worker.status == WorkerStatus.RUNNING, Worker.heartbeat_at >= cutoff
    )
    return (
        session.scalar(
            sa.select(sa.func.count()).where(
                Delivery.claimed_by.is_not(None),
                Delivery.claimed_by.not_in(alive),
                Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
            )
        )
        or 0
    )


def age(delta: timedelta) -> str:
    """`4 s`, `12 min`, `3 h`, `2 d`: how long ago, for tables."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def when(moment: datetime | None) -> str:
    """A time for tables, UTC."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
