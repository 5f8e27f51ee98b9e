"""Subscriber imports from CSV files: parse, validate, merge, store in set-based batches.

The file is streamed (memory stays flat whatever its size) and stored batch by batch, each
batch in its own transaction with a few set-based statements. Rows that cannot be used are
reported with their physical line number and the reason; the rest of the file is imported.
Nobody who unsubscribed, bounced or complained on the list, and nobody on the suppression
list, is ever subscribed again by an import.

The console runs imports in the background through an ImportJob row (create_job, run_job),
whose counters it shows while the import runs.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from contextlib import closing
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so
from email_validator import EmailNotValidError
from email_validator import validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from newsletter import clock
from newsletter import mail
from newsletter import subscriptions
from newsletter.addresses import MAX_ADDRESS_LENGTH
from newsletter.addresses import MAX_NAME_LENGTH
from newsletter.addresses import Address
from newsletter.addresses import InvalidAddress
from newsletter.addresses import InvalidName
from newsletter.addresses import clean_name
from newsletter.addresses import key_of
from newsletter.addresses import normalize_address
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.lists import get_list
from newsletter.models import ImportJob
from newsletter.models import ImportMode
from newsletter.models import ImportStatus
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.subscribers import FORMULA_STARTS

__all__ = [
    "BadRow",
    "ImportFileError",
    "ImportMode",
    "ImportReport",
    "bad_rows",
    "create_job",
    "detect_columns",
    "get_job",
    "import_csv",
    "read_columns",
    "recent_jobs",
    "run_job",
]

log = logging.getLogger(__name__)

# Bad rows kept with their reasons (all are counted).
MAX_BAD_ROWS = 1000
# A physical line longer than this is not CSV (or not a subscriber list): the import stops.
MAX_LINE_BYTES = 1024 * 1024
# One field may hold up to csv.field_size_limit() characters (128 KiB by default, which
# also bounds a quoted field left open by mistake); we keep the module's default.
DELIMITERS = (",", ";", "\t")
# The first bytes of .xlsx/.ods/.numbers (zip) and .xls (OLE2) files.
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
# Double opt-in batches are small: their confirmation emails wait in memory for the commit.
DOUBLE_OPT_IN_BATCH = 200
# Values per IN (...) list: under SQLite's and PostgreSQL's bind-parameter limits.
_IN_CHUNK = 10_000
# Consented imports into PostgreSQL store this many batches at once, each on its own
# connection: the server's work per row (indexes, trigram search entries, foreign-key
# checks) then runs on more than one core. Addresses are split between the lanes by key,
# so the lanes never touch the same subscriber: no lock waits, no deadlocks, and repeats
# of an address are still stored in file order.
POSTGRES_LANES = 2
# The console's progress figures are written at most this often (seconds).
JOB_UPDATE_INTERVAL = 0.5
# A running job's row is touched at least this often (seconds), even while no batch ends
# (a double opt-in batch waits on the sending rate). A queued or running job nobody
# touched for JOB_STALE_AFTER belongs to a process that is gone (restarted, crashed):
# the console then shows it failed instead of running for ever.
JOB_HEARTBEAT = 15.0
JOB_STALE_AFTER = timedelta(minutes=2)
STALLED_JOB_ERROR = "the process running it ended (a restart or a crash) before the import finished"

# Header names (lowercased, without spaces, hyphens, underscores or dots) recognised when
# no column is named, in order of preference.
EMAIL_HEADERS = ("email", "emailaddress", "mail", "mailaddress", "emails")
NAME_HEADERS = ("name", "fullname", "displayname", "subscribername", "firstname", "givenname")

ProgressCallback = Callable[[int, int, int], None]


class ImportFileError(NewsletterError):
    """The file cannot be imported at all (missing, not UTF-8 CSV, no email column)."""


@dataclass
class BadRow:
    """A row that was not imported: its physical line in the file (1 = header) and why."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did. Every data row is counted once: imported, merged, refused or bad."""

    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # new subscriptions created (active, or pending in double opt-in)
    confirmations: int = 0  # confirmation emails queued (double opt-in only)
    merged: int = 0  # already on the list (from before, or from an earlier row of the file)
    refused: int = 0  # unsubscribed, bounced or complained on the list, or suppressed
    blank: int = 0  # blank lines skipped
    bad: list[BadRow] = field(default_factory=list)  # the first MAX_BAD_ROWS bad rows
    bad_count: int = 0
    email_column: str | None = None  # the header names used
    name_column: str | None = None

    def add_bad(self, line: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_BAD_ROWS:
            self.bad.append(BadRow(line, reason))


# --- Reading the file -----------------------------------------------------------------------


@contextmanager
def _open(source: str | os.PathLike[str] | BinaryIO) -> Iterator[tuple[BinaryIO, int]]:
    """Yield a binary stream for a path or stream, and the number of bytes left to read."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            raise ImportFileError(f"{path}: no such file") from None
        except OSError as exc:
            raise ImportFileError(f"{path}: {exc.strerror or exc}") from None
        with stream:
            yield stream, os.fstat(stream.fileno()).st_size
        return
    total = 0
    try:
        if source.seekable():
            here = source.tell()
            total = source.seek(0, os.SEEK_END) - here
            source.seek(here)
    except (AttributeError, OSError):
        total = 0
    yield source, total


def _not_utf8(line: int, raw: bytes, exc: UnicodeDecodeError) -> ImportFileError:
    column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
    return ImportFileError(
        f"line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
        f'{column}); save it as UTF-8 ("CSV UTF-8" in Excel) and import it again'
    )


def _check_file(stream: BinaryIO) -> None:
    """Make sure a seekable file is UTF-8 without overlong lines before anything is stored.

    Fast, in big chunks: a line can only be too long where it spans chunks, because a
    chunk is no longer than MAX_LINE_BYTES. On a problem the file is read again line by
    line, which names the line.
    """
    start = stream.tell()
    decoder = codecs.getincrementaldecoder("utf-8")()
    run = 0  # bytes of the line being read, so far
    try:
        for chunk in iter(lambda: stream.read(MAX_LINE_BYTES), b""):
            decoder.decode(chunk)
            first = chunk.find(b"\n")
            if first == -1:
                run += len(chunk)
            elif run + first + 1 > MAX_LINE_BYTES:
                break
            else:
                run = len(chunk) - chunk.rfind(b"\n") - 1
            if run > MAX_LINE_BYTES:
                break
        else:
            decoder.decode(b"", final=True)
            return
    except UnicodeDecodeError:
        pass
    finally:
        stream.seek(start)
    for _ in _Lines(stream):
        pass
    stream.seek(start)
    raise ImportFileError("the file is not UTF-8 text")  # a truncated last character


class _Lines:
    """The decoded lines of a binary stream, counting physical lines and bytes as it goes."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.line = 0  # physical lines read so far
        self.bytes_done = 0

    def __iter__(self) -> Iterator[str]:
        readline = self.stream.readline
        first = True
        while True:
            raw = readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.line += 1
            self.bytes_done += len(raw)
            if first and raw.startswith(WORKBOOK_MAGIC):
                raise ImportFileError(
                    "this is a spreadsheet workbook (Excel, Numbers or LibreOffice), not a CSV "
                    'file: save it as "CSV UTF-8" and import that'
                )
            if len(raw) > MAX_LINE_BYTES:
                raise ImportFileError(
                    f"line {self.line} is longer than {MAX_LINE_BYTES // 1024} KiB: "
                    "is this a CSV file of subscribers?"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(self.line, raw, exc) from None
            if first:
                text = text.removeprefix("\ufeff")  # the UTF-8 BOM spreadsheets write
                first = False
            yield text


def _sniff(line: str) -> str:
    """Pick the delimiter among , ; and tab: the one found most often outside quotes."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


class _Csv:
    """The records of a CSV stream with the physical line each starts on."""

    def __init__(self, stream: BinaryIO) -> None:
        self.lines = _Lines(stream)
        self.blank_before_header = 0
        iterator = iter(self.lines)
        for first in iterator:
            if first.strip():
                break
            self.blank_before_header += 1
        else:
            raise ImportFileError(
                "the file is empty: its first line must name the columns (e.g. email,name)"
            )
        self.delimiter = _sniff(first)
        self._reader = csv.reader(itertools.chain([first], iterator), delimiter=self.delimiter)
        self.header_line = self.lines.line
        try:
            header = next(self._reader)
        except csv.Error as exc:
            raise ImportFileError(
                f"line {self.header_line}: cannot read the header: {exc}"
            ) from None
        self.header = [name.strip() for name in header]

    def records(self) -> Iterator[tuple[int, list[str] | csv.Error]]:
        """Yield (line, fields) for each record, or (line, error) for one csv cannot parse."""
        reader = self._reader
        lines = self.lines
        while True:
            line = lines.line + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, exc
                continue
            yield line, record


def _norm_header(name: str) -> str:
    return re.sub(r"[\s._-]+", "", name.casefold())


def detect_columns(columns: Sequence[str]) -> tuple[str | None, str | None]:
    """Guess the address and name columns from header names (None when there is none)."""
    normalized = [_norm_header(c) for c in columns]

    def pick(candidates: Sequence[str]) -> str | None:
        for candidate in candidates:
            if candidate in normalized:
                return columns[normalized.index(candidate)]
        return None

    return pick(EMAIL_HEADERS), pick(NAME_HEADERS)


def _shown(columns: Sequence[str]) -> str:
    return ", ".join(json.dumps(c, ensure_ascii=False) for c in columns) or "(none)"


def _column_index(columns: Sequence[str], wanted: str, what: str) -> int:
    if wanted in columns:
        return columns.index(wanted)
    folded = [c.casefold() for c in columns]
    if wanted.strip().casefold() in folded:
        return folded.index(wanted.strip().casefold())
    raise ImportFileError(
        f"there is no {what} column {wanted!r} in the file; its columns are {_shown(columns)}"
    )


def _resolve_columns(
    columns: Sequence[str], email_column: str | None, name_column: str | None
) -> tuple[int, int | None]:
    if email_column:
        email_index = _column_index(columns, email_column, "email")
    else:
        detected, _ = detect_columns(columns)
        if detected is None:
            hint = (
                " The first line must be a header naming the columns (e.g. email,name)."
                if any("@" in c for c in columns)
                else ' Name the column "email", or choose the column to use.'
            )
            raise ImportFileError(
                f"no email column found: the columns are {_shown(columns)}.{hint}"
            )
        email_index = columns.index(detected)
    if name_column:
        return email_index, _column_index(columns, name_column, "name")
    _, detected_name = detect_columns(columns)
    name_index = columns.index(detected_name) if detected_name is not None else None
    return email_index, name_index if name_index != email_index else None


def read_columns(path_or_stream: str | os.PathLike[str] | BinaryIO) -> list[str]:
    """Return the header's column names, or raise ImportFileError.

    A file (or seekable stream, which is left where it was) is checked whole first, as an
    import would: UTF-8, no overlong line, a header. Bad rows are not looked for.
    """
    with _open(path_or_stream) as (stream, _total):
        start = stream.tell() if stream.seekable() else None
        try:
            if start is not None:
                _check_file(stream)
            return _Csv(stream).header
        finally:
            if start is not None:
                stream.seek(start)


# --- Checking a row -------------------------------------------------------------------------

_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_LOCAL = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*\\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# email-validator lowercases these local parts (RFC 2142): left to the full check.
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@lru_cache(maxsize=8192)
def _domain(domain: str) -> tuple[str, str] | None:
    """The normalized and ASCII forms of a valid domain, or None (once per domain)."""
    try:
        info = validate_email(
            f"x@{domain}",
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError:
        return None
    return info.domain, info.ascii_domain


def fast_address(candidate: str) -> Address | None:
    """normalize_address for plain ASCII local parts, validating each domain only once.

    Returns exactly what normalize_address returns, or None when the address needs the
    full check (anything unusual, and every invalid address, so its message is the same).
    Imports spend most of their time here: a million rows share a few thousand domains.
    """
    local, at, domain = candidate.rpartition("@")
    if (
        not at
        or len(candidate) > MAX_ADDRESS_LENGTH
        or _PLAIN_LOCAL.match(local) is None
        or local.lower() in _CASE_INSENSITIVE
    ):
        return None
    forms = _domain(domain)
    if forms is None:
        return None
    display = f"{local}@{forms[0]}"
    ascii_form = f"{local}@{forms[1]}"
    if len(display) > MAX_ADDRESS_LENGTH or len(ascii_form) > MAX_ADDRESS_LENGTH:
        return None
    return Address(key=key_of(ascii_form), display=display, ascii=ascii_form)


def _unescape(value: str) -> str:
    """Take off the apostrophe our export puts before cells a spreadsheet would run."""
    if value.startswith("'") and value[1:2] in FORMULA_STARTS and value[1:2]:
        return value[1:]
    return value


def _quote(value: str, limit: int = 60) -> str:
    short = value if len(value) <= limit else value[:limit] + "…"
    return json.dumps(short, ensure_ascii=False)


def _check_row(
    record: list[str], email_index: int, name_index: int | None
) -> tuple[Address, str | None] | str:
    """Return the row's address and name, or the reason it cannot be imported."""
    raw = _unescape(record[email_index]) if email_index < len(record) else ""
    candidate = raw.strip()
    if not candidate:
        return "no email address"
    address = fast_address(candidate)
    if address is None:
        try:
            address = normalize_address(candidate)
        except InvalidAddress as exc:
            reason = str(exc).removeprefix("That email address is not valid: ")
            return f"email {_quote(candidate)}: {reason}"
    name = None
    if name_index is not None and name_index < len(record):
        name = _unescape(record[name_index]).strip() or None
        if name is not None and (len(name) > MAX_NAME_LENGTH or _CONTROL.search(name)):
            try:
                name = clean_name(name)
            except InvalidName as exc:
                return f"name {_quote(name)}: {exc}"
    return address, name


# --- Storing a batch ------------------------------------------------------------------------


@dataclass
class _Entry:
    """One address of a batch: its first row's forms, the first name given, and its rows."""

    address: Address
    name: str | None
    count: int = 1


def _insert(session: so.Session, table: sa.Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _select_in(
    session: so.Session, query: sa.Select, column: Any, values: Iterable[Any]
) -> list[Any]:
    values = list(values)
    rows: list[Any] = []
    for chunk in _chunks(values):
        rows.extend(session.execute(query.where(column.in_(chunk))).all())
    return rows


@dataclass
class _Batch:
    """What a batch found: the addresses to refuse, to merge, and to subscribe."""

    refused: list[_Entry]
    merged: list[_Entry]
    new: list[tuple[int, _Entry]]  # (subscriber id, entry)
    subscribed: list[_Entry] = field(default_factory=list)  # added and subscribed at once


@dataclass(frozen=True)
class _Stored:
    """What storing one batch did, counted in rows of the file."""

    refused: int = 0
    merged: int = 0
    imported: int = 0
    confirmations: int = 0


@dataclass(frozen=True)
class _Subscribe:
    """Subscribe the subscribers a batch adds as it adds them (consented imports)."""

    list_id: int
    label: str


class _CoreStatements:
    """The batch's statements in portable SQLAlchemy Core (SQLite)."""

    def __init__(self, session: so.Session) -> None:
        self.session = session

    def suppressed(self, keys: Sequence[str]) -> set[str]:
        rows = _select_in(self.session, sa.select(Suppression.email), Suppression.email, keys)
        return {row.email for row in rows}

    def add_subscribers(
        self,
        rows: Sequence[tuple[str, str, str | None]],
        now: Any,
        subscribe: _Subscribe | None = None,
    ) -> list[tuple[int, str, str | None, bool]]:
        """Insert the missing subscribers; return (id, email, name, new) for the ones found.

        `new` is True only for rows this statement inserted (they have no subscriptions)
        and, with `subscribe`, subscribed in the same step; a subscriber it does not return
        was added by a concurrent transaction. This portable version never says `new`:
        every subscriber goes through the status lookup.
        """
        subscriber = Subscriber.__table__
        self.session.execute(
            _insert(self.session, subscriber).on_conflict_do_nothing(index_elements=["email"]),
            [
                {"email": key, "display_email": display, "name": name, "created_at": now}
                for key, display, name in rows
            ],
        )
        return [(*row, False) for row in self.subscribers([key for key, _, _ in rows])]

    def subscribers(self, keys: Sequence[str]) -> list[tuple[int, str, str | None]]:
        subscriber = Subscriber.__table__
        query = sa.select(subscriber.c.id, subscriber.c.email, subscriber.c.name)
        return [tuple(row) for row in _select_in(self.session, query, subscriber.c.email, keys)]

    def fill_names(self, pairs: Sequence[tuple[int, str]]) -> None:
        subscriber = Subscriber.__table__
        self.session.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == sa.bindparam("b_id"), subscriber.c.name.is_(None))
            .values(name=sa.bindparam("b_name")),
            [{"b_id": sid, "b_name": name} for sid, name in pairs],
        )

    def statuses(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        subscription = Subscription.__table__
        query = sa.select(subscription.c.subscriber_id, subscription.c.status).where(
            subscription.c.list_id == list_id
        )
        return dict(_select_in(self.session, query, subscription.c.subscriber_id, ids))

    def subscribe_active(self, list_id: int, ids: Sequence[int], label: str, now: Any) -> set[int]:
        subscription = Subscription.__table__
        created = self.session.execute(
            _insert(self.session, subscription)
            .on_conflict_do_nothing(index_elements=["subscriber_id", "list_id"])
            .returning(subscription.c.id, subscription.c.subscriber_id),
            [
                {
                    "subscriber_id": subscriber_id,
                    "list_id": list_id,
                    "status": SubscriptionStatus.ACTIVE,
                    "created_at": now,
                    "status_changed_at": now,
                    "confirmed_at": now,
                    "unsubscribed_at": None,
                    "source": "import",
                    "consent_at": now,
                    "consent_ip": None,
                    "consent_form": label,
                    "confirm_nonce": None,
                }
                for subscriber_id in ids
            ],
        ).all()
        if created:
            self.session.execute(
                sa.insert(SubscriptionEvent.__table__),
                [
                    {
                        "subscription_id": row.id,
                        "status": SubscriptionStatus.ACTIVE,
                        "at": now,
                        "reason": "import",
                        "ip": None,
                    }
                    for row in created
                ],
            )
        return {row.subscriber_id for row in created}


# PostgreSQL: each step is one statement whose values travel as a few long strings, split
# on the server with string_to_array. Multi-row VALUES lists or IN lists of thousands of
# placeholders cost more to build and parse than storing the rows does, and psycopg
# dumps list parameters element by element in Python; one joined string is one C call.
# Lookups probe the unique index once per value, in a LATERAL subquery, rather than join
# or "= ANY(array)": a join's plan rests on the table's statistics, and a table an import
# is filling has none worth the name until it is analyzed (never, with autovacuum off).
# Seen: a merge join that sorted all 1,000,000 subscribers for each batch of 5,000 (740 ms
# a batch), and "list_id = $1 AND subscriber_id = ANY($2)" scanning a whole list.
_SEPARATOR = "\x1f"  # ASCII unit separator: never in a checked address or name
_NULL = "\x1e"  # stands for None


def _texts(values: Iterable[str | None]) -> str:
    """Join strings for string_to_array(:p, chr(31), chr(30)) (None travels as chr(30))."""
    items = [_NULL if value is None else value for value in values]
    joined = _SEPARATOR.join(items)
    if items and joined.count(_SEPARATOR) != len(items) - 1:
        raise ValueError("a value contains the separator")  # _check_row refuses them
    return joined


def _ints(values: Iterable[int]) -> str:
    return ",".join(map(str, values))


_TEXTS = "string_to_array(CAST(:{} AS text), chr(31), chr(30))"
_IDS = "CAST(string_to_array(CAST(:{} AS text), ',') AS bigint[])"

# One index probe per key of t(k), whatever the statistics say (see above).
_PROBE_SUBSCRIBER = (
    "CROSS JOIN LATERAL (SELECT s.id, s.email, s.name FROM subscriber AS s "
    "WHERE s.email = t.{} LIMIT 1) AS s"
)
_PG_SUPPRESSED = sa.text(
    f"SELECT s.email FROM unnest({_TEXTS.format('keys')}) AS t(k) "
    "CROSS JOIN LATERAL (SELECT s.email FROM suppression AS s WHERE s.email = t.k LIMIT 1) AS s"
)
# The rows inserted (their names are the file's: not sent back), then the ones that were
# there before (the SELECT sees the snapshot from before the INSERT; only the rows not
# inserted are looked up): one round trip, and new subscribers need no status lookup.
_ADD_SUBSCRIBERS = (
    f"WITH t AS (SELECT * FROM unnest({_TEXTS.format('emails')}, {_TEXTS.format('displays')}, "
    f"{_TEXTS.format('names')}) AS t(e, d, n)), "
    "added AS (INSERT INTO subscriber (email, display_email, name, created_at) "
    "SELECT e, d, n, :now FROM t ON CONFLICT (email) DO NOTHING RETURNING id, email)"
)
_ADDED_AND_FOUND = (
    "SELECT id, email, CAST(NULL AS text), true FROM added "
    f"UNION ALL SELECT s.id, s.email, s.name, false FROM t {_PROBE_SUBSCRIBER.format('e')} "
    "WHERE t.e NOT IN (SELECT email FROM added)"
)
_PG_ADD_SUBSCRIBERS = sa.text(f"{_ADD_SUBSCRIBERS} {_ADDED_AND_FOUND}")
# The same, and the rows it inserts are subscribed, with their events, in the same
# statement. Their subscriptions need no ON CONFLICT: nobody else can see a subscriber
# this transaction has not committed, let alone subscribe it.
_PG_ADD_AND_SUBSCRIBE = sa.text(
    f"{_ADD_SUBSCRIBERS}, "
    "created AS (INSERT INTO subscription (subscriber_id, list_id, status, created_at,"
    " status_changed_at, confirmed_at, source, consent_at, consent_form)"
    " SELECT id, :list_id, :active, :now, :now, :now, 'import', :now, :label FROM added"
    " RETURNING id), "
    "events AS (INSERT INTO subscription_event (subscription_id, status, at, reason)"
    f" SELECT id, :active, :now, 'import' FROM created) {_ADDED_AND_FOUND}"
)
_PG_SUBSCRIBERS = sa.text(
    f"SELECT s.id, s.email, s.name FROM unnest({_TEXTS.format('keys')}) AS t(k) "
    f"{_PROBE_SUBSCRIBER.format('k')}"
)
_PG_FILL_NAMES = sa.text(
    "UPDATE subscriber AS s SET name = t.n "
    f"FROM unnest({_IDS.format('ids')}, {_TEXTS.format('names')}) AS t(i, n) "
    "WHERE s.id = t.i AND s.name IS NULL"
)
_PG_STATUSES = sa.text(
    f"SELECT s.subscriber_id, s.status FROM unnest({_IDS.format('ids')}) AS t(i) "
    "CROSS JOIN LATERAL (SELECT s.subscriber_id, s.status FROM subscription AS s "
    "WHERE s.subscriber_id = t.i AND s.list_id = :list_id LIMIT 1) AS s"
)
_PG_SUBSCRIBE_ACTIVE = sa.text(
    "WITH created AS ("
    " INSERT INTO subscription (subscriber_id, list_id, status, created_at, status_changed_at,"
    " confirmed_at, source, consent_at, consent_form)"
    " SELECT i, :list_id, :active, :now, :now, :now, 'import', :now, :label"
    f" FROM unnest({_IDS.format('ids')}) AS t(i)"
    " ON CONFLICT (subscriber_id, list_id) DO NOTHING"
    " RETURNING id, subscriber_id"
    "), events AS ("
    " INSERT INTO subscription_event (subscription_id, status, at, reason)"
    " SELECT id, :active, :now, 'import' FROM created"
    ") SELECT subscriber_id FROM created"
)


class _PostgresStatements(_CoreStatements):
    """The same statements with their values joined into strings (PostgreSQL)."""

    def suppressed(self, keys: Sequence[str]) -> set[str]:
        return set(self.session.scalars(_PG_SUPPRESSED, {"keys": _texts(keys)}))

    def add_subscribers(
        self,
        rows: Sequence[tuple[str, str, str | None]],
        now: Any,
        subscribe: _Subscribe | None = None,
    ) -> list[tuple[int, str, str | None, bool]]:
        params = {
            "emails": _texts(row[0] for row in rows),
            "displays": _texts(row[1] for row in rows),
            "names": _texts(row[2] for row in rows),
            "now": now,
        }
        statement = _PG_ADD_SUBSCRIBERS
        if subscribe is not None:
            statement = _PG_ADD_AND_SUBSCRIBE
            params.update(
                list_id=subscribe.list_id,
                label=subscribe.label,
                active=SubscriptionStatus.ACTIVE.value,
            )
        return [tuple(row) for row in self.session.execute(statement, params)]

    def subscribers(self, keys: Sequence[str]) -> list[tuple[int, str, str | None]]:
        result = self.session.execute(_PG_SUBSCRIBERS, {"keys": _texts(keys)})
        return [tuple(row) for row in result]

    def fill_names(self, pairs: Sequence[tuple[int, str]]) -> None:
        params = {"ids": _ints(p[0] for p in pairs), "names": _texts(p[1] for p in pairs)}
        self.session.execute(_PG_FILL_NAMES, params)

    def statuses(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        rows = self.session.execute(_PG_STATUSES, {"list_id": list_id, "ids": _ints(ids)})
        return {subscriber_id: status for subscriber_id, status in rows}

    def subscribe_active(self, list_id: int, ids: Sequence[int], label: str, now: Any) -> set[int]:
        params = {
            "list_id": list_id,
            "ids": _ints(ids),
            "label": label,
            "now": now,
            "active": SubscriptionStatus.ACTIVE.value,
        }
        return set(self.session.scalars(_PG_SUBSCRIBE_ACTIVE, params))


def _statements(session: so.Session) -> _CoreStatements:
    if session.get_bind().dialect.name == "postgresql":
        return _PostgresStatements(session)
    return _CoreStatements(session)


def _prepare(
    session: so.Session,
    list_id: int,
    entries: Mapping[str, _Entry],
    now: Any,
    subscribe: _Subscribe | None = None,
) -> _Batch:
    """Create the missing subscribers and sort the batch's addresses (set-based).

    With `subscribe`, the subscribers it adds may come back already subscribed
    (`_Batch.subscribed`, on PostgreSQL); the rest are sorted as without it.
    """
    sql = _statements(session)
    candidates = set(entries)
    candidates.update(entry.address.ascii.lower() for entry in entries.values())
    suppressed = sql.suppressed(list(candidates)) if candidates else set()
    refused: list[_Entry] = []
    wanted: dict[str, _Entry] = {}
    for key, entry in entries.items():
        if key in suppressed or entry.address.ascii.lower() in suppressed:
            refused.append(entry)
        else:
            wanted[key] = entry
    if not wanted:
        return _Batch(refused, [], [])

    found = sql.add_subscribers(
        [(key, entry.address.display, entry.name) for key, entry in wanted.items()],
        now,
        subscribe,
    )
    if len(found) < len(wanted):  # added meanwhile by another transaction: look again
        seen = {email for _, email, _, _ in found}
        missing = [key for key in wanted if key not in seen]
        found += [(*row, False) for row in sql.subscribers(missing)]
    ids: dict[int, _Entry] = {}
    existing: list[int] = []
    names: list[tuple[int, str]] = []
    subscribed: list[_Entry] = []
    for subscriber_id, email, name, added in found:
        entry = wanted[email]
        if added and subscribe is not None:
            subscribed.append(entry)
            continue
        ids[subscriber_id] = entry
        if not added:
            existing.append(subscriber_id)
            if name is None and entry.name is not None:
                names.append((subscriber_id, entry.name))
    if names:  # existing subscribers without a name get the file's
        sql.fill_names(names)
    statuses = sql.statuses(list_id, existing) if existing else {}
    merged: list[_Entry] = []
    new: list[tuple[int, _Entry]] = []
    for subscriber_id, entry in ids.items():
        status = statuses.get(subscriber_id)
        if status is None:
            new.append((subscriber_id, entry))
        elif status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING):
            merged.append(entry)
        else:  # unsubscribed, bounced or complained on this list: never brought back
            refused.append(entry)
    return _Batch(refused, merged, new, subscribed)


def _subscribe_consented(
    session: so.Session, list_id: int, new: list[tuple[int, _Entry]], label: str, now: Any
) -> set[int]:
    """Insert active subscriptions and their events; return the subscriber ids subscribed."""
    if not new:
        return set()
    return _statements(session).subscribe_active(
        list_id, [subscriber_id for subscriber_id, _ in new], label, now
    )


_T = TypeVar("_T")


def _read_ahead(items: Iterator[_T], depth: int = 2) -> Iterator[_T]:
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


class _Importer:
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
        with _open(source) as (stream, total):
            if stream.seekable():
                _check_file(stream)
            parsed = _Csv(stream)
            email_index, name_index = _resolve_columns(parsed.header, email_column, name_column)
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
        ahead: Iterator[tuple[int, dict[str, _Entry], int, bool]],
        lanes: int,
        total: int,
    ) -> None:
        """Store each lane's batches in order on the lane's own connection, lanes at once."""
        running: dict[int, tuple[Future[_Stored], int]] = {}
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
        self, parsed: _Csv, email_index: int, name_index: int | None, lanes: int = 1
    ) -> Iterator[tuple[int, dict[str, _Entry], int, bool]]:
        """Check the rows, counting them; yield (lane, entries, bytes read, last) per batch.

        An address always goes to the same lane (by its key), so each lane sees an
        address's repeats in file order.
        """
        report = self.report
        lane_entries: list[dict[str, _Entry]] = [{} for _ in range(lanes)]
        for line, record in parsed.records():
            if isinstance(record, csv.Error):
                report.rows += 1
                report.add_bad(line, f"cannot read this row: {record}")
                continue
            if not (record and (record[0].strip() or "".join(record).strip())):
                report.blank += 1
                continue
            report.rows += 1
            checked = _check_row(record, email_index, name_index)
            if isinstance(checked, str):
                report.add_bad(line, checked)
                continue
            address, name = checked
            lane = hash(address.key) % lanes if lanes > 1 else 0
            entries = lane_entries[lane]
            entry = entries.get(address.key)
            if entry is None:
                entries[address.key] = _Entry(address, name)
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

    def _count(self, stored: _Stored) -> None:
        report = self.report
        report.refused += stored.refused
        report.merged += stored.merged
        report.imported += stored.imported
        report.confirmations += stored.confirmations

    def _store(self, session: so.Session, entries: dict[str, _Entry]) -> _Stored:
        """Store one batch in its own transaction, then send its confirmation emails.

        One transaction per batch, not per file: a file of a million rows in one
        transaction would hold its locks (on SQLite, the database's only write lock) for
        minutes, keep all its work pending, and show no progress. Batches lose nothing:
        every statement is insert-or-nothing and existing subscriptions are merged, so
        running the same import again after a crash completes it without duplicates.
        """
        if not entries:
            return _Stored()
        now = clock.now()
        try:
            consented = self.mode is ImportMode.CONSENTED
            subscribe = _Subscribe(self.list_id, self.label) if consented else None
            batch = _prepare(session, self.list_id, entries, now, subscribe)
            imported = confirmations = 0
            raced: list[_Entry] = []
            if consented:
                done = _subscribe_consented(session, self.list_id, batch.new, self.label, now)
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
        return _Stored(
            refused=sum(entry.count for entry in batch.refused),
            merged=sum(entry.count for entry in batch.merged + raced)
            + sum(entry.count - 1 for _, entry in batch.new)
            + sum(entry.count - 1 for entry in batch.subscribed),
            imported=imported,
            confirmations=confirmations,
        )

    def _request_confirmations(
        self, session: so.Session, batch: _Batch
    ) -> tuple[int, int, list[_Entry]]:
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
        raced: list[_Entry] = []
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
                batch.refused.append(entry)  # changed since _prepare looked
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

    importer = _Importer(
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


# --- Background jobs for the console --------------------------------------------------------


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
    path: str | os.PathLike[str],
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

    importer: _Importer | None = None
    status, error = ImportStatus.DONE, None
    beating = _Heartbeat(database, job_id, lambda: last)
    try:
        importer = _Importer(
            database,
            slug,
            mode=mode,
            mailer=mailer,
            config=config,
            source_label=f"import: {filename}",
            batch_size=batch_size,
            on_batch=on_batch,
        )
        importer.run(path, email_column, name_column)
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
