"""The reader's pages: signup form, confirmation link, unsubscribe link (RFC 8058 one-click).

None of these forms carries a CSRF token: the signup form is embedded on other sites, and
the confirm and unsubscribe URLs are themselves the secret (RFC 8058 forbids cookies).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import render_template
from flask import request

from newsletter import i18n
from newsletter import lists
from newsletter import ratelimits
from newsletter import subscriptions
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.web import client_ip
from newsletter.web import commit
from newsletter.web import database
from newsletter.web import db_session
from newsletter.web import error_page

log = logging.getLogger(__name__)

bp = Blueprint("public", __name__)

# Field names of the signup form; "website" is the honeypot a person never sees.
HONEYPOT = "website"
# Longest value accepted in any signup field: a 10 KB field is refused, not truncated.
MAX_FIELD = 1000


class FieldTooLong(NewsletterError):
    status_code = 413


def _field(name: str) -> str | None:
    value = request.form.get(name)
    if value is not None and len(value) > MAX_FIELD:
        raise FieldTooLong(f"The {name} field is too long.")
    return value


def _list_or_404(slug: str | None):
    if not slug:
        raise NewsletterError("Which list? The form is missing the list field.")
    if len(slug) > 64:
        raise NotFound("There is no such list.")
    mailing_list = lists.get_list(db_session(), slug)
    i18n.set_page_language(mailing_list.language)
    return mailing_list


def _ip_limited():
    # Its own transaction, and before the request's (SQLite takes the write lock at BEGIN).
    return ratelimits.hit_alone(
        database(),
        f"signup-ip:{client_ip()}",
        limit=current_app.config["SIGNUP_IP_LIMIT"],
        window=current_app.config["SIGNUP_IP_WINDOW"],
    )


def _source() -> tuple[str, str]:
    """Return (source, form) for the consent record: our own page or an embedded form."""
    referrer = (request.referrer or "")[: subscriptions.MAX_FORM_LENGTH]
    own_host = urlsplit(current_app.config["BASE_URL"]).netloc
    origin = request.headers.get("Origin") or referrer
    if not origin or urlsplit(origin).netloc in {own_host, request.host}:
        return "form", referrer or "subscribe page"
    return "embed", referrer or origin


@bp.get("/subscribe")
def subscribe_form():
    """Show the signup form for a list."""
    mailing_list = _list_or_404(request.args.get("list"))
    return render_template("public/subscribe.html", mailing_list=mailing_list)


@bp.post("/subscribe")
def subscribe():
    """Record a signup and answer "check your inbox", whatever the address's state."""
    limit = _ip_limited()
    if not limit.allowed:
        return error_page(
            429,
            "Too many requests",
            "Too many signups from your network just now. Please try again later.",
            **{"Retry-After": str(limit.retry_after)},
        )
    email = _field("email")
    name = _field("name")
    slug = _field("list")
    honeypot = _field(HONEYPOT)
    mailing_list = _list_or_404(slug)
    if honeypot:
        log.info("signup honeypot filled from %s", client_ip())
        return render_template("public/check_inbox.html", mailing_list=mailing_list)
    source, form = _source()
    result = subscriptions.subscribe(
        db_session(),
        mailing_list,
        email=email,
        name=name,
        source=source,
        ip=client_ip(),
        form=form,
        config=current_app.config,
    )
    commit()
    log.info("signup on %s: %s", mailing_list.slug, result.outcome)
    return render_template("public/check_inbox.html", mailing_list=mailing_list)


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    """Show the one Confirm button; GET never confirms (mail scanners follow links)."""
    subscription = subscriptions.pending_for_token(db_session(), token, current_app.config)
    return render_template(
        "public/confirm.html", mailing_list=subscription.list, token=token, done=False
    )


@bp.post("/confirm/<token>")
def confirm(token: str):
    """Confirm the subscription the link is for."""
    subscription = subscriptions.confirm(
        db_session(), token, ip=client_ip(), config=current_app.config
    )
    mailing_list = subscription.list
    commit()
    return render_template("public/confirm.html", mailing_list=mailing_list, done=True)


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """Show the Unsubscribe button (or, once unsubscribed, the way back)."""
    subscription = subscriptions.subscription_for_unsubscribe_token(
        db_session(), token, current_app.config
    )
    return render_template(
        "public/unsubscribe.html",
        subscription=subscription,
        mailing_list=subscription.list,
        token=token,
        outcome=None,
    )


@bp.post("/u/<token>")
def unsubscribe(token: str):
    """Unsubscribe at once: the page's button and RFC 8058 one-click (200, never a redirect)."""
    try:
        action = request.form.get("action")
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
    except Exception:  # an unparsable body must not stop the unsubscribe
        action, one_click = None, False
    session = db_session()
    outcome = None
    if action == "resubscribe":
        result = subscriptions.resubscribe(
            session, token, ip=client_ip(), config=current_app.config
        )
        subscription, outcome = result.subscription, result.outcome
    else:
        subscription = subscriptions.unsubscribe(
            session,
            token,
            reason="one-click" if one_click or action is None else "unsubscribe",
            ip=client_ip(),
            config=current_app.config,
        )
    mailing_list = subscription.list
    status = subscription.status
    commit()
    return render_template(
        "public/unsubscribe.html",
        subscription=subscription,
        status=status,
        mailing_list=mailing_list,
        token=token,
        outcome=outcome,
    )
