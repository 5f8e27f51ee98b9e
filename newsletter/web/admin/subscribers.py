"""The console's subscriber pages: the directory, one subscriber, unsubscribe, erase, export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for

from newsletter import clock
from newsletter import directory
from newsletter import lists as lists_core
from newsletter import subscribers as subscribers_core
from newsletter.models import SubscriptionStatus
from newsletter.web import commit
from newsletter.web import database
from newsletter.web import db_session
from newsletter.web.admin import bp

# Cursor ids are database ids: anything longer is not one of ours.
MAX_CURSOR_DIGITS = 12


def _filters() -> directory.Filters:
    args = request.args
    return directory.Filters(
        list_slug=args.get("list", "").strip()[:64] or None,
        status=args.get("status", "").strip() or None,
        search=args.get("q", "").strip() or None,
    )


def _cursor(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > MAX_CURSOR_DIGITS:
        abort(400, description="This page link is damaged. Start again from the first page.")
    return int(value)


def _filter_args(filters: directory.Filters) -> dict[str, str]:
    """The query arguments that carry the filters from page to page."""
    values = {"list": filters.list_slug, "status": filters.status, "q": filters.search}
    return {key: value for key, value in values.items() if value}


@bp.get("/subscribers", endpoint="subscribers")
def subscribers() -> Any:
    """The directory: search, filter by list and status, page through by address."""
    session = db_session()
    filters = _filters()
    after, before = _cursor("after"), _cursor("before")
    last = request.args.get("last") == "1"
    if sum((after is not None, before is not None, last)) > 1:
        abort(400, description="This page link is damaged. Start again from the first page.")
    size = current_app.config.get("ADMIN_PAGE_SIZE", directory.PAGE_SIZE)
    notice = None
    try:
        page = directory.subscriber_page(
            session, filters, after=after, before=before, last=last, size=size
        )
    except directory.StaleCursor as exc:
        notice = f"{exc} Showing the first page."
        page = directory.subscriber_page(session, filters, size=size)
    return render_template(
        "admin/subscribers.html",
        page=page,
        filters=filters,
        filter_args=_filter_args(filters),
        lists=lists_core.all_lists(session),
        statuses=directory.STATUS_FILTERS,
        notice=notice,
        paged=after is not None or before is not None or last,
    )


@bp.get("/subscribers/<int:subscriber_id>", endpoint="subscriber")
def subscriber(subscriber_id: int) -> Any:
    """One subscriber: subscriptions with consent, status changes, deliveries, feedback."""
    return _subscriber_page(subscriber_id)


def _subscriber_page(
    subscriber_id: int,
    *,
    error: str | None = None,
    status: int = 200,
    confirm_unsubscribe: bool = False,
) -> Any:
    history = directory.subscriber_history(db_session(), subscriber_id)
    return (
        render_template(
            "admin/subscriber.html",
            history=history,
            error=error,
            confirm_unsubscribe=confirm_unsubscribe,
        ),
        status,
    )


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe", endpoint="subscriber_unsubscribe")
def subscriber_unsubscribe(subscriber_id: int) -> Any:
    """Unsubscribe from every list, keeping the record (so no import brings them back).

    The first press only asks for confirmation; the confirming form carries confirm=yes.
    """
    session = db_session()
    found = directory.get_subscriber(session, subscriber_id)
    if request.form.get("confirm") != "yes":
        return _subscriber_page(subscriber_id, confirm_unsubscribe=True)
    removal = subscribers_core.remove(session, found.email)
    commit()
    if removal.lists:
        flash(f"Unsubscribed {found.display_email} from {', '.join(removal.lists)}.", "ok")
    else:
        flash(f"{found.display_email} was not subscribed to any list: nothing changed.", "ok")
    return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/erase", endpoint="subscriber_erase")
def subscriber_erase(subscriber_id: int) -> Any:
    """Erase the personal data for good once the editor has typed the address again."""
    session = db_session()
    found = directory.get_subscriber(session, subscriber_id)
    if found.erased_at is not None:
        flash("This subscriber was already erased: nothing changed.", "ok")
        return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id))
    typed = request.form.get("confirm_email", "")[:400].strip().lower()
    if typed not in {found.email.lower(), found.display_email.lower()}:
        return _subscriber_page(
            subscriber_id,
            error="Nothing was erased: type the subscriber's address exactly to confirm.",
            status=400,
        )
    erasure = subscribers_core.erase(session, found)
    commit()
    # The message names no address: flashes travel in the session cookie.
    flash(
        f"Erased: the address and name are gone; {erasure.subscriptions} "
        "subscription(s) stay as anonymous counts.",
        "ok",
    )
    return redirect(url_for("admin.subscriber", subscriber_id=subscriber_id))


@bp.get("/subscribers/export.csv", endpoint="subscribers_export")
def subscribers_export() -> Any:
    """Stream the subscriptions as CSV, with the page's filters and search."""
    session = db_session()
    filters = _filters()
    list_slug, status, search = filters.list_slug, filters.status, filters.search
    # Checked before the first byte: once streaming, an error could only cut the file short.
    if list_slug is not None:
        lists_core.get_list(session, list_slug)
    directory.search_condition(session, search)  # DirectoryError (400) if too long
    if status is not None and status not in {s.value for s in SubscriptionStatus}:
        abort(
            400,
            description=f"Cannot export the status {status!r}: erased records are never "
            "exported, and other statuses are "
            + ", ".join(s.value for s in SubscriptionStatus)
            + ".",
        )
    chunks = _export_stream(list_slug, status, search)
    filename = "subscribers-{}-{}-{}.csv".format(
        list_slug or "all", status or "all", clock.now().strftime("%Y%m%d")
    )
    return Response(
        stream_with_context(chunks),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _export_stream(list_slug: str | None, status: str | None, search: str | None) -> Iterator[str]:
    """The CSV chunks, read in a session of their own that ends with the stream.

    The request's session is closed by the app-context teardown as soon as the view
    returns (before the first chunk is sent), and a closed session used again would open
    a transaction nobody ends. So the stream opens its own and closes it when the last
    chunk is out, or when the client goes away (the server closes the generator).
    """
    session = database().session()
    try:
        yield from subscribers_core.export_csv(
            session, list_slug=list_slug, status=status, search=search, bom=True
        )
    finally:
        session.close()
