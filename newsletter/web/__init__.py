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

from newsletter import mail
from newsletter.db import Database
from newsletter.errors import NewsletterError

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


def error_page(status: int, title: str, message: str, **headers: str) -> Any:
    """Render the error page with a status code."""
    response = current_app.make_response(
        (render_template("errors/error.html", status=status, title=title, message=message), status)
    )
    response.headers.update(headers)
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(NewsletterError)
    def _domain_error(exc: NewsletterError) -> Any:
        return error_page(exc.status_code, "Something is not right", str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:
            return exc
        return error_page(exc.code, exc.name, exc.description or exc.name)

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    @app.errorhandler(sqlalchemy.exc.InterfaceError)
    def _database_down(exc: Exception) -> Any:
        log.error("database unavailable: %s", exc)
        return error_page(
            503,
            "Temporarily unavailable",
            "We cannot reach our database right now. Nothing was lost; please try again in "
            "a minute.",
            **{"Retry-After": "30"},
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(500, "Something went wrong", "Please try again later.")


def init_app(app: Flask) -> None:
    """Register blueprints, the session teardown, error pages and headers."""
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    from newsletter.web import admin
    from newsletter.web import archive
    from newsletter.web import health
    from newsletter.web import outbox
    from newsletter.web import preview
    from newsletter.web import public
    from newsletter.web import webhooks

    app.register_blueprint(health.bp)
    app.register_blueprint(outbox.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(preview.bp)
    webhooks.init_app(app)
    admin.init_app(app)

    app.teardown_appcontext(_close_session)
    app.after_request(_security_headers)
    _register_error_handlers(app)
