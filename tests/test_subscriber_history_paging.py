"""The subscriber page's deliveries and feedback, paged like the console's other lists."""

from __future__ import annotations

import html as html_module
import re
from datetime import timedelta
from typing import Any

import pytest

from newsletter import history as history_core
from newsletter.history import Cursor
from newsletter.models import FeedbackEvent
from newsletter.models import FeedbackKind

SIZE = 3
ROWS = 7
NON_ASCII_EMAIL = "zoë@ørsted.dk"
# Feedback times, in the order the events are stored: ties on occurred_at (minutes 5 and 9)
# hold events stored apart, so that only the id keeps their order.
MINUTES = [5, 9, 1, 5, 9, 9, 5]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # Small pages, so seven rows have a first, a middle and a last page.
    app_config["ADMIN_HISTORY_PAGE_SIZE"] = SIZE
    return app_config


@pytest.fixture
def reader(make_list, make_subscriber, make_ledger, db_session, clock) -> dict[str, Any]:
    """A non-ASCII subscriber with seven deliveries and seven feedback events, and another
    subscriber whose rows are interleaved with theirs (and must never show)."""
    weekly = make_list()
    subscriber = make_subscriber(weekly, NON_ASCII_EMAIL, name="Zoë Ørsted").subscriber
    other = make_subscriber(weekly, "other@example.com").subscriber
    deliveries = []
    for _ in range(ROWS):
        _, rows = make_ledger([subscriber.email, other.email])
        deliveries.append(next(r.id for r in rows if r.subscriber_id == subscriber.id))
    events = []
    for n, minute in enumerate(MINUTES):
        for owner in (subscriber, other):
            event = FeedbackEvent(
                kind=FeedbackKind.DELIVERY,
                ses_message_id=f"msg-{n}-{owner.id}",
                email=owner.email,
                subscriber_id=owner.id,
                occurred_at=clock() + timedelta(minutes=minute),
                detail=f"event {n} of {owner.id}",
            )
            db_session.add(event)
            db_session.flush()
            if owner is subscriber:
                events.append(event.id)
    db_session.commit()
    at = dict(zip(events, MINUTES, strict=True))
    return {
        "list": weekly,
        "subscriber": subscriber,
        "other": other,
        # Newest first, as the page lists them.
        "deliveries": sorted(deliveries, reverse=True),
        "feedback": sorted(events, key=lambda event: (at[event], event), reverse=True),
    }


def _history(db_session: Any, reader: dict[str, Any], **cursors: Cursor) -> Any:
    return history_core.subscriber_history(
        db_session, reader["subscriber"].id, size=SIZE, **cursors
    )


def _cursor(ids: list[int], spec: tuple[str, int | None]) -> Cursor:
    """A cursor from (`after`/`before`, index into the newest-first ids), or `last`."""
    kind, index = spec
    if kind == "first":
        return Cursor()
    if kind == "last":
        return Cursor(last=True)
    assert index is not None
    return Cursor(**{kind: ids[index]})


# (cursor, the page's rows as indexes into the newest-first list, has_prev, has_next)
PAGES = [
    pytest.param(("first", None), [0, 1, 2], False, True, id="first"),
    pytest.param(("after", 2), [3, 4, 5], True, True, id="middle"),
    pytest.param(("after", 5), [6], True, False, id="after-the-middle"),
    pytest.param(("last", None), [4, 5, 6], True, False, id="last"),
    pytest.param(("before", 4), [1, 2, 3], True, True, id="before-the-last"),
    pytest.param(("before", 3), [0, 1, 2], False, True, id="back-to-the-first"),
    pytest.param(("before", 1), [0], False, True, id="before-the-second"),
]


@pytest.mark.parametrize("which", ["deliveries", "feedback"])
@pytest.mark.parametrize(("spec", "indexes", "has_prev", "has_next"), PAGES)
def test_a_page_of_either_list(db_session, reader, which, spec, indexes, has_prev, has_next):
    ids = reader[which]
    history = _history(db_session, reader, **{which: _cursor(ids, spec)})
    page = getattr(history, which)
    assert [row.id for row in page.rows] == [ids[i] for i in indexes]
    assert (page.has_prev, page.has_next) == (has_prev, has_next)
    assert page.count.value == ROWS and page.count.exact
    assert (page.start, page.end) == (indexes[0] + 1, indexes[-1] + 1)
    assert page.notice is None


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 8])
@pytest.mark.parametrize("which", ["deliveries", "feedback"])
def test_walking_the_pages_shows_every_row_once_either_way(db_session, reader, which, size):
    def page(cursor: Cursor) -> Any:
        found = history_core.subscriber_history(
            db_session, reader["subscriber"].id, size=size, **{which: cursor}
        )
        return getattr(found, which)

    forwards, current = [], page(Cursor())
    while True:
        forwards += [row.id for row in current.rows]
        if not current.has_next:
            break
        current = page(Cursor(after=current.last_id))
    backwards, current = [], page(Cursor(last=True))
    while True:
        backwards = [row.id for row in current.rows] + backwards
        if not current.has_prev:
            break
        current = page(Cursor(before=current.first_id))
    assert forwards == backwards == reader[which]


def test_feedback_ties_on_occurred_at_page_by_id(db_session, reader):
    history = _history(db_session, reader)
    times = [row.occurred_at for row in history.feedback.rows]
    # The newest page is the three events at minute 9, newest id first.
    assert len(set(times)) == 1
    assert [row.id for row in history.feedback.rows] == sorted(
        (row.id for row in history.feedback.rows), reverse=True
    )
    after = _history(db_session, reader, feedback=Cursor(after=history.feedback.last_id))
    assert after.feedback.rows[0].occurred_at < times[0]
    # The next three (minute 5) tie too; none of the first page comes back.
    assert len({row.occurred_at for row in after.feedback.rows}) == 1
    assert {row.id for row in after.feedback.rows}.isdisjoint(
        row.id for row in history.feedback.rows
    )


def test_only_the_subscribers_own_rows(db_session, reader):
    history = _history(db_session, reader, deliveries=Cursor(last=True))
    other = reader["other"]
    assert all(f"of {other.id}" not in (row.detail or "") for row in history.feedback.rows)
    assert history.deliveries.count.value == ROWS


@pytest.mark.parametrize(
    ("which", "cursor"),
    [
        ("deliveries", Cursor(before=10**11)),  # newer than any row
        ("deliveries", Cursor(after=1)),  # older than any row
        ("feedback", Cursor(after=10**11)),  # no such event
        ("feedback", Cursor(before=10**11)),
    ],
)
def test_an_out_of_date_cursor_shows_the_newest_page_with_a_notice(
    db_session, reader, which, cursor
):
    page = getattr(_history(db_session, reader, **{which: cursor}), which)
    assert [row.id for row in page.rows] == reader[which][:SIZE]
    assert page.start == 1 and not page.has_prev
    assert page.notice and "out of date" in page.notice


def test_another_subscribers_event_is_no_feedback_cursor(db_session, reader):
    theirs = history_core.subscriber_history(db_session, reader["other"].id, size=SIZE)
    assert theirs.feedback.first_id not in reader["feedback"]
    mine = _history(db_session, reader, feedback=Cursor(after=theirs.feedback.first_id))
    assert [row.id for row in mine.feedback.rows] == reader["feedback"][:SIZE]
    assert mine.feedback.notice


def test_an_unknown_delivery_id_still_bounds_a_page(db_session, reader):
    ids = reader["deliveries"]
    # Between the newest and the next: gone, or another subscriber's row.
    history = _history(db_session, reader, deliveries=Cursor(after=ids[0] - 1))
    assert [row.id for row in history.deliveries.rows] == ids[1:4]
    assert history.deliveries.start == 2 and history.deliveries.has_prev
    assert history.deliveries.notice is None


@pytest.mark.parametrize(
    "cursor",
    [Cursor(after=-1), Cursor(before=-5), Cursor(after=1, before=2), Cursor(after=1, last=True)],
)
def test_a_cursor_no_link_makes_is_refused(db_session, reader, cursor):
    with pytest.raises(history_core.HistoryError):
        _history(db_session, reader, deliveries=cursor)
    with pytest.raises(history_core.HistoryError):
        _history(db_session, reader, feedback=cursor)


def test_no_rows_is_an_empty_page_with_or_without_a_cursor(db_session, reader, make_subscriber):
    fresh = make_subscriber(reader["list"]).subscriber
    for cursor in (Cursor(), Cursor(after=5), Cursor(last=True)):
        history = history_core.subscriber_history(
            db_session, fresh.id, deliveries=cursor, feedback=cursor
        )
        for page in (history.deliveries, history.feedback):
            assert page.rows == [] and page.count.value == 0 and page.position is None
            assert page.notice is None


# --- Through the console --------------------------------------------------------------


def _text(response: Any) -> str:
    return html_module.unescape(response.get_data(as_text=True))


def _section(html: str, which: str) -> str:
    """One list's part of the page, from its heading to its section's end."""
    return html.split(f'<h2 id="{which}">', 1)[1].split("</section>", 1)[0]


def _range(html: str, which: str) -> str:
    found = re.search(rf'<p class="result-count" id="{which}-count">(.*?)</p>', html, re.S)
    assert found, f"no count of the {which}"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


def _titles(html: str) -> list[str]:
    return re.findall(r"<tr><td>(Issue \d+)</td>", _section(html, "deliveries"))


def _details(html: str) -> list[str]:
    return re.findall(r'<td class="detail">(event \d+) of \d+</td>', _section(html, "feedback"))


def _link(html: str, which: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}">', _section(html, which))
    return html_module.unescape(match.group(1)) if match else None


def _page(client: Any, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.status_code
    return _text(response)


def test_the_lists_page_independently(admin_client, reader):
    base = f"/admin/subscribers/{reader['subscriber'].id}"
    first = _page(admin_client, base)
    assert "Zoë Ørsted" in first
    assert _range(first, "deliveries") == "1–3 of 7 deliveries"
    assert _range(first, "feedback") == "1–3 of 7 events"
    assert _titles(first) == ["Issue 7", "Issue 6", "Issue 5"]
    assert _link(first, "deliveries", "prev") is None
    assert 'aria-label="Pages of deliveries"' in first

    # The feedback to its second page, then the deliveries to their last: both stay put.
    feedback_2 = _page(admin_client, _link(first, "feedback", "next"))
    assert _range(feedback_2, "feedback") == "4–6 of 7 events"
    assert _range(feedback_2, "deliveries") == "1–3 of 7 deliveries"
    last = _page(admin_client, _link(feedback_2, "deliveries", "last"))
    assert _range(last, "deliveries") == "5–7 of 7 deliveries"
    assert _titles(last) == ["Issue 3", "Issue 2", "Issue 1"]
    assert _range(last, "feedback") == "4–6 of 7 events"
    assert _details(last) == _details(feedback_2)
    assert _link(last, "deliveries", "next") is None

    back = _page(admin_client, _link(last, "deliveries", "prev"))
    assert _range(back, "deliveries") == "2–4 of 7 deliveries"
    assert _range(back, "feedback") == "4–6 of 7 events"
    feedback_first = _page(admin_client, _link(back, "feedback", "first"))
    assert _range(feedback_first, "feedback") == "1–3 of 7 events"
    assert _range(feedback_first, "deliveries") == "2–4 of 7 deliveries"
    assert _link(back, "deliveries", "next").endswith("#deliveries")


def test_every_feedback_event_shows_once_across_the_pages(admin_client, reader):
    url: str | None = f"/admin/subscribers/{reader['subscriber'].id}"
    seen = []
    while url:
        html = _page(admin_client, url)
        seen += _details(html)
        url = _link(html, "feedback", "next")
    assert len(seen) == ROWS and len(set(seen)) == ROWS


@pytest.mark.parametrize(
    "query",
    [
        "deliveries_after=x",
        "deliveries_before=-1",
        "deliveries_after=1&deliveries_before=2",
        "deliveries_last=1&deliveries_after=3",
        "feedback_after=" + "9" * 40,
        "feedback_before=1.5",
        "feedback_after=%EF%BC%91",  # a full-width digit
        "deliveries_before=%C2%B2",  # a superscript two: a digit to isdigit(), not to int()
    ],
)
def test_a_damaged_page_link_is_a_400_with_the_whole_page(admin_client, reader, query):
    html = _page(admin_client, f"/admin/subscribers/{reader['subscriber'].id}?{query}", 400)
    assert "is damaged: showing the newest." in html
    assert "Zoë Ørsted" in html and "Erase for good" in html
    assert _range(html, "deliveries") == "1–3 of 7 deliveries"
    assert _range(html, "feedback") == "1–3 of 7 events"


def test_a_damaged_link_for_one_list_keeps_the_other_on_its_page(admin_client, reader):
    ids = reader["feedback"]
    query = f"feedback_after={ids[2]}&deliveries_after=oops"
    html = _page(admin_client, f"/admin/subscribers/{reader['subscriber'].id}?{query}", 400)
    assert _range(html, "feedback") == "4–6 of 7 events"
    assert _range(html, "deliveries") == "1–3 of 7 deliveries"
    assert f"feedback_after={ids[2]}" in _link(html, "deliveries", "next")


@pytest.mark.parametrize("query", ["deliveries_before=99999999999", "feedback_after=99999999999"])
def test_an_old_page_link_shows_the_newest_with_a_notice(admin_client, reader, query):
    html = _page(admin_client, f"/admin/subscribers/{reader['subscriber'].id}?{query}")
    assert "is out of date: showing the newest." in html
    assert _range(html, "deliveries") == "1–3 of 7 deliveries"
    assert _range(html, "feedback") == "1–3 of 7 events"
    # Paging the other list drops the old link rather than repeating the notice.
    for which in ("deliveries", "feedback"):
        assert "99999999999" not in (_link(html, which, "next") or "")


def test_one_page_has_no_pager(admin_client, reader, make_subscriber, make_ledger):
    few = make_subscriber(reader["list"], "few@example.com").subscriber
    make_ledger([few.email])
    html = _page(admin_client, f"/admin/subscribers/{few.id}")
    assert _range(html, "deliveries") == "1–1 of 1 delivery"
    assert 'class="pager"' not in html
    assert "No bounces, complaints or delivery reports." in html
    both = _page(admin_client, f"/admin/subscribers/{reader['subscriber'].id}")
    assert both.count('class="pager"') == 2
