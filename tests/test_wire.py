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
