"""Every reader path in Chromium at 390 px, in English, German and Arabic: no dead ends.

One test per language walks the whole way (a shared browser, one page): the front door,
a mistake and its correction, a double click on Subscribe (one email), a reload of
"check your inbox", confirming twice, unsubscribing twice, a forged link, an unknown page.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter import i18n
from newsletter import tokens
from newsletter.models import Subscription
from tests.ui_components import problems
from tests.ui_components import survey

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BASE_URL = "https://news.example.com"
CONFIRM_LINK = re.compile(r"https://news\.example\.com/confirm/[A-Za-z0-9_.\-]+")


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} is {width}px wide"


def _shot(page: Any, language: str, name: str) -> None:
    # After a click the new page's elements can be there before its stylesheet: measure
    # the page as the reader sees it, styled.
    page.wait_for_load_state("load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"reader-{language}-{name}.png"), full_page=True)
    _no_sideways_scroll(page)
    assert problems(survey(page), f"reader-{language}-{name}") == []


@pytest.mark.parametrize("language", ["en", "de", "ar"])
def test_every_reader_path_at_390px(
    page, live_server, make_list, outbox, app, db_session, language
):
    make_list(description="Observability news, every Monday.", language=language)

    def t(message: str, **variables: Any) -> str:
        with i18n.using(language):
            return i18n.gettext(message, **variables)

    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{msg.text} {msg.location}")
            if msg.type == "error" and "status of 4" not in msg.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.set_viewport_size({"width": 390, "height": 844})
    # The reader's browser speaks the list's language (pages that know no list follow it).
    page.set_extra_http_headers({"Accept-Language": f"{language};q=1, en;q=0.5"})

    # The front door of a one-list site is its signup page.
    page.goto(f"{live_server}/")
    assert page.locator("html").get_attribute("lang") == language
    direction = "rtl" if language == "ar" else "ltr"
    assert page.locator("html").get_attribute("dir") == direction
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).direction") == direction
    assert page.locator("h1").inner_text() == t("Subscribe to %(name)s", name="o11y weekly")
    _shot(page, language, "1-front-door")

    # A mistake the browser lets through: the form again, the message beside the field.
    page.fill("#email", "foo@bar")
    page.fill("#name", "René Luçon")
    page.click("button[type=submit]")
    page.wait_for_selector("#email-error")
    assert page.input_value("#email") == "foo@bar"
    assert page.input_value("#name") == "René Luçon"
    if language != "en":
        assert page.inner_text("#email-error") == t(
            "That does not look like an email address we can write to: please check it."
        )
    assert page.get_attribute("#email", "aria-invalid") == "true"
    _shot(page, language, "2-mistake")

    # Corrected, then a double click: one confirmation email.
    page.fill("#email", "reader@example.com")
    page.dblclick("button[type=submit]")
    page.wait_for_selector(f"h1:has-text('{t('Check your inbox')}')")
    assert "/subscribe/check-your-inbox" in page.url
    page.reload()
    page.wait_for_selector(f"h1:has-text('{t('Check your inbox')}')")
    _shot(page, language, "3-check-inbox")
    assert len(outbox.messages) == 1

    mime = email.message_from_bytes(outbox.messages[0].as_bytes(), policy=email.policy.SMTP)
    link = CONFIRM_LINK.search(mime.get_body(preferencelist=("plain",)).get_content()).group(0)
    confirm = link.replace(BASE_URL, live_server)
    # The confirmation email as a phone shows it: the list's language and direction.
    # (From a blank page: set_content keeps the current page's CSP, which bars inline styles.)
    page.goto("about:blank")
    page.set_content(mime.get_body(preferencelist=("html",)).get_content())
    assert page.locator("html").get_attribute("dir") == direction
    assert page.locator("h1").inner_text() == t("Please confirm your subscription")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"reader-{language}-email-confirm.png"), full_page=True)
    _no_sideways_scroll(page)
    page.goto(confirm)
    page.click(f"button:has-text('{t('Confirm')}')")
    page.wait_for_selector(f"h1:has-text('{t('You are subscribed')}')")
    _shot(page, language, "4-subscribed")
    # The link a second time: a friendly page, not an error.
    response = page.goto(confirm)
    assert response.status == 200
    assert page.locator(".notice").inner_text() == t(
        "This link was used already: your subscription to %(name)s is confirmed. "
        "There is nothing more to do.",
        name="o11y weekly",
    )
    _shot(page, language, "5-already-subscribed")

    subscription_id = db_session.scalar(sa.select(Subscription.id))
    db_session.rollback()
    unsubscribe = f"{live_server}/u/" + tokens.make_unsubscribe_token(
        app.config["SECRET_KEY"], subscription_id
    )
    page.goto(unsubscribe)
    page.click(f"button:has-text('{t('Unsubscribe')}')")
    page.wait_for_selector(f"h1:has-text('{t('You are unsubscribed')}')")
    response = page.goto(unsubscribe)
    assert response.status == 200
    assert page.locator("h1").inner_text() == t("You are unsubscribed")
    _shot(page, language, "6-unsubscribed")

    # A damaged confirmation link: what to do, and the way there.
    response = page.goto(confirm[:-4] + "abcd")
    assert response.status == 400
    _shot(page, language, "7-bad-link")
    page.click(f"a:has-text('{t('Sign up again')}')")
    page.wait_for_selector("#email")

    # An unknown page: styled, with the way home.
    response = page.goto(f"{live_server}/no-such-page")
    assert response.status == 404
    _shot(page, language, "8-not-found")
    assert page.locator("h1").inner_text() == t("Page not found")
    page.click(f"a:has-text('{t('Go to the home page')}')")
    page.wait_for_selector("#email")
    assert problems == []


def test_a_right_to_left_list_lays_out_right_to_left(page, live_server, make_list):
    make_list(name="نشرة المراقبة", language="ar")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/subscribe?list=weekly")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).direction") == "rtl"
    # The button sits at the right edge of the card, where an Arabic reader starts.
    card = page.locator(".card").bounding_box()
    button = page.locator("button[type=submit]").bounding_box()
    assert button["x"] + button["width"] > card["x"] + card["width"] - 60
    _honeypot_is_hidden(page, "#website", ["#email", "#name", "button[type=submit]"])
    _shot(page, "ar", "1-subscribe")


def _honeypot_is_hidden(page: Any, honeypot: str, tab_order: list[str]) -> None:
    """Out of sight, out of the accessibility tree and the tab order, and inside the page."""
    field = page.locator(honeypot)
    assert field.get_attribute("tabindex") == "-1"
    assert field.get_attribute("autocomplete") == "off"
    # Inside the window: an off-screen offset is what widens a page (left: on rtl pages).
    box = field.bounding_box()
    assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= 390, box
    # Nothing of it is painted or can be clicked: the point it stands on is someone else's.
    assert not page.evaluate(
        """(sel) => {
            const box = document.querySelector(sel).closest('[aria-hidden=true]');
            const r = box.getBoundingClientRect();
            // Its top-left corner: the one pixel an unclipped 1 px box would still show.
            const hit = document.elementFromPoint(r.x + 0.5, r.y + 0.5);
            return box.contains(hit);
        }""",
        honeypot,
    )
    # Screen readers: the form's textboxes are the ones a person fills in (all but the button).
    snapshot = page.locator("form", has=field).aria_snapshot()
    assert snapshot.count("- textbox") == len(tab_order) - 1, snapshot
    # The keyboard goes from the address to the name to the button.
    page.focus(tab_order[0])
    for selector in tab_order[1:]:
        page.keyboard.press("Tab")
        assert page.evaluate(
            "(sel) => document.activeElement === document.querySelector(sel)", selector
        ), selector


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_signup_form() -> str:
    """The embeddable signup form as the README gives it."""
    text = README.read_text()
    section = text[text.index("### The embeddable signup form") :]
    return section[
        section.index("```html") + len("```html") : section.index(
            "```", section.index("```html") + 7
        )
    ]


@pytest.mark.parametrize("direction", ["ltr", "rtl"])
def test_the_readmes_embedded_form_widens_no_host_page(page, direction):
    """Pasted into a left-to-right or right-to-left site at 390 px: no sideways scroll."""
    form = _readme_signup_form()
    assert 'name="website"' in form
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_content(
        f'<!doctype html><html lang="{"ar" if direction == "rtl" else "en"}" dir="{direction}">'
        '<head><meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><main>{form}</main></body></html>"
    )
    _no_sideways_scroll(page)
    scroll = page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth]")
    assert max(scroll) <= 390, scroll
    _honeypot_is_hidden(
        page, "input[name=website]", ["#nl-email", "#nl-name", "button[type=submit]"]
    )
    # (Not _shot: the README's form is for other sites, without our components.)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"reader-{direction}-embedded-form.png"), full_page=True)


def test_our_signup_page_honeypot_in_a_left_to_right_page(page, live_server, make_list):
    make_list()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/subscribe?list=weekly")
    assert page.locator("html").get_attribute("dir") == "ltr"
    _no_sideways_scroll(page)
    _honeypot_is_hidden(page, "#website", ["#email", "#name", "button[type=submit]"])


def test_the_front_door_in_hebrew_with_an_arabic_list(page, live_server, make_list):
    """Several lists: the page follows the browser (he), each list card its own language."""
    make_list(slug="weekly", description="Observability news, every Monday.")
    make_list(
        slug="nashra",
        name="نشرة المراقبة",
        description="أخبار المراقبة كل يوم اثنين.",
        language="ar",
    )
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_extra_http_headers({"Accept-Language": "he-IL, he;q=0.9, en;q=0.5"})
    page.goto(f"{live_server}/")
    assert page.locator("html").get_attribute("lang") == "he"
    assert page.locator("html").get_attribute("dir") == "rtl"
    with i18n.using("he"):
        assert page.locator("h1").inner_text() == i18n.gettext("Newsletters")
    assert page.locator("#list-nashra").get_attribute("lang") == "ar"
    for slug in ("weekly", "nashra"):
        _honeypot_is_hidden(
            page, f"#website-{slug}", [f"#email-{slug}", f"#list-{slug} ~ form button"]
        )
    _shot(page, "he", "front-door")


def test_an_arabic_lists_archive_and_issue_at_390px(
    page, live_server, make_list, make_subscriber, app, db_session
):
    """The archive of a right-to-left list: its English issue titles still read left to right."""
    from newsletter import sending
    from newsletter.models import IssueStatus

    make_subscriber(make_list(name="نشرة المراقبة", language="ar"))
    issue_file = Path(__file__).parent / "data" / "sending-issue.yaml"
    plan = sending.plan_send(db_session, issue_file, "weekly", base_url=app.config["BASE_URL"])
    issue = sending.start_send(db_session, plan)
    issue.status = IssueStatus.SENT
    db_session.commit()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/archive?list=weekly")
    assert page.locator("html").get_attribute("dir") == "rtl"
    with i18n.using("ar"):
        assert page.locator("h1").inner_text() == i18n.gettext("Past issues")
    title = page.locator(".archive-list a").first
    assert title.evaluate("el => getComputedStyle(el).direction") == "ltr"
    _shot(page, "ar", "archive")
    title.click()
    page.wait_for_load_state("load")
    _shot(page, "ar", "archive-issue")
