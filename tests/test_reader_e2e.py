"""The reader's path over real HTTP, with the `ses` backend talking to moto in server mode.

Runs on SQLite and PostgreSQL (the `database_url` fixture), including 20 concurrent
signups of one address (a double click, twenty times over): one subscriber row and one
confirmation email.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import re
import threading
from urllib.parse import urlencode
from urllib.parse import urlsplit

import lxml.html
import pytest
import sqlalchemy as sa

from newsletter import mail
from newsletter import tokens
from newsletter.models import ConfirmationEmail
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus

CONFIRM_LINK = re.compile(r"https://news\.example\.com/confirm/[A-Za-z0-9_.\-]+")


@pytest.fixture
def app_config(app_config, moto_ses):
    """The production mail backend: SES over HTTP, pointed at moto."""
    app_config.pop("MAILER")
    app_config.update(MAIL_BACKEND="ses", SES_ENDPOINT_URL=moto_ses.url, SES_REGION="us-east-1")
    return app_config


def request(base: str, method: str, path: str, fields=None, headers=None):
    """Send one HTTP request to the live server; return (status, headers, body text)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    body = urlencode(fields) if fields is not None else None
    all_headers = dict(headers or {})
    if fields is not None:
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def parse(raw_data: str) -> email.message.EmailMessage:
    return email.message_from_bytes(raw_data.encode(), policy=email.policy.SMTP)


def read(db_session, statement):
    db_session.rollback()
    try:
        return db_session.scalar(statement)
    finally:
        db_session.rollback()


def test_reader_path_over_http_with_ses(app, live_server, moto_ses, make_list, db_session):
    make_list()
    status, headers, _ = request(
        live_server,
        "POST",
        "/subscribe",
        {"email": "Reader@Example.com", "name": "René Luçon", "list": "weekly"},
    )
    assert status == 303
    status, _, body = request(live_server, "GET", headers["Location"])
    assert status == 200 and "Check your inbox" in body

    (sent,) = moto_ses.sent_messages()
    assert sent["source"] == "news@example.com"
    assert "Reader@example.com" in sent["destinations"]
    message = parse(sent["raw_data"])
    assert message["To"].addresses[0].display_name == "René Luçon"
    assert message["List-Unsubscribe"] is None
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    link = CONFIRM_LINK.search(text).group(0)
    assert link in lxml.html.document_fromstring(html).xpath("//a/@href")
    path = urlsplit(link).path

    status, _, body = request(live_server, "GET", path)
    assert status == 200 and 'method="post"' in body
    assert read(db_session, sa.select(Subscription.status)) is SubscriptionStatus.PENDING

    status, _, body = request(live_server, "POST", path, {})
    assert status == 200 and "You are subscribed" in body
    subscription_id = read(db_session, sa.select(Subscription.id))
    assert read(db_session, sa.select(Subscription.status)) is SubscriptionStatus.ACTIVE

    # The List-Unsubscribe header of a real message, sent through SES (moto) and read back.
    url = tokens.unsubscribe_url(app.config["BASE_URL"], app.config["SECRET_KEY"], subscription_id)
    issue = mail.build_message(
        from_address="news@example.com",
        from_name="o11y weekly",
        to_address="Reader@example.com",
        subject="o11y news #42",
        text="An issue.",
        list_unsubscribe_url=url,
    )
    app.extensions["newsletter.mailer"].send(issue)
    received = parse(moto_ses.sent_messages()[-1]["raw_data"])
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header_url = received["List-Unsubscribe"].strip("<>")
    assert header_url == url and len(header_url) <= 74

    # What Gmail sends: a POST with no cookies and only the one-click field.
    for _ in range(2):
        status, headers, body = request(
            live_server,
            "POST",
            urlsplit(header_url).path,
            {"List-Unsubscribe": "One-Click"},
        )
        assert status == 200 and "Location" not in headers
        assert "You are unsubscribed" in body
    assert read(db_session, sa.select(Subscription.status)) is SubscriptionStatus.UNSUBSCRIBED
    reasons = db_session.scalars(
        sa.select(SubscriptionEvent.reason).order_by(SubscriptionEvent.id)
    ).all()
    db_session.rollback()
    assert reasons == ["signup", "confirm", "one-click"]
    assert len(moto_ses.sent_messages()) == 2  # the confirmation and the issue, nothing else


def test_twenty_concurrent_signups_of_one_address_send_one_email(
    app, live_server, moto_ses, make_list, db_session
):
    make_list()
    # Let every post through the per-address limit, so the repeat rule is what holds.
    app.config["SIGNUP_ADDRESS_LIMIT"] = 100
    threads = 20
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    lock = threading.Lock()

    def post():
        barrier.wait()
        status, _, _ = request(
            live_server,
            "POST",
            "/subscribe",
            {"email": "same@example.com", "name": "Same", "list": "weekly"},
        )
        with lock:
            statuses.append(status)

    pool = [threading.Thread(target=post) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    assert statuses == [303] * threads
    assert read(db_session, sa.select(sa.func.count(Subscriber.id))) == 1
    assert read(db_session, sa.select(sa.func.count(Subscription.id))) == 1
    # One email, and one of the day's three spent: the repeats wait for the first.
    assert read(db_session, sa.select(sa.func.count(ConfirmationEmail.id))) == 1
    sent = moto_ses.sent_messages()
    assert len(sent) == 1
    assert all("same@example.com" in m["destinations"] for m in sent)
