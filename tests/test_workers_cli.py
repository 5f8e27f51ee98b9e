"""`newsletter workers` (who runs, heartbeat, holdings) and a read-only `newsletter status`."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Worker
from newsletter.models import WorkerStatus


def _worker(db_session: Any, name: str, status: WorkerStatus, silent: float) -> Worker:
    now = datetime.now(UTC)  # heartbeats are judged on the database's clock, not the app's
    worker = Worker(
        id=name,
        hostname="far-away-host",  # not this machine: no "process gone" shortcut
        pid=4242,
        concurrency=8,
        status=status,
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=silent),
    )
    db_session.add(worker)
    return worker


def _hold(db_session: Any, rows: list[Delivery], worker: str, status: DeliveryStatus) -> None:
    for row in rows:
        row.claimed_by = worker
        row.status = status


def _state(db_session: Any) -> list[tuple]:
    db_session.expire_all()
    state = [
        *db_session.execute(
            sa.select(Delivery.id, Delivery.status, Delivery.claimed_by).order_by(Delivery.id)
        ).all(),
        *db_session.execute(sa.select(Worker.id, Worker.status).order_by(Worker.id)).all(),
    ]
    db_session.rollback()
    return state


def test_no_workers(runner: Any) -> None:
    result = runner("workers")
    assert result.exit_code == 0
    assert "No workers running." in result.output
    assert "No workers yet." in runner("workers", "--all").output


def test_workers_heartbeat_and_holdings(runner: Any, db_session: Any, make_ledger: Any) -> None:
    issue, rows = make_ledger([f"r{i}@example.org" for i in range(5)])
    _worker(db_session, "alive", WorkerStatus.RUNNING, silent=3)
    _worker(db_session, "silent", WorkerStatus.RUNNING, silent=600)
    _worker(db_session, "done", WorkerStatus.STOPPED, silent=7200)
    _hold(db_session, rows[:2], "alive", DeliveryStatus.SENDING)
    _hold(db_session, rows[2:3], "alive", DeliveryStatus.QUEUED)
    _hold(db_session, rows[3:4], "silent", DeliveryStatus.SENDING)
    issue_id = issue.id
    db_session.commit()
    before = _state(db_session)

    result = runner("workers")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    alive = next(i for i, line in enumerate(lines) if line.startswith("alive\t"))
    assert "running" in lines[alive] and "far-away-host" in lines[alive]
    assert "pid 4242" in lines[alive] and "8 at a time" in lines[alive]
    assert lines[alive + 1] == f"  issue {issue_id}: 2 sending, 1 claimed"
    silent = next(line for line in lines if line.startswith("silent\t"))
    assert "overdue" in silent and "heartbeat 10 min ago" in silent
    assert "done" not in result.output
    everyone = runner("workers", "--all").output
    assert "done\tfar-away-host\tpid 4242\tstopped" in everyone
    assert _state(db_session) == before  # listing changes nothing


def test_status_only_reads(runner: Any, db_session: Any, make_ledger: Any) -> None:
    issue, rows = make_ledger(["a@example.org", "b@example.org", "c@example.org"])
    _worker(db_session, "gone", WorkerStatus.RUNNING, silent=3600)
    _hold(db_session, rows[:2], "gone", DeliveryStatus.SENDING)
    issue_id = issue.id
    db_session.commit()
    before = _state(db_session)

    summary = runner("status")
    detail = runner("status", str(issue_id))
    assert summary.exit_code == 0 and detail.exit_code == 0, summary.output + detail.output
    for output in (summary.output, detail.output):
        assert "2 messages are held by workers that stopped or went silent" in output
    assert "sending: 2" in detail.output
    assert _state(db_session) == before  # nothing recovered, nothing marked lost


def test_console_pages_only_read(admin_client: Any, db_session: Any, make_ledger: Any) -> None:
    """The issue pages and the progress JSON show a stopped worker's rows, never recover them."""
    issue, rows = make_ledger(["a@example.org", "b@example.org", "c@example.org"])
    _worker(db_session, "gone", WorkerStatus.RUNNING, silent=3600)
    _hold(db_session, rows[:2], "gone", DeliveryStatus.SENDING)
    issue_id = issue.id
    db_session.commit()
    before = _state(db_session)

    for path in ("/admin/issues", f"/admin/issues/{issue_id}", f"/admin/issues/{issue_id}.json"):
        assert admin_client.get(path).status_code == 200, path
    assert admin_client.get(f"/admin/issues/{issue_id}.json").get_json()["counts"]["sending"] == 2
    assert _state(db_session) == before  # nothing recovered, nothing marked lost
