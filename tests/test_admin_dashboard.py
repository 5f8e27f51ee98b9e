"""The dashboard: counts per list and status, growth over time, recent sends, SVG charts."""

from __future__ import annotations

import re
from datetime import date
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa

from newsletter import figures
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import SubscriptionStatus
from newsletter.web.admin import charts

S = SubscriptionStatus


def _set_up_growth(clock: Any, make_list: Any, make_subscriber: Any) -> Any:
    """Readers who joined and left on known days; the clock ends at day 0 (2026-03-12)."""
    weekly = make_list()
    start = clock()
    make_subscriber(weekly, "old@example.com", confirmed_at=start - timedelta(days=200))
    make_subscriber(
        weekly,
        "left-long-ago@example.com",
        status=S.UNSUBSCRIBED,
        confirmed_at=start - timedelta(days=300),
        status_changed_at=start - timedelta(days=250),
    )
    make_subscriber(
        weekly,
        "left-lately@example.com",
        status=S.BOUNCED,
        confirmed_at=start - timedelta(days=100),
        status_changed_at=start + timedelta(days=5),
    )
    make_subscriber(weekly, "day2@example.com", confirmed_at=start + timedelta(days=2))
    make_subscriber(weekly, "zoë@example.com", confirmed_at=start + timedelta(days=2, hours=3))
    make_subscriber(
        weekly,
        "came-and-went@example.com",
        status=S.COMPLAINED,
        confirmed_at=start + timedelta(days=3),
        status_changed_at=start + timedelta(days=7),
    )
    make_subscriber(weekly, "waiting@example.com", status=S.PENDING)
    clock.advance(days=10)
    return weekly


def test_list_figures_counts_and_growth(
    db_session: Any, clock: Any, make_list: Any, make_subscriber: Any
) -> None:
    _set_up_growth(clock, make_list, make_subscriber)
    make_list(slug="empty", name="Empty")
    empty, weekly = figures.list_figures(db_session, days=14)
    assert empty.mailing_list.slug == "empty"
    assert empty.counts == {}
    assert [value for _, value in empty.active_by_day] == [0] * 14

    assert weekly.counts == {
        S.ACTIVE: 3,
        S.UNSUBSCRIBED: 1,
        S.BOUNCED: 1,
        S.COMPLAINED: 1,
        S.PENDING: 1,
    }
    assert weekly.total == 7
    days = [day for day, _ in weekly.active_by_day]
    assert days[0] == date(2026, 2, 27) and days[-1] == date(2026, 3, 12)
    assert days == [days[0] + timedelta(days=i) for i in range(14)]
    by_day = dict(weekly.active_by_day)
    # Before the window: "old" and "left-lately" (who left inside it) were active.
    assert by_day[date(2026, 3, 1)] == 2
    assert by_day[date(2026, 3, 4)] == 4  # two joined on 03-04
    assert by_day[date(2026, 3, 5)] == 5  # came-and-went joined
    assert by_day[date(2026, 3, 7)] == 4  # left-lately bounced
    assert by_day[date(2026, 3, 9)] == 3  # came-and-went complained
    # The line ends where the counts are.
    assert weekly.active_by_day[-1][1] == weekly.counts[S.ACTIVE]


def test_recent_sends_counts_each_ledger(db_session: Any, make_list: Any, make_ledger: Any) -> None:
    weekly = make_list()
    first, _ = make_ledger(["a@example.com", "b@example.com"], mailing_list=weekly)
    second, rows = make_ledger(
        ["a@example.com", "b@example.com", "c@example.com"], mailing_list=weekly
    )
    db_session.execute(
        sa.update(Delivery)
        .where(Delivery.id.in_([rows[0].id, rows[1].id]))
        .values(status=DeliveryStatus.DELIVERED)
    )
    db_session.execute(
        sa.update(Delivery).where(Delivery.id == rows[2].id).values(status=DeliveryStatus.BOUNCED)
    )
    db_session.commit()
    sends = figures.recent_sends(db_session)
    assert [send.issue.id for send in sends] == [first.id, second.id]  # oldest first
    assert sends[0].counts == {DeliveryStatus.SENT: 2}
    assert sends[1].counts == {DeliveryStatus.DELIVERED: 2, DeliveryStatus.BOUNCED: 1}
    assert sends[1].accepted == 3
    assert sends[1].total == 3
    assert len(figures.recent_sends(db_session, limit=1)) == 1


def test_dashboard_page(
    admin_client: Any,
    clock: Any,
    make_list: Any,
    make_subscriber: Any,
    make_ledger: Any,
) -> None:
    weekly = _set_up_growth(clock, make_list, make_subscriber)
    # The ledger's two readers are active subscribers too.
    make_ledger(["a@example.com", "b@example.com"], mailing_list=weekly)
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "o11y weekly" in body
    counts = dict(re.findall(r'status-(\w+)">\1</span></dt>\s*<dd><a [^>]*>([\d,]+)</a>', body))
    assert counts == {
        "pending": "1",
        "active": "5",
        "unsubscribed": "1",
        "bounced": "1",
        "complained": "1",
    }
    svgs = re.findall(r"<svg .*?</svg>", body, flags=re.S)
    assert len(svgs) == 2
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed
    assert 'class="chart growth"' in svgs[0]
    assert "2026-03-12: 5 active" in svgs[0]
    assert 'class="chart sends"' in svgs[1]
    assert "issue-1: 2 sent, not yet reported" in svgs[1]
    assert "?list=weekly&amp;status=bounced" in body


def test_dashboard_when_empty(admin_client: Any) -> None:
    body = admin_client.get("/admin/").get_data(as_text=True)
    assert "No lists yet" in body
    assert "Nothing sent yet" in body
    assert "<svg" not in body


def test_charts_escape_names(db_session: Any, make_list: Any, make_ledger: Any) -> None:
    hostile = make_list(slug="x", name='<script>alert("x")</script>')
    issue, _ = make_ledger(["a@example.com"], mailing_list=hostile)
    issue.slug = "<b>bold</b>"
    db_session.commit()
    (item,) = figures.list_figures(db_session, days=3)
    growth = str(charts.growth_chart(item.active_by_day, title=item.mailing_list.name))
    sends = str(charts.sends_chart(figures.recent_sends(db_session), title="t"))
    assert "<script>" not in growth and "&lt;script&gt;" in growth
    assert "<b>" not in sends and "&lt;b&gt;" in sends
    ElementTree.fromstring(growth)
    ElementTree.fromstring(sends)


def test_growth_chart_geometry() -> None:
    day = date(2026, 1, 1)
    series = [(day + timedelta(days=i), value) for i, value in enumerate([0, 50, 100])]
    svg = ElementTree.fromstring(str(charts.growth_chart(series, title="t", height=160)))
    ns = {"s": "http://www.w3.org/2000/svg"}
    points = svg.find("s:polyline", ns).get("points").split()
    ys = [float(point.split(",")[1]) for point in points]
    # 100 is the axis top (10 px from the top); 0 sits on the baseline; 50 halfway.
    assert ys == [138.0, 74.0, 10.0]
    assert [t.text for t in svg.findall("s:text", ns)][:3] == ["0", "50", "100"]


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 10), (3, 10), (6, 10), (10, 10), (11, 20), (199, 200), (201, 500), (999_999, 1_000_000)],
)
def test_axis_tops_are_round(value: int, ceiling: int) -> None:
    assert charts._nice_ceiling(value) == ceiling
