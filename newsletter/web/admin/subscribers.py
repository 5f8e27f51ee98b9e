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
from itsdangerous import Signer

from newsletter import clock
from newsletter import directory
from newsletter import history as history_core
from newsletter import lists as lists_core
from newsletter import subscribers as subscribers_core
from newsletter.models import SubscriptionStatus
from newsletter.paging import MAX_ROW_ID
from newsletter.paging import PageOf
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


def _well_formed(value: str) -> bool:
    """Whether a page link's row id is as a link writes it."""
    # isascii: "²" is a digit to isdigit() but not to int().
    return value.isascii() and value.isdigit() and len(value) <= MAX_CURSOR_DIGITS


def _cursor(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not _well_formed(value):
        abort(400, description="This page link is damaged. Start again from the first page.")
    return min(int(value), MAX_ROW_ID)


def _filter_args(filters: directory.Filters) -> dict[str, str]:
    """The query arguments that carry the filters from page to page."""
    values = {"list": filters.list_slug, "status": filters.status, "q": filters.search}
    return {key: value for key, value in values.items() if value}


def _order(filters: directory.Filters) -> tuple[directory.Order, str | None]:
    """The order asked for in ?sort=&dir=, or the default with a notice saying why."""
    key = request.args.get("sort", "").strip()[:32] or directory.DEFAULT_ORDER.key
    direction = request.args.get("dir", "").strip()[:8]
    sort = directory.SORTS.get(key)
    if sort is None:
        return directory.DEFAULT_ORDER, (
            f"There is no sort {key!r}: showing the subscribers by address."
        )
    if direction not in ("", "asc", "desc"):
        return directory.DEFAULT_ORDER, (
            f"{direction!r} is not a direction (asc or desc): showing the subscribers by address."
        )
    order = directory.Order(key, direction == "desc" if direction else sort.descending_first)
    try:
        directory.check_order(order, filters)
    except directory.DirectoryError as exc:
        return directory.DEFAULT_ORDER, f"{exc} Showing the subscribers by address."
    return order, None


def _order_args(order: directory.Order) -> dict[str, str]:
    """The query arguments that carry the order (none for the default)."""
    if order == directory.DEFAULT_ORDER:
        return {}
    return {"sort": order.key, "dir": order.direction}


# A page link carries where its page starts ("at"), so that "51-100 of N" costs nothing
# past the count cap. Signed with the page's cursor, filters and order: a position copied
# onto another link, or typed, is not believed (the page counts or estimates instead).
def _signer() -> Signer:
    return Signer(current_app.config["SECRET_KEY"], salt="newsletter.directory.position")


def _position_message(kind: str, cursor: int | str, args: dict[str, str], value: str) -> bytes:
    page = "&".join(f"{key}={args[key]}" for key in sorted(args))
    return f"{kind}:{cursor}:{page}:{value}".encode()


def _position_token(
    kind: str, cursor: int | str, args: dict[str, str], position: directory.Position
) -> str:
    """The signed "at" of a page link; `args` are the link's filter and order arguments."""
    value = f"{'~' if position.about else ''}{position.start}"
    signature = _signer().get_signature(_position_message(kind, cursor, args, value))
    return f"{value}.{signature.decode()}"


def _given_position(
    kind: str, cursor: int | str, args: dict[str, str]
) -> directory.Position | None:
    value, _, signature = request.args.get("at", "")[:120].partition(".")
    digits = value.removeprefix("~")
    if not digits.isdigit() or len(digits) > MAX_CURSOR_DIGITS:
        return None
    message = _position_message(kind, cursor, args, value)
    if not _signer().verify_signature(message, signature.encode()):
        return None
    return directory.Position(int(digits), about=value.startswith("~"))


def _directory_url(**values: Any) -> str:
    return url_for("admin.subscribers", **values)


def _pager_links(page: directory.Page, args: dict[str, str], size: int) -> dict[str, str | None]:
    """The first, previous, next and last page links (None where there is no such page)."""
    links: dict[str, str | None] = dict.fromkeys(("first", "prev", "next", "last"))
    position = page.position
    if page.has_prev and page.first_id is not None:
        links["first"] = _directory_url(**args)
        at = {}
        if position is not None:
            earlier = directory.Position(max(position.start - size, 1), position.about)
            at = {"at": _position_token("before", page.first_id, args, earlier)}
        links["prev"] = _directory_url(before=page.first_id, **args, **at)
    if page.has_next and page.last_id is not None:
        at = {}
        if position is not None:
            later = directory.Position(position.start + len(page.rows), position.about)
            at = {"at": _position_token("after", page.last_id, args, later)}
        links["next"] = _directory_url(after=page.last_id, **args, **at)
        links["last"] = _directory_url(last=1, **args)
    return links


def _sort_links(
    filters: directory.Filters, order: directory.Order, filter_args: dict[str, str]
) -> list[dict[str, Any]]:
    """Each sortable column's header: its link, and aria-sort on the current one."""
    headers = []
    for sort in directory.SORTS.values():
        if sort.needs_list and not filters.list_slug:
            continue
        current = order.key == sort.key
        descending = not order.descending if current else sort.descending_first
        target = directory.Order(sort.key, descending)
        headers.append(
            {
                "key": sort.key,
                "label": sort.label,
                "href": _directory_url(**filter_args, **_order_args(target)),
                "aria_sort": (
                    ("descending" if order.descending else "ascending") if current else None
                ),
                "next_direction": "descending" if descending else "ascending",
            }
        )
    return headers


def page_cursors() -> tuple[int | None, int | None, bool]:
    """A paged list's ?after=, ?before= and ?last=1 (400 for a damaged page link)."""
    after, before = _cursor("after"), _cursor("before")
    last = request.args.get("last") == "1"
    if sum((after is not None, before is not None, last)) > 1:
        abort(400, description="This page link is damaged. Start again from the first page.")
    return after, before, last


@bp.get("/subscribers", endpoint="subscribers")
def subscribers() -> Any:
    """The directory: search, filter by list and status, sort by a column, page through."""
    session = db_session()
    filters = _filters()
    order, notice = _order(filters)
    after, before, last = page_cursors()
    filter_args = _filter_args(filters)
    args = {**filter_args, **_order_args(order)}
    position = None
    if after is not None:
        position = _given_position("after", after, args)
    elif before is not None:
        position = _given_position("before", before, args)
    size = current_app.config.get("ADMIN_PAGE_SIZE", directory.PAGE_SIZE)
    try:
        page = directory.subscriber_page(
            session,
            filters,
            order=order,
            after=after,
            before=before,
            last=last,
            size=size,
            position=position,
        )
    except directory.StaleCursor as exc:
        notice = f"{exc} Showing the first page."
        page = directory.subscriber_page(session, filters, order=order, size=size)
    return render_template(
        "admin/subscribers.html",
        page=page,
        filters=filters,
        filter_args=filter_args,
        order=order,
        order_args=_order_args(order),
        headers={h["key"]: h for h in _sort_links(filters, order, filter_args)},
        links=_pager_links(page, args, size),
        lists=lists_core.all_lists(session),
        statuses=directory.STATUS_FILTERS,
        notice=notice,
        paged=after is not None or before is not None or last,
    )


@bp.get("/subscribers/<int:subscriber_id>", endpoint="subscriber")
def subscriber(subscriber_id: int) -> Any:
    """One subscriber: subscriptions with consent, status changes, deliveries, feedback."""
    return _subscriber_page(subscriber_id)


# The subscriber page's two paged lists, each with its own ?<list>_after=, _before=, _last=1.
HISTORY_LISTS = {"deliveries": "deliveries", "feedback": "bounces and complaints"}


def _history_cursor(name: str) -> tuple[history_core.Cursor, bool]:
    """One list's page from the query string, and whether its link was damaged (then the
    list shows its newest page)."""
    after, before = (request.args.get(f"{name}_{end}", "") for end in ("after", "before"))
    last = request.args.get(f"{name}_last") == "1"
    given = [value for value in (after, before) if value]
    if not given and not last:
        return history_core.Cursor(), False
    if len(given) + last > 1 or not all(_well_formed(value) for value in given):
        return history_core.Cursor(), True
    return history_core.Cursor(
        after=int(after) if after else None, before=int(before) if before else None, last=last
    ), False


def _cursor_args(name: str, cursor: history_core.Cursor) -> dict[str, Any]:
    """The query arguments that keep a list on its page."""
    values = {"after": cursor.after, "before": cursor.before, "last": 1 if cursor.last else None}
    return {f"{name}_{key}": value for key, value in values.items() if value is not None}


def _history_links(
    subscriber_id: int, name: str, page: PageOf[Any], keep: dict[str, Any]
) -> dict[str, str | None]:
    """A list's pager links; `keep` holds the other list to its page."""

    def url(**args: Any) -> str:
        return url_for(
            "admin.subscriber", subscriber_id=subscriber_id, _anchor=name, **keep, **args
        )

    links: dict[str, str | None] = dict.fromkeys(("first", "prev", "next", "last"))
    if page.has_prev and page.first_id is not None:
        links["first"] = url()
        links["prev"] = url(**{f"{name}_before": page.first_id})
    if page.has_next and page.last_id is not None:
        links["next"] = url(**{f"{name}_after": page.last_id})
        links["last"] = url(**{f"{name}_last": 1})
    return links


def _subscriber_page(
    subscriber_id: int,
    *,
    error: str | None = None,
    status: int = 200,
    confirm_unsubscribe: bool = False,
) -> Any:
    cursors, errors = {}, [error] if error else []
    for name, label in HISTORY_LISTS.items():
        cursors[name], damaged = _history_cursor(name)
        if damaged:
            errors.append(f"That page link of the {label} is damaged: showing the newest.")
            status = 400
    history = history_core.subscriber_history(
        db_session(),
        subscriber_id,
        deliveries=cursors["deliveries"],
        feedback=cursors["feedback"],
        size=current_app.config.get("ADMIN_HISTORY_PAGE_SIZE", history_core.HISTORY_PAGE_SIZE),
    )
    pages: dict[str, Any] = {"deliveries": history.deliveries, "feedback": history.feedback}
    for name, page in pages.items():
        if page.notice:
            errors.append(page.notice)
            cursors[name] = history_core.Cursor()
    args = {name: _cursor_args(name, cursor) for name, cursor in cursors.items()}
    # Paging one list keeps the other on its page.
    links = {
        "deliveries": _history_links(
            subscriber_id, "deliveries", history.deliveries, args["feedback"]
        ),
        "feedback": _history_links(subscriber_id, "feedback", history.feedback, args["deliveries"]),
    }
    return (
        render_template(
            "admin/subscriber.html",
            history=history,
            errors=errors,
            links=links,
            paged={name: bool(value) for name, value in args.items()},
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
    found = history_core.get_subscriber(session, subscriber_id)
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
    found = history_core.get_subscriber(session, subscriber_id)
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
