"""Delivery inside the web process, for when no `newsletter worker` runs (the laptop mode).

With SQLite and the outbox backend an editor may have only `newsletter serve` running: a
send started in the console would then wait forever. The web app asks `needed()` after a
send starts; if no worker of another process is heart-beating, `kick()` runs one
DeliveryWorker in a daemon thread, with its own database engine, until nothing is left to
send. A send started while it runs is picked up by the same thread (it runs again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy.orm as so

from newsletter import sending
from newsletter.config import settings_of
from newsletter.db import Database
from newsletter.mail import Mailer
from newsletter.pacing import PaceSettings
from newsletter.pacing import decide_settings
from newsletter.pacing import quota_source_for

log = logging.getLogger(__name__)


class BackgroundDelivery:
    """At most one in-process delivery thread; kicked again by each new send."""

    def __init__(self, database: Database, mailer: Mailer, config: Mapping[str, Any]) -> None:
        self.database = database
        self.mailer = mailer
        self.config = dict(config)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._idle = threading.Event()
        self._idle.set()
        self.worker_ids: set[str] = set()

    def needed(self, session: so.Session) -> bool:
        """True when no worker of another process is running to deliver a new send."""
        lease = float(settings_of(self.config).worker_lease)
        worker = sending.live_worker(session, lease=lease)
        return worker is None or worker.id in self.worker_ids

    def pace(self) -> PaceSettings:
        """Read the send rate (the SES quota) now; raises QuotaUnavailable before any store."""
        return decide_settings(self.config.get("SEND_RATE"), quota_source_for(self.mailer))

    def kick(self) -> None:
        """Make sure the delivery thread runs (again) and sees the sends started so far."""
        with self._lock:
            self._again = True
            if self._thread is not None and self._thread.is_alive():
                return
            self._idle.clear()
            self._thread = threading.Thread(
                target=self._run, name="newsletter-delivery", daemon=True
            )
            self._thread.start()

    def running(self) -> bool:
        """True while the thread is delivering."""
        return not self._idle.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the thread has nothing left to send; True if it finished in time."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._again:
                    self._thread = None
                    self._idle.set()
                    return
                self._again = False
            try:
                self._deliver()
            except sending.WorkerBusy as exc:
                # SQLite: a `newsletter worker` or `send` started meanwhile; it delivers.
                log.info("background delivery not needed: %s", exc)
            except Exception:  # the thread must end cleanly; rows stay queued
                log.exception("background delivery stopped")

    def _deliver(self) -> None:
        settings = sending.WorkerSettings.from_config(self.config)
        mailer = sending.worker_mailer(self.mailer, self.config, settings.concurrency)
        source = quota_source_for(mailer)
        worker = sending.DeliveryWorker(
            self.database,
            mailer,
            self.config,
            decide_settings(self.config.get("SEND_RATE"), source),
            settings=settings,
            quota_source=source,
        )
        self.worker_ids.add(worker.id)
        progress = worker.run(until_idle=True)
        log.info(
            "background delivery done: sent %s, failed %s, suppressed %s",
            progress.sent,
            progress.failed,
            progress.suppressed,
        )
