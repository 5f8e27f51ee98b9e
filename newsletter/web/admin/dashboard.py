"""The console's dashboard: every list's readers by status and over time, recent sends."""

from __future__ import annotations

from flask import render_template

from newsletter import figures
from newsletter.models import DeliveryStatus
from newsletter.models import SubscriptionStatus
from newsletter.web import db_session
from newsletter.web.admin import bp
from newsletter.web.admin import charts

GROWTH_DAYS = 90
RECENT_SENDS = 10


@bp.get("/", endpoint="dashboard")
def dashboard():
    """Show each list's counts and growth chart, and a chart of the latest sends."""
    session = db_session()
    lists = figures.list_figures(session, days=GROWTH_DAYS)
    sends = figures.recent_sends(session, limit=RECENT_SENDS)
    return render_template(
        "admin/dashboard.html",
        lists=lists,
        sends=sends,
        statuses=list(SubscriptionStatus),
        delivery=DeliveryStatus,
        growth_chart=charts.growth_chart,
        sends_chart=charts.sends_chart(
            sends, title=f"The last {len(sends)} sends by delivery status"
        )
        if sends
        else None,
        legend=charts.legend(),
        days=GROWTH_DAYS,
    )
