"""The public web archive: every issue that went out, its web version, and an Atom feed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import render_template

from newsletter.composer import render_web_version
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.sending import web_url
from newsletter.web import db_session

bp = Blueprint("archive", __name__, url_prefix="/archive")

# Once a send has started, its web-version link is in readers' inboxes: show it.
PUBLIC = (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT)
ATOM = "http://www.w3.org/2005/Atom"
# The email HTML carries inline styles; allow those, never scripts or other origins' CSS.
WEB_VERSION_CSP = (
    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)


def _published(limit: int | None = None) -> list[Issue]:
    query = (
        sa.select(Issue)
        .where(Issue.status.in_(PUBLIC), Issue.started_at.is_not(None))
        .order_by(Issue.started_at.desc(), Issue.id.desc())
    )
    if limit:
        query = query.limit(limit)
    return list(db_session().scalars(query))


@bp.get("")
def index():
    """List the published issues, newest first."""
    return render_template("archive/index.html", issues=_published())


@bp.get("/<slug>")
def show(slug: str):
    """Show an issue's web version: no reader's personal links, a subscribe link instead."""
    issue = db_session().scalar(
        sa.select(Issue)
        .where(Issue.slug == slug, Issue.status.in_(PUBLIC), Issue.started_at.is_not(None))
        .order_by(Issue.started_at.desc())
        .limit(1)
    )
    if issue is None:
        abort(404, "There is no issue with this address in the archive.")
    base_url = current_app.config["BASE_URL"]
    html = render_web_version(
        issue.compiled_html,
        web_url=web_url(base_url, issue.slug),
        subscribe_url=f"{base_url}/subscribe?list={quote(issue.list.slug)}",
    )
    response = current_app.make_response(html)
    response.headers["Content-Security-Policy"] = WEB_VERSION_CSP
    return response


@bp.get("/feed.xml")
def feed():
    """Serve the archive as an Atom feed."""
    base_url = current_app.config["BASE_URL"]
    issues = _published(limit=50)
    root = ET.Element("feed", xmlns=ATOM)
    ET.SubElement(root, "title").text = "Newsletter archive"
    ET.SubElement(root, "id").text = f"{base_url}/archive"
    ET.SubElement(root, "link", rel="self", href=f"{base_url}/archive/feed.xml")
    ET.SubElement(root, "link", rel="alternate", href=f"{base_url}/archive")
    updated = max((i.started_at for i in issues), default=None)
    ET.SubElement(root, "updated").text = (updated or _epoch()).isoformat()
    author = ET.SubElement(root, "author")
    ET.SubElement(author, "name").text = "Newsletter"
    for issue in issues:
        url = web_url(base_url, issue.slug)
        entry = ET.SubElement(root, "entry")
        ET.SubElement(entry, "title").text = issue.title
        ET.SubElement(entry, "id").text = url
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=url)
        ET.SubElement(entry, "published").text = issue.started_at.isoformat()
        ET.SubElement(entry, "updated").text = (issue.finished_at or issue.started_at).isoformat()
        ET.SubElement(entry, "summary").text = issue.preheader or issue.subject
        entry_author = ET.SubElement(entry, "author")
        ET.SubElement(entry_author, "name").text = issue.list.name
    body = ET.tostring(root, encoding="unicode", xml_declaration=False)
    response = current_app.make_response('<?xml version="1.0" encoding="utf-8"?>\n' + body)
    response.headers["Content-Type"] = "application/atom+xml; charset=utf-8"
    return response


def _epoch():
    from datetime import UTC
    from datetime import datetime

    return datetime(1970, 1, 1, tzinfo=UTC)
