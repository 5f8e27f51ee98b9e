"""The console's subscriber pages: directory, search, filters, pager, history, actions, export."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter import directory
from newsletter import history as history_core
from newsletter import tokens
from newsletter.models import DeliveryStatus
from newsletter.models import FeedbackEvent
from newsletter.models import FeedbackKind
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from tests.conftest import EDITOR_EMAIL
from tests.conftest import EDITOR_PASSWORD
from tests.conftest import SECRET_KEY

PAGE = 3
NON_ASCII_EMAIL = "zoe@ørsted.dk"
NON_ASCII_NAME = "Zoë Ørsted"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # Small pages, so a handful of subscribers exercise every pager link.
    app_config["ADMIN_PAGE_SIZE"] = PAGE
    return app_config


@pytest.fixture
def people(make_list, make_subscriber, clock) -> dict[str, Any]:
    """Two lists and eight subscribers with mixed statuses, one with a non-ASCII name."""
    weekly = make_list(slug="weekly", name="Weekly")
    monthly = make_list(slug="monthly", name="Monthly", from_address="m@example.com")
    specs = [
        ("anna@example.com", "Anna Schmidt", weekly, SubscriptionStatus.ACTIVE),
        ("bob@example.net", "Bob Stone", weekly, SubscriptionStatus.UNSUBSCRIBED),
        ("carla@example.com", "Carla Díaz", monthly, SubscriptionStatus.ACTIVE),
        ("dan@example.org", None, weekly, SubscriptionStatus.BOUNCED),
        ("eve@example.com", "Eve Adams", monthly, SubscriptionStatus.PENDING),
        ("fritz@example.de", "Fritz Müller", weekly, SubscriptionStatus.COMPLAINED),
        ("gina@example.com", "Gina_Percent%", weekly, SubscriptionStatus.ACTIVE),
        (NON_ASCII_EMAIL, NON_ASCII_NAME, weekly, SubscriptionStatus.ACTIVE),
    ]
    made = {}
    for email, name, mailing_list, status in specs:
        made[email] = make_subscriber(mailing_list, email=email, name=name, status=status)
    # Anna is on both lists.
    make_subscriber(monthly, email="anna@example.com", status=SubscriptionStatus.UNSUBSCRIBED)
    return {"weekly": weekly, "monthly": monthly, "subs": made}


def _emails(html: str) -> list[str]:
    """The addresses in the directory table, in order."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return re.findall(r'<a href="/admin/subscribers/\d+">([^<]+)</a>', body)


def _get(client: Any, **params: Any) -> Any:
    return client.get("/admin/subscribers", query_string=params)


def _text(response: Any) -> str:
    import html

    return html.unescape(response.get_data(as_text=True))


def _link(html: str, rel: str) -> str | None:
    import html as html_module

    match = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return html_module.unescape(match.group(1)) if match else None


# --- The directory ----------------------------------------------------------------------


def test_first_page_is_sorted_by_address_and_counted(admin_client, people):
    response = _get(admin_client)
    assert response.status_code == 200
    html = _text(response)
    assert _emails(html) == ["anna@example.com", "bob@example.net", "carla@example.com"]
    assert "8 subscribers" in html
    assert _link(html, "prev") is None
    assert _link(html, "next") is not None
    # Where the page is among the matches: "1–3 of 8", then "4–6 of 8", then the last.
    assert re.search(r"1–3</strong> of 8 subscribers", html)
    second = _text(admin_client.get(_link(html, "next")))
    assert re.search(r"4–6</strong> of 8 subscribers", second)
    last = _text(admin_client.get(_link(html, "last")))
    assert re.search(r"6–8</strong> of 8 subscribers", last)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"q": "EXAMPLE.COM"},
            ["anna@example.com", "carla@example.com", "eve@example.com", "gina@example.com"],
        ),
        ({"q": "müller"}, ["fritz@example.de"]),
        ({"q": "ØRSTED"}, [NON_ASCII_EMAIL]),
        ({"q": "zoë"}, [NON_ASCII_EMAIL]),
        ({"q": "stone"}, ["bob@example.net"]),
        ({"q": "%"}, ["gina@example.com"]),  # a wildcard is a plain character
        ({"q": "_"}, ["gina@example.com"]),
        ({"q": "nobody-here"}, []),
        ({"list": "monthly"}, ["anna@example.com", "carla@example.com", "eve@example.com"]),
        ({"status": "bounced"}, ["dan@example.org"]),
        ({"status": "unsubscribed"}, ["anna@example.com", "bob@example.net"]),
        ({"list": "weekly", "status": "unsubscribed"}, ["bob@example.net"]),
        ({"list": "monthly", "status": "active"}, ["carla@example.com"]),
        ({"list": "weekly", "q": "example.com"}, ["anna@example.com", "gina@example.com"]),
        ({"status": "erased"}, []),
    ],
)
def test_search_and_filters(admin_client, people, params, expected):
    admin_client.application.config["ADMIN_PAGE_SIZE"] = 50
    response = _get(admin_client, **params)
    assert response.status_code == 200
    html = _text(response)
    assert _emails(html) == expected
    if expected:
        assert f"{len(expected)} subscriber" in html
    else:
        assert "No subscriber matches these filters." in html


def test_rows_show_each_list_and_status(admin_client, people):
    html = _text(_get(admin_client, q="anna"))
    row = html.split("anna@example.com</a>", 1)[1].split("</tr>", 1)[0]
    assert "Anna Schmidt" in row
    assert re.search(r"monthly</code> <span class=\"status status-unsubscribed\">", row)
    assert re.search(r"weekly</code> <span class=\"status status-active\">", row)


def test_pager_walks_forward_and_back_keeping_filters(admin_client, people):
    seen: list[str] = []
    html = _text(_get(admin_client, q="e"))
    seen += _emails(html)
    pages = [list(seen)]
    while (link := _link(html, "next")) is not None:
        assert "q=e" in link
        html = _text(admin_client.get(link))
        pages.append(_emails(html))
        seen += pages[-1]
    everyone = sorted(s.lower() for s in people["subs"])
    assert seen == everyone
    assert [len(p) for p in pages] == [3, 3, 2]
    # Back from the last page by "previous", then "first".
    back = _text(admin_client.get(_link(html, "prev")))
    assert _emails(back) == pages[1]
    first = _text(admin_client.get(_link(back, "first")))
    assert _emails(first) == pages[0]


def test_last_page_is_the_last_addresses(admin_client, people):
    first = _text(_get(admin_client))
    last = _text(admin_client.get(_link(first, "last")))
    everyone = sorted(s.lower() for s in people["subs"])
    assert _emails(last) == everyone[-PAGE:]
    assert _link(last, "next") is None
    previous = _text(admin_client.get(_link(last, "prev")))
    assert _emails(previous) == everyone[-2 * PAGE : -PAGE]


def test_directory_leaves_erased_out_unless_asked(admin_client, people, db_session):
    from newsletter import subscribers as core

    core.erase(db_session, "bob@example.net")
    db_session.commit()
    html = _text(_get(admin_client, q="example"))
    assert "bob@example.net" not in html
    assert "erased" not in " ".join(_emails(html))
    erased = _text(_get(admin_client, status="erased"))
    assert [e.startswith("erased-") for e in _emails(erased)] == [True]
    assert "Stone" not in erased


@pytest.mark.parametrize(
    ("filters", "before", "after"),
    [
        (directory.Filters(list_slug="weekly", status="unsubscribed"), 1, 0),
        (directory.Filters(list_slug="weekly"), 6, 5),
        (directory.Filters(status="unsubscribed"), 2, 1),
        (directory.Filters(search="example.net"), 1, 0),
        (directory.Filters(status="erased"), 0, 1),
        (directory.Filters(list_slug="weekly", status="erased"), 0, 1),
        (directory.Filters(list_slug="monthly", status="erased"), 0, 0),
        (directory.Filters(), 8, 7),
    ],
)
def test_counts_leave_erased_out(app, people, db_session, filters, before, after):
    from newsletter import subscribers as core

    assert directory.count(db_session, filters) == directory.Count(before)
    core.erase(db_session, "bob@example.net")
    db_session.commit()
    assert directory.count(db_session, filters) == directory.Count(after)


@pytest.mark.parametrize(
    "filters",
    [
        directory.Filters(list_slug="weekly"),
        directory.Filters(status="active"),
        directory.Filters(),
    ],
)
def test_counts_are_capped(app, people, db_session, monkeypatch, filters):
    monkeypatch.setattr(directory, "COUNT_CAP", 2)
    assert directory.count(db_session, filters) == directory.Count(2, capped=True)


def _walk(session: Any, filters: directory.Filters) -> tuple[list[str], list[str]]:
    """Every address of a filter, paging forward from the first page and back from the last."""
    forward: list[str] = []
    page = directory.subscriber_page(session, filters, size=2)
    while True:
        forward += [row.email for row in page.rows]
        if not page.has_next:
            break
        page = directory.subscriber_page(session, filters, after=page.last_id, size=2)
    backward: list[str] = []
    page = directory.subscriber_page(session, filters, last=True, size=2)
    while True:
        backward = [row.email for row in page.rows] + backward
        if not page.has_prev:
            break
        page = directory.subscriber_page(session, filters, before=page.first_id, size=2)
    return forward, backward


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            directory.Filters(search="EXAMPLE.COM"),
            ["anna@example.com", "carla@example.com", "eve@example.com", "gina@example.com"],
        ),
        (
            directory.Filters(list_slug="weekly"),
            ["anna@example.com", "dan@example.org", "fritz@example.de", "gina@example.com"]
            + [NON_ASCII_EMAIL],
        ),
        (
            directory.Filters(list_slug="weekly", status="active"),
            ["anna@example.com", "gina@example.com", NON_ASCII_EMAIL],
        ),
        (
            directory.Filters(list_slug="monthly", search="a"),
            ["anna@example.com", "carla@example.com", "eve@example.com"],
        ),
        (directory.Filters(status="erased"), ["erased-"]),
        (directory.Filters(list_slug="weekly", status="erased"), ["erased-"]),
    ],
)
def test_pages_are_the_same_either_side_of_the_count_cap(
    app, people, db_session, monkeypatch, filters, expected
):
    # Below COUNT_CAP, PostgreSQL reads the few matches through their own indexes (a
    # MATERIALIZED CTE); past it, by walking the address index. Same pages either way.
    from newsletter import subscribers as core

    core.erase(db_session, "bob@example.net")
    db_session.commit()
    engine = db_session.get_bind()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        below_forward, below_backward = _walk(db_session, filters)
        materialized = [s for s in statements if "MATERIALIZED" in s]
        statements.clear()
        monkeypatch.setattr(directory, "COUNT_CAP", 0)
        above_forward, above_backward = _walk(db_session, filters)
        assert not [s for s in statements if "MATERIALIZED" in s]
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert below_forward == below_backward == above_forward == above_backward
    assert ["erased-" if e.startswith("erased-") else e for e in below_forward] == expected
    assert bool(materialized) == (engine.dialect.name == "postgresql")


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"after": "abc"}, 400, "This page link is damaged"),
        ({"before": "-1"}, 400, "This page link is damaged"),
        ({"after": "9" * 40}, 400, "This page link is damaged"),
        ({"after": "1", "before": "2"}, 400, "This page link is damaged"),
        ({"status": "vip"}, 400, "Unknown status 'vip'"),
        ({"q": "x" * 201}, 400, "The search is too long"),
        ({"list": "no-such-list"}, 404, "There is no list 'no-such-list'"),
    ],
)
def test_bad_directory_links_get_a_clear_answer(admin_client, people, params, status, message):
    response = _get(admin_client, **params)
    assert response.status_code == status
    assert message in _text(response)


def test_cursor_of_a_vanished_subscriber_shows_the_first_page(admin_client, people):
    response = _get(admin_client, after="987654")
    assert response.status_code == 200
    html = _text(response)
    assert "That page is out of date" in html
    assert _emails(html) == ["anna@example.com", "bob@example.net", "carla@example.com"]


def test_directory_needs_a_login(client, people):
    response = client.get("/admin/subscribers?q=anna")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


# --- One subscriber ---------------------------------------------------------------------


def _history_fixture(db_session, make_ledger, people) -> Subscriber:
    """Give Fritz (complained on weekly) events, a ledger row and a complaint."""
    fritz = db_session.scalar(sa.select(Subscriber).where(Subscriber.email == "fritz@example.de"))
    subscription = people["subs"]["fritz@example.de"]
    db_session.add_all(
        [
            SubscriptionEvent(
                subscription_id=subscription.id,
                status=SubscriptionStatus.ACTIVE,
                reason="confirm",
                ip="198.51.100.7",
            ),
            SubscriptionEvent(
                subscription_id=subscription.id,
                status=SubscriptionStatus.COMPLAINED,
                reason="complaint",
            ),
        ]
    )
    db_session.commit()
    issue, rows = make_ledger(["fritz@example.de"], mailing_list=people["weekly"])
    from newsletter import clock

    db_session.add(
        FeedbackEvent(
            kind=FeedbackKind.COMPLAINT,
            ses_message_id=rows[0].ses_message_id,
            email="fritz@example.de",
            delivery_id=rows[0].id,
            issue_id=issue.id,
            subscriber_id=fritz.id,
            occurred_at=clock.now(),
            detail="abuse report from fritz@example.de",
        )
    )
    db_session.commit()
    return fritz


def test_subscriber_page_shows_consent_history_deliveries_and_feedback(
    admin_client, people, db_session, make_ledger
):
    fritz = _history_fixture(db_session, make_ledger, people)
    response = admin_client.get(f"/admin/subscribers/{fritz.id}")
    assert response.status_code == 200
    html = _text(response)
    assert "Fritz Müller" in html
    assert "192.0.2.1" in html  # consent IP
    assert "198.51.100.7" in html  # the confirm event's IP
    assert 'class="status status-complained"' in html
    assert "Issue 1" in html  # the ledger row
    assert 'class="status status-sent"' in html
    assert 'class="status status-complaint"' in html
    assert "abuse report" in html


def test_history_lists_the_right_rows(app, people, db_session, make_ledger):
    fritz = _history_fixture(db_session, make_ledger, people)
    history = history_core.subscriber_history(db_session, fritz.id)
    assert [h.list_slug for h in history.subscriptions] == ["weekly"]
    assert [e.reason for e in history.subscriptions[0].events] == ["confirm", "complaint"]
    assert [(d.issue_title, d.status) for d in history.deliveries.rows] == [
        ("Issue 1", DeliveryStatus.SENT)
    ]
    assert [f.kind for f in history.feedback.rows] == [FeedbackKind.COMPLAINT]
    assert (history.deliveries.has_prev, history.deliveries.has_next) == (False, False)


def test_unknown_subscriber_is_404(admin_client, people):
    assert admin_client.get("/admin/subscribers/987654").status_code == 404
    token = admin_client.csrf()
    for action in ("unsubscribe", "erase"):
        response = admin_client.post(
            f"/admin/subscribers/987654/{action}", data={"csrf_token": token}
        )
        assert response.status_code == 404


def _statuses(db_session, email: str) -> dict[str, SubscriptionStatus]:
    db_session.expire_all()
    rows = db_session.execute(
        sa.select(Subscription.list_id, Subscription.status)
        .join(Subscriber)
        .where(Subscriber.email == email)
    ).all()
    return {str(list_id): status for list_id, status in rows}


def test_unsubscribe_from_the_console(admin_client, people, db_session):
    anna = people["subs"]["anna@example.com"]
    subscriber_id, subscription_id = anna.subscriber_id, anna.id
    db_session.rollback()
    page = _text(admin_client.get(f"/admin/subscribers/{subscriber_id}"))
    assert "Unsubscribe from all lists…" in page
    # The first press asks; nothing changes until the editor confirms.
    before = _statuses(db_session, "anna@example.com")
    db_session.rollback()  # on SQLite an open read would block the app's writes
    asked = admin_client.post(
        f"/admin/subscribers/{subscriber_id}/unsubscribe",
        data={"csrf_token": admin_client.csrf()},
    )
    assert asked.status_code == 200
    assert "Yes, unsubscribe from this list" in _text(asked)
    assert 'name="confirm" value="yes"' in _text(asked)
    assert _statuses(db_session, "anna@example.com") == before
    db_session.rollback()
    response = admin_client.post(
        f"/admin/subscribers/{subscriber_id}/unsubscribe",
        data={"csrf_token": admin_client.csrf(), "confirm": "yes"},
    )
    assert response.status_code == 302
    page = _text(admin_client.get(response.headers["Location"]))
    assert "Unsubscribed anna@example.com from weekly." in page
    assert set(_statuses(db_session, "anna@example.com").values()) == {
        SubscriptionStatus.UNSUBSCRIBED
    }
    reasons = db_session.scalars(
        sa.select(SubscriptionEvent.reason).where(
            SubscriptionEvent.subscription_id == subscription_id
        )
    ).all()
    assert reasons == ["admin"]
    db_session.rollback()
    # Nothing left to leave: the action is not offered any more.
    page = _text(admin_client.get(f"/admin/subscribers/{subscriber_id}"))
    assert "Unsubscribe from all lists" not in page


def test_unsubscribe_without_csrf_is_refused_and_changes_nothing(admin_client, people, db_session):
    anna = people["subs"]["anna@example.com"]
    before = _statuses(db_session, "anna@example.com")
    response = admin_client.post(f"/admin/subscribers/{anna.subscriber_id}/unsubscribe")
    assert response.status_code == 400
    assert _statuses(db_session, "anna@example.com") == before
    assert SubscriptionStatus.ACTIVE in before.values()


@pytest.mark.parametrize("typed", ["", "someone@else.org", "anna@example.co"])
def test_erase_needs_the_address_typed(admin_client, people, db_session, typed):
    anna = people["subs"]["anna@example.com"]
    response = admin_client.post(
        f"/admin/subscribers/{anna.subscriber_id}/erase",
        data={"csrf_token": admin_client.csrf(), "confirm_email": typed},
    )
    assert response.status_code == 400
    assert "Nothing was erased" in _text(response)
    db_session.expire_all()
    assert db_session.get(Subscriber, anna.subscriber_id).name == "Anna Schmidt"


def test_erase_without_csrf_is_refused(admin_client, people, db_session):
    anna = people["subs"]["anna@example.com"]
    response = admin_client.post(
        f"/admin/subscribers/{anna.subscriber_id}/erase",
        data={"confirm_email": "anna@example.com"},
    )
    assert response.status_code == 400
    db_session.expire_all()
    assert db_session.get(Subscriber, anna.subscriber_id).email == "anna@example.com"


def test_erase_from_the_console(admin_client, people, db_session):
    zoe = people["subs"][NON_ASCII_EMAIL]
    subscriber_id, subscription_id = zoe.subscriber_id, zoe.id
    old_token = tokens.make_unsubscribe_token(SECRET_KEY, subscription_id)
    response = admin_client.post(
        f"/admin/subscribers/{subscriber_id}/erase",
        data={"csrf_token": admin_client.csrf(), "confirm_email": " ZOE@ØRSTED.DK "},
    )
    assert response.status_code == 302
    page = _text(admin_client.get(response.headers["Location"]))
    assert "Erased: the address and name are gone" in page
    assert NON_ASCII_NAME not in page
    assert NON_ASCII_EMAIL not in page
    assert f"erased-{subscriber_id}@erased.invalid" in page
    assert "Erase for good" not in page  # no second erase form
    db_session.expunge_all()
    row = db_session.get(Subscriber, subscriber_id)
    assert (row.email, row.name) == (f"erased-{subscriber_id}@erased.invalid", None)
    # The old unsubscribe link from the reader's mailbox no longer points at the record.
    old_id = tokens.read_unsubscribe_token(SECRET_KEY, old_token)
    assert db_session.get(Subscription, old_id) is None
    placeholder = row.email
    db_session.rollback()  # SQLite: let the app's next request take the write lock
    # Erasing again is refused politely and changes nothing.
    again = admin_client.post(
        f"/admin/subscribers/{subscriber_id}/erase",
        data={"csrf_token": admin_client.csrf(), "confirm_email": placeholder},
    )
    assert again.status_code == 302
    assert "already erased" in _text(admin_client.get(again.headers["Location"]))


# --- Export -----------------------------------------------------------------------------


def _csv(response: Any) -> list[dict[str, str]]:
    body = response.get_data()
    assert body.startswith("\ufeff".encode())  # Excel needs the BOM for non-ASCII
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_export_streams_with_the_filters(admin_client, people):
    response = admin_client.get("/admin/subscribers/export.csv?list=weekly&status=active")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="subscribers-weekly-active-')
    rows = _csv(response)
    assert [(r["email"], r["list"], r["status"]) for r in rows] == [
        ("anna@example.com", "weekly", "active"),
        ("gina@example.com", "weekly", "active"),
        (NON_ASCII_EMAIL, "weekly", "active"),
    ]
    assert rows[-1]["name"] == NON_ASCII_NAME


def test_export_everything_leaves_erased_out(admin_client, people, db_session):
    from newsletter import subscribers as core

    core.erase(db_session, "bob@example.net")
    db_session.commit()
    rows = _csv(admin_client.get("/admin/subscribers/export.csv"))
    emails = [r["email"] for r in rows]
    assert "bob@example.net" not in emails
    assert not [e for e in emails if "erased" in e]
    assert emails.count("anna@example.com") == 2  # one row per subscription
    assert len(rows) == 8


def test_export_link_on_the_page_carries_the_filters(admin_client, people):
    html = _text(_get(admin_client, list="monthly", status="pending", q="eve"))
    match = re.search(r'href="(/admin/subscribers/export\.csv[^"]*)"', html)
    assert match
    link = match.group(1).replace("&amp;", "&")
    assert "list=monthly" in link and "status=pending" in link and "q=eve" in link
    rows = _csv(admin_client.get(link))
    assert [r["email"] for r in rows] == ["eve@example.com"]


def test_export_follows_the_search(admin_client, people):
    # What the page shows is what the file holds: the search is a filter too.
    page = _text(_get(admin_client, q="müller"))
    assert _emails(page) == ["fritz@example.de"]
    rows = _csv(admin_client.get("/admin/subscribers/export.csv?q=m%C3%BCller"))
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("fritz@example.de", "Fritz Müller", "complained")
    ]
    rows = _csv(admin_client.get("/admin/subscribers/export.csv?q=anna&list=monthly"))
    assert [(r["email"], r["list"], r["status"]) for r in rows] == [
        ("anna@example.com", "monthly", "unsubscribed")
    ]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("list=nope", 404, "There is no list 'nope'"),
        ("status=erased", 400, "erased records are never exported"),
        ("status=vip", 400, "Cannot export the status 'vip'"),
        ("q=" + "x" * 201, 400, "The search is too long (at most 200 characters)."),
    ],
)
def test_export_bad_filters_answer_before_streaming(admin_client, people, query, status, message):
    response = admin_client.get(f"/admin/subscribers/export.csv?{query}")
    assert response.status_code == status
    assert "Content-Disposition" not in response.headers
    assert message in _text(response)


def test_export_gives_its_connection_back_when_the_stream_ends(app, admin_client, people):
    pool = app.extensions["newsletter.db"].engine.pool
    response = admin_client.get("/admin/subscribers/export.csv")
    assert len(_csv(response)) == 9
    # No transaction is left open behind a finished download (it would block writers).
    assert pool.checkedout() == 0


# --- In a real browser ------------------------------------------------------------------


def test_searching_subscribers(live_server, page, editor, people):
    page.goto(f"{live_server}/admin/login")
    page.fill("input[name=email]", EDITOR_EMAIL)
    page.fill("input[name=password]", EDITOR_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.goto(f"{live_server}/admin/subscribers")
    assert page.locator("table.subscribers-table tbody tr").count() == PAGE
    page.fill("#q", "ørsted")
    page.select_option("#list", "weekly")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/subscribers\?.*q="))
    rows = page.locator("table.subscribers-table tbody tr")
    assert rows.count() == 1
    assert NON_ASCII_EMAIL in rows.first.inner_text()
    assert NON_ASCII_NAME in rows.first.inner_text()
    assert "1–1 of 1 subscriber matching" in page.locator("#result-count").inner_text()
    assert page.input_value("#q") == "ørsted"
    # The row leads to the subscriber's page.
    rows.first.locator("a").click()
    page.wait_for_url(re.compile(r"/admin/subscribers/\d+$"))
    assert page.locator("h1").inner_text().startswith(NON_ASCII_EMAIL)
    page.go_back()
    page.fill("#q", "example.com")
    page.select_option("#list", "")
    page.press("#q", "Enter")
    page.wait_for_url(re.compile(r"q=example\.com"))
    texts = page.locator("table.subscribers-table tbody tr td:first-child").all_inner_texts()
    assert texts == ["anna@example.com", "carla@example.com", "eve@example.com"]
