"""The reader's pages over the test client: signup, confirm, unsubscribe, bad input, HTML."""

from __future__ import annotations

import email
import email.policy
import re

import html5lib
import pytest
import sqlalchemy as sa

from newsletter import tokens
from newsletter.models import ConfirmationEmail
from newsletter.models import RateLimitCounter
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus

CONFIRM_PATH = re.compile(r"https://news\.example\.com(/confirm/[A-Za-z0-9_.\-]+)")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}


@pytest.fixture
def weekly(make_list):
    return make_list()


def assert_valid_page(response) -> None:
    """The page parses as strict HTML5 and carries the security headers."""
    assert response.mimetype == "text/html"
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(response.data)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp
    body = response.get_data(as_text=True)
    assert "<script" not in body and "<style" not in body and " style=" not in body


def post_signup(client, follow_redirects=False, **fields):
    data = {"email": "reader@example.com", "name": "René Luçon", "list": "weekly"}
    data.update(fields)
    return client.post(
        "/subscribe",
        data={k: v for k, v in data.items() if v is not None},
        follow_redirects=follow_redirects,
    )


def confirm_path(outbox, index=-1) -> str:
    mime = email.message_from_bytes(outbox.messages[index].as_bytes(), policy=email.policy.SMTP)
    return CONFIRM_PATH.search(mime.get_body(preferencelist=("plain",)).get_content()).group(1)


def read(db_session, statement):
    """Read one value in a short transaction (on SQLite an open one would block the app)."""
    db_session.rollback()
    try:
        return db_session.scalar(statement)
    finally:
        db_session.rollback()


def status(db_session):
    return read(db_session, sa.select(Subscription.status))


def stored(db_session) -> dict[str, int]:
    """Count the rows a bad request must not change."""
    return {
        model.__tablename__: read(db_session, sa.select(sa.func.count()).select_from(model))
        for model in (Subscriber, Subscription, SubscriptionEvent, ConfirmationEmail)
    }


def test_signup_form_page(client, weekly):
    response = client.get("/subscribe?list=weekly")
    assert response.status_code == 200
    assert_valid_page(response)
    body = response.get_data(as_text=True)
    assert 'name="email"' in body and 'name="website"' in body and 'value="weekly"' in body
    assert "csrf" not in body.lower()  # embeddable: other sites post this form as it is


def test_whole_path_with_the_test_client(client, weekly, outbox, db_session):
    posted = post_signup(client)
    # POST -> 303 -> a page of its own: reloading it posts nothing again.
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/subscribe/check-your-inbox?list=weekly"
    response = client.get(posted.headers["Location"])
    assert response.status_code == 200
    assert_valid_page(response)
    assert b"Check your inbox" in response.data

    path = confirm_path(outbox)
    page = client.get(path)
    assert page.status_code == 200
    assert_valid_page(page)
    assert status(db_session) is SubscriptionStatus.PENDING

    done = client.post(path)
    assert done.status_code == 200
    assert_valid_page(done)
    assert b"You are subscribed" in done.data
    assert status(db_session) is SubscriptionStatus.ACTIVE
    subscription_id = read(db_session, sa.select(Subscription.id))

    unsub = (
        f"/u/{tokens.make_unsubscribe_token('test-secret-key-0123456789abcdef', subscription_id)}"
    )
    page = client.get(unsub)
    assert page.status_code == 200
    assert_valid_page(page)
    assert b"Unsubscribe" in page.data
    assert status(db_session) is SubscriptionStatus.ACTIVE

    left = client.post(unsub, data={"action": "unsubscribe"})
    assert left.status_code == 200
    assert_valid_page(left)
    assert b"You are unsubscribed" in left.data and b'value="resubscribe"' in left.data

    back = client.post(unsub, data={"action": "resubscribe"})
    assert back.status_code == 200
    assert_valid_page(back)
    assert b"Welcome back" in back.data
    assert status(db_session) is SubscriptionStatus.ACTIVE


def test_same_answer_whatever_the_address_state(client, weekly, make_subscriber, outbox):
    make_subscriber(weekly, email="active@example.com")
    make_subscriber(weekly, email="bounced@example.com", status=SubscriptionStatus.BOUNCED)
    pages = {
        address: post_signup(client, follow_redirects=True, email=address).get_data(as_text=True)
        for address in ("new@example.com", "active@example.com", "bounced@example.com")
    }
    assert len(set(pages.values())) == 1
    assert [m.recipient for m in outbox.messages] == ["new@example.com"]


def test_embedded_form_posts_from_another_site(client, weekly, db_session):
    response = client.post(
        "/subscribe",
        data={"email": "reader@example.com", "list": "weekly"},
        headers={"Origin": "https://blog.example.org", "Referer": "https://blog.example.org/p"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/subscribe/check-your-inbox?list=weekly"
    row = db_session.execute(
        sa.select(Subscription.source, Subscription.consent_form, Subscription.consent_ip)
    ).one()
    db_session.rollback()
    assert tuple(row) == ("embed", "https://blog.example.org/p", "127.0.0.1")


def test_get_on_the_confirmation_link_never_confirms(client, weekly, outbox, db_session):
    post_signup(client)
    path = confirm_path(outbox)
    for _ in range(3):
        assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200
    assert status(db_session) is SubscriptionStatus.PENDING


@pytest.mark.parametrize(
    "body",
    [
        {"data": "List-Unsubscribe=One-Click", "content_type": "application/x-www-form-urlencoded"},
        {"data": {"List-Unsubscribe": "One-Click"}, "content_type": "multipart/form-data"},
        {"data": b"", "content_type": None},
        {"data": b"\xff\xfe garbage \x00", "content_type": "multipart/form-data; boundary=x"},
        {"data": b"{not json", "content_type": "application/json"},
    ],
    ids=["urlencoded", "multipart", "empty", "unparsable-multipart", "json"],
)
def test_one_click_unsubscribe(client, weekly, make_subscriber, db_session, body):
    subscription = make_subscriber(weekly)
    path = (
        f"/u/{tokens.make_unsubscribe_token('test-secret-key-0123456789abcdef', subscription.id)}"
    )
    for _ in range(2):  # idempotent: the same answer, nothing more changes
        response = client.post(path, **body)
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert b"You are unsubscribed" in response.data
    assert status(db_session) is SubscriptionStatus.UNSUBSCRIBED
    events = db_session.scalars(sa.select(SubscriptionEvent.reason)).all()
    db_session.rollback()
    assert events == ["one-click"]


def test_one_click_without_cookies_or_csrf(client, weekly, make_subscriber, app):
    subscription = make_subscriber(weekly)
    client.delete_cookie("session")
    path = f"/u/{tokens.make_unsubscribe_token(app.config['SECRET_KEY'], subscription.id)}"
    response = client.post(path, data="List-Unsubscribe=One-Click", content_type=None)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_list_unsubscribe_url_fits_one_header_line(app, weekly, make_subscriber):
    from newsletter.mail import build_message

    subscription = make_subscriber(weekly)
    # Worst case: a subscription id in the billions still fits.
    for subscription_id in (subscription.id, 9_999_999_999):
        url = tokens.unsubscribe_url(
            app.config["BASE_URL"], app.config["SECRET_KEY"], subscription_id
        )
        assert url.startswith("https://news.example.com/u/")
        assert len(url) <= 74
        raw = build_message(
            from_address="news@example.com",
            from_name="o11y weekly",
            to_address="reader@example.com",
            subject="Grüße",
            text="hi",
            list_unsubscribe_url=url,
        ).as_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ")
        # Folded at most, never RFC 2047-encoded (which would hide the one-click button).
        assert f"List-Unsubscribe: <{url}>\r\n" in unfolded + "\r\n"
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in unfolded


def test_too_many_posts_from_one_ip_get_a_429_page(client, app, weekly, outbox):
    app.config["SIGNUP_IP_LIMIT"] = 3
    statuses = [post_signup(client, email=f"r{i}@example.com").status_code for i in range(5)]
    assert statuses == [303, 303, 303, 429, 429]
    response = post_signup(client, email="late@example.com")
    assert_valid_page(response)
    assert int(response.headers["Retry-After"]) > 0
    assert len(outbox.messages) == 3


def test_database_down_gives_a_503_page_on_subscribe(app_config):
    from newsletter import create_app

    app_config["DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    client = create_app(app_config).test_client()
    for response in (client.get("/subscribe?list=weekly"), post_signup(client)):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert_valid_page(response)


TEN_KB = "x" * 10_240


def _tamper(token: str) -> str:
    return token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"email": "not-an-address"}, 422, "not valid"),
        ({"email": "reader@@example.com"}, 422, "not valid"),
        ({"email": "<script>alert(1)</script>@example.com"}, 422, "not valid"),
        ({"email": "reader@example.com\r\nBcc: victim@example.com"}, 422, "line breaks"),
        ({"email": "reader@example.com, other@example.com"}, 422, "not valid"),
        ({"email": "reader@[127.0.0.1]"}, 422, "not valid"),
        ({"email": "reader@localhost"}, 422, "not valid"),
        ({"email": TEN_KB + "@example.com"}, 413, "too long"),
        ({"name": TEN_KB}, 413, "too long"),
        ({"list": TEN_KB}, 413, "too long"),
        ({"name": "René\r\nBcc: victim@example.com"}, 422, "line breaks"),
        ({"name": "René\x00"}, 422, "control characters"),
        ({"email": None}, 422, "enter your email"),
        ({"email": "   "}, 422, "enter your email"),
        ({"list": "no-such-list"}, 404, "no list"),
    ],
    ids=lambda value: repr(value)[:40] if not isinstance(value, int) else str(value),
)
def test_bad_signup_input(client, weekly, outbox, db_session, fields, status, message):
    before = stored(db_session)
    response = post_signup(client, **fields)
    assert response.status_code == status
    assert message.lower() in response.get_data(as_text=True).lower()
    assert_valid_page(response)
    assert stored(db_session) == before
    assert outbox.messages == []


def test_filled_honeypot_gets_the_normal_page_and_nothing_happens(
    client, weekly, outbox, db_session
):
    before = stored(db_session)
    response = post_signup(client, website="https://spam.example.net")
    assert response.status_code == 303
    honest = post_signup(client, email="other@example.com")
    assert response.headers["Location"] == honest.headers["Location"]
    after = stored(db_session)
    # Only the second, honest signup left rows and sent mail.
    assert after["subscriber"] == before["subscriber"] + 1
    assert read(db_session, sa.select(Subscriber.email)) == "other@example.com"
    assert [m.recipient for m in outbox.messages] == ["other@example.com"]


def test_unknown_list_page_is_a_404(client):
    response = client.get("/subscribe?list=nope")
    assert response.status_code == 404
    assert_valid_page(response)


@pytest.mark.parametrize(
    ("make_path", "expected_status", "expected_text"),
    [
        pytest.param(lambda secret: "/confirm/not-a-token", 400, "not valid", id="forged-confirm"),
        pytest.param(None, 400, "not valid", id="tampered-confirm"),
        pytest.param(
            lambda secret: "/confirm/" + tokens.make_confirm_token("another-secret", 1, "nonce"),
            400,
            "not valid",
            id="confirm-signed-with-another-key",
        ),
        pytest.param(
            lambda secret: "/confirm/" + tokens.make_confirm_token(secret, 1, "old-nonce"),
            410,
            "used already or was replaced",
            id="confirm-with-a-replaced-nonce",
        ),
        pytest.param(
            lambda secret: "/confirm/" + tokens.make_confirm_token(secret, 999, "nonce"),
            400,
            "not valid",
            id="confirm-for-an-unknown-subscription",
        ),
        pytest.param(lambda secret: "/confirm/" + "A" * 10_000, 400, "not valid", id="10kb-token"),
        pytest.param(
            lambda secret: "/u/" + tokens.make_unsubscribe_token(secret, 1)[:-2] + "xx",
            400,
            "not valid",
            id="tampered-unsubscribe",
        ),
        pytest.param(
            lambda secret: "/u/" + tokens.make_confirm_token(secret, 1, "n"),
            400,
            "not valid",
            id="confirm-token-used-to-unsubscribe",
        ),
        pytest.param(lambda secret: "/u/1", 400, "not valid", id="forged-unsubscribe"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_tokens(
    client, app, weekly, outbox, db_session, make_path, expected_status, expected_text, method
):
    post_signup(client)
    if make_path is None:
        path = _tamper(confirm_path(outbox))
    else:
        path = make_path(app.config["SECRET_KEY"])
    before = stored(db_session)
    response = client.open(path, method=method, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == expected_status
    assert expected_text in response.get_data(as_text=True)
    assert_valid_page(response)
    assert stored(db_session) == before
    assert status(db_session) is SubscriptionStatus.PENDING


def test_reused_confirmation_link(client, weekly, outbox, db_session):
    post_signup(client)
    path = confirm_path(outbox)
    assert client.post(path).status_code == 200
    before = stored(db_session)
    for method in ("GET", "POST"):
        # Already confirmed is a success: a friendly page, not an error.
        response = client.open(path, method=method)
        assert response.status_code == 200
        assert b"This link was used already" in response.data
        assert b"You are subscribed" in response.data
        assert_valid_page(response)
    assert stored(db_session) == before


def test_expired_confirmation_link(client, app, weekly, outbox, db_session, monkeypatch):
    import itsdangerous.timed

    post_signup(client)
    path = confirm_path(outbox)
    later = itsdangerous.timed.time.time() + app.config["CONFIRM_MAX_AGE"] + 1
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    for method in ("GET", "POST"):
        response = client.open(path, method=method)
        assert response.status_code == 400
        assert b"expired" in response.data
        # What to do: the list's signup form, and the way home.
        assert b'href="/subscribe?list=weekly"' in response.data
        assert b'href="/"' in response.data
        assert_valid_page(response)
    assert status(db_session) is SubscriptionStatus.PENDING


def test_erased_subscription_link_is_gone(client, app, weekly, make_subscriber, db_session):
    subscription = make_subscriber(weekly)
    path = f"/u/{tokens.make_unsubscribe_token(app.config['SECRET_KEY'], subscription.id)}"
    db_session.delete(subscription)
    db_session.commit()
    db_session.rollback()
    for method in ("GET", "POST"):
        # Erased: off every list already, which is what the reader came for.
        response = client.open(path, method=method, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert b"no longer on our lists" in response.data
        assert_valid_page(response)


def test_rate_limit_counters_never_store_addresses(client, weekly, db_session):
    post_signup(client, email="private@example.com")
    keys = db_session.scalars(sa.select(RateLimitCounter.key)).all()
    db_session.rollback()
    assert any(k.startswith("signup-address:") for k in keys)
    assert not any("private" in k for k in keys)


@pytest.mark.parametrize(
    ("state", "heading"),
    [
        (SubscriptionStatus.ACTIVE, "Unsubscribe from o11y weekly?"),
        (SubscriptionStatus.PENDING, "Unsubscribe from o11y weekly?"),
        (SubscriptionStatus.UNSUBSCRIBED, "You are unsubscribed"),
        (SubscriptionStatus.BOUNCED, "No more email"),
        (SubscriptionStatus.COMPLAINED, "No more email"),
    ],
)
def test_unsubscribe_page_in_every_state(client, app, weekly, make_subscriber, state, heading):
    subscription = make_subscriber(weekly, status=state)
    response = client.get(
        f"/u/{tokens.make_unsubscribe_token(app.config['SECRET_KEY'], subscription.id)}"
    )
    assert response.status_code == 200
    assert_valid_page(response)
    assert heading in response.get_data(as_text=True)
    assert (b'value="resubscribe"' in response.data) is (state is SubscriptionStatus.UNSUBSCRIBED)


def test_late_resubscribe_asks_for_a_new_confirmation(
    client, app, weekly, make_subscriber, outbox, clock, db_session
):
    subscription = make_subscriber(weekly)
    path = f"/u/{tokens.make_unsubscribe_token(app.config['SECRET_KEY'], subscription.id)}"
    client.post(path, data={"List-Unsubscribe": "One-Click"})
    clock.advance(days=45)
    response = client.post(path, data={"action": "resubscribe"})
    assert response.status_code == 200
    assert_valid_page(response)
    assert b"confirm with the link we have emailed you" in response.data
    assert status(db_session) is SubscriptionStatus.PENDING
    assert len(outbox.messages) == 1


def test_subscribe_without_a_list_uses_the_only_list(client, weekly, outbox):
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert b'value="weekly"' in page.data
    posted = client.post("/subscribe", data={"email": "solo@example.com"})
    assert posted.status_code == 303
    assert posted.headers["Location"] == "/subscribe/check-your-inbox?list=weekly"
    assert [m.recipient for m in outbox.messages] == ["solo@example.com"]


def test_subscribe_without_a_list_among_several(client, weekly, make_list, outbox):
    make_list(slug="daily", name="Daily")
    # The form: the front door, which has every list's form.
    page = client.get("/subscribe")
    assert page.status_code == 303
    assert page.headers["Location"] == "/"
    posted = client.post("/subscribe", data={"email": "solo@example.com"})
    assert posted.status_code == 400
    assert b"Which list?" in posted.data
    assert b'href="/"' in posted.data
    assert_valid_page(posted)
    assert outbox.messages == []


def test_subscribe_without_any_list_goes_to_the_front_door(client):
    response = client.get("/subscribe")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert b"nothing to subscribe to yet" in home.data
    assert_valid_page(home)
