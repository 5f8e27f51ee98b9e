"""Reading the file: UTF-8 checks, lines and CSV records, the header and its columns."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import os
import re
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from newsletter.imports.report import ImportFileError

# A physical line longer than this is not CSV (or not a subscriber list): the import stops.
MAX_LINE_BYTES = 1024 * 1024
# One field may hold up to csv.field_size_limit() characters (128 KiB by default, which
# also bounds a quoted field left open by mistake); we keep the module's default.
DELIMITERS = (",", ";", "\t")
# The first bytes of .xlsx/.ods/.numbers (zip) and .xls (OLE2) files.
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
# The first bytes of other files people pick by mistake, and what to call them.
BINARY_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"RIFF", "a RIFF file (image, audio or video)"),
    (b"\x7fELF", "a program"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
# Rows shown on the console's column-mapping step.
SAMPLE_ROWS = 5

# Header names (lowercased, without spaces, hyphens, underscores or dots) recognised when
# no column is named, in order of preference.
EMAIL_HEADERS = ("email", "emailaddress", "mail", "mailaddress", "emails")
NAME_HEADERS = ("name", "fullname", "displayname", "subscribername", "firstname", "givenname")


@contextmanager
def open_source(source: str | os.PathLike[str] | BinaryIO) -> Iterator[tuple[BinaryIO, int]]:
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


def _refuse_binary(raw: bytes) -> None:
    """Raise "not a CSV file" for an image, archive, program... (text never holds NUL)."""
    kind = next((name for magic, name in BINARY_MAGIC if raw.startswith(magic)), None)
    if kind is None and b"\x00" in raw:
        kind = "a binary file"
    if kind is not None:
        raise ImportFileError(
            f"this is not a CSV file (it looks like {kind}): export the subscribers as a CSV "
            'file ("CSV UTF-8" in a spreadsheet) and import that'
        )


def _not_utf8(line: int, raw: bytes, exc: UnicodeDecodeError) -> ImportFileError:
    column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
    return ImportFileError(
        f"line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
        f'{column}); save it as UTF-8 ("CSV UTF-8" in Excel) and import it again'
    )


def check_file(stream: BinaryIO) -> None:
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
            if b"\x00" in chunk:
                break  # no text file holds NUL: the line-by-line pass names the problem
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
            if first or b"\x00" in raw:
                _refuse_binary(raw)
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


class CsvFile:
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
        # strict: a quote left open (to the end of the file, or closed mid-field) is an
        # error for that row, never a field that swallows the next lines or gets imported.
        self._reader = csv.reader(
            itertools.chain([first], iterator), delimiter=self.delimiter, strict=True
        )
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
                yield line, _explained(exc, line, lines.line)
                continue
            yield line, record


def _explained(exc: csv.Error, first: int, last: int) -> csv.Error:
    """Say what a csv error means for the person who made the file."""
    text = str(exc)
    span = f"lines {first}-{last} were read as one row" if last > first else "this line"
    if "unexpected end of data" in text:
        return csv.Error(f'a quote (") opened in this row is never closed ({span}); not imported')
    if "expected after" in text:
        return csv.Error(
            f'a quote (") in this row is not closed where its field ends ({span}); not imported'
        )
    return csv.Error(f"{text} ({span}); not imported")


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


def resolve_columns(
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


def read_sample(
    path_or_stream: str | os.PathLike[str] | BinaryIO, limit: int = SAMPLE_ROWS
) -> list[list[str]]:
    """Return the first rows after the header (rows csv cannot read are left out).

    For the console's mapping step, so the editor sees what each column holds. A seekable
    stream is left where it was.
    """
    with open_source(path_or_stream) as (stream, _total):
        start = stream.tell() if stream.seekable() else None
        try:
            parsed = CsvFile(stream)
            rows: list[list[str]] = []
            for _line, record in parsed.records():
                if len(rows) >= limit:
                    break
                if isinstance(record, list) and "".join(record).strip():
                    rows.append(record)
            return rows
        except ImportFileError:
            return []
        finally:
            if start is not None:
                stream.seek(start)


def read_columns(path_or_stream: str | os.PathLike[str] | BinaryIO) -> list[str]:
    """Return the header's column names, or raise ImportFileError.

    A file (or seekable stream, which is left where it was) is checked whole first, as an
    import would: UTF-8, no overlong line, a header. Bad rows are not looked for.
    """
    with open_source(path_or_stream) as (stream, _total):
        start = stream.tell() if stream.seekable() else None
        try:
            if start is not None:
                check_file(stream)
            return CsvFile(stream).header
        finally:
            if start is not None:
                stream.seek(start)
