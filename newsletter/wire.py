"""Issue email on the wire: build_message once per issue, then fill in each reader's bytes.

Building a 60 KB MIME message with the `email` package costs about 3 ms of CPU, twice what
the SES call itself costs, and under the GIL that caps a worker's throughput. So the
message is built once per issue by the one message builder (newsletter.mail.build_message)
with markers where the reader's parts go; per reader only the four personal header fields
are written (by newsletter.headers, like every other field) and the reader's values in
the two bodies quoted-printable encoded (the rest of each body is encoded once per issue:
EncodedBody).
"""

from __future__ import annotations

import binascii
from email.utils import format_datetime
from email.utils import make_msgid

from newsletter import clock
from newsletter import headers
from newsletter.lists import ListIdentity
from newsletter.mail import OutgoingMessage
from newsletter.mail import build_message
from newsletter.mail import unsubscribe_fields

_TO = "nl-reader@nl-reader.invalid"
_UNSUBSCRIBE = "https://nl-reader.invalid/u/nl-unsubscribe"
_TEXT = "NLREADERTEXTMARK"
_HTML = "NLREADERHTMLMARK"
_PERSONAL = {b"to", b"message-id", b"date", b"list-unsubscribe"}
_SEVEN_BIT = b"Content-Transfer-Encoding: 7bit"


def _quoted_printable(part_head: bytes) -> bytes:
    # The marker was short ASCII (7bit); the reader's body goes quoted-printable.
    start, found, end = part_head.rpartition(_SEVEN_BIT)
    if not found:
        raise ValueError("unexpected part headers from build_message")
    return start + b"Content-Transfer-Encoding: quoted-printable" + end


def _qp(text: str, *, last: bool = True) -> bytes:
    body = text.replace("\r\n", "\n")
    if last:
        body = body.rstrip("\n")
    return binascii.b2a_qp(body.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _soft_break_ready(chunk: bytes) -> bytes:
    # A soft line break ("=") will follow the chunk's last line: keep that line within 75
    # characters by moving its last character (or =XX escape) onto a line of its own.
    last = chunk[chunk.rfind(b"\r\n") + 2 :] if b"\r\n" in chunk else chunk
    if len(last) < 76:
        return chunk
    cut = 3 if last[-3:-2] == b"=" else 1
    return chunk[:-cut] + b"=\r\n" + chunk[-cut:]


def _join_encoded(chunks: list[bytes]) -> list[bytes]:
    # Quoted-printable pieces joined by soft line breaks decode to the pieces' text joined.
    out: list[bytes] = []
    for chunk in chunks:
        if not chunk:
            continue
        if out and not out[-1].endswith(b"\r\n"):
            out.append(b"=\r\n")
        out.append(chunk)
    return out


class EncodedBody:
    """A body part with reader slots, quoted-printable encoded once; per reader only the
    short values are encoded (encoding a 45 KB part per reader was half a worker's CPU).

    `pieces` and `names` are a placeholder template's fixed pieces and the slot names
    between them (newsletter.composer.placeholders.template_for).
    """

    def __init__(self, pieces: tuple[str, ...], names: tuple[str, ...]) -> None:
        last = len(pieces) - 1
        self.pieces = [_soft_break_ready(_qp(p, last=i == last)) for i, p in enumerate(pieces)]
        self.names = names

    def fill(self, values: dict[str, str]) -> bytes:
        """Return the encoded part with the reader's values in their slots."""
        return b"".join(self.fill_chunks(values))

    def fill_chunks(self, values: dict[str, str]) -> list[bytes]:
        """Return the encoded part in pieces: the same piece objects for every reader
        (a transport may encode them once, newsletter.ses_transport), their values between."""
        chunks = [self.pieces[0]]
        for name, piece in zip(self.names, self.pieces[1:], strict=True):
            chunks.append(_soft_break_ready(_qp(values[name], last=False)))
            chunks.append(piece)
        return _join_encoded(chunks)


class MessageTemplate:
    """One issue's message for every reader: same headers and parts, personal values filled."""

    def __init__(
        self,
        *,
        from_address: str,
        from_name: str | None,
        subject: str,
        reply_to: str | None,
        list_id: ListIdentity | None,
        bulk: bool = True,
    ) -> None:
        self.from_address = headers.wire_address(from_address)
        self.domain = self.from_address.rpartition("@")[2]
        raw = build_message(
            from_address=from_address,
            from_name=from_name,
            to_address=_TO,
            subject=subject,
            text=_TEXT,
            html=_HTML,
            reply_to=reply_to,
            list_unsubscribe_url=_UNSUBSCRIBE,
            list_id=list_id,
            bulk=bulk,
        ).as_bytes()
        head, body = raw.split(b"\r\n\r\n", 1)
        # Header fields in order; a None entry is where a personal field goes.
        self.fields: list[bytes | None] = []
        self.order: list[bytes] = []
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and self.fields:
                if self.fields[-1] is not None:
                    self.fields[-1] += b"\r\n" + line
                continue  # a folded personal field is written whole by fill()
            name = line.split(b":", 1)[0].lower()
            if name in _PERSONAL:
                self.fields.append(None)
                self.order.append(name)
            else:
                self.fields.append(line)
                self.order.append(b"")
        if body.count(_TEXT.encode()) != 1 or body.count(_HTML.encode()) != 1:
            raise ValueError("unexpected message structure from build_message")
        before, rest = body.split(_TEXT.encode())
        middle, after = rest.split(_HTML.encode())
        self.body = (_quoted_printable(before), _quoted_printable(middle), after)

    def fill(
        self,
        *,
        to_address: str,
        to_name: str | None,
        unsubscribe_url: str,
        text: str | bytes | list[bytes],
        html: str | bytes | list[bytes],
        tags: dict[str, str],
        unsubscribe_mailto: str | None = None,
    ) -> OutgoingMessage:
        """Return one reader's message, as build_message would have built it.

        `text` and `html` are the parts' text, or already encoded (EncodedBody.fill, or
        its pieces: EncodedBody.fill_chunks).
        """
        recipient = headers.wire_address(to_address)
        values = {
            b"to": headers.address_field("To", recipient, to_name),
            b"message-id": headers.plain_field("Message-ID", make_msgid(domain=self.domain)),
            b"date": headers.plain_field("Date", format_datetime(clock.now())),
            b"list-unsubscribe": unsubscribe_fields(unsubscribe_url, unsubscribe_mailto)[0],
        }
        head = b"".join(
            values[name] if line is None else line + b"\r\n"
            for line, name in zip(self.fields, self.order, strict=True)
        )
        before, middle, after = self.body
        chunks = [head, b"\r\n", before, *_encoded(text), middle, *_encoded(html), after]
        return OutgoingMessage(
            sender=self.from_address,
            recipient=recipient,
            raw=b"".join(chunks),
            tags=tags,
            chunks=chunks,
        )


def _encoded(part: str | bytes | list[bytes]) -> list[bytes]:
    if isinstance(part, list):
        return part
    return [part if isinstance(part, bytes) else _qp(part)]
