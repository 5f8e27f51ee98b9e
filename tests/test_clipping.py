"""Never clipped: minified HTML, and a send that refuses what Gmail would still clip."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import lxml.html
import pytest
import sqlalchemy as sa

from newsletter.composer import ClippedIssue
from newsletter.composer import check_clipping
from newsletter.composer import compile_issue
from newsletter.composer import load_issue
from newsletter.composer import load_issue_text
from newsletter.composer import render_for_reader
from newsletter.composer.issue_email import GMAIL_CLIP_BYTES
from newsletter.models import Issue
from newsletter.models import MailingList

DATA = Path(__file__).parent / "data"
FORTY = DATA / "forty-items.yaml"
EXAMPLE = Path(__file__).parent.parent / "examples" / "issue.yaml"
BASE_URL = "https://news.example.com"


def _list() -> MailingList:
    return MailingList(
        slug="weekly", name="o11y weekly", from_address="news@example.com", language="en"
    )


def _reader_html(compiled) -> bytes:
    html, _ = render_for_reader(
        compiled.html,
        compiled.text,
        unsubscribe_url=f"{BASE_URL}/u/" + "x" * 40,
        web_url=f"{BASE_URL}/archive/x",
        name="Zoë",
    )
    return html.encode()


def test_the_example_fits_and_is_minified():
    compiled = compile_issue(load_issue(EXAMPLE), _list(), base_url=BASE_URL)
    html = _reader_html(compiled)
    assert not compiled.clipped and len(html) < 60_000
    # Whitespace between tags is gone (what is left sits in Outlook's conditional comments).
    assert len(re.findall(rb">\s+<", html)) < 40
    check_clipping(compiled, allow_clipping=False)  # nothing to refuse


def test_forty_stories_are_refused_with_the_size_and_what_to_cut():
    compiled = compile_issue(load_issue(FORTY), _list(), base_url=BASE_URL)
    assert compiled.clipped and compiled.stories == 40
    with pytest.raises(ClippedIssue) as refused:
        check_clipping(compiled, allow_clipping=False)
    message = str(refused.value)
    assert f"{compiled.html_size / 1000:.1f} KB after minifying" in message
    assert "of its 40 stories" in message and "--allow-clipping" in message
    check_clipping(compiled, allow_clipping=True)
    # Allowed anyway: the unsubscribe link is repeated at the top, inside what Gmail shows.
    html = _reader_html(compiled)
    assert len(html) > GMAIL_CLIP_BYTES
    first = html.find(f"{BASE_URL}/u/".encode())
    assert 0 < first < GMAIL_CLIP_BYTES // 10


def test_many_short_stories_fit_thanks_to_shared_blocks():
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12
    entries = "".join(
        f"      - title: Story {n}\n        url: https://example.com/{n}\n        body: {body}\n"
        for n in range(60)
    )
    text = f"title: Long\ndate: 2024-01-01\npreheader: p\nsections:\n  - items:\n{entries}"
    compiled = compile_issue(load_issue_text(text), _list(), base_url=BASE_URL)
    assert not compiled.clipped
    assert len(_reader_html(compiled)) < GMAIL_CLIP_BYTES
    # Only the early-unsubscribe version has a second unsubscribe link.
    tree = lxml.html.document_fromstring(_reader_html(compiled))
    assert len([a for a in tree.iter("a") if "/u/" in (a.get("href") or "")]) == 1


def test_no_invalid_attributes_and_urls_are_encoded():
    text = """\
title: T
date: 2024-01-01
sections:
  - items:
      - title: A "quoted" link
        url: 'https://example.com/a"b<c>?q=1&r=2'
        body: Some `code` and text.
"""
    compiled = compile_issue(load_issue_text(text), _list(), base_url=BASE_URL)
    tree = lxml.html.document_fromstring(_reader_html(compiled))
    assert not [p for p in tree.iter("p") if p.get("width") or p.get("align")]
    assert not [c for c in tree.iter("code") if c.get("bgcolor")]
    assert "https://example.com/a%22b%3Cc%3E?q=1&r=2" in tree.xpath("//a/@href")
    # No section title: the story heading is h2 (never h1 -> h3), and it looks like a link.
    (heading,) = tree.xpath("//h2[a]")
    assert "underline" in heading.find("a").get("style")
    assert not tree.xpath("//h3")


def _count_issues(db_session) -> int:
    db_session.rollback()
    try:
        return db_session.scalar(sa.select(sa.func.count()).select_from(Issue))
    finally:
        db_session.rollback()  # SQLite: hold no lock while the app writes


def test_cli_send_refuses_a_clipped_issue_unless_allowed(
    runner, make_list, make_subscriber, outbox, db_session
):
    weekly = make_list()
    make_subscriber(weekly, email="ada@example.org")
    refused = runner("send", str(FORTY), "--list", "weekly", "--yes")
    assert refused.exit_code == 1
    assert "Not sent: the HTML is" in refused.output and "--allow-clipping" in refused.output
    assert "Traceback" not in refused.output
    assert outbox.messages == [] and _count_issues(db_session) == 0
    allowed = runner("send", str(FORTY), "--list", "weekly", "--yes", "--allow-clipping")
    assert allowed.exit_code == 0, allowed.output
    (message,) = outbox.messages
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content().encode()
    assert 0 < html.find(b"/u/") < GMAIL_CLIP_BYTES


def test_console_send_needs_the_checkbox_for_a_clipped_issue(
    admin_client, make_list, make_subscriber, db_session
):
    weekly = make_list()
    make_subscriber(weekly, email="ada@example.org")
    posted = admin_client.post(
        "/admin/issues",
        data={"yaml": FORTY.read_text(), "list": "weekly", "csrf_token": admin_client.csrf()},
    )
    assert posted.status_code == 302
    draft = posted.headers["Location"]
    page = admin_client.get(draft).get_data(as_text=True)
    assert 'id="allow-clipping"' in page and "Gmail will clip it" in page
    refused = admin_client.get(f"{draft}/confirm?mode=now")
    assert refused.status_code == 400
    assert "Not sent: the HTML is" in refused.get_data(as_text=True)
    confirm = admin_client.get(f"{draft}/confirm?mode=now&allow_clipping=1")
    assert confirm.status_code == 200
    assert 'name="allow_clipping" value="1"' in confirm.get_data(as_text=True)
    sent = admin_client.post(
        f"{draft}/send",
        data={"expected": "1", "at": "", "allow_clipping": "1", "csrf_token": admin_client.csrf()},
    )
    assert sent.status_code == 302, sent.get_data(as_text=True)[-3000:]
    assert _count_issues(db_session) == 1
