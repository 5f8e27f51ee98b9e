"""Every console page in Chromium at 1280 px and at 390 px: nothing wider than the screen.

One test, one browser page: it signs in, makes the data every page needs through the
console itself (a draft from the example issue, an import stopped at the column mapping),
and visits each page at both widths. Screenshots: test-artifacts/console-<width>-<page>.png.
On every page each button and status badge is one of the components (tests/ui_components.py),
and each kind looks the same on every page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter import sending
from newsletter.models import Delivery
from newsletter.models import IssueStatus
from newsletter.models import SubscriptionStatus
from tests.conftest import EDITOR_EMAIL
from tests.conftest import EDITOR_PASSWORD
from tests.ui_components import looks
from tests.ui_components import problems
from tests.ui_components import survey

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ISSUE_FILE = ROOT / "tests" / "data" / "sending-issue.yaml"
WIDTHS = (1280, 390)


def _overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no sideways scroll)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )


def _phone_checks(page: Any, live_server: str) -> None:
    """At 390 px: the navigation folds behind Menu; chart labels stay readable."""
    page.goto(f"{live_server}/admin/")
    menu = page.locator("#nav-toggle")
    assert menu.is_visible() and page.locator("#console-nav").is_hidden()
    menu.click()
    assert page.locator("#console-nav").is_visible()
    assert menu.get_attribute("aria-expanded") == "true"
    # Rendered size of the smallest chart label, in CSS pixels.
    smallest = page.evaluate(
        "Math.min(...[...document.querySelectorAll('svg.chart text')]"
        ".map(t => t.getBoundingClientRect().height))"
    )
    assert smallest >= 9, smallest


def test_every_console_page_fits_at_1280_and_390(
    page, live_server, editor, app, db_session, make_list, make_subscriber, tmp_path
):
    weekly = make_list(slug="weekly", name="o11y weekly")
    make_list(slug="o11y-news", name="o11y news", description="Observability news")
    statuses = list(SubscriptionStatus)
    for n in range(60):
        make_subscriber(
            weekly,
            email=f"a-rather-long-address-number-{n}@subdomain.example-company.com",
            name=f"Reader Number {n} Ångström-Łukasiewicz",
            status=statuses[n % len(statuses)],
        )
    plan = sending.plan_send(db_session, ISSUE_FILE, "weekly", base_url=app.config["BASE_URL"])
    issue = sending.start_send(db_session, plan)
    issue.status = IssueStatus.SENT
    db_session.commit()
    issue_id = issue.id
    reader_id = db_session.scalar(
        sa.select(Delivery.subscriber_id).where(Delivery.issue_id == issue_id).limit(1)
    )
    subscriber_id = make_subscriber(weekly, email="zoë@example.com").subscriber_id

    ARTIFACTS.mkdir(exist_ok=True)
    too_wide: list[str] = []
    off_component: list[str] = []
    kinds: dict[int, dict[str, set[str]]] = {width: {} for width in WIDTHS}

    def check(name: str, width: int) -> None:
        found = survey(page)  # (moves the mouse away: no hovered button in the picture)
        off_component.extend(problems(found, f"{name} at {width}px"))
        looks(found, kinds[width])
        page.screenshot(path=str(ARTIFACTS / f"console-{width}-{name}.png"), full_page=True)
        if (extra := _overflow(page)) > 0:
            too_wide.append(f"{name} at {width}px: {extra}px too wide")

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server}/admin/login")
        check("login", width)
    page.fill("input[name=email]", EDITOR_EMAIL)
    page.fill("input[name=password]", EDITOR_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/**")

    # A draft of the example issue, made the way an editor makes it.
    page.goto(f"{live_server}/admin/issues")
    page.fill("textarea[name=yaml]", (ROOT / "examples" / "issue.yaml").read_text())
    page.select_option("select[name=list]", "o11y-news")
    page.click("#new-issue button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/issues/drafts/**")
    draft = page.url
    # An import stopped at the column mapping.
    csv = tmp_path / "readers.csv"
    csv.write_text("E-mail,Full name,Company\nada@example.org,Ada,Analytical\n")
    page.goto(f"{live_server}/admin/import")
    page.select_option("select[name=list]", "weekly")
    page.set_input_files("#file", str(csv))
    page.click("text=Upload and choose columns")
    page.wait_for_selector("#email_column")
    # Pages that answer a POST: kept as HTML, rendered again at each width.
    posted = {"import-mapping": page.content()}
    page.check("input[value=consented]")
    page.click("text=Start the import")
    page.wait_for_selector("#import-progress")
    import_job = page.url
    # The confirmation step before unsubscribing a reader from every list.
    page.goto(f"{live_server}/admin/subscribers/{subscriber_id}")
    page.click("text=Unsubscribe from all lists…")
    page.wait_for_selector(".confirm-panel")
    posted["subscriber-unsubscribe-confirm"] = page.content()

    pages = {
        "dashboard": f"{live_server}/admin/",
        "subscribers": f"{live_server}/admin/subscribers",
        # With a list chosen the table grows two columns (its status and date confirmed).
        "subscribers-list": f"{live_server}/admin/subscribers?list=weekly&sort=status",
        "subscriber": f"{live_server}/admin/subscribers/{subscriber_id}",
        "subscribers-filtered": f"{live_server}/admin/subscribers?list=weekly&status=bounced",
        "subscribers-none": f"{live_server}/admin/subscribers?q=nobody-at-all",
        "import": f"{live_server}/admin/import",
        "import-job": import_job,
        "issues": f"{live_server}/admin/issues",
        "issue": f"{live_server}/admin/issues/{issue_id}",
        "draft": draft,
        "draft-confirm": f"{draft}/confirm?list=o11y-news",
        "lists": f"{live_server}/admin/lists",
        "list-new": f"{live_server}/admin/lists/new",
        "list-edit": f"{live_server}/admin/lists/weekly/edit",
    }
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages.items():
            page.goto(url)
            page.wait_for_load_state("load")
            check(name, width)
        for name, html in posted.items():
            page.set_content(html.replace("<head>", f'<head><base href="{live_server}/">'))
            page.wait_for_load_state("load")
            check(name, width)
        if width == 390:
            _phone_checks(page, live_server)
    assert too_wide == []
    assert off_component == []
    for width, seen in kinds.items():
        # One look per kind of button and badge across all pages (no page-level overrides).
        assert {kind: looks for kind, looks in seen.items() if len(looks) > 1} == {}, width
        assert {"button primary", "button secondary", "button danger"} <= set(seen), seen

    # Sortable columns: the lists by name, one way then the other.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/admin/lists")
    names = page.locator("table.sortable tbody tr td:nth-child(2)")
    page.click("th button.button:text('Name')")
    assert names.all_text_contents() == ["o11y news", "o11y weekly"]
    page.click("th button.button:text('Name')")
    assert names.all_text_contents() == ["o11y weekly", "o11y news"]
    assert page.get_attribute("th:has(button:text('Name'))", "aria-sort") == "descending"

    # The subscriber directory sorts on the server, through links in the header: by
    # keyboard, Name; the next page keeps the order and says where it is.
    page.goto(f"{live_server}/admin/subscribers")
    assert page.get_attribute("th:has(a.button.link:text('Address'))", "aria-sort") == "ascending"
    page.focus("th a.button.link:text('Name')")
    page.keyboard.press("Enter")
    page.wait_for_url("**sort=name**")
    assert page.get_attribute("th:has(a.button.link:text('Name'))", "aria-sort") == "ascending"
    assert page.get_attribute("th:has(a.button.link:text('Address'))", "aria-sort") is None
    # 60 readers, zoë, and ada from the import above.
    assert page.inner_text("#result-count").startswith("1–50 of 62")
    page.click("a[rel=next]")
    page.wait_for_url("**after=**")
    assert "sort=name" in page.url
    assert page.inner_text("#result-count").startswith("51–62 of 62")
    # On a phone the rows are stacked blocks; the sort links stay, as one row above them.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/admin/subscribers?list=weekly")
    for label in ("Address", "Name", "Status", "Confirmed", "Since"):
        assert page.locator(f"th a.button.link:text('{label}')").is_visible(), label
    assert page.locator("th:text('Lists')").is_hidden()
    assert _overflow(page) <= 0
    # A reader the issue went to: their deliveries say where the page is, as lists do.
    page.goto(f"{live_server}/admin/subscribers/{reader_id}")
    assert page.inner_text("#deliveries-count") == "1–1 of 1 delivery"
    assert _overflow(page) <= 0


@pytest.fixture
def outbox_app_config(app_config, tmp_path):
    """Development with the outbox backend: /outbox lists the .eml files."""
    app_config.pop("MAILER")
    app_config.update(ENV="development", MAIL_BACKEND="outbox", OUTBOX_DIR=str(tmp_path / "ob"))
    return app_config


def test_outbox_fits_a_phone(browser, outbox_app_config, make_list, tmp_path):
    from werkzeug.serving import make_server

    from newsletter import create_app

    app = create_app(outbox_app_config)
    make_list(postal_address="A rather long postal address line, 10115 Berlin, Germany")
    client = app.test_client()
    client.post("/subscribe", data={"email": "a-long-address@subdomain.example-company.com"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        base = f"http://127.0.0.1:{server.server_port}"
        page.goto(f"{base}/outbox/")
        assert _overflow(page) <= 0
        page.screenshot(path=str(ARTIFACTS / "console-390-outbox.png"), full_page=True)
        page.click("table a")
        page.wait_for_selector("pre.mail-text")
        # The text can be there before the stylesheet that wraps it: measure it styled.
        page.wait_for_load_state("load")
        assert _overflow(page) <= 0
        page.screenshot(path=str(ARTIFACTS / "console-390-outbox-message.png"), full_page=True)
    finally:
        context.close()
        server.shutdown()
        thread.join(timeout=5)
        app.extensions["newsletter.db"].dispose()
