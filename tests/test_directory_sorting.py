"""The console's directory in every order: keyset pages across ties, positions, sort links."""

from __future__ import annotations

import html as html_module
import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter import directory
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus

DAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
A, P, U, B = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PENDING,
    SubscriptionStatus.UNSUBSCRIBED,
    SubscriptionStatus.BOUNCED,
)
# Address, name, days after DAY subscribed, status on weekly, days after DAY confirmed.
# Plenty of ties in every column (names, dates, statuses), and missing names and dates,
# so that a page boundary falls inside a run of equal values.
PEOPLE = [
    ("ada@example.com", "Sam", 0, A, 1),
    ("bea@example.com", None, 2, A, 1),
    ("cy@example.com", "Sam", 0, P, None),
    ("dee@example.com", "Alex", 1, A, 1),
    ("eli@example.com", "Sam", 2, U, 3),
    ("fay@example.com", None, 0, A, 2),
    ("gus@example.com", "O'Bea", 1, B, 1),
    ("hal@example.com", "Sam", 0, A, None),
    ("ivy@example.com", "Alex", 2, P, None),
    ("jo@example.com", None, 1, A, 2),
    ("kai@example.com", "Sam", 0, A, 1),
]
SORT_KEYS = list(directory.SORTS)


@pytest.fixture
def crowd(make_list, make_subscriber, db_session) -> dict[str, Any]:
    """Eleven readers on "weekly" with tied names, dates, statuses; two also on "monthly"."""
    weekly = make_list(slug="weekly", name="Weekly")
    monthly = make_list(slug="monthly", name="Monthly", from_address="m@example.com")
    for email, name, since, status, confirmed in PEOPLE:
        subscription = make_subscriber(
            weekly,
            email=email,
            name=name,
            status=status,
            confirmed_at=None if confirmed is None else DAY + timedelta(days=confirmed),
        )
        subscription.subscriber.created_at = DAY + timedelta(days=since)
    make_subscriber(monthly, email="ada@example.com")
    make_subscriber(monthly, email="kai@example.com", status=U)
    db_session.commit()
    return {"weekly": weekly, "monthly": monthly}


def _expected(session: Any, order: directory.Order, filters: directory.Filters) -> list[str]:
    """The addresses a filter matches in `order`, sorted here in Python from the rows."""
    query = sa.select(Subscriber, Subscription).join(
        Subscription, Subscription.subscriber_id == Subscriber.id
    )
    if filters.list_slug:
        query = query.where(Subscription.list.has(slug=filters.list_slug))
    if filters.status:
        query = query.where(Subscription.status == SubscriptionStatus(filters.status))
    if filters.search:
        query = query.where(Subscriber.email.contains(filters.search))
    rows: dict[int, tuple[Subscriber, Subscription]] = {}
    for subscriber, subscription in session.execute(query):
        rows.setdefault(subscriber.id, (subscriber, subscription))

    def value(item: tuple[Subscriber, Subscription]) -> Any:
        subscriber, subscription = item
        return {
            "address": subscriber.email,
            "name": subscriber.name,
            "since": subscriber.created_at,
            "status": subscription.status.value,
            "confirmed": subscription.confirmed_at,
        }[order.key]

    def key(item: tuple[Subscriber, Subscription]) -> tuple[Any, ...]:
        found = value(item)
        # A missing value sorts after every value; ties by subscriber id.
        return (found is None, found if found is not None else 0, item[0].id)

    ordered = sorted(rows.values(), key=key, reverse=order.descending)
    return [subscriber.email for subscriber, _ in ordered]


def _walk(session: Any, filters: directory.Filters, order: directory.Order, size: int):
    """Every page forward from the first, then back from the last: addresses and positions."""
    forward: list[str] = []
    starts: list[int] = []
    page = directory.subscriber_page(session, filters, order=order, size=size)
    while True:
        forward += [row.email for row in page.rows]
        starts.append(page.start)
        if not page.has_next:
            break
        # The position travels with the cursor, as the console's "Next" link carries it.
        carried = directory.Position(page.start + len(page.rows))
        page = directory.subscriber_page(
            session, filters, order=order, after=page.last_id, size=size, position=carried
        )
    backward: list[str] = []
    page = directory.subscriber_page(session, filters, order=order, last=True, size=size)
    while True:
        backward = [row.email for row in page.rows] + backward
        if not page.has_prev:
            break
        page = directory.subscriber_page(
            session, filters, order=order, before=page.first_id, size=size
        )
    return forward, backward, starts


@pytest.mark.parametrize("cap", [directory.COUNT_CAP, 0], ids=["few", "past-cap"])
@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("key", SORT_KEYS)
def test_every_order_pages_through_ties_without_a_gap_or_a_repeat(
    app, crowd, db_session, monkeypatch, key, descending, size, cap
):
    # "few": the matches are counted and (on PostgreSQL) read through a MATERIALIZED CTE;
    # "past-cap": the page is read off the order's own index and positions are counted.
    monkeypatch.setattr(directory, "COUNT_CAP", cap)
    order = directory.Order(key, descending)
    filters = directory.Filters(list_slug="weekly")
    forward, backward, starts = _walk(db_session, filters, order, size)
    expected = _expected(db_session, order, filters)
    assert len(expected) == len(PEOPLE)
    assert forward == expected
    assert backward == expected
    assert starts == list(range(1, len(PEOPLE) + 1, size))


@pytest.mark.parametrize(
    "filters",
    [
        directory.Filters(),
        directory.Filters(search="e"),
        directory.Filters(status="active"),
        directory.Filters(list_slug="weekly", status="active"),
        directory.Filters(list_slug="monthly"),
        directory.Filters(list_slug="weekly", search="a"),
    ],
    ids=["all", "search", "status", "list+status", "small-list", "list+search"],
)
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("key", SORT_KEYS)
def test_orders_work_with_every_filter(app, crowd, db_session, key, descending, filters):
    order = directory.Order(key, descending)
    if directory.SORTS[key].needs_list and not filters.list_slug:
        with pytest.raises(directory.DirectoryError, match="needs a list"):
            directory.subscriber_page(db_session, filters, order=order)
        return
    forward, backward, _ = _walk(db_session, filters, order, 2)
    expected = _expected(db_session, order, filters)
    assert expected
    assert forward == backward == expected


def test_a_missing_name_sorts_last_and_first_the_other_way(app, crowd, db_session):
    forward, _, _ = _walk(db_session, directory.Filters(), directory.Order("name"), 4)
    assert forward[:2] == ["dee@example.com", "ivy@example.com"]  # Alex, by id
    assert forward[-3:] == ["bea@example.com", "fay@example.com", "jo@example.com"]
    backward, _, _ = _walk(db_session, directory.Filters(), directory.Order("name", True), 4)
    assert backward == list(reversed(forward))


def test_a_cursor_on_a_vanished_subscription_is_stale(app, crowd, db_session):
    kai = db_session.scalar(sa.select(Subscriber).where(Subscriber.email == "kai@example.com"))
    with pytest.raises(directory.StaleCursor):
        directory.subscriber_page(
            db_session,
            directory.Filters(list_slug="weekly"),
            order=directory.Order("status"),
            after=kai.id + 1000,
        )


# --- Through the console ----------------------------------------------------------------


PAGE = 3


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    app_config["ADMIN_PAGE_SIZE"] = PAGE
    return app_config


def _text(response: Any) -> str:
    return html_module.unescape(response.get_data(as_text=True))


def _emails(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return re.findall(r'<a href="/admin/subscribers/\d+">([^<]+)</a>', body)


def _link(html: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return html_module.unescape(match.group(1)) if match else None


def _range(html: str) -> str:
    found = re.search(r'<p class="field result-count" id="result-count">(.*?)</p>', html, re.S)
    assert found, "no result count on the page"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


@pytest.mark.parametrize("cap", [directory.COUNT_CAP, 2], ids=["exact", "capped"])
@pytest.mark.parametrize(
    ("sort", "direction"),
    [("name", "asc"), ("since", "desc"), ("confirmed", "asc"), ("status", "desc")],
)
def test_pages_say_where_they_are_on_the_first_second_and_last_page(
    admin_client, crowd, monkeypatch, cap, sort, direction
):
    monkeypatch.setattr(directory, "COUNT_CAP", cap)
    total = len(PEOPLE)
    first = _text(admin_client.get(f"/admin/subscribers?list=weekly&sort={sort}&dir={direction}"))
    counted = f"{total} subscribers matching" if cap > total else "more than 2 subscribers matching"
    assert _range(first) == f"1–3 of {counted}"
    second = _text(admin_client.get(_link(first, "next")))
    assert _range(second) == f"4–6 of {counted}"
    seen = _emails(first) + _emails(second)
    html = second
    while (link := _link(html, "next")) is not None:
        assert f"sort={sort}" in link and f"dir={direction}" in link and "list=weekly" in link
        html = _text(admin_client.get(link))
        seen += _emails(html)
    # The last page reached by "Next" knows the total from its carried position.
    assert _range(html) == f"10–11 of {total} subscribers matching"
    last = _text(admin_client.get(_link(first, "last")))
    back = _text(admin_client.get(_link(last, "prev")))
    assert _emails(last)[1:] == _emails(html)
    assert _emails(back) == seen[5:8]
    if cap > total or not _postgresql(admin_client):
        # "Last" (the last three) counts the rows before it when they are few, or on SQLite.
        assert _range(last) == f"9–11 of {total} subscribers matching"
        assert _range(back) == f"6–8 of {counted}"
    else:
        # Past the cap, PostgreSQL's estimate of the total places it, and says "about".
        about = r"about [\d,]+–[\d,]+ of "
        assert re.fullmatch(about + r"about [\d,]+ subscribers matching", _range(last))
        assert re.fullmatch(about + counted, _range(back))
    assert seen == _expected_web(admin_client, sort, direction)
    assert len(seen) == len(set(seen)) == total


def _postgresql(client: Any) -> bool:
    return client.application.extensions["newsletter.db"].engine.dialect.name == "postgresql"


def _expected_web(client: Any, sort: str, direction: str) -> list[str]:
    session = client.application.extensions["newsletter.db"].session()
    try:
        order = directory.Order(sort, direction == "desc")
        return _expected(session, order, directory.Filters(list_slug="weekly"))
    finally:
        session.close()


def test_a_position_from_the_link_is_believed_only_when_signed(admin_client, crowd, monkeypatch):
    monkeypatch.setattr(directory, "COUNT_CAP", 2)
    first = _text(admin_client.get("/admin/subscribers?sort=name"))
    link = _link(first, "next")
    assert re.search(r"[?&]at=4\.[\w-]+", link)
    assert _range(_text(admin_client.get(link))).startswith("4–6 of ")
    # A typed or forged position is not shown: the page counts instead (SQLite), or
    # PostgreSQL estimates it ("about").
    for forged in (
        re.sub(r"at=4\.", "at=40.", link),
        re.sub(r"at=[^&]+", "at=999", link),
        re.sub(r"at=[^&]+", "at=x.y.z", link),
        re.sub(r"&?at=[^&]+", "", link),
    ):
        response = admin_client.get(forged)
        assert response.status_code == 200
        shown = _range(_text(response))
        if _postgresql(admin_client):
            assert shown.startswith("about ") and not shown.startswith(("about 40–", "about 999–"))
        else:
            assert shown.startswith("4–6 of ")
    # Nor one moved onto the same cursor in another order: there it is counted again.
    moved = _text(admin_client.get(link.replace("sort=name", "sort=since")))
    bare = re.sub(r"&?at=[^&]+", "", link.replace("sort=name", "sort=since"))
    assert _range(moved) == _range(_text(admin_client.get(bare)))
    assert not _range(moved).startswith("4–6 of ")


@pytest.mark.parametrize("key", SORT_KEYS)
def test_a_bare_cursor_in_every_order_still_says_where_it_is(admin_client, crowd, monkeypatch, key):
    # An old bookmark: a cursor without its position, past the cap. SQLite counts;
    # PostgreSQL estimates from the cursor's value (a name with a quote, a date, a status).
    monkeypatch.setattr(directory, "COUNT_CAP", 0)
    first = _text(admin_client.get(f"/admin/subscribers?list=weekly&sort={key}"))
    link = _link(first, "next")
    for _ in range(2):
        link = _link(_text(admin_client.get(link)), "next")
    bare = re.sub(r"&?at=[^&]+", "", link)
    carried, counted = _text(admin_client.get(link)), _text(admin_client.get(bare))
    assert _range(carried).startswith("10–11 of ")
    assert _emails(counted) == _emails(carried)
    if _postgresql(admin_client):
        assert re.match(r"about [\d,]+–[\d,]+ of ", _range(counted))
    else:
        assert _range(counted) == _range(carried)


def test_the_last_page_of_an_estimated_total_says_about(admin_client, crowd, monkeypatch):
    # Past the cap without a filter, PostgreSQL's row estimate stands in for the total:
    # the last page's position comes from it, and says so, and so do the pages before it.
    monkeypatch.setattr(directory, "_count", lambda *args: directory.Count(1000, estimated=True))
    first = _text(admin_client.get("/admin/subscribers"))
    assert _range(first) == "1–3 of about 1,000 subscribers"
    second = _text(admin_client.get(_link(first, "next")))
    assert _range(second) == "4–6 of about 1,000 subscribers"
    last = _text(admin_client.get(_link(first, "last")))
    assert _range(last) == "about 998–1,000 of about 1,000 subscribers"
    before = _text(admin_client.get(_link(last, "prev")))
    assert _range(before) == "about 995–997 of about 1,000 subscribers"


def test_headers_link_to_each_order_and_mark_the_current_one(admin_client, crowd):
    html = _text(admin_client.get("/admin/subscribers"))
    head = html.split("<thead>", 1)[1].split("</thead>", 1)[0]
    # Without a list: address (current, ascending), name, since; the list's columns only
    # with a list chosen.
    assert re.search(
        r'<th scope="col" aria-sort="ascending"><a class="button link" '
        r'href="[^"]*sort=address&dir=desc',
        head,
    )
    assert 'href="/admin/subscribers?sort=name&dir=asc"' in head
    assert 'href="/admin/subscribers?sort=since&dir=desc"' in head
    assert "sort=status" not in head and head.count("aria-sort") == 1
    weekly = _text(admin_client.get("/admin/subscribers?list=weekly&sort=since&dir=desc&q=e"))
    head = weekly.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert re.search(
        r'aria-sort="descending"><a class="button link" href="[^"]*sort=since&dir=asc', head
    )
    for key in ("status", "confirmed"):
        assert re.search(rf'href="/admin/subscribers\?[^"]*list=weekly[^"]*sort={key}', head)
    # The search form keeps the order when the filters change.
    assert '<input type="hidden" name="sort" value="since">' in weekly
    assert '<input type="hidden" name="dir" value="desc">' in weekly


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=shoe-size", "There is no sort 'shoe-size': showing the subscribers by address."),
        ("sort=name&dir=sideways", "'sideways' is not a direction (asc or desc)"),
        ("sort=status", "Sorting by status needs a list: choose one first."),
        ("sort=confirmed&dir=asc&q=e", "Sorting by confirmed needs a list"),
        ("sort=" + "x" * 5000, "There is no sort"),
    ],
)
def test_a_bad_sort_falls_back_to_the_address_with_a_notice(admin_client, crowd, query, message):
    response = admin_client.get(f"/admin/subscribers?{query}")
    assert response.status_code == 200
    html = _text(response)
    assert message in html
    emails = _emails(html)
    assert emails == sorted(emails) and len(emails) == PAGE
    assert 'aria-sort="ascending"><a class="button link" href="/admin/subscribers?' in html


def test_a_damaged_position_or_cursor_in_a_sorted_link(admin_client, crowd):
    assert admin_client.get("/admin/subscribers?sort=name&after=1&at=%00").status_code == 200
    assert admin_client.get("/admin/subscribers?sort=name&after=x").status_code == 400
    stale = admin_client.get("/admin/subscribers?list=weekly&sort=status&after=987654")
    assert stale.status_code == 200
    assert "That page is out of date" in _text(stale)
