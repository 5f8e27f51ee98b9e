"""The reader's pages: front door, signup form, confirmation link, unsubscribe (RFC 8058).

None of these forms carries a CSRF token: the signup form is embedded on other sites, and
the confirm and unsubscribe URLs are themselves the secret (RFC 8058 forbids cookies).
Every page speaks the list's language; every dead end offers a way on.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import send_from_directory
from flask import url_for

from newsletter import i18n
from newsletter import lists
from newsletter import ratelimits
from newsletter import subscriptions
from newsletter import tokens
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.i18n import N_
from newsletter.models import MailingList
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus
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


class WhichList(NewsletterError):
    """A signup names no list, and there is not exactly one."""


def _field(name: str) -> str | None:
    value = request.form.get(name)
    if value is not None and len(value) > MAX_FIELD:
        raise FieldTooLong(N_("One of the fields is too long."))
    return value


def _printable(value: str | None) -> str:
    """What the reader typed, to show again: control characters (never valid) dropped."""
    return "".join(ch for ch in value or "" if ord(ch) >= 32 and ord(ch) != 127)


def _find_list(slug: str | None) -> MailingList | None:
    """Return the named list, the only list when none is named, or None (several lists)."""
    session = db_session()
    if not slug:
        every = lists.all_lists(session)
        mailing_list = every[0] if len(every) == 1 else None
    else:
        if len(slug) > 64:
            raise NotFound(N_("There is no such list."))
        mailing_list = lists.get_list(session, slug)
    if mailing_list is not None:
        i18n.set_page_language(mailing_list.language)
    return mailing_list


def _speak_for_signup_form() -> None:
    """Speak the language of the list the form names, else of the only list.

    With neither (several lists, none or an unknown one named) the page follows the
    browser's Accept-Language among the shipped languages (i18n.web_locale).
    """
    named = (request.form.get("list") or "")[:64] or None
    if named:
        try:
            _find_list(named)
            return
        except NewsletterError:  # an unknown list: fall back as if none were named
            pass
    _find_list(None)


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


def _signup_link(mailing_list: MailingList | None) -> tuple[str, str]:
    """The way on from a confirmation link that cannot be used: the list's form."""
    if mailing_list is None:  # the front door has every list's form
        return url_for("public.home"), i18n.gettext("Sign up again")
    return (
        url_for("public.subscribe_form", list=mailing_list.slug),
        i18n.gettext("Sign up again"),
    )


def _form_page(mailing_list: MailingList, values=None, errors=None, status: int = 200):
    return (
        render_template(
            "public/subscribe.html",
            mailing_list=mailing_list,
            values=values or {},
            errors=errors or {},
        ),
        status,
    )


@bp.get("/")
def home():
    """The front door: every list's signup form and archive; with one list, its form."""
    every = lists.all_lists(db_session())
    if len(every) == 1:
        i18n.set_page_language(every[0].language)
        return _form_page(every[0])
    return render_template("public/home.html", lists=every)


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page says."""
    return send_from_directory(
        current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400
    )


@bp.get("/subscribe")
def subscribe_form():
    """Show the signup form for a list (the only one when none is named)."""
    mailing_list = _find_list(request.args.get("list"))
    if mailing_list is None:
        return redirect(url_for("public.home"), 303)
    return _form_page(mailing_list)


@bp.post("/subscribe")
def subscribe():
    """Record a signup, then send the browser to "check your inbox" (303: no re-post).

    A mistake in the form shows the form again (422) with the message beside the field and
    what the reader typed kept. Whatever the address's state, the answer is the same page.
    """
    limit = _ip_limited()
    if not limit.allowed:
        _speak_for_signup_form()
        return error_page(
            429,
            None,
            N_("Too many signups from your network just now. Please try again later."),
            **{"Retry-After": str(limit.retry_after)},
        )
    email = _field("email")
    name = _field("name")
    slug = _field("list")
    honeypot = _field(HONEYPOT)
    mailing_list = _find_list(slug)
    if mailing_list is None:
        raise WhichList(N_("Which list? The form is missing the list field."))
    done = redirect(url_for("public.check_inbox", list=mailing_list.slug), 303)
    if honeypot:
        log.info("signup honeypot filled from %s", client_ip())
        return done
    source, form = _source()
    try:
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
    except subscriptions.SignupError as exc:
        message = i18n.gettext(exc.message)
        if exc.detail and i18n.current_language().startswith("en"):
            message = exc.detail  # the validator's own words say exactly what is wrong
        values = {"email": _printable(email), "name": _printable(name)}
        return _form_page(mailing_list, values, {exc.field: message}, 422)
    commit()
    log.info("signup on %s: %s", mailing_list.slug, result.outcome)
    return done


@bp.get("/subscribe/check-your-inbox")
def check_inbox():
    """The page after a signup: look for the confirmation email."""
    mailing_list = _find_list(request.args.get("list"))
    if mailing_list is None:
        return redirect(url_for("public.home"), 303)
    return render_template("public/check_inbox.html", mailing_list=mailing_list)


def _link_problem(exc: tokens.InvalidToken, session, confirming: bool):
    """The page for a link that cannot be used: a friendly 200 when all is well already."""
    subscription: Subscription | None = None
    if isinstance(exc, subscriptions.TokenAlreadyUsed):
        subscription = exc.subscription
    elif isinstance(exc, tokens.ExpiredToken) and exc.subscription_id is not None:
        subscription = session.get(Subscription, exc.subscription_id)
    mailing_list = subscription.list if subscription is not None else None
    if mailing_list is not None:
        i18n.set_page_language(mailing_list.language)
    if confirming and subscription is not None and subscription.status is SubscriptionStatus.ACTIVE:
        return render_template("public/confirm.html", mailing_list=mailing_list, state="already")
    return error_page(exc.status_code, None, str(exc), link=_signup_link(mailing_list))


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    """Show the one Confirm button; GET never confirms (mail scanners follow links)."""
    session = db_session()
    try:
        subscription = subscriptions.pending_for_token(session, token, current_app.config)
    except tokens.InvalidToken as exc:
        return _link_problem(exc, session, confirming=True)
    i18n.set_page_language(subscription.list.language)
    return render_template(
        "public/confirm.html", mailing_list=subscription.list, token=token, state="pending"
    )


@bp.post("/confirm/<token>")
def confirm(token: str):
    """Confirm the subscription the link is for (a second time: "already subscribed")."""
    session = db_session()
    try:
        subscription = subscriptions.confirm(
            session, token, ip=client_ip(), config=current_app.config
        )
    except tokens.InvalidToken as exc:
        session.rollback()
        return _link_problem(exc, session, confirming=True)
    mailing_list = subscription.list
    i18n.set_page_language(mailing_list.language)
    commit()
    return render_template("public/confirm.html", mailing_list=mailing_list, state="done")


def _unsubscribe_problem(exc: NewsletterError):
    if isinstance(exc, subscriptions.SubscriptionGone):
        # Erased: the reader is off every list already, which is what they came for.
        return render_template("public/unsubscribe.html", gone=True, mailing_list=None)
    return error_page(exc.status_code, None, str(exc))


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """Show the Unsubscribe button (or, once unsubscribed, the way back)."""
    try:
        subscription = subscriptions.subscription_for_unsubscribe_token(
            db_session(), token, current_app.config
        )
    except (tokens.InvalidToken, subscriptions.SubscriptionGone) as exc:
        return _unsubscribe_problem(exc)
    i18n.set_page_language(subscription.list.language)
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
    try:
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
    except (tokens.InvalidToken, subscriptions.SubscriptionGone) as exc:
        return _unsubscribe_problem(exc)
    assert subscription is not None  # resubscribe answers with the reader's subscription
    mailing_list = subscription.list
    i18n.set_page_language(mailing_list.language)
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
