"""The public web archive: every issue that went out, its web version, and an Atom feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC
from datetime import datetime
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import render_template
from flask import request

from newsletter import i18n
from newsletter.composer import render_web_version
from newsletter.i18n import N_
from newsletter.models import Issue
from newsletter.models import IssueStatus
from newsletter.models import MailingList
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


def _published(limit: int | None = None, mailing_list: MailingList | None = None) -> list[Issue]:
    query = (
        sa.select(Issue)
        .where(Issue.status.in_(PUBLIC), Issue.started_at.is_not(None))
        .order_by(Issue.issue_date.desc(), Issue.started_at.desc(), Issue.id.desc())
    )
    if mailing_list is not None:
        query = query.where(Issue.list_id == mailing_list.id)
    if limit:
        query = query.limit(limit)
    return list(db_session().scalars(query))


def _list_or_404(slug: str) -> MailingList:
    mailing_list = (
        db_session().scalar(sa.select(MailingList).where(MailingList.slug == slug))
        if len(slug) <= 64
        else None
    )
    if mailing_list is None:
        abort(404, N_("There is no such list."))
    i18n.set_page_language(mailing_list.language)
    return mailing_list


@bp.get("")
def index():
    """List the published issues, newest first (one list's with ?list=SLUG)."""
    slug = request.args.get("list")
    mailing_list = _list_or_404(slug) if slug else None
    return render_template(
        "archive/index.html",
        issues=_published(mailing_list=mailing_list),
        mailing_list=mailing_list,
    )


def _web_version(issue: Issue) -> str:
    base_url = current_app.config["BASE_URL"]
    return render_web_version(
        issue.compiled_html,
        web_url=web_url(base_url, issue.slug),
        subscribe_url=f"{base_url}/subscribe?list={quote(issue.list.slug)}",
    )


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
        abort(404, N_("There is no issue with this address in the archive."))
    response = current_app.make_response(_web_version(issue))
    response.headers["Content-Security-Policy"] = WEB_VERSION_CSP
    return response


@bp.get("/feed.xml")
def feed():
    """Serve every list's archive as one Atom feed."""
    return _atom(_published(limit=50), None)


@bp.get("/<list_slug>/feed.xml")
def list_feed(list_slug: str):
    """Serve one list's archive as an Atom feed, titled with the list's name."""
    mailing_list = _list_or_404(list_slug)
    return _atom(_published(limit=50, mailing_list=mailing_list), mailing_list)


def _day(moment: datetime) -> datetime:
    """An issue's date as an Atom date-time: midnight UTC of that day."""
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _body(html: str) -> str:
    """The inside of the web version's <body>: feed readers show fragments, not documents."""
    match = _BODY_RE.search(html)
    return match.group(1).strip() if match else html


def _atom(issues: list[Issue], mailing_list: MailingList | None):
    base_url = current_app.config["BASE_URL"]
    if mailing_list is not None:
        self_url = f"{base_url}/archive/{quote(mailing_list.slug)}/feed.xml"
        page_url = f"{base_url}/archive?list={quote(mailing_list.slug)}"
        title, author_name = mailing_list.name, mailing_list.name
        language = mailing_list.language
    else:
        self_url = f"{base_url}/archive/feed.xml"
        page_url = f"{base_url}/archive"
        title = i18n.gettext("All issues")
        names = sorted({issue.list.name for issue in issues})
        author_name = names[0] if len(names) == 1 else i18n.gettext("Newsletter")
        language = i18n.current_language()
    root = ET.Element("feed", xmlns=ATOM)
    root.set("xml:lang", language)
    ET.SubElement(root, "title").text = title
    if mailing_list is not None and mailing_list.description:
        ET.SubElement(root, "subtitle").text = mailing_list.description
    ET.SubElement(root, "id").text = self_url
    ET.SubElement(root, "link", rel="self", type="application/atom+xml", href=self_url)
    ET.SubElement(root, "link", rel="alternate", type="text/html", href=page_url)
    updated = max(
        (_aware(i.finished_at or i.started_at) for i in issues if i.started_at), default=None
    )
    ET.SubElement(root, "updated").text = (updated or _EPOCH).isoformat()
    author = ET.SubElement(root, "author")
    ET.SubElement(author, "name").text = author_name
    ET.SubElement(root, "icon").text = f"{base_url}/static/favicon.svg"
    for issue in issues:
        url = web_url(base_url, issue.slug)
        entry = ET.SubElement(root, "entry")
        entry.set("xml:lang", issue.list.language)
        ET.SubElement(entry, "title").text = issue.title
        ET.SubElement(entry, "id").text = url
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=url)
        # The issue's own date, as the archive shows it; updated is when it went out.
        ET.SubElement(entry, "published").text = _day(issue.issue_date).isoformat()
        ET.SubElement(entry, "updated").text = _aware(
            issue.finished_at or issue.started_at or issue.issue_date
        ).isoformat()
        if issue.preheader:
            ET.SubElement(entry, "summary").text = issue.preheader
        ET.SubElement(entry, "content", type="html").text = _body(_web_version(issue))
        entry_author = ET.SubElement(entry, "author")
        ET.SubElement(entry_author, "name").text = issue.list.name
    body = ET.tostring(root, encoding="unicode", xml_declaration=False)
    response = current_app.make_response('<?xml version="1.0" encoding="utf-8"?>\n' + body)
    response.headers["Content-Type"] = "application/atom+xml; charset=utf-8"
    return response


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BODY_RE = re.compile(r"<body[^>]*>(.*)</body>", re.DOTALL | re.IGNORECASE)
