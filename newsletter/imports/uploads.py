"""Staged uploads: a CSV file from the console, kept in the database until it is imported.

The console uploads a file, shows its columns, and imports it once the editor has mapped
them: three requests that may each land on a different web machine. So the file is not
kept on a machine's disk but in `import_upload_chunk` rows of CHUNK_BYTES, and read back
as a seekable binary stream (UploadStream) by whichever machine needs it. The import job
deletes it when it ends; `newsletter db prune` deletes those never started.
"""

from __future__ import annotations

import io
import secrets
from datetime import datetime
from typing import BinaryIO

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.db import Database
from newsletter.db import rowcount
from newsletter.models import ImportUpload
from newsletter.models import ImportUploadChunk

# A chunk per row: large enough that a 512 MiB file is 512 rows, small enough to hold in
# memory while it travels.
CHUNK_BYTES = 1024 * 1024
# Read ahead this many bytes when the importer reads line by line.
BUFFER_BYTES = 256 * 1024


class UploadGone(LookupError):
    """The upload is unknown, or was imported or expired and deleted."""


def store(session: so.Session, stream: BinaryIO, filename: str) -> ImportUpload:
    """Store everything `stream` holds as a new upload; return it (flushed, not committed).

    Each chunk is inserted as it is read: memory stays at one chunk whatever the size.
    """
    upload = ImportUpload(token=secrets.token_urlsafe(24), filename=filename[:255], size=0)
    session.add(upload)
    session.flush()
    size = 0
    for seq, chunk in enumerate(iter(lambda: stream.read(CHUNK_BYTES), b"")):
        session.execute(
            sa.insert(ImportUploadChunk).values(upload_id=upload.id, seq=seq, data=chunk)
        )
        size += len(chunk)
    upload.size = size
    session.flush()
    return upload


def find(session: so.Session, token: str) -> ImportUpload:
    """Return the upload with this token, or raise UploadGone."""
    upload = session.scalar(sa.select(ImportUpload).where(ImportUpload.token == token[:64]))
    if upload is None:
        raise UploadGone(token)
    return upload


def delete(session: so.Session, upload_id: int) -> None:
    """Delete an upload and its chunks."""
    session.execute(sa.delete(ImportUploadChunk).where(ImportUploadChunk.upload_id == upload_id))
    session.execute(sa.delete(ImportUpload).where(ImportUpload.id == upload_id))


def prune(session: so.Session, older_than: datetime) -> int:
    """Delete uploads made before `older_than` (never started, or left by a crash)."""
    old = sa.select(ImportUpload.id).where(ImportUpload.created_at < older_than)
    session.execute(sa.delete(ImportUploadChunk).where(ImportUploadChunk.upload_id.in_(old)))
    result = session.execute(sa.delete(ImportUpload).where(ImportUpload.created_at < older_than))
    return rowcount(result)


class _ChunkReader(io.RawIOBase):
    """The bytes of an upload, chunk by chunk.

    With a Database, each chunk is read in a short transaction of its own: on SQLite a
    reader holding one open would keep the importer's batches (other connections) from
    committing. With a Session (a web request's), in that session's transaction.
    """

    def __init__(self, source: Database | so.Session, upload_id: int, size: int) -> None:
        self._source = source
        self._upload_id = upload_id
        self._size = size
        self._position = 0
        self._seq = -1
        self._chunk = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._position >= self._size:
            return 0
        seq, offset = divmod(self._position, CHUNK_BYTES)
        if seq != self._seq:
            self._chunk = self._load(seq)
            self._seq = seq
        piece = self._chunk[offset : offset + len(buffer)]
        if not piece:
            return 0
        buffer[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def _load(self, seq: int) -> bytes:
        query = sa.select(ImportUploadChunk.data).where(
            ImportUploadChunk.upload_id == self._upload_id, ImportUploadChunk.seq == seq
        )
        if isinstance(self._source, so.Session):
            data = self._source.scalar(query)
        else:
            with self._source.transaction() as session:
                data = session.scalar(query)
        if data is None:
            raise UploadGone(f"upload {self._upload_id} lost its chunk {seq}")
        return bytes(data)


class UploadStream(io.BufferedReader):
    """A staged upload's bytes, seekable; knows the upload's id and size."""

    def __init__(self, source: Database | so.Session, upload_id: int, size: int) -> None:
        super().__init__(_ChunkReader(source, upload_id, size), BUFFER_BYTES)
        self.upload_id = upload_id
        self.size = size


def open_stream(source: Database | so.Session, token: str) -> UploadStream:
    """Open an upload for reading, or raise UploadGone.

    From a Database (a background job) the stream reads in short transactions of its own;
    from a Session (a request), in that session's transaction.
    """
    if isinstance(source, so.Session):
        upload = find(source, token)
        return UploadStream(source, upload.id, upload.size)
    with source.transaction() as session:
        upload = find(session, token)
        upload_id, size = upload.id, upload.size
    return UploadStream(source, upload_id, size)
