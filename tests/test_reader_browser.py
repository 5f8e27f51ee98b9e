"""The reader's pages in headless Chromium: subscribe, confirm, unsubscribe, come back."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import tokens
from newsletter.models import Subscription

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BASE_URL = "https://news.example.com"

CONFIRM_LINK = re.compile(r"https://news\.example\.com/confirm/[A-Za-z0-9_.\-]+")


def test_subscribe_confirm_unsubscribe_in_a_browser(
    page, live_server, make_list, outbox, app, db_session
):
    make_list(description="Observability news, every Monday.")
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{msg.text} {msg.location}")
            if msg.type == "error" and "favicon" not in str(msg.location)
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.set_viewport_size({"width": 390, "height": 800})  # a phone
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{live_server}/subscribe?list=weekly")
    assert page.locator("h1").inner_text() == "Subscribe to o11y weekly"
    # The honeypot stays out of sight, inside the page (test_reader_paths_browser.py has more).
    hidden = page.locator("#website").evaluate("el => getComputedStyle(el.parentElement).clipPath")
    assert hidden == "inset(50%)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.fill("#email", "reader@example.com")
    page.fill("#name", "René Luçon")
    page.screenshot(path=str(ARTIFACTS / "reader-1-subscribe.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    page.screenshot(path=str(ARTIFACTS / "reader-2-check-inbox.png"), full_page=True)

    (message,) = outbox.messages
    mime = email.message_from_bytes(message.as_bytes(), policy=email.policy.SMTP)
    link = CONFIRM_LINK.search(mime.get_body(preferencelist=("plain",)).get_content()).group(0)
    page.goto(link.replace(BASE_URL, live_server))
    page.screenshot(path=str(ARTIFACTS / "reader-3-confirm.png"), full_page=True)
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=You are subscribed")
    page.screenshot(path=str(ARTIFACTS / "reader-4-subscribed.png"), full_page=True)

    subscription_id = db_session.scalar(sa.select(Subscription.id))
    db_session.rollback()
    token = tokens.make_unsubscribe_token(app.config["SECRET_KEY"], subscription_id)
    page.goto(f"{live_server}/u/{token}")
    page.screenshot(path=str(ARTIFACTS / "reader-5-unsubscribe.png"), full_page=True)
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_selector("text=You are unsubscribed")
    assert page.url.endswith(f"/u/{token}")  # answered in place, no redirect
    page.screenshot(path=str(ARTIFACTS / "reader-6-unsubscribed.png"), full_page=True)
    page.click("button:has-text('Subscribe again')")
    page.wait_for_selector("text=Welcome back")

    # The stylesheet applied (no inline styles needed): the card has its border radius.
    radius = page.eval_on_selector(".card", "el => getComputedStyle(el).borderRadius")
    assert radius == "12px"
    assert problems == []  # no CSP violations or script errors
