"""The message builder and the mail backends."""

from __future__ import annotations

import email
import email.policy

import pytest

from newsletter.lists import ListIdentity
from newsletter.mail import AccountPausedError
from newsletter.mail import OutboxMailer
from newsletter.mail import QuotaExceededError
from newsletter.mail import RecipientRejectedError
from newsletter.mail import ThrottledError
from newsletter.mail import TransientError
from newsletter.mail import build_message
from newsletter.mail import classify_ses_error
from newsletter.tokens import unsubscribe_url


def _message(**overrides):
    values = dict(
        from_address="news@example.com",
        from_name="o11y wöchentlich",
        to_address="rene@example.com",
        to_name="René Luçon",
        subject="Grüße aus dem Kernel — #42",
        text="Hallo René,\n\n" + "lang " * 400,
        html="<p>" + "x" * 5000 + "</p>",
        list_id=ListIdentity(
            "o11y weekly", "weekly.news.example.com", "https://news.example.com/archive"
        ),
        list_unsubscribe_url=unsubscribe_url("https://news.example.com", "k" * 32, 2**40),
    )
    values.update(overrides)
    return build_message(**values)


def _head(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.replace("\r\n ", " ").replace("\r\n\t", " ")


def test_list_unsubscribe_is_plain_and_one_click():
    raw = _message().as_bytes()
    head = _head(raw)
    line = next(h for h in head.split("\r\n") if h.lower().startswith("list-unsubscribe:"))
    assert line.split(":", 1)[1].strip().startswith("<https://news.example.com/u/")
    assert "=?" not in line
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head


def test_every_line_is_short_and_crlf():
    raw = _message().as_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    raw.decode("ascii")  # 7-bit clean on the wire


def test_non_ascii_round_trips():
    parsed = email.message_from_bytes(_message().as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Grüße aus dem Kernel — #42"
    assert parsed["To"].addresses[0].display_name == "René Luçon"
    assert parsed["From"].addresses[0].display_name == "o11y wöchentlich"
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "Hallo René" in parsed.get_body(("plain",)).get_content()
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["Date"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"headers": {"X-Test": "a\nBcc: victim@example.com"}},
        {"to_name": "Eve\r\nBcc: victim@example.com"},
        {"from_name": "Eve\r\nBcc: victim@example.com"},
    ],
)
def test_line_breaks_cannot_make_a_header(kwargs):
    parsed = email.message_from_bytes(_message(**kwargs).as_bytes(), policy=email.policy.default)
    assert "Bcc" not in parsed
    assert [a.addr_spec for a in parsed["To"].addresses] == ["rene@example.com"]
    value = next(iter(kwargs.values()))
    text = value if isinstance(value, str) else next(iter(value.values()))
    name = {"subject": "Subject", "headers": "X-Test", "to_name": "To", "from_name": "From"}[
        next(iter(kwargs))
    ]
    shown = parsed[name]
    shown = shown.addresses[0].display_name if name in ("To", "From") else str(shown)
    # Each control character became a space: one header, the text otherwise intact
    # (a display name is a phrase: the parser shows its runs of spaces as one).
    expected = text.replace("\r", " ").replace("\n", " ")
    assert shown == (" ".join(expected.split()) if name in ("To", "From") else expected)


def test_outbox_writes_eml_files(tmp_path):
    mailer = OutboxMailer(tmp_path / "outbox")
    message_id = mailer.send(_message())
    files = mailer.list_messages()
    assert message_id.startswith("outbox-")
    assert len(files) == 1
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"].addresses[0].username == "rene"


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("TooManyRequestsException", "Maximum sending rate exceeded.", 429, ThrottledError),
        ("Throttling", "Maximum sending rate exceeded.", 400, ThrottledError),
        ("LimitExceededException", "Daily message quota exceeded.", 400, QuotaExceededError),
        ("Throttling", "Daily message quota exceeded.", 400, QuotaExceededError),
        ("SendingPausedException", "paused", 400, AccountPausedError),
        ("AccountSuspendedException", "suspended", 400, AccountPausedError),
        ("MessageRejected", "Email address is not verified.", 400, RecipientRejectedError),
        ("BadRequestException", "Missing final '@domain'", 400, RecipientRejectedError),
        ("InternalFailure", "oops", 500, TransientError),
    ],
)
def test_ses_errors_are_classified(code, message, status, expected):
    assert isinstance(classify_ses_error(code, message, status), expected)
