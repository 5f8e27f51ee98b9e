"""The console's gate and dashboard in headless Chromium: login, a wrong password, lists."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.models import MailingList
from tests.conftest import EDITOR_EMAIL
from tests.conftest import EDITOR_PASSWORD

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _watch_console(page: Any) -> list[str]:
    """Collect script errors and CSP violations (both show as console errors)."""
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{msg.text} {msg.location}")
            if msg.type == "error"
            and "favicon" not in str(msg.location)
            # The wrong password's 401 and the refused form's 400 are expected answers.
            and "status of 401" not in msg.text
            and "status of 400" not in msg.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def test_wrong_password_then_login_then_sign_out(
    page: Any, live_server: str, editor: Any, clock: Any, make_list: Any, make_subscriber: Any
) -> None:
    weekly = make_list()
    for days in (40, 20, 5):
        make_subscriber(weekly, confirmed_at=clock() - timedelta(days=days))
    make_subscriber(weekly, "zoë@example.com", name="Zoë Ångström")
    problems = _watch_console(page)
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{live_server}/admin/subscribers")
    assert page.url == f"{live_server}/admin/login?next=/admin/subscribers"
    page.fill("#email", EDITOR_EMAIL)
    page.fill("#password", "not the right password")
    page.click("button[type=submit]")
    alert = page.locator("[role=alert]")
    alert.wait_for()
    assert alert.inner_text() == "That address and password do not match an editor account."
    assert page.input_value("#email") == EDITOR_EMAIL  # kept; the password is not
    assert page.input_value("#password") == ""
    page.screenshot(path=str(ARTIFACTS / "console-1-wrong-password.png"), full_page=True)

    page.fill("#password", EDITOR_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/subscribers")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["session"]["httpOnly"] is True
    assert cookies["session"]["sameSite"] == "Lax"

    page.click("nav >> text=Dashboard")
    page.wait_for_url(f"{live_server}/admin/")
    assert page.locator("svg.chart.growth").count() == 1
    box = page.locator("svg.chart.growth").bounding_box()
    assert box["width"] > 300 and box["height"] > 60
    figure = page.locator(".figure", has_text="active").locator("dd")
    assert figure.inner_text() == "4"
    page.screenshot(path=str(ARTIFACTS / "console-2-dashboard.png"), full_page=True)

    page.click("text=Sign out")
    page.wait_for_url(f"{live_server}/admin/login")
    page.goto(f"{live_server}/admin/")
    assert page.url.startswith(f"{live_server}/admin/login")
    assert problems == []


def test_create_and_edit_a_list_in_the_browser(
    page: Any, live_server: str, editor: Any, db_session: Any
) -> None:
    problems = _watch_console(page)
    page.goto(f"{live_server}/admin/login")
    page.fill("#email", EDITOR_EMAIL)
    page.fill("#password", EDITOR_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/")

    page.click("nav >> text=Lists")
    page.click("text=New list")
    page.fill("#slug", "ops-digest")
    page.fill("#name", "Ops digest — Ünïcode")
    page.fill("#from_address", "digest@example.com")
    page.fill("#postal_address", "1 Example Street\n10115 Berlin")
    page.click("button:has-text('Create list')")
    page.wait_for_url(f"{live_server}/admin/lists")
    assert page.locator("[role=status]").inner_text() == "Created the list 'ops-digest'."
    page.click("tr:has-text('ops-digest') >> text=Edit")
    page.fill("#reply_to", "not an address")
    # The browser's own check stops a bad address before it is sent: turn it off to see ours.
    page.eval_on_selector("form[method=post]:not(.logout)", "f => f.noValidate = true")
    page.click("button:has-text('Save')")
    assert "Reply-to address:" in page.locator("[role=alert]").inner_text()
    page.fill("#reply_to", "editor@example.com")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"{live_server}/admin/lists")
    page.screenshot(path=str(ARTIFACTS / "console-3-lists.png"), full_page=True)

    stored = db_session.scalar(sa.select(MailingList).where(MailingList.slug == "ops-digest"))
    assert stored.name == "Ops digest — Ünïcode"
    assert stored.reply_to == "editor@example.com"
    assert problems == []
