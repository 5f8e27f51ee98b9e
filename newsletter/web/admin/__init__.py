"""The editors' console under /admin: login required on every page, CSRF on every form.

The blueprint lives here; each module (auth, dashboard, subscribers, imports, issues,
lists) adds its views to it. Views parse input, call one function of the core, commit
through newsletter.web.commit, and render.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask_wtf.csrf import CSRFProtect

from newsletter import accounts
from newsletter.models import User
from newsletter.web import db_session

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()

# Views reachable without a login session (everything else redirects to the login page).
PUBLIC_ENDPOINTS = frozenset({"admin.login"})
SESSION_USER = "admin_uid"
SESSION_PROOF = "admin_proof"


def current_user() -> User:
    """Return the editor signed in for this request (every admin view has one)."""
    return g.admin_user


def safe_next(target: str | None) -> str:
    """Return a redirect target inside the console, never another site (open redirect)."""
    if target:
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and target.startswith("/admin")
            and "\\" not in target
        ):
            return target
    return url_for("admin.dashboard")


def sign_in(user: User) -> None:
    """Start a fresh login session for the editor (a new cookie: no session fixation)."""
    session.clear()
    session.permanent = True
    session[SESSION_USER] = user.id
    session[SESSION_PROOF] = accounts.session_proof(current_app.config["SECRET_KEY"], user)


def sign_out() -> None:
    """End the login session."""
    session.clear()


@bp.before_request
def _require_login() -> Any:
    # CSRF first: a forged POST is refused (400) even from a signed-in browser.
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()
    user = accounts.user_for_session(
        db_session(),
        current_app.config["SECRET_KEY"],
        session.get(SESSION_USER),
        session.get(SESSION_PROOF),
    )
    g.admin_user = user
    if user is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if SESSION_USER in session:
            session.clear()
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("admin.login", next=target))
    return None


@bp.after_request
def _no_store(response: Any) -> Any:
    # Console pages show personal data: keep them out of shared caches and the back button.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.context_processor
def _admin_context() -> dict[str, Any]:
    return {"admin_user": g.get("admin_user")}


def init_app(app: Flask) -> None:
    """Register the console and its CSRF protection (only the console's forms need it)."""
    # Reader forms are embedded on other sites and the webhook is signed: CSRF tokens apply
    # to the console alone, checked in _require_login.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # A token lives as long as the login session, not an hour: editors keep pages open.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", 12 * 3600)
    csrf.init_app(app)

    from newsletter.web.admin import auth  # noqa: F401
    from newsletter.web.admin import dashboard  # noqa: F401
    from newsletter.web.admin import imports  # noqa: F401
    from newsletter.web.admin import issues  # noqa: F401
    from newsletter.web.admin import lists  # noqa: F401
    from newsletter.web.admin import subscribers  # noqa: F401

    app.register_blueprint(bp)
