"""The public web archive: list, web version without personal links, Atom feed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from newsletter import sending
from newsletter.models import IssueStatus

ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def published(app, db_session, make_list, make_subscriber):
    """One issue sent to the list, one scheduled for later (not public yet)."""
    mailing_list = make_list()
    make_subscriber(mailing_list)
    plan = sending.plan_send(db_session, ISSUE_FILE, "weekly", base_url=app.config["BASE_URL"])
    issue = sending.start_send(db_session, plan)
    issue.status = IssueStatus.SENT
    later = sending.plan_send(db_session, ISSUE_FILE, "weekly", base_url=app.config["BASE_URL"])
    later.compiled.slug, later.compiled.title = "next-week", "Next week's issue"
    later.existing = None
    sending.start_send(db_session, later, at=sending.clock.now() + sending.timedelta(days=3))
    db_session.commit()
    return issue


def test_archive_lists_published_issues_only(client, published):
    response = client.get("/archive")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Unlocking the Kernel" in page
    assert 'href="/archive/unlocking-the-kernel"' in page
    assert "Next week" not in page
    assert client.get("/archive/next-week").status_code == 404


def test_web_version_has_no_personal_links(client, published, app):
    response = client.get("/archive/unlocking-the-kernel")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "It has been an incredible couple of years" in page
    assert "/u/" not in page and "{{nl:" not in page
    assert f"{app.config['BASE_URL']}/subscribe?list=weekly" in page
    assert "script-src" not in response.headers["Content-Security-Policy"]


def test_unknown_issue_is_a_404_page(client, published):
    response = client.get("/archive/no-such-issue")
    assert response.status_code == 404
    assert "no issue with this address" in response.get_data(as_text=True)


def test_feed_is_valid_atom(client, published, app):
    response = client.get("/archive/feed.xml")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(response.data)
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{name}") is not None, name
    assert root.find(f"{ATOM}link[@rel='self']").get("href").endswith("/archive/feed.xml")
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 1
    entry = entries[0]
    url = f"{app.config['BASE_URL']}/archive/unlocking-the-kernel"
    assert entry.find(f"{ATOM}id").text == url
    assert entry.find(f"{ATOM}link").get("href") == url
    assert entry.find(f"{ATOM}title").text == "Unlocking the Kernel"
    assert entry.find(f"{ATOM}summary").text.startswith("The eBPF documentary")
    for name in ("updated", "published"):
        sending.datetime.fromisoformat(entry.find(f"{ATOM}{name}").text)


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_archive_in_a_browser(published, live_server, page):
    page.goto(f"{live_server}/archive")
    page.get_by_role("link", name="Unlocking the Kernel").click()
    page.wait_for_url("**/archive/unlocking-the-kernel")
    assert page.get_by_text("It has been an incredible couple of years").is_visible()
