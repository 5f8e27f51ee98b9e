"""Development only: list and show the messages the outbox backend wrote."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import render_template

from newsletter.mail import OutboxMailer
from newsletter.web import mailer

bp = Blueprint("outbox", __name__, url_prefix="/outbox")


@bp.before_request
def _development_only():
    if current_app.config["ENV"] != "development" or not isinstance(mailer(), OutboxMailer):
        abort(404)


def _parse(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


@bp.get("/")
def index():
    """List the messages in the outbox, newest first."""
    messages = []
    for path in _outbox().list_messages()[:200]:
        msg = _parse(path)
        messages.append(
            {"name": path.stem, "to": msg["To"], "subject": msg["Subject"], "date": msg["Date"]}
        )
    return render_template("outbox/index.html", messages=messages)


def _outbox() -> OutboxMailer:
    backend = mailer()
    assert isinstance(backend, OutboxMailer)  # _development_only let the request in
    return backend


@bp.get("/<name>")
def show(name: str):
    """Show one message: headers, the text part, and the HTML part in a sandboxed frame."""
    paths = {p.stem: p for p in _outbox().list_messages()}
    if name not in paths:
        abort(404)
    msg = _parse(paths[name])
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    return render_template(
        "outbox/show.html",
        name=name,
        headers=list(msg.items()),
        text=text_part.get_content() if text_part else "",
        html=html_part.get_content() if html_part else None,
    )


@bp.get("/<name>/html")
def html(name: str):
    """Serve the HTML part alone, for the frame on the message page."""
    paths = {p.stem: p for p in _outbox().list_messages()}
    if name not in paths:
        abort(404)
    part = _parse(paths[name]).get_body(preferencelist=("html",))
    if part is None:
        abort(404)
    response = current_app.make_response(part.get_content())
    # Email HTML carries inline styles; let it render, but never run scripts.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; sandbox"
    )
    return response
