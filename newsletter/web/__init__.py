"""The web edge: blueprints, the per-request database session, error pages, security headers."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
import sqlalchemy.orm as so
from flask import Flask
from flask import current_app
from flask import g
from flask import render_template
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter import i18n
from newsletter import mail
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.i18n import N_

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'; object-src 'none'"
)


def database() -> Database:
    """Return the application's database."""
    return current_app.extensions["newsletter.db"]


def mailer() -> mail.Mailer:
    """Return the application's mail backend."""
    return current_app.extensions["newsletter.mailer"]


def db_session() -> so.Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = database().session()
    return g.db_session


def commit() -> None:
    """Commit this request's transaction, then send the mail it queued."""
    session = db_session()
    session.commit()
    mail.send_deferred(session, mailer())


def client_ip() -> str:
    """Return the client's IP address (ProxyFix applies NEWSLETTER_PROXY_COUNT)."""
    return request.remote_addr or "unknown"


def _close_session(exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        mail.discard_deferred(session)
        try:
            session.rollback()
        finally:
            session.close()


def _security_headers(response: Any) -> Any:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return response


# Titles of the error pages, and what to say when the exception brings no words of its own.
TITLES = {
    400: N_("Something is not right"),
    403: N_("Not allowed"),
    404: N_("Page not found"),
    405: N_("This address does not take that request"),
    410: N_("This link has been used"),
    413: N_("Too much at once"),
    422: N_("Something is not right"),
    429: N_("Too many requests"),
    500: N_("Something went wrong"),
    503: N_("Temporarily unavailable"),
}
MESSAGES = {
    400: N_("We could not understand this request."),
    403: N_("You are not allowed to see this page."),
    404: N_("There is nothing at this address. The link may be incomplete, or the page moved."),
    405: N_("This address cannot be used this way. Start again from the home page."),
    413: N_("What you sent is larger than we accept."),
    429: N_("Too many requests just now. Please try again in a few minutes."),
    500: N_("Please try again later."),
    503: N_(
        "We cannot reach our database right now. Nothing was lost; please try again in a minute."
    ),
}


def error_page(
    status: int,
    title: str | None,
    message: str,
    *,
    link: tuple[str, str] | None = None,
    **headers: str,
) -> Any:
    """Render the error page with a status code, a way on (`link`: url, label) and home.

    Title and message are catalogue strings: they are shown translated when the
    catalogue has them (domain errors mark theirs with i18n.N_).
    """
    title = title or TITLES.get(status, TITLES[400])
    body = render_template(
        "errors/error.html",
        status=status,
        title=i18n.gettext(title),
        message=i18n.gettext(message),
        link=link,
    )
    response = current_app.make_response((body, status))
    response.headers.update(headers)
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(NewsletterError)
    def _domain_error(exc: NewsletterError) -> Any:
        return error_page(exc.status_code, None, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:
            return exc
        own_words = exc.description and exc.description != type(exc).description
        message = exc.description if own_words else MESSAGES.get(exc.code, exc.name)
        response = error_page(exc.code, TITLES.get(exc.code, exc.name), message or exc.name)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    @app.errorhandler(sqlalchemy.exc.InterfaceError)
    def _database_down(exc: Exception) -> Any:
        log.error("database unavailable: %s", exc)
        response = error_page(503, None, MESSAGES[503])
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(500, None, MESSAGES[500])


def init_app(app: Flask) -> None:
    """Register blueprints, the session teardown, error pages and headers."""
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count
        )

    from newsletter.web import admin
    from newsletter.web import archive
    from newsletter.web import health
    from newsletter.web import metrics
    from newsletter.web import outbox
    from newsletter.web import preview
    from newsletter.web import public
    from newsletter.web import webhooks

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(outbox.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(preview.bp)
    webhooks.init_app(app)
    admin.init_app(app)

    app.teardown_appcontext(_close_session)
    app.after_request(_security_headers)
    _register_error_handlers(app)
