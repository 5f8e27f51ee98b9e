"""Development only: a live preview of an issue file, re-rendered when the file changes."""

from __future__ import annotations

import os

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request

from newsletter.composer import preview as preview_core
from newsletter.web import db_session

bp = Blueprint("preview", __name__, url_prefix="/preview")

# The issue's HTML carries inline styles; let it render in a frame, never run anything.
FRAME_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; sandbox"
)


@bp.before_request
def _development_only():
    if current_app.config["ENV"] != "development":
        abort(404)


def _root() -> str:
    # Issue files are read only from the folder the server runs in (or PREVIEW_ROOT).
    return current_app.config.get("PREVIEW_ROOT") or os.getcwd()


def _issue_path():
    name = request.args.get("file", "").strip()
    if not name:
        abort(404)
    return name, preview_core.resolve_issue_path(_root(), name)


def _render(path):
    chosen = preview_core.choose_list(db_session(), request.args.get("list") or None)
    state = preview_core.live_preview(
        path, chosen.mailing_list, base_url=current_app.config["BASE_URL"]
    )
    return chosen, state


@bp.get("")
def page():
    """Show an issue at desktop and phone widths side by side; it follows the file's edits."""
    if not request.args.get("file"):
        return render_template("preview/index.html", files=preview_core.issue_files(_root()))
    name, path = _issue_path()
    chosen, state = _render(path)
    return render_template(
        "preview/show.html",
        name=name,
        list_slug=request.args.get("list") or "",
        note=chosen.note,
        state=state,
    )


@bp.get("/html")
def html():
    """Serve the issue's HTML as a reader gets it, for the frames on the preview page."""
    _, path = _issue_path()
    _, state = _render(path)
    if state.html is None:
        abort(404)
    response = current_app.make_response(state.html)
    response.headers["Content-Security-Policy"] = FRAME_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/version")
def version():
    """Return the file's fingerprint; the page reloads itself when it changes."""
    _, path = _issue_path()
    response = jsonify(version=preview_core.file_version(path))
    response.headers["Cache-Control"] = "no-store"
    return response
