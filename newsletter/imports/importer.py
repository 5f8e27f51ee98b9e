"""Running an import: read the file ahead in a thread, store its batches, count, report."""

from __future__ import annotations

import csv
import os
import queue
import threading
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from contextlib import closing
from typing import Any
from typing import BinaryIO
from typing import TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import mail
from newsletter import subscriptions
from newsletter.db import Database
from newsletter.imports.batches import Batch
from newsletter.imports.batches import Stored
from newsletter.imports.batches import Subscribe
from newsletter.imports.batches import prepare
from newsletter.imports.batches import subscribe_consented
from newsletter.imports.reading import CsvFile
from newsletter.imports.reading import check_file
from newsletter.imports.reading import open_source
from newsletter.imports.reading import resolve_columns
from newsletter.imports.report import ImportFileError
from newsletter.imports.report import ImportReport
from newsletter.imports.report import ProgressCallback
from newsletter.imports.rows import Entry
from newsletter.imports.rows import check_row
from newsletter.lists import get_list
from newsletter.models import ImportMode
from newsletter.models import MailingList
from newsletter.models import Subscriber

# Double opt-in batches are small: their confirmation emails wait in memory for the commit.
DOUBLE_OPT_IN_BATCH = 200
# Consented imports into PostgreSQL store this many batches at once, each on its own
# connection: the server's work per row (indexes, trigram search entries, foreign-key
# checks) then runs on more than one core. Addresses are split between the lanes by key,
# so the lanes never touch the same subscriber: no lock waits, no deadlocks, and repeats
# of an address are still stored in file order.
POSTGRES_LANES = 2


_T = TypeVar("_T")


def _read_ahead(items: Iterator[_T], depth: int = 2) -> Generator[_T, None, None]:
    """Yield what `items` yields, produced by a thread up to `depth` items ahead.

    An exception in the thread is raised here, after the items before it. Closing this
    generator (contextlib.closing) stops and joins the thread, so that the caller may
    close what the thread reads from.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))
        else:
            put(("done", None))

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()


class Importer:
    def __init__(
        self,
        database: Database,
        list_slug: str,
        *,
        mode: ImportMode,
        mailer: mail.Mailer,
        config: Mapping[str, Any],
        source_label: str,
        batch_size: int,
        on_batch: Callable[[ImportReport, int, int], None] | None,
    ) -> None:
        self.database = database
        self.mode = ImportMode(mode)
        self.mailer = mailer
        self.config = config
        self.label = (source_label or "import")[: subscriptions.MAX_FORM_LENGTH]
        if self.mode is ImportMode.DOUBLE_OPT_IN:
            batch_size = min(batch_size, DOUBLE_OPT_IN_BATCH)
        self.batch_size = max(1, batch_size)
        self.on_batch = on_batch
        self.report = ImportReport()
        with database.session() as session:
            self.list_id = get_list(session, list_slug).id

    def run(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        email_column: str | None,
        name_column: str | None,
    ) -> ImportReport:
        report = self.report
        with open_source(source) as (stream, total):
            if stream.seekable():
                check_file(stream)
            parsed = CsvFile(stream)
            email_index, name_index = resolve_columns(parsed.header, email_column, name_column)
            report.email_column = parsed.header[email_index]
            report.name_column = parsed.header[name_index] if name_index is not None else None
            report.blank += parsed.blank_before_header
            lanes = self._lanes()
            batches = self._batches(parsed, email_index, name_index, lanes)
            # Parsing runs in a thread, a batch or two ahead, while the database stores the
            # previous batch: the two overlap instead of taking turns.
            with closing(_read_ahead(batches, depth=2 * lanes)) as ahead:
                if lanes == 1:
                    with self.database.session() as session:
                        for _, entries, done, last in ahead:
                            self._count(self._store(session, entries))
                            if not last:
                                self._progress(done, total)
                else:
                    self._store_in_lanes(ahead, lanes, total)
        if report.rows == 0:
            raise ImportFileError(
                f"the file has no rows to import: only its header (line {parsed.header_line}) "
                "and blank lines"
            )
        self._progress(parsed.lines.bytes_done, total)
        return report

    def _lanes(self) -> int:
        """How many batches to store at once (one unless consented into PostgreSQL)."""
        if self.mode is ImportMode.CONSENTED and not self.database.is_sqlite:
            return POSTGRES_LANES
        return 1  # SQLite has one writer; confirmation emails go out in order

    def _store_in_lanes(
        self,
        ahead: Iterator[tuple[int, dict[str, Entry], int, bool]],
        lanes: int,
        total: int,
    ) -> None:
        """Store each lane's batches in order on the lane's own connection, lanes at once."""
        running: dict[int, tuple[Future[Stored], int]] = {}
        done_bytes = 0

        def finish(lane: int) -> None:
            nonlocal done_bytes
            future, done = running.pop(lane)
            self._count(future.result())
            done_bytes = max(done_bytes, done)
            self._progress(done_bytes, total)

        with ExitStack() as stack:
            sessions = [stack.enter_context(self.database.session()) for _ in range(lanes)]
            pool = stack.enter_context(
                ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="import-store")
            )
            try:
                for lane, entries, done, _ in ahead:
                    if lane in running:  # a lane stores its batches one after another
                        finish(lane)
                    running[lane] = (pool.submit(self._store, sessions[lane], entries), done)
                for lane in list(running):
                    finish(lane)
            except BaseException:
                # Count what the other lanes stored before giving up; their errors, if
                # any, come second to the one being raised.
                for future, _ in running.values():
                    if future.exception() is None:
                        self._count(future.result())
                raise

    def _batches(
        self, parsed: CsvFile, email_index: int, name_index: int | None, lanes: int = 1
    ) -> Iterator[tuple[int, dict[str, Entry], int, bool]]:
        """Check the rows, counting them; yield (lane, entries, bytes read, last) per batch.

        An address always goes to the same lane (by its key), so each lane sees an
        address's repeats in file order.
        """
        report = self.report
        lane_entries: list[dict[str, Entry]] = [{} for _ in range(lanes)]
        for line, record in parsed.records():
            if isinstance(record, csv.Error):
                report.rows += 1
                report.add_bad(line, f"cannot read this row: {record}")
                continue
            if not (record and (record[0].strip() or "".join(record).strip())):
                report.blank += 1
                continue
            report.rows += 1
            checked = check_row(record, email_index, name_index)
            if isinstance(checked, str):
                report.add_bad(line, checked)
                continue
            address, name = checked
            lane = hash(address.key) % lanes if lanes > 1 else 0
            entries = lane_entries[lane]
            entry = entries.get(address.key)
            if entry is None:
                entries[address.key] = Entry(address, name)
                if len(entries) >= self.batch_size:
                    yield lane, entries, parsed.lines.bytes_done, False
                    lane_entries[lane] = {}
            else:  # a repeat inside the file: the first row wins, a name fills in
                entry.count += 1
                if entry.name is None:
                    entry.name = name
        for lane, entries in enumerate(lane_entries):
            yield lane, entries, parsed.lines.bytes_done, True

    def _progress(self, done: int, total: int) -> None:
        if self.on_batch is not None:
            self.on_batch(self.report, done, max(total, done))

    def _count(self, stored: Stored) -> None:
        report = self.report
        report.refused += stored.refused
        report.merged += stored.merged
        report.imported += stored.imported
        report.confirmations += stored.confirmations

    def _store(self, session: so.Session, entries: dict[str, Entry]) -> Stored:
        """Store one batch in its own transaction, then send its confirmation emails.

        One transaction per batch, not per file: a file of a million rows in one
        transaction would hold its locks (on SQLite, the database's only write lock) for
        minutes, keep all its work pending, and show no progress. Batches lose nothing:
        every statement is insert-or-nothing and existing subscriptions are merged, so
        running the same import again after a crash completes it without duplicates.
        """
        if not entries:
            return Stored()
        now = clock.now()
        try:
            consented = self.mode is ImportMode.CONSENTED
            subscribe = Subscribe(self.list_id, self.label) if consented else None
            batch = prepare(session, self.list_id, entries, now, subscribe)
            imported = confirmations = 0
            raced: list[Entry] = []
            if consented:
                done = subscribe_consented(session, self.list_id, batch.new, self.label, now)
                imported = len(done) + len(batch.subscribed)
                raced = [entry for sid, entry in batch.new if sid not in done]
            else:
                imported, confirmations, raced = self._request_confirmations(session, batch)
            session.commit()
        except BaseException:
            mail.discard_deferred(session)
            session.rollback()
            raise
        finally:
            session.expunge_all()
        # Mail leaves only once the commit recorded it.
        mail.send_deferred(session, self.mailer)
        return Stored(
            refused=sum(entry.count for entry in batch.refused),
            merged=sum(entry.count for entry in batch.merged + raced)
            + sum(entry.count - 1 for _, entry in batch.new)
            + sum(entry.count - 1 for entry in batch.subscribed),
            imported=imported,
            confirmations=confirmations,
        )

    def _request_confirmations(
        self, session: so.Session, batch: Batch
    ) -> tuple[int, int, list[Entry]]:
        """Open a pending subscription and queue a confirmation email for each new address."""
        if not batch.new:
            return 0, 0, []
        mailing_list = session.get(MailingList, self.list_id)
        assert mailing_list is not None
        by_id = {
            subscriber.id: subscriber
            for subscriber in session.scalars(
                sa.select(Subscriber).where(Subscriber.id.in_([sid for sid, _ in batch.new]))
            )
        }
        imported = confirmations = 0
        raced: list[Entry] = []
        outcome = subscriptions.SignupOutcome
        for subscriber_id, entry in batch.new:
            result = subscriptions.request_confirmation(
                session,
                by_id[subscriber_id],
                mailing_list,
                source="import",
                ip=None,
                form=self.label,
                config=self.config,
                reopen_unsubscribed=False,
            )
            if result.outcome is outcome.SENT:
                imported += 1
                confirmations += 1
            elif result.outcome is outcome.CAPPED:  # pending; today's emails were used up
                imported += 1
            elif result.outcome in (outcome.SUPPRESSED, outcome.REFUSED):
                batch.refused.append(entry)  # changed since prepare looked
            else:
                raced.append(entry)
        return imported, confirmations, raced


def import_csv(
    database: Database,
    source: str | os.PathLike[str] | BinaryIO,
    list_slug: str,
    *,
    mode: ImportMode | str,
    email_column: str | None = None,
    name_column: str | None = None,
    mailer: mail.Mailer,
    config: Mapping[str, Any],
    source_label: str = "import",
    progress: ProgressCallback | None = None,
    batch_size: int = 5000,
) -> ImportReport:
    """Import a CSV file of subscribers into a list; return what it did.

    `source` is a path or a binary stream of UTF-8 CSV (with or without BOM; delimiter
    comma, semicolon or tab) whose first line names the columns. The address and name
    columns are named by `email_column` / `name_column`, else recognised from the header.
    CONSENTED makes new subscriptions active at once, with the import recorded as the
    consent (`source_label`, e.g. "import: members.csv"); DOUBLE_OPT_IN makes them pending
    and emails each a confirmation link. `progress(rows_done, bytes_done, bytes_total)` is
    called after each batch. Raises ImportFileError when the file cannot be read at all
    and NotFound for an unknown list; bad rows are reported, not raised.
    """

    def on_batch(report: ImportReport, done: int, total: int) -> None:
        if progress is not None:
            progress(report.rows, done, total)

    importer = Importer(
        database,
        list_slug,
        mode=ImportMode(mode),
        mailer=mailer,
        config=config,
        source_label=source_label,
        batch_size=batch_size,
        on_batch=on_batch,
    )
    return importer.run(source, email_column, name_column)
