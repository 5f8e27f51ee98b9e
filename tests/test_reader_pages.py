"""The reader's pages without dead ends: the form again on a mistake, the front door,
error pages with a way home, the favicon, pages and feeds in the list's language."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import html5lib
import pytest
import sqlalchemy as sa

from newsletter import sending
from newsletter.models import IssueStatus
from newsletter.models import Subscription

ATOM = "{http://www.w3.org/2005/Atom}"
ISSUE_FILE = Path(__file__).parent / "data" / "sending-issue.yaml"


def _valid(response) -> str:
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(response.data)
    return response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "foo@bar", "name": "Ana"}, "email", "not valid"),
        ({"email": "", "name": "Ana"}, "email", "Please enter your email address."),
        ({"email": "ana@example.com", "name": "A\nB"}, "name", "line breaks"),
    ],
)
def test_a_mistake_shows_the_form_again_with_the_message_beside_the_field(
    client, make_list, outbox, fields, field, message
):
    make_list()
    response = client.post("/subscribe", data={**fields, "list": "weekly"})
    assert response.status_code == 422
    body = _valid(response)
    assert f'id="{field}-error"' in body and message in body
    assert f'aria-describedby="{field}-error"' in body
    # What the reader typed is kept.
    if fields["email"]:
        assert f'value="{fields["email"]}"' in body
    assert 'value="Ana"' in body or field == "name"
    assert '<form method="post" action="/subscribe"' in body
    assert outbox.messages == []


def test_a_mistake_in_german_is_explained_in_german(client, make_list, outbox):
    make_list(language="de")
    response = client.post("/subscribe", data={"email": "foo@bar", "list": "weekly"})
    assert response.status_code == 422
    body = _valid(response)
    assert '<html lang="de" dir="ltr">' in body
    assert "Das sieht nicht nach einer E-Mail-Adresse aus" in body
    assert "E-Mail-Adresse" in body and "Abonnieren" in body
    assert 'value="foo@bar"' in body


def test_check_your_inbox_page_speaks_the_lists_language(client, make_list, outbox):
    make_list(language="ja")
    posted = client.post("/subscribe", data={"email": "a@example.com", "list": "weekly"})
    assert posted.status_code == 303
    page = client.get(posted.headers["Location"])
    body = _valid(page)
    assert "受信トレイをご確認ください" in body
    assert '<html lang="ja"' in body


def test_reload_of_check_your_inbox_sends_nothing_more(client, make_list, outbox):
    make_list()
    posted = client.post("/subscribe", data={"email": "a@example.com", "list": "weekly"})
    for _ in range(3):
        assert client.get(posted.headers["Location"]).status_code == 200
    assert len(outbox.messages) == 1


def test_double_submit_sends_one_email(client, make_list, outbox, db_session):
    make_list()
    for _ in range(2):
        posted = client.post("/subscribe", data={"email": "a@example.com", "list": "weekly"})
        assert posted.status_code == 303
    assert len(outbox.messages) == 1
    assert db_session.scalar(sa.select(sa.func.count(Subscription.id))) == 1
    db_session.rollback()


# --- The front door -----------------------------------------------------------------------


def test_front_door_with_one_list_is_its_signup_page(client, make_list):
    make_list(name="o11y weekly", description="Observability news")
    response = client.get("/")
    assert response.status_code == 200
    body = _valid(response)
    assert "Subscribe to o11y weekly" in body
    assert 'name="list" value="weekly"' in body
    assert 'href="/archive?list=weekly"' in body


def test_front_door_with_several_lists_has_every_form_and_archive(client, make_list):
    make_list(slug="weekly", name="o11y weekly")
    make_list(slug="woche", name="Die Woche", language="de")
    response = client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert response.status_code == 200
    body = _valid(response)
    assert '<html lang="fr"' in body
    assert body.count('action="/subscribe"') == 2
    for slug in ("weekly", "woche"):
        assert f'name="list" value="{slug}"' in body
        assert f'href="/archive?list={slug}"' in body
        assert f'href="/archive/{slug}/feed.xml"' in body
    assert 'lang="de">Die Woche</h2>' in body


# --- Error pages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "title"),
    [
        ("GET", "/no-such-page", 404, "Page not found"),
        ("DELETE", "/subscribe", 405, "This address does not take that request"),
        ("GET", "/archive?list=nope", 404, "Page not found"),
        ("GET", "/archive/nope/feed.xml", 404, "Page not found"),
    ],
)
def test_error_pages_are_styled_and_lead_home(client, method, path, status, title):
    response = client.open(path, method=method)
    assert response.status_code == status
    body = _valid(response)
    assert title in body
    assert 'href="/">Go to the home page</a>' in body
    assert "site.css" in body and "favicon.svg" in body
    if status == 405:
        assert "POST" in response.headers["Allow"]


def test_error_pages_follow_the_browsers_language(client):
    response = client.get("/no-such-page", headers={"Accept-Language": "es"})
    body = _valid(response)
    assert "Página no encontrada" in body and "Ir a la página de inicio" in body


def test_too_many_signups_page_in_the_lists_language_leads_home(client, app, make_list):
    make_list(language="pt")
    app.config["SIGNUP_IP_LIMIT"] = 1
    client.post("/subscribe", data={"email": "a@example.com", "list": "weekly"})
    response = client.post("/subscribe", data={"email": "b@example.com", "list": "weekly"})
    assert response.status_code == 429
    body = _valid(response)
    assert '<html lang="pt"' in body
    assert "Demasiados pedidos" in body and 'href="/"' in body


@pytest.mark.parametrize(
    ("lists", "form", "accept", "lang", "words"),
    [
        # One list: its language, whether the form names no list or an unknown one.
        ([("weekly", "pt")], {}, "de", "pt", "Demasiados pedidos"),
        ([("weekly", "pt")], {"list": "nope"}, "de", "pt", "Demasiados pedidos"),
        # Several lists and none named: the browser's language among the shipped ones.
        ([("weekly", "pt"), ("wochen", "de")], {}, "fr-CA, de;q=0.5", "fr", "Trop de requêtes"),
        (
            [("weekly", "pt"), ("wochen", "de")],
            {"list": "x" * 70},
            "ja",
            "ja",
            "リクエストが多すぎます",
        ),
        ([("weekly", "pt"), ("wochen", "de")], {}, "nl, sv;q=0.5", "en", "Too many requests"),
        # A list the form names wins over the browser.
        ([("weekly", "pt"), ("wochen", "de")], {"list": "wochen"}, "fr", "de", "Zu viele"),
    ],
)
def test_too_many_signups_page_language_without_a_named_list(
    client, app, make_list, lists, form, accept, lang, words
):
    for slug, language in lists:
        make_list(slug=slug, language=language)
    app.config["SIGNUP_IP_LIMIT"] = 0
    response = client.post(
        "/subscribe",
        data={"email": "a@example.com", **form},
        headers={"Accept-Language": accept},
    )
    assert response.status_code == 429
    body = _valid(response)
    assert f'<html lang="{lang}"' in body
    assert words in body


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.data.startswith(b"<svg")


# --- The archive and its feeds --------------------------------------------------------------


@pytest.fixture
def two_lists_published(app, db_session, make_list, make_subscriber):
    """An issue sent on an English list and on a German one."""
    issues = []
    for slug, name, language in (("weekly", "o11y weekly", "en"), ("woche", "Die Woche", "de")):
        mailing_list = make_list(slug=slug, name=name, language=language)
        make_subscriber(mailing_list, email=f"reader-{slug}@example.com")
        plan = sending.plan_send(db_session, ISSUE_FILE, slug, base_url=app.config["BASE_URL"])
        if slug == "woche":
            plan.compiled.slug = "die-woche-1"
        issue = sending.start_send(db_session, plan)
        issue.status = IssueStatus.SENT
        issues.append(issue)
    db_session.commit()
    return issues


def test_list_feed_has_the_lists_name_full_content_and_the_issue_date(
    client, two_lists_published, app
):
    response = client.get("/archive/woche/feed.xml")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(response.data)
    assert root.find(f"{ATOM}title").text == "Die Woche"
    assert root.find(f"{ATOM}author/{ATOM}name").text == "Die Woche"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
    assert root.find(f"{ATOM}link[@rel='self']").get("href") == (
        f"{app.config['BASE_URL']}/archive/woche/feed.xml"
    )
    (entry,) = root.findall(f"{ATOM}entry")
    issue = two_lists_published[1]
    assert entry.find(f"{ATOM}published").text == (f"{issue.issue_date:%Y-%m-%d}T00:00:00+00:00")
    content = entry.find(f"{ATOM}content")
    assert content.get("type") == "html"
    assert "It has been an incredible couple of years" in content.text
    assert "<body" not in content.text and "/u/" not in content.text


def test_combined_feed_has_every_list(client, two_lists_published):
    root = ET.fromstring(client.get("/archive/feed.xml").data)
    assert root.find(f"{ATOM}title").text == "All issues"
    authors = sorted(e.find(f"{ATOM}author/{ATOM}name").text for e in root.findall(f"{ATOM}entry"))
    assert authors == ["Die Woche", "o11y weekly"]


def test_archive_of_one_list_in_its_language(client, two_lists_published):
    response = client.get("/archive?list=woche")
    body = _valid(response)
    assert '<html lang="de"' in body and "Frühere Ausgaben" in body
    assert 'href="/archive/die-woche-1"' in body
    assert "/archive/unlocking-the-kernel" not in body
    issue_date = two_lists_published[1].issue_date
    assert f'datetime="{issue_date:%Y-%m-%d}"' in body
