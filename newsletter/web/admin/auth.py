"""Login and logout of the editors' console."""

from __future__ import annotations

import hashlib
import logging

from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from newsletter import accounts
from newsletter import ratelimits
from newsletter.web import client_ip
from newsletter.web import commit
from newsletter.web import database
from newsletter.web import db_session
from newsletter.web import error_page
from newsletter.web.admin import bp
from newsletter.web.admin import current_user
from newsletter.web.admin import safe_next
from newsletter.web.admin import sign_in
from newsletter.web.admin import sign_out

log = logging.getLogger(__name__)


def _limited(email: str):
    """Count a login attempt per IP and per account; return the limit that was hit, if any."""
    config = current_app.config
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    for key, limit in (
        (f"login-ip:{client_ip()}", config["LOGIN_IP_LIMIT"]),
        (f"login-account:{account}", config["LOGIN_ACCOUNT_LIMIT"]),
    ):
        hit = ratelimits.hit_alone(database(), key, limit=limit, window=config["LOGIN_WINDOW"])
        if not hit.allowed:
            return hit
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; check the address and password."""
    next_url = request.values.get("next")
    if request.method == "GET":
        if current_user() is not None:
            return redirect(safe_next(next_url))
        return render_template("admin/login.html", next_url=next_url, error=None, email="")
    email = request.form.get("email", "")[:320]
    password = request.form.get("password", "")
    limit = _limited(email)
    if limit is not None:
        log.warning("login rate limit hit from %s", client_ip())
        return error_page(
            429,
            "Too many attempts",
            "Too many login attempts. Wait a few minutes, then try again.",
            **{"Retry-After": str(limit.retry_after)},
        )
    user = accounts.authenticate(db_session(), email, password)
    if user is None:
        log.info("failed login from %s", client_ip())
        return (
            render_template(
                "admin/login.html",
                next_url=next_url,
                error="That address and password do not match an editor account.",
                email=email,
            ),
            401,
        )
    commit()
    sign_in(user)
    return redirect(safe_next(next_url))


@bp.post("/logout")
def logout():
    """End the session and go back to the login page."""
    sign_out()
    return redirect(url_for("admin.login"))
