"""The per-reader fast path gives the same message as the one message builder."""

from __future__ import annotations

import email
import email.policy

import pytest

from newsletter.lists import ListIdentity
from newsletter.mail import build_message
from newsletter.wire import MessageTemplate

HTML = "<!doctype html><html><body>" + ("<p style='color:#333'>Grüße — " * 400) + "</body></html>"
TEXT = "Hi René,\n\nA long line " + "x" * 300 + " end   \n\n.dot line\nUnsubscribe: {u}\n"


@pytest.mark.parametrize(
    ("to_address", "to_name"),
    [
        ("reader@example.com", None),
        ("reader@example.com", "René Luçon"),
        ("reader@example.com", 'Luçon, "René" (the reader)'),
        ("x" * 40 + "@example.com", "Ein sehr langer Name, der gefaltet werden muss " * 3),
    ],
)
def test_fast_path_matches_build_message(to_address, to_name):
    url = "https://news.example.com/u/abc.def123"
    common = {
        "from_address": "news@example.com",
        "from_name": "o11y weekly",
        "subject": "o11y news #42: Unlocking the Kernel — größer",
        "reply_to": "editor@example.com",
        "list_id": ListIdentity(
            "o11y weekly", "weekly.news.example.com", "https://news.example.com/archive"
        ),
    }
    text, html = TEXT.format(u=url), HTML
    slow = build_message(
        **common,
        to_address=to_address,
        to_name=to_name,
        text=text,
        html=html,
        list_unsubscribe_url=url,
        tags={"issue": "1"},
    )
    fast = MessageTemplate(**common).fill(
        to_address=to_address,
        to_name=to_name,
        unsubscribe_url=url,
        text=text,
        html=html,
        tags={"issue": "1"},
    )
    assert fast.recipient == slow.recipient and fast.tags == slow.tags
    raw = fast.as_bytes()
    for line in raw.split(b"\r\n"):
        assert len(line) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"")
    ours = email.message_from_bytes(raw, policy=email.policy.default)
    theirs = email.message_from_bytes(slow.as_bytes(), policy=email.policy.default)
    for name in (
        "From",
        "To",
        "Subject",
        "Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "MIME-Version",
        "Content-Type",
    ):
        if name == "Content-Type":
            assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"
        else:
            assert str(ours[name]) == str(theirs[name]), name
    assert ours["Message-ID"] and ours["Date"] and ours["Message-ID"] != theirs["Message-ID"]
    for kind in ("plain", "html"):
        assert ours.get_body((kind,)).get_content().rstrip("\n") == theirs.get_body(
            (kind,)
        ).get_content().rstrip("\n")
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert f"List-Unsubscribe: <{url}>" in head


# --- bodies encoded once per issue, the reader's values per message ---

_SLOTTED = [
    # (fixed pieces, slot names): edge cases of quoted-printable joins
    (("Hi ", "!\n"), ("greeting",)),
    (("a" * 75, "b" * 76, "c" * 151), ("web_url", "greeting")),  # lines at the limit
    (("=" * 25, "=" * 26, ""), ("greeting", "web_url")),  # escapes at the limit
    (("trailing space   ", "\n.\n", "tab\t"), ("greeting", "web_url")),
    (("", "", ""), ("greeting", "greeting")),  # slots side by side, nothing fixed
    (("line\r\nbreaks\r\n", " and more\n\n\n"), ("unsubscribe_url",)),
    (("Grüße — " * 30, "日本語 " * 40), ("greeting",)),
]
_VALUES = [
    {"greeting": "Hi René,", "web_url": "https://x.example/a", "unsubscribe_url": "https://x/u/1"},
    {"greeting": "", "web_url": "=" * 80, "unsubscribe_url": " "},
    {"greeting": "Hi " + "Ünïcödé " * 20 + ",", "web_url": "a b ", "unsubscribe_url": "x" * 76},
]


@pytest.mark.parametrize("values", _VALUES)
@pytest.mark.parametrize(("pieces", "names"), _SLOTTED)
def test_encoded_body_decodes_to_the_filled_text(pieces, names, values):
    import binascii

    from newsletter.wire import EncodedBody

    filled = "".join(
        p + (values[n] if i < len(names) else "")
        for i, (p, n) in enumerate(zip(pieces, (*names, None), strict=True))
    )
    encoded = EncodedBody(pieces, names).fill(values)
    lines = encoded.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines)
    assert all(not line.endswith((b" ", b"\t")) for line in lines)
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    decoded = binascii.a2b_qp(encoded.replace(b"\r\n", b"\n")).decode("utf-8")
    assert decoded == filled.replace("\r\n", "\n").rstrip("\n")


def test_a_reader_message_reads_as_the_one_built_in_full(app, make_list):
    from newsletter.composer.placeholders import render_for_reader
    from newsletter.sending.renderer import IssueRenderer

    html = (
        "<p>{{nl:greeting}}</p>"
        + "<p style='x'>Grüße — lang</p>" * 300
        + ('<a href="{{nl:unsubscribe_url}}">Unsubscribe</a> <a href="{{nl:web_url}}">web</a>')
    )
    text = "{{nl:greeting}}\n\n" + "Some text, a long line " * 40 + "\n{{nl:unsubscribe_url}}\n"
    mailing_list = make_list()
    renderer = IssueRenderer(
        issue_id=7,
        slug="s",
        subject="Subject",
        html=html,
        text=text,
        mailing_list=mailing_list,
        base_url="https://news.example.com",
        secret_key="k" * 32,
    )
    message = renderer.message(
        email="reader@example.com", name="Luçon <René>", subscription_id=3, delivery_id=9
    )
    ours = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    unsubscribe = ours["List-Unsubscribe"].strip("<>")
    full_html, full_text = render_for_reader(
        html, text, unsubscribe_url=unsubscribe, web_url=renderer.web_url, name="Luçon <René>"
    )
    assert "Hi Luçon &lt;René&gt;," in full_html and unsubscribe in full_text
    for kind, full in (("html", full_html), ("plain", full_text)):
        content = ours.get_body((kind,)).get_content()
        assert content.replace("\r\n", "\n").rstrip("\n") == full.rstrip("\n")


def test_reader_messages_share_their_long_pieces(app, make_list):
    """A message's pieces join to its bytes, and its long pieces are the same objects in
    every reader's message (the SES transport encodes those once)."""
    from newsletter.sending.renderer import IssueRenderer

    renderer = IssueRenderer(
        issue_id=7,
        slug="s",
        subject="Subject",
        html="<p>{{nl:greeting}}</p>" + "<p>Grüße — lang</p>" * 300 + "{{nl:unsubscribe_url}}",
        text="{{nl:greeting}}\n\n" + "Some text, a long line " * 80 + "\n{{nl:unsubscribe_url}}\n",
        mailing_list=make_list(),
        base_url="https://news.example.com",
        secret_key="k" * 32,
    )
    first, second = (
        renderer.message(
            email=f"reader{n}@example.com", name=name, subscription_id=n, delivery_id=n
        )
        for n, name in ((1, "Ann"), (2, "Luçon <René> with a longer name"))
    )
    for message in (first, second):
        assert message.chunks is not None and b"".join(message.chunks) == message.raw
    long_first = [id(piece) for piece in first.chunks if len(piece) >= 1024]
    long_second = [id(piece) for piece in second.chunks if len(piece) >= 1024]
    assert len(long_first) >= 2 and long_first == long_second
