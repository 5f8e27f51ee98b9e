"""Header fields that cannot be forged: a hostile table through every editor and reader field.

Each value goes in as the issue's subject, the list's name (the From name and the List-Id
phrase) and the reader's name, through the issue path (MessageTemplate.fill, the per-reader
fast path) and the one builder every other mail uses (confirmations, test copies). Every
message must parse with email.policy.default into exactly our header fields, without a
defect, and give the text back (control characters become spaces: `issue check` and
`lists create` refuse them before they get this far).
"""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import email.utils
import sys
import unicodedata

import pytest

from newsletter import headers
from newsletter.lists import ListIdentity
from newsletter.mail import build_message
from newsletter.wire import MessageTemplate

CONTROLS = [
    chr(c)
    for c in range(sys.maxunicode + 1)
    if unicodedata.category(chr(c)) in headers.CONTROL_CATEGORIES
]
B64_CRLF = base64.b64encode(b"x\r\nBcc: evil@example.com").decode()

HOSTILE = {
    "q-word-crlf": "=?utf-8?q?Fake=0D=0ABcc:evil@example.com?= …",
    "q-word-list": "=?utf-8?q?Evil=0D=0AX-Injected:_yes?=",
    "b-word-crlf": f"=?utf-8?b?{B64_CRLF}?=",
    "latin1-word-lf": "=?iso-8859-1?q?a=0Ab?= tail",
    "q-word-underscore": "=?UTF-8?Q?a=0D=0A=20Bcc=3A_evil?=",
    "two-words": "=?utf-8?q?a?= =?utf-8?q?=0D=0A?=",
    "raw-crlf": "Hi\r\nBcc: evil@example.com",
    "raw-lf": "Hi\nX-Injected: yes",
    "raw-cr": "Hi\rX-Injected: yes",
    "crlf-crlf-body": "Hi\r\n\r\nbody text",
    "folded-looking": "Hi\r\n X-Injected: yes",
    "percent-encoded": "Hi%0D%0ABcc:evil@example.com",
    "angle-address": "Eve <evil@example.com>, Bob <bob@example.com>",
    "quotes-backslash": 'a "quoted" \\ back\\slash ;:,()<>@[]',
    "bidi-override": "\u202eevil\u202c moc.elpmaxe@",
    "bidi-isolates": "\u2066\u2067\u2068abc\u2069 \u200f\u200e\u061c",
    "rtl-text": "مرحبا بالعالم — עברית",
    "cjk": "日本語のニュースレター第42号",
    "emoji": "🎉 Launch 👩‍💻",
    "10k-ascii-words": "word " * 2000,
    "10k-one-word": "x" * 10_000,
    "10k-non-ascii": "é" * 10_000,
    "10k-encoded-words": "=?utf-8?q?a=0D=0A?= " * 500,
    "only-spaces-inside": "a" + " " * 200 + "b",
    **{f"control-U+{ord(ch):04X}": f"a{ch}b" for ch in CONTROLS},
}


def _expected(value: str) -> str:
    return headers.clean(value)


def _no_space(value: str) -> str:
    return "".join(value.split())


def _raw_phrase(raw: bytes, name: str) -> str:
    """The display name of an address field as an RFC 2047 decoder reads it."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    line = next(h for h in head.split("\r\n") if h.lower().startswith(name.lower() + ":"))
    phrase = line.split(":", 1)[1].rsplit("<", 1)[0].strip()
    if phrase.startswith('"'):
        return email.utils.parseaddr(f"{phrase} <x@example.com>")[0]
    return str(email.header.make_header(email.header.decode_header(phrase)))


def _parse(raw: bytes) -> email.message.EmailMessage:
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # 7-bit on the wire
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line[:100]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.defects == []
    return parsed


ISSUE_FIELDS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-archive",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "auto-submitted",
    "precedence",
    "x-auto-response-suppress",
    "mime-version",
    "content-type",
}


def _check(raw, value, *, subject, list_name, reader_name) -> None:
    parsed = _parse(raw)
    assert sorted(k.lower() for k in parsed.keys()) == sorted(ISSUE_FIELDS)
    for name in parsed.keys():
        assert parsed[name].defects == (), name
    assert "bcc" not in parsed and "x-injected" not in parsed
    assert [a.addr_spec for a in parsed["To"].addresses] == ["reader@xn--bcher-kva.example"]
    assert [a.addr_spec for a in parsed["From"].addresses] == ["news@example.com"]
    assert str(parsed["Subject"]) == _expected(subject)
    # RFC 2047 decoders (email.header) give the names back exactly; email.policy.default
    # shows whitespace between adjacent encoded words in a phrase (a CPython quirk), so
    # there the names are compared without whitespace.
    for field, text in (("From", list_name), ("To", reader_name), ("List-Id", list_name)):
        assert _raw_phrase(raw, field) == _expected(text), field
    assert _no_space(parsed["From"].addresses[0].display_name) == _no_space(_expected(list_name))
    assert _no_space(parsed["To"].addresses[0].display_name) == _no_space(_expected(reader_name))
    assert str(parsed["List-Id"]).endswith("<weekly.news.example.com>")
    assert parsed["List-Unsubscribe"] == "<https://news.example.com/u/abc.def>"
    assert parsed.get_body(("plain",)).get_content().startswith("Hello")


@pytest.mark.parametrize("field", ["subject", "list_name", "reader_name"])
@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_values_never_make_a_header(field, value):
    values = {"subject": "Issue 42", "list_name": "o11y weekly", "reader_name": "René"}
    values[field] = value
    common = {
        "from_address": "news@example.com",
        "from_name": values["list_name"],
        "subject": values["subject"],
        "reply_to": "editor@example.com",
        "list_id": ListIdentity(
            values["list_name"], "weekly.news.example.com", "https://news.example.com/archive"
        ),
    }
    reader = {
        "to_address": "reader@bücher.example",
        "to_name": values["reader_name"],
        "text": "Hello\n",
        "html": "<p>Hello</p>",
    }
    fast = MessageTemplate(**common).fill(
        **reader, unsubscribe_url="https://news.example.com/u/abc.def", tags={}
    )
    slow = build_message(
        **common,
        **reader,
        list_unsubscribe_url="https://news.example.com/u/abc.def",
        bulk=True,
    )
    for message in (fast, slow):
        assert message.recipient == "reader@xn--bcher-kva.example"
        _check(message.as_bytes(), value, **values)


@pytest.mark.parametrize(
    "address",
    ["jürgen@example.com", "a b@example.com", "a\r\nb@example.com", "<a@b.example>", "@x.org"],
)
def test_addresses_that_cannot_go_on_the_wire_are_refused(address):
    with pytest.raises(headers.HeaderError):
        headers.wire_address(address)


def test_list_unsubscribe_is_never_encoded_and_refuses_odd_urls():
    field = headers.url_list_field(
        "List-Unsubscribe",
        [
            "https://news.example.com/u/" + "a" * 43,
            "mailto:u+" + "b" * 34 + "@unsubscribe.example.com",
        ],
    )
    assert b"=?" not in field and field.startswith(b"List-Unsubscribe: <https://")
    for bad in ("https://x.example/a b", "https://x.example/\r\nBcc: x", "javascript:alert(1)"):
        with pytest.raises(headers.HeaderError):
            headers.url_list_field("List-Unsubscribe", [bad])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fine text — ünïcödé", None),
        ("a\u2028b", "U+2028 (LINE SEPARATOR)"),
        ("a\x0bb", "U+000B (VERTICAL TAB)"),
        ("a\x85b", "U+0085 (NEXT LINE)"),
        ("a\x1bb", "U+001B (ESCAPE)"),
        ("a\x00b", "U+0000 (NUL)"),
    ],
)
def test_control_problem_names_the_character(text, problem):
    found = headers.control_problem(text)
    assert (found is None) if problem is None else (problem in found)


def test_the_measured_injections_through_check_lists_create_and_send(runner, tmp_path, outbox):
    """The audit's two reproductions, end to end: no Bcc, no X-Injected, From intact."""
    evil_name = "=?utf-8?q?Evil=0D=0AX-Injected:_yes?="
    evil_subject = "=?utf-8?q?Fake=0D=0ABcc:evil@example.com?= …"
    created = runner(
        "lists", "create", "weekly", "--name", evil_name, "--from-address", "news@example.com"
    )
    assert created.exit_code == 0, created.output
    issue = tmp_path / "issue.yaml"
    issue.write_text(
        f'title: Hello\ndate: 2026-12-04\nsubject: "{evil_subject}"\n'
        "sections:\n  - items:\n      - title: One\n        body: Text.\n",
        encoding="utf-8",
    )
    assert runner("issue", "check", str(issue)).exit_code == 0
    sent = runner(
        "send", str(issue), "--list", "weekly", "--test-to", "Reader@Bücher.example", "--yes"
    )
    assert sent.exit_code == 0, sent.output
    (message,) = outbox.messages
    parsed = _parse(message.as_bytes())
    assert "bcc" not in parsed and "x-injected" not in parsed
    assert [a.addr_spec for a in parsed["To"].addresses] == ["Reader@xn--bcher-kva.example"]
    assert str(parsed["Subject"]) == f"[TEST] {evil_subject}"
    assert _raw_phrase(message.as_bytes(), "From") == evil_name
    assert [a.addr_spec for a in parsed["From"].addresses] == ["news@example.com"]
