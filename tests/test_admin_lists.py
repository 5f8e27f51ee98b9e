"""The console's list pages: see, create and edit lists."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.models import MailingList

VALID = {
    "slug": "ops-digest",
    "name": "Ops digest — Ünïcode",
    "from_address": "digest@example.com",
    "reply_to": "",
    "postal_address": "1 Example Street\n10115 Berlin",
    "description": "Weekly notes for operators",
}


def _lists(db_session: Any) -> list[MailingList]:
    """The lists now stored, detached (the read ends, so the app may write: SQLite)."""
    db_session.expire_all()
    found = list(db_session.scalars(sa.select(MailingList).order_by(MailingList.slug)))
    db_session.expunge_all()
    db_session.rollback()
    return found


def test_lists_page_shows_every_list(admin_client: Any, make_list: Any) -> None:
    make_list(slug="weekly", name="o11y weekly")
    make_list(slug="daily", name="Daily Ünïcode", from_address="daily@example.com")
    body = admin_client.get("/admin/lists").get_data(as_text=True)
    assert "o11y weekly" in body and "Daily Ünïcode" in body
    assert "/admin/lists/weekly/edit" in body and "/admin/lists/daily/edit" in body
    assert body.index("daily") < body.index("weekly")


def test_no_lists_yet(admin_client: Any) -> None:
    body = admin_client.get("/admin/lists").get_data(as_text=True)
    assert "No lists yet" in body


def test_create_a_list(admin_client: Any, db_session: Any) -> None:
    form = admin_client.get("/admin/lists/new")
    assert form.status_code == 200
    response = admin_client.post(
        "/admin/lists/new", data={**VALID, "csrf_token": admin_client.csrf()}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/lists"
    (created,) = _lists(db_session)
    assert created.slug == "ops-digest"
    assert created.name == "Ops digest — Ünïcode"
    assert created.from_address == "digest@example.com"
    assert created.reply_to is None
    assert created.postal_address == "1 Example Street\n10115 Berlin"
    assert "Created the list" in admin_client.get("/admin/lists").get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slug", "Bad Slug", "is not a valid list slug"),
        ("slug", "", "is not a valid list slug"),
        ("name", "  ", "The list needs a name."),
        ("name", "two\nlines", "The list name contains control characters (U+000A (LINE FEED))"),
        ("from_address", "not-an-address", "From address:"),
        ("reply_to", "also@bad@", "Reply-to address:"),
    ],
)
def test_create_refuses_bad_input_and_keeps_it(
    admin_client: Any, db_session: Any, field: str, value: str, message: str
) -> None:
    data = {**VALID, field: value, "csrf_token": admin_client.csrf()}
    response = admin_client.post("/admin/lists/new", data=data)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body
    # What the editor typed is still in the form.
    assert "Weekly notes for operators" in body
    assert _lists(db_session) == []


def test_create_refuses_a_taken_slug(admin_client: Any, make_list: Any, db_session: Any) -> None:
    make_list(slug="ops-digest")
    response = admin_client.post(
        "/admin/lists/new", data={**VALID, "csrf_token": admin_client.csrf()}
    )
    assert response.status_code == 400
    assert "A list with the slug &#39;ops-digest&#39; already exists." in response.get_data(
        as_text=True
    )
    assert len(_lists(db_session)) == 1


def test_edit_a_list(admin_client: Any, make_list: Any, db_session: Any) -> None:
    make_list(slug="weekly", reply_to=None)
    form = admin_client.get("/admin/lists/weekly/edit").get_data(as_text=True)
    assert "o11y weekly" in form and "news@example.com" in form
    response = admin_client.post(
        "/admin/lists/weekly/edit",
        data={
            "name": "o11y weekly (new)",
            "from_address": "Letters@Example.com",
            "reply_to": "editor@example.com",
            "postal_address": "2 Other Road",
            "description": "",
            "csrf_token": admin_client.csrf(),
        },
    )
    assert response.status_code == 302
    (edited,) = _lists(db_session)
    assert edited.slug == "weekly"
    assert edited.name == "o11y weekly (new)"
    assert edited.from_address == "Letters@example.com"
    assert edited.reply_to == "editor@example.com"
    assert edited.postal_address == "2 Other Road"
    assert edited.description is None


def test_edit_refuses_bad_input_and_changes_nothing(
    admin_client: Any, make_list: Any, db_session: Any
) -> None:
    make_list(slug="weekly")
    response = admin_client.post(
        "/admin/lists/weekly/edit",
        data={
            "name": "Renamed",
            "from_address": "broken",
            "csrf_token": admin_client.csrf(),
        },
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "From address:" in body
    assert 'value="Renamed"' in body
    (kept,) = _lists(db_session)
    assert kept.name == "o11y weekly"
    assert kept.from_address == "news@example.com"


def test_edit_unknown_list_is_404(admin_client: Any) -> None:
    assert admin_client.get("/admin/lists/nope/edit").status_code == 404
    response = admin_client.post(
        "/admin/lists/nope/edit", data={"name": "x", "csrf_token": admin_client.csrf()}
    )
    assert response.status_code == 404
