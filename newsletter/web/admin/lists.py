"""The console's list pages: every list, create one, edit one."""

from __future__ import annotations

from typing import Any

from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from newsletter import i18n
from newsletter import lists as lists_core
from newsletter.web import commit
from newsletter.web import db_session
from newsletter.web.admin import bp

FIELDS = ("name", "from_address", "reply_to", "postal_address", "description", "language")
MAX_FIELD = 2000


def _form_values() -> dict[str, str]:
    values = {}
    for name in FIELDS:
        value = request.form.get(name, "")
        # Oversized fields are refused by the core's checks or cut here, never stored whole.
        values[name] = value[:MAX_FIELD]
    return values


def _core_fields(values: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the core takes them (empty optional fields become None)."""
    return {
        "name": values["name"],
        "from_address": values["from_address"],
        "language": values["language"] or None,
        **{name: values[name] or None for name in ("reply_to", "postal_address", "description")},
    }


@bp.get("/lists")
def lists():
    """Show every list with its addresses and signup link."""
    return render_template("admin/lists.html", lists=lists_core.all_lists(db_session()))


@bp.route("/lists/new", methods=["GET", "POST"])
def list_new():
    """Create a list."""
    values = {"slug": "", **dict.fromkeys(FIELDS, ""), "language": i18n.DEFAULT_LANGUAGE}
    error = None
    if request.method == "POST":
        values = {"slug": request.form.get("slug", "")[:64].strip(), **_form_values()}
        try:
            created = lists_core.create_list(
                db_session(),
                values["slug"],
                **_core_fields(values),
            )
        except lists_core.ListError as exc:
            error = str(exc)
        else:
            commit()
            flash(f"Created the list {created.slug!r}.", "ok")
            return redirect(url_for("admin.lists"))
    status = 400 if error else 200
    return render_template(
        "admin/list_form.html", values=values, error=error, new=True, languages=i18n.LANGUAGES
    ), status


@bp.route("/lists/<slug>/edit", methods=["GET", "POST"])
def list_edit(slug: str):
    """Change a list's name, addresses and footer."""
    session = db_session()
    mailing_list = lists_core.get_list(session, slug[:64])
    values = {"slug": mailing_list.slug, **{f: getattr(mailing_list, f) or "" for f in FIELDS}}
    error = None
    if request.method == "POST":
        values = {"slug": mailing_list.slug, **_form_values()}
        try:
            lists_core.update_list(
                session,
                mailing_list,
                **_core_fields(values),
            )
        except lists_core.ListError as exc:
            error = str(exc)
            session.rollback()
        else:
            commit()
            flash(f"Saved the list {mailing_list.slug!r}.", "ok")
            return redirect(url_for("admin.lists"))
    status = 400 if error else 200
    return (
        render_template(
            "admin/list_form.html",
            values=values,
            error=error,
            new=False,
            languages=i18n.LANGUAGES,
        ),
        status,
    )
