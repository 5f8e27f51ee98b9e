"""Background imports for the console: an ImportJob row per upload, its progress and end."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import BinaryIO

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import mail
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.imports.importer import Importer
from newsletter.imports.report import BadRow
from newsletter.imports.report import ImportReport
from newsletter.models import ImportJob
from newsletter.models import ImportMode
from newsletter.models import ImportStatus
from newsletter.models import MailingList

log = logging.getLogger(__name__)

# The console's progress figures are written at most this often (seconds).
JOB_UPDATE_INTERVAL = 0.5
# A running job's row is touched at least this often (seconds), even while no batch ends
# (a double opt-in batch waits on the sending rate). A queued or running job nobody
# touched for JOB_STALE_AFTER belongs to a process that is gone (restarted, crashed):
# the console then shows it failed instead of running for ever.
JOB_HEARTBEAT = 15.0
JOB_STALE_AFTER = timedelta(minutes=2)
STALLED_JOB_ERROR = "the process running it ended (a restart or a crash) before the import finished"


def create_job(
    session: so.Session,
    mailing_list: MailingList,
    filename: str,
    mode: ImportMode | str,
    email_column: str | None,
    name_column: str | None,
    bytes_total: int,
) -> ImportJob:
    """Record a queued import of an uploaded file (run it with run_job)."""
    job = ImportJob(
        list_id=mailing_list.id,
        filename=(filename or "upload.csv")[:255],
        mode=ImportMode(mode),
        status=ImportStatus.QUEUED,
        email_column=email_column or None,
        name_column=name_column or None,
        bytes_total=max(0, bytes_total or 0),
    )
    session.add(job)
    session.flush()
    return job


def _counters(report: ImportReport) -> dict[str, Any]:
    return {
        "rows": report.rows,
        "imported": report.imported,
        "confirmations": report.confirmations,
        "merged": report.merged,
        "refused": report.refused,
        "blank": report.blank,
        "bad_count": report.bad_count,
    }


def _mark_if_stalled(job: ImportJob, now: datetime) -> None:
    """Fail a queued or running job whose process stopped touching it (see JOB_HEARTBEAT).

    Only the job's own row is written, and only when it has stalled: the console polls
    these pages while an import's batches hold SQLite's write lock.
    """
    if job.status not in (ImportStatus.QUEUED, ImportStatus.RUNNING):
        return
    if job.updated_at is None or now - job.updated_at < JOB_STALE_AFTER:
        return
    job.status = ImportStatus.FAILED
    job.error = STALLED_JOB_ERROR
    job.finished_at = now


def get_job(session: so.Session, job_id: int) -> ImportJob:
    """Return an import job, or raise NotFound; a stalled one is marked failed first."""
    job = session.get(ImportJob, job_id)
    if job is None:
        raise NotFound(f"There is no import {job_id}.")
    _mark_if_stalled(job, clock.now())
    return job


def recent_jobs(session: so.Session, limit: int = 20) -> list[ImportJob]:
    """Return the latest import jobs, newest first, lists loaded, stalled ones failed."""
    jobs = list(
        session.scalars(
            sa.select(ImportJob)
            .options(so.joinedload(ImportJob.list))
            .order_by(ImportJob.id.desc())
            .limit(limit)
        )
    )
    now = clock.now()
    for job in jobs:
        _mark_if_stalled(job, now)
    return jobs


def bad_rows(job: ImportJob) -> list[BadRow]:
    """Return a job's recorded bad rows."""
    return [BadRow(**item) for item in json.loads(job.bad_rows or "[]")]


def _update_job(database: Database, job_id: int, **values: Any) -> None:
    with database.transaction() as session:
        session.execute(
            sa.update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(updated_at=clock.now(), **values)
        )


class _Heartbeat:
    """Touch a job's row while it runs, when its progress has not for JOB_HEARTBEAT s."""

    def __init__(self, database: Database, job_id: int, last_write: Callable[[], float]):
        self._database, self._job_id, self._last_write = database, job_id, last_write
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"import-{job_id}-heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(JOB_HEARTBEAT):
            if time.monotonic() - self._last_write() < JOB_HEARTBEAT:
                continue
            try:
                _update_job(self._database, self._job_id)
            except sa.exc.SQLAlchemyError:
                # The import itself will meet the same trouble and report it.
                log.warning("import job %s: heartbeat not written", self._job_id, exc_info=True)

    def stop(self) -> None:
        """Stop beating (before the job's last write) and wait for the thread."""
        self._stopped.set()
        self._thread.join()


def run_job(
    database: Database,
    job_id: int,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    mailer: mail.Mailer,
    config: Mapping[str, Any],
    batch_size: int = 5000,
) -> None:
    """Run a queued import, writing its progress to the job; it ends `done` or `failed`.

    Progress goes to the job row in short transactions of its own, at most every
    JOB_UPDATE_INTERVAL seconds, so the console can poll it while batches commit; a
    heartbeat touches the row every JOB_HEARTBEAT seconds when no progress did.
    """
    with database.transaction() as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise NewsletterError(f"there is no import job {job_id}")
        slug, filename = job.list.slug, job.filename
        mode, email_column, name_column = job.mode, job.email_column, job.name_column
        job.status = ImportStatus.RUNNING
        job.started_at = clock.now()
        job.error = None
    last = 0.0
    seen = {"bytes_done": 0, "bytes_total": 0}

    def on_batch(report: ImportReport, done: int, total: int) -> None:
        nonlocal last
        seen.update(bytes_done=done, bytes_total=total)
        if time.monotonic() - last < JOB_UPDATE_INTERVAL:
            return
        last = time.monotonic()
        _update_job(database, job_id, **seen, **_counters(report))

    importer: Importer | None = None
    status, error = ImportStatus.DONE, None
    beating = _Heartbeat(database, job_id, lambda: last)
    try:
        importer = Importer(
            database,
            slug,
            mode=mode,
            mailer=mailer,
            config=config,
            source_label=f"import: {filename}",
            batch_size=batch_size,
            on_batch=on_batch,
        )
        importer.run(source, email_column, name_column)
    except NewsletterError as exc:
        status, error = ImportStatus.FAILED, str(exc)
    except Exception as exc:
        log.exception("import job %s failed", job_id)
        status, error = ImportStatus.FAILED, f"unexpected error: {exc}"
    finally:
        beating.stop()
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": clock.now()}
    values.update(seen)
    if importer is not None:
        report = importer.report
        values.update(_counters(report))
        values["bad_rows"] = json.dumps([asdict(b) for b in report.bad], ensure_ascii=False)
        if report.email_column is not None:
            values.update(email_column=report.email_column, name_column=report.name_column)
    try:
        _update_job(database, job_id, **values)
    except sa.exc.SQLAlchemyError:
        if status is ImportStatus.DONE:
            raise
        log.exception("could not record the failure of import job %s", job_id)
