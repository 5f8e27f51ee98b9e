"""The console's issue pages: paste or upload, errors inline, preview, test, send, watch."""

from __future__ import annotations

import email
import email.policy
import io
import re
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter import progress
from newsletter import tokens
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason
from tests.conftest import ARTIFACTS
from tests.conftest import BASE_URL
from tests.conftest import EDITOR_EMAIL
from tests.conftest import EDITOR_PASSWORD
from tests.conftest import SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "issue.yaml").read_text(encoding="utf-8")
SUBJECT = "o11y news #42: Unlocking the Kernel"

# An issue with several mistakes; each error names the line and the field path.
BROKEN = """\
title: Broken issue
date: 2023-13-01
subjct: Typo
sections:
  - title: One
    items:
      - title: First
        url: ftp://example.com/x
        body: Hello
"""
BROKEN_ERRORS = [
    "pasted.yaml:2: date: expected a date like 2023-11-06, got '2023-13-01'",
    "pasted.yaml:3: subjct: unknown field (did you mean 'subject'?)",
    "pasted.yaml:8: sections[0].items[0].url: not an http(s) URL",
]


def _parsed(message: Any) -> email.message.EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def _wait_for_delivery(app: Any, timeout: float = 30.0) -> None:
    """Wait for the in-process delivery thread the console started (if any)."""
    runner = app.extensions.get("newsletter.background")
    if runner is not None:
        assert runner.wait(timeout), "the background delivery did not finish"


def _read(db_session: Any, statement: Any) -> list[Any]:
    """Run a read and end the transaction (SQLite: never hold the lock the app needs)."""
    rows = list(db_session.execute(statement).all())
    db_session.commit()
    return rows


@pytest.fixture(autouse=True)
def _no_delivery_left_running(app: Any) -> Any:
    """Let a send the test started finish before the database is emptied for the next."""
    yield
    runner = app.extensions.get("newsletter.background")
    if runner is not None:
        runner.wait(30)


@pytest.fixture
def readers(make_list: Any, make_subscriber: Any) -> Any:
    """The example list with three active readers (one non-ASCII), one unsubscribed."""
    mailing_list = make_list(slug="o11y-news", name="o11y news")
    active = [
        make_subscriber(mailing_list, email="ada@example.com", name="Ada Lovelace"),
        make_subscriber(mailing_list, email="zoe@example.org", name="Zoë Ångström"),
        make_subscriber(mailing_list, email="kenji@example.net", name="山田 健二"),
    ]
    make_subscriber(mailing_list, status=SubscriptionStatus.UNSUBSCRIBED)
    return mailing_list, active


def _draft(admin_client: Any, text: str = EXAMPLE, list_slug: str = "o11y-news") -> str:
    """Paste an issue; return the draft page's path."""
    response = admin_client.post(
        "/admin/issues",
        data={"yaml": text, "list": list_slug, "csrf_token": admin_client.csrf()},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert re.fullmatch(r"/admin/issues/drafts/[A-Za-z0-9_-]{16,64}", location)
    return location


def _send(admin_client: Any, draft: str, expected: int, at: str = "") -> Any:
    data = {"expected": str(expected), "at": at, "csrf_token": admin_client.csrf()}
    if at:
        data["mode"] = "schedule"
    return admin_client.post(f"{draft}/send", data=data)


# --- the issues page and new drafts ---------------------------------------------------------


def test_paste_valid_yaml_goes_to_the_draft_page(admin_client: Any, readers: Any) -> None:
    draft = _draft(admin_client)
    page = admin_client.get(draft)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "o11y news #42: Unlocking the Kernel" in body
    assert f'src="{draft}/html"' in body  # desktop and phone frames
    assert body.count(f'src="{draft}/html"') == 2
    assert "Desktop (800 px)" in body and "Phone (375 px)" in body
    assert "Plain-text part" in body and "Unlocking The Kernel" in body
    assert "Send a test to me" in body and "Send to list" in body
    assert "(UTC)" in body  # the schedule field says its time zone


def test_invalid_yaml_shows_every_error_inline_and_keeps_the_text(
    admin_client: Any, readers: Any, db_session: Any, tmp_path: Path
) -> None:
    response = admin_client.post(
        "/admin/issues",
        data={"yaml": BROKEN, "list": "o11y-news", "csrf_token": admin_client.csrf()},
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    for error in BROKEN_ERRORS:
        assert error.replace("'", "&#39;") in body, error
    assert "3 errors in the issue" in body
    # The text comes back as typed, inside the textarea.
    textarea = re.search(r'<textarea id="yaml"[^>]*>(.*?)</textarea>', body, re.S)
    assert textarea and textarea.group(1) == BROKEN
    # The list stays chosen; nothing was stored.
    assert '<option value="o11y-news" selected>' in body
    assert _read(db_session, sa.select(Issue.id)) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"yaml": "   ", "list": "o11y-news"}, "Paste the issue&#39;s YAML"),
        ({"yaml": EXAMPLE, "list": ""}, "Choose the list the issue is for."),
        ({"yaml": EXAMPLE, "list": "nope"}, "There is no list &#39;nope&#39;."),
        ({"yaml": "title: [unclosed", "list": "o11y-news"}, "pasted.yaml:2: YAML syntax: did"),
        ({"yaml": "title: x\x00\n", "list": "o11y-news"}, "pasted.yaml:1: YAML syntax:"),
        ({"yaml": "title: x\n" + "#" * 1_100_000, "list": "o11y-news"}, "too large (at most 1 MB)"),
        (
            {"yaml": "- just\n- a list\n", "list": "o11y-news"},
            "pasted.yaml:1: file: expected a mapping of fields, got a list",
        ),
        (
            {"yaml": EXAMPLE.replace("title: Unlocking the Kernel", "title: <b>x</b>\ntitel: x")},
            "titel: unknown field",
        ),
    ],
)
def test_bad_new_issue_input_is_refused_with_a_clear_message(
    admin_client: Any, readers: Any, data: dict[str, str], message: str
) -> None:
    data = {"list": "o11y-news", **data, "csrf_token": admin_client.csrf()}
    response = admin_client.post("/admin/issues", data=data)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body
    if data["yaml"].strip():
        assert "<b>x</b>" not in body  # pasted text is escaped in the textarea, never markup


def test_upload_a_yaml_file(admin_client: Any, readers: Any) -> None:
    data = {
        "list": "o11y-news",
        "yaml": "",
        "file": (io.BytesIO(EXAMPLE.encode("utf-8")), "issue-42.yaml"),
        "csrf_token": admin_client.csrf(),
    }
    response = admin_client.post("/admin/issues", data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    body = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert SUBJECT in body and "issue-42.yaml" in body


def test_uploaded_file_errors_name_the_file_and_come_back_in_the_box(
    admin_client: Any, readers: Any
) -> None:
    data = {
        "list": "o11y-news",
        "file": (io.BytesIO(BROKEN.encode("utf-8")), "../../etc/draft.yaml"),
        "csrf_token": admin_client.csrf(),
    }
    response = admin_client.post("/admin/issues", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "draft.yaml:3: subjct: unknown field" in body
    assert "../" not in body.split('id="new-issue"')[1].split("<textarea")[0]
    textarea = re.search(r'<textarea id="yaml"[^>]*>(.*?)</textarea>', body, re.S)
    assert textarea and textarea.group(1) == BROKEN


def test_uploaded_file_that_is_not_utf8_is_refused(admin_client: Any, readers: Any) -> None:
    raw = "title: Café\n".encode("latin-1")
    data = {
        "list": "o11y-news",
        "yaml": "kept: text",
        "file": (io.BytesIO(raw), "latin.yaml"),
        "csrf_token": admin_client.csrf(),
    }
    response = admin_client.post("/admin/issues", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "latin.yaml:1: file: not UTF-8 text" in body
    assert ">kept: text</textarea>" in body


def test_edit_brings_the_draft_text_back_into_the_form(admin_client: Any, readers: Any) -> None:
    draft = _draft(admin_client)
    token = draft.rsplit("/", 1)[1]
    body = admin_client.get(f"/admin/issues?draft={token}").get_data(as_text=True)
    assert "title: Unlocking the Kernel" in body
    assert "Charity Majors’ observability wisdom" in body


# --- preview and test copies ----------------------------------------------------------------


def test_preview_has_the_editors_own_links_and_no_other_readers(
    admin_client: Any, readers: Any, make_subscriber: Any
) -> None:
    mailing_list, active = readers
    mine = make_subscriber(mailing_list, email=EDITOR_EMAIL, name="Edda Editor")
    draft = _draft(admin_client)
    response = admin_client.get(f"{draft}/html")
    assert response.status_code == 200
    assert "sandbox" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert tokens.unsubscribe_url(BASE_URL, SECRET_KEY, mine.id) in html
    assert "Hi Edda Editor," in html
    for other in active:
        assert tokens.make_unsubscribe_token(SECRET_KEY, other.id) not in html
    assert "{{nl:" not in html
    # The text part on the page is personalised the same way.
    page = admin_client.get(draft).get_data(as_text=True)
    assert tokens.make_unsubscribe_token(SECRET_KEY, mine.id) in page
    assert "Hi Edda Editor," in page


def test_preview_for_an_editor_who_is_not_a_reader_uses_a_test_link(
    admin_client: Any, readers: Any
) -> None:
    _, active = readers
    html = admin_client.get(f"{_draft(admin_client)}/html").get_data(as_text=True)
    assert f"{BASE_URL}/u/test-copy" in html
    assert "Hello," in html
    for other in active:
        assert tokens.make_unsubscribe_token(SECRET_KEY, other.id) not in html


def test_send_a_test_to_me(admin_client: Any, readers: Any, outbox: Any, db_session: Any) -> None:
    draft = _draft(admin_client)
    response = admin_client.post(f"{draft}/test", data={"csrf_token": admin_client.csrf()})
    assert response.status_code == 302
    assert response.headers["Location"] == draft
    body = admin_client.get(draft).get_data(as_text=True)
    assert f"A test copy marked [TEST] was sent to {EDITOR_EMAIL}." in body
    (message,) = outbox.messages
    assert message.recipient == EDITOR_EMAIL
    assert message.tags.get("test") == "true"
    assert _parsed(message)["Subject"] == f"[TEST] {SUBJECT}"
    assert _read(db_session, sa.select(Issue.id)) == []
    assert _read(db_session, sa.select(Delivery.id)) == []


def test_test_copy_to_a_suppressed_editor_is_refused(
    admin_client: Any, readers: Any, outbox: Any, db_session: Any
) -> None:
    db_session.add(Suppression(email=EDITOR_EMAIL, reason=SuppressionReason.MANUAL))
    db_session.commit()
    draft = _draft(admin_client)
    response = admin_client.post(f"{draft}/test", data={"csrf_token": admin_client.csrf()})
    assert response.status_code == 400
    assert "is on the suppression list" in response.get_data(as_text=True)
    assert outbox.messages == []


# --- confirm and send -----------------------------------------------------------------------


def test_confirmation_shows_the_exact_audience(
    admin_client: Any, readers: Any, db_session: Any
) -> None:
    mailing_list, active = readers
    db_session.add(Suppression(email="kenji@example.net", reason=SuppressionReason.MANUAL))
    db_session.commit()
    draft = _draft(admin_client)
    page = admin_client.get(f"{draft}/confirm?mode=now")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Yes, send to 2 readers" in body
    assert 'name="expected" value="2"' in body
    assert "1 on the suppression list are skipped" in body
    assert SUBJECT in body and "o11y-news" in body
    assert _read(db_session, sa.select(Issue.id)) == []  # looking stores nothing


def test_confirm_stores_the_issue_and_its_ledger_and_delivers(
    app: Any, admin_client: Any, readers: Any, outbox: Any, db_session: Any
) -> None:
    _, active = readers
    expected = sorted(s.subscriber_id for s in active)
    draft = _draft(admin_client)
    response = _send(admin_client, draft, 3)
    assert response.status_code == 302
    (issue_id,) = [row.id for row in _read(db_session, sa.select(Issue.id))]
    assert response.headers["Location"] == f"/admin/issues/{issue_id}"
    rows = _read(db_session, sa.select(Delivery.subscriber_id).where(Delivery.issue_id == issue_id))
    assert sorted(r.subscriber_id for r in rows) == expected
    _wait_for_delivery(app)
    assert sorted(m.recipient for m in outbox.messages) == [
        "ada@example.com",
        "kenji@example.net",
        "zoe@example.org",
    ]
    (issue,) = _read(db_session, sa.select(Issue.status, Issue.subject))
    assert issue.status is IssueStatus.SENT and issue.subject == SUBJECT
    page = admin_client.get(f"/admin/issues/{issue_id}").get_data(as_text=True)
    assert "Finished at" in page


def test_confirming_twice_sends_nobody_a_second_copy(
    app: Any, admin_client: Any, readers: Any, outbox: Any
) -> None:
    draft = _draft(admin_client)
    assert _send(admin_client, draft, 3).status_code == 302
    _wait_for_delivery(app)
    again = _send(admin_client, draft, 3)
    assert again.status_code == 400
    assert "was already sent to" in again.get_data(as_text=True)
    _wait_for_delivery(app)
    assert len(outbox.messages) == 3


def test_a_changed_audience_asks_again(
    admin_client: Any, readers: Any, make_subscriber: Any, db_session: Any
) -> None:
    mailing_list, _ = readers
    draft = _draft(admin_client)
    make_subscriber(mailing_list, email="late@example.com")
    response = _send(admin_client, draft, 3)
    assert response.status_code == 409
    body = response.get_data(as_text=True)
    assert "now has 4 readers" in body and "Yes, send to 4 readers" in body
    assert _read(db_session, sa.select(Issue.id)) == []


def test_sending_to_a_list_without_readers_says_so(
    admin_client: Any, make_list: Any, db_session: Any
) -> None:
    make_list(slug="empty", name="Empty list")
    draft = _draft(admin_client, list_slug="empty")
    assert "Readers now</dt><dd>0" in admin_client.get(draft).get_data(as_text=True)
    for response in (
        admin_client.get(f"{draft}/confirm?mode=now"),
        _send(admin_client, draft, 0),
    ):
        assert response.status_code == 400
        assert "The list &#39;empty&#39; has no active readers: nothing to send." in (
            response.get_data(as_text=True)
        )
    assert _read(db_session, sa.select(Issue.id)) == []


def test_a_send_that_cannot_read_the_ses_quota_stores_nothing(
    admin_client: Any, readers: Any, db_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.background import BackgroundDelivery
    from newsletter.pacing import QuotaUnavailable

    def unavailable(self: Any) -> None:
        raise QuotaUnavailable("SES did not answer. Set NEWSLETTER_SEND_RATE to send anyway.")

    monkeypatch.setattr(BackgroundDelivery, "pace", unavailable)
    draft = _draft(admin_client)
    response = _send(admin_client, draft, 3)
    assert response.status_code == 400
    assert "Set NEWSLETTER_SEND_RATE to send anyway." in response.get_data(as_text=True)
    assert _read(db_session, sa.select(Issue.id)) == []


def test_schedule_a_send(admin_client: Any, readers: Any, db_session: Any, outbox: Any) -> None:
    draft = _draft(admin_client)
    confirm = admin_client.get(f"{draft}/confirm?mode=schedule&at=2099-12-01T09:00")
    body = confirm.get_data(as_text=True)
    assert "2099-12-01 09:00 UTC" in body and "Yes, schedule for 3 readers" in body
    response = _send(admin_client, draft, 3, at="2099-12-01T09:00")
    assert response.status_code == 302
    (issue,) = _read(db_session, sa.select(Issue.status, Issue.scheduled_at))
    assert issue.status is IssueStatus.SCHEDULED
    assert issue.scheduled_at.replace(tzinfo=None).isoformat() == "2099-12-01T09:00:00"
    assert _read(db_session, sa.select(Delivery.id)) == []
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Scheduled for 2099-12-01 09:00 UTC" in page
    assert outbox.messages == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("mode=schedule&at=", "Pick the date and time (UTC)"),
        ("mode=schedule&at=2020-01-01T09:00", "2020-01-01 09:00 UTC is in the past"),
        ("mode=schedule&at=tomorrow", "&#39;tomorrow&#39; is not a date and time"),
    ],
)
def test_bad_schedule_times_are_refused(
    admin_client: Any, readers: Any, query: str, message: str
) -> None:
    draft = _draft(admin_client)
    response = admin_client.get(f"{draft}/confirm?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


# --- progress and figures -------------------------------------------------------------------


def test_progress_json(app: Any, admin_client: Any, readers: Any) -> None:
    draft = _draft(admin_client)
    issue_path = _send(admin_client, draft, 3).headers["Location"]
    _wait_for_delivery(app)
    response = admin_client.get(f"{issue_path}.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    assert data["status"] == "sent" and data["finished"] is True
    assert data["total"] == 3 and data["done"] == 3 and data["percent"] == 100.0
    assert data["counts"] == {
        "queued": 0,
        "sending": 0,
        "sent": 3,
        "failed": 0,
        "unknown": 0,
        "suppressed": 0,
        "cancelled": 0,
        "delivered": 0,
        "bounced": 0,
        "complained": 0,
        "unsubscribed": 0,
    }
    assert data["finished_text"].startswith("Finished at ")


def test_progress_of_a_queued_send_while_a_worker_runs_elsewhere(
    app: Any, admin_client: Any, readers: Any, db_session: Any, outbox: Any
) -> None:
    """With a live `newsletter worker`, the console only queues and watches."""
    from newsletter.models import Worker
    from newsletter.models import WorkerStatus

    db_session.add(
        Worker(
            id="elsewhere:1:abc",
            hostname="another-machine",
            pid=1,
            concurrency=8,
            status=WorkerStatus.RUNNING,
        )
    )
    db_session.commit()
    draft = _draft(admin_client)
    issue_path = _send(admin_client, draft, 3).headers["Location"]
    data = admin_client.get(f"{issue_path}.json").get_json()
    assert data["status"] == "sending" and data["finished"] is False
    assert data["counts"]["queued"] == 3 and data["done"] == 0
    page = admin_client.get(issue_path).get_data(as_text=True)
    assert "Delivered by the running" in page
    time.sleep(0.2)
    assert outbox.messages == []  # the other worker sends, not the web process


def test_figures_table_for_a_sent_issue(
    admin_client: Any, make_ledger: Any, db_session: Any
) -> None:
    issue, rows = make_ledger([f"r{i}@example.com" for i in range(9)])
    states = [
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.UNKNOWN,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.COMPLAINED,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.SUPPRESSED,
    ]
    for row, state in zip(rows, states, strict=True):
        row.status = state
    # The last delivered reader left after the issue reached them.
    subscription = rows[7].subscription_id
    from newsletter.models import Subscription

    left = db_session.get(Subscription, subscription)
    left.status = SubscriptionStatus.UNSUBSCRIBED
    left.unsubscribed_at = rows[7].sent_at
    db_session.commit()
    body = admin_client.get("/admin/issues").get_data(as_text=True)
    row = re.search(rf'<tr data-issue="{issue.id}">(.*?)</tr>', body, re.S).group(1)
    figures = dict(re.findall(r'data-figure="(\w+)">(\d+)<', row))
    assert figures == {
        "sent": "6",  # sent, delivered x3, bounced, complained: accepted by SES
        "delivered": "4",  # delivered x3 and the complaint (it reached the mailbox)
        "failed": "1",
        "unknown": "1",
        "bounced": "1",
        "complained": "1",
        "unsubscribed": "1",
    }
    detail = admin_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "r4@example.com" in detail  # the unknown address is listed
    assert 'data-count="suppressed">1<' in detail
    # The progress endpoint counts the same in its one pass over the ledger.
    live = admin_client.get(f"/admin/issues/{issue.id}.json").get_json()
    full = progress.issue_figures(db_session, issue.id).as_dict()
    db_session.commit()
    assert live["counts"] == full["counts"]
    assert live["rate"] == full["rate"] and live["total"] == full["total"] == 9
    assert live["next_poll_ms"] >= 1000


def test_no_lists_yet_points_to_creating_one(admin_client: Any) -> None:
    body = admin_client.get("/admin/issues").get_data(as_text=True)
    assert "No issue sent yet" in body and "Create a list" in body


# --- access ---------------------------------------------------------------------------------


def test_posts_without_csrf_are_refused(
    admin_client: Any, readers: Any, outbox: Any, db_session: Any
) -> None:
    draft = _draft(admin_client)
    for url, data in [
        ("/admin/issues", {"yaml": EXAMPLE, "list": "o11y-news"}),
        (f"{draft}/test", {}),
        (f"{draft}/send", {"expected": "3"}),
    ]:
        assert admin_client.post(url, data=data).status_code == 400, url
        forged = admin_client.post(url, data={**data, "csrf_token": "forged.token"})
        assert forged.status_code == 400, url
    assert outbox.messages == []
    assert _read(db_session, sa.select(Issue.id)) == []


@pytest.mark.parametrize(
    "url",
    [
        "/admin/issues/999",
        "/admin/issues/999.json",
        "/admin/issues/drafts/AAAAAAAAAAAAAAAAAAAAAAAA",
        "/admin/issues/drafts/AAAAAAAAAAAAAAAAAAAAAAAA/html",
        "/admin/issues/drafts/AAAAAAAAAAAAAAAAAAAAAAAA/confirm",
        "/admin/issues/drafts/..%2F..%2Fetc%2Fpasswd/html",
        "/admin/issues/drafts/short",
        "/admin/issues?draft=nope",
    ],
)
def test_unknown_ids_are_404(admin_client: Any, url: str) -> None:
    assert admin_client.get(url).status_code == 404


def test_issue_pages_need_a_login(client: Any, readers: Any) -> None:
    for url in ("/admin/issues", "/admin/issues/1", "/admin/issues/1.json"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


# --- in the browser -------------------------------------------------------------------------


def _sign_in(page: Any, live_server: str) -> None:
    page.goto(f"{live_server}/admin/login")
    page.fill("input[name=email]", EDITOR_EMAIL)
    page.fill("input[name=password]", EDITOR_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/**")


def _browser_draft(page: Any, live_server: str) -> None:
    page.route("https://example.com/**", lambda route: route.abort())  # offline images
    _sign_in(page, live_server)
    page.goto(f"{live_server}/admin/issues")
    page.set_input_files("#file", str(ROOT / "examples" / "issue.yaml"))
    page.click("text=Check and preview")
    page.wait_for_url(re.compile(r".*/admin/issues/drafts/[A-Za-z0-9_-]+$"))


@pytest.mark.browser
def test_browser_preview_an_issue(page: Any, live_server: str, editor: Any, readers: Any) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    _browser_draft(page, live_server)
    assert page.locator("h1").inner_text() == SUBJECT
    frames = page.locator(".preview-pair iframe")
    assert frames.count() == 2
    widths = [frames.nth(i).evaluate("frame => frame.clientWidth") for i in range(2)]
    # The desktop frame is wider than the email's 600 px column; the phone is a phone.
    assert 600 < widths[0] <= 800 and abs(widths[1] - 373) <= 2
    boxes = [frames.nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["x"] + boxes[0]["width"] < boxes[1]["x"]  # side by side
    card = page.locator(".preview-pair").bounding_box()
    # Both in view, inside their card, on a laptop screen (the phone frame is not clipped).
    assert boxes[1]["x"] + boxes[1]["width"] <= card["x"] + card["width"] <= 1280
    # On a phone they stack, and the phone frame fits the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    boxes = [frames.nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"]
    assert all(box["x"] >= 0 and box["x"] + box["width"] <= 390 for box in boxes)
    for selector in (".frame-desktop", ".frame-phone"):
        frame = page.frame_locator(f".preview-pair iframe{selector}")
        assert frame.locator("h1").inner_text() == "Unlocking the Kernel"
        assert frame.locator("text=Hello,").count() >= 1
    assert "Unlocking The Kernel" in page.locator("pre.mail-text").inner_text()


@pytest.mark.browser
def test_browser_send_a_test(
    page: Any, live_server: str, editor: Any, readers: Any, outbox: Any
) -> None:
    _browser_draft(page, live_server)
    page.click("#send-test")
    page.locator(".flash", has_text="A test copy marked [TEST] was sent to").wait_for()
    (message,) = outbox.messages
    assert message.recipient == EDITOR_EMAIL
    assert _parsed(message)["Subject"] == f"[TEST] {SUBJECT}"


@pytest.mark.browser
def test_browser_send_to_the_list_and_see_it_finish(
    page: Any, live_server: str, editor: Any, readers: Any, outbox: Any, database_url: str
) -> None:
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    _browser_draft(page, live_server)
    page.click("#send-list")
    page.wait_for_url(re.compile(r".*/confirm\?mode=now"))
    assert page.locator("#confirm-audience").inner_text().startswith("3")
    page.click("text=Yes, send to 3 readers")
    page.wait_for_url(re.compile(r".*/admin/issues/\d+$"))
    page.locator("#finished", has_text="Finished at").wait_for(timeout=30_000)
    assert page.locator('[data-count="sent"]').inner_text() == "3"
    assert page.locator('[data-count="queued"]').inner_text() == "0"
    assert page.locator("#issue-status").inner_text() == "sent"
    assert page.locator("#progress-bar").evaluate("bar => bar.value === bar.max")
    assert page.locator("#delivery-note").is_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-issue-finished-{backend}.png"), full_page=True)
    recipients = sorted(m.recipient for m in outbox.messages)
    assert recipients == ["ada@example.com", "kenji@example.net", "zoe@example.org"]
    zoe = next(m for m in outbox.messages if m.recipient == "zoe@example.org")
    assert "Hi Zoë Ångström," in _parsed(zoe).get_body(("plain",)).get_content()
    page.goto(f"{live_server}/admin/issues")
    assert page.locator('td[data-figure="sent"]').first.inner_text() == "3"
