"""The reader's path in the core: signup, cap, confirm, unsubscribe, resubscribe, events."""

from __future__ import annotations

import email
import email.policy
import re

import lxml.html
import pytest
import sqlalchemy as sa

from newsletter import mail
from newsletter import subscriptions
from newsletter import tokens
from newsletter.models import ConfirmationEmail
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.models import SuppressionReason
from newsletter.subscriptions import SignupOutcome

CONFIRM_LINK = re.compile(r"https://news\.example\.com/confirm/[A-Za-z0-9_.\-]+")


@pytest.fixture
def weekly(make_list):
    return make_list()


@pytest.fixture
def signup(app, db_session, outbox, weekly):
    """Run one signup in its own transaction, like a request: commit, then send."""

    def _signup(address="reader@example.com", name="René Luçon", **kwargs):
        values = {"source": "form", "ip": "192.0.2.7", "form": "https://blog.example.org/"}
        values.update(kwargs)
        result = subscriptions.subscribe(
            db_session, weekly, email=address, name=name, config=app.config, **values
        )
        db_session.commit()
        mail.send_deferred(db_session, outbox)
        return result

    return _signup


def _events(db_session, subscription_id):
    return [
        (e.status, e.reason)
        for e in db_session.scalars(
            sa.select(SubscriptionEvent)
            .where(SubscriptionEvent.subscription_id == subscription_id)
            .order_by(SubscriptionEvent.id)
        )
    ]


def _link(message) -> str:
    mime = email.message_from_bytes(message.as_bytes(), policy=email.policy.SMTP)
    text = mime.get_body(preferencelist=("plain",)).get_content()
    return CONFIRM_LINK.search(text).group(0)


def test_signup_records_pending_subscription_with_consent_and_sends_after_commit(
    app, db_session, outbox, weekly, clock
):
    result = subscriptions.subscribe(
        db_session,
        weekly,
        email="Reader@Example.COM",
        name="René Luçon",
        source="embed",
        ip="198.51.100.4",
        form="https://blog.example.org/about",
        config=app.config,
    )
    assert result.outcome is SignupOutcome.SENT
    assert outbox.messages == []  # queued, not sent: the transaction is still open
    db_session.commit()
    mail.send_deferred(db_session, outbox)

    subscriber = db_session.scalar(sa.select(Subscriber))
    assert (subscriber.email, subscriber.display_email) == (
        "reader@example.com",
        "Reader@example.com",
    )
    assert subscriber.name == "René Luçon"
    sub = result.subscription
    assert sub.status is SubscriptionStatus.PENDING
    assert (sub.source, sub.consent_ip, sub.consent_form) == (
        "embed",
        "198.51.100.4",
        "https://blog.example.org/about",
    )
    assert sub.consent_at == clock.current
    assert sub.confirmed_at is None
    assert _events(db_session, sub.id) == [(SubscriptionStatus.PENDING, "signup")]
    assert [m.recipient for m in outbox.messages] == ["Reader@example.com"]


def test_rolled_back_signup_sends_nothing_and_stores_nothing(app, db_session, outbox, weekly):
    subscriptions.subscribe(
        db_session,
        weekly,
        email="reader@example.com",
        name=None,
        source="form",
        ip=None,
        form=None,
        config=app.config,
    )
    db_session.rollback()
    mail.discard_deferred(db_session)
    mail.send_deferred(db_session, outbox)
    assert outbox.messages == []
    assert db_session.scalar(sa.select(sa.func.count(Subscriber.id))) == 0


def test_confirmation_email_is_transactional_multipart_with_the_link(signup, outbox):
    signup()
    (message,) = outbox.messages
    raw = message.as_bytes()
    mime = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert mime.get_content_type() == "multipart/alternative"
    assert mime["Subject"] == "Please confirm your subscription to o11y weekly"
    assert mime["To"].addresses[0].display_name == "René Luçon"
    assert mime["From"].addresses[0].addr_spec == "news@example.com"
    assert mime["List-Id"] == "o11y weekly <weekly.news.example.com>"
    assert mime["List-Unsubscribe"] is None  # transactional mail: nothing to unsubscribe from
    assert mime["Message-ID"] and mime["Date"]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    link = _link(message)
    html = mime.get_body(preferencelist=("html",)).get_content()
    assert link in lxml.html.document_fromstring(html).xpath("//a/@href")
    assert "__CONFIRM_URL__" not in html
    assert "1 Example Street, 10115 Berlin, Germany" in html


def _spaced(clock):
    """Move past the repeat window, so the next signup counts as a new request."""
    clock.advance(seconds=subscriptions.REPEAT_WINDOW.total_seconds() + 1)


def test_at_most_three_confirmation_emails_per_address_per_day(signup, outbox, clock, db_session):
    outcomes = []
    for _ in range(5):
        outcomes.append(signup().outcome)
        _spaced(clock)
    assert outcomes == [SignupOutcome.SENT] * 3 + [SignupOutcome.CAPPED] * 2
    assert len(outbox.messages) == 3
    assert db_session.scalar(sa.select(sa.func.count(ConfirmationEmail.id))) == 3
    # Re-signups of a pending address resend the same link: any of them confirms.
    assert len({_link(m) for m in outbox.messages}) == 1
    clock.advance(hours=24, seconds=1)
    assert signup().outcome is SignupOutcome.SENT
    assert len(outbox.messages) == 4


def test_cap_counts_across_lists_of_the_same_address(
    signup, make_list, app, db_session, outbox, clock
):
    other = make_list(slug="daily", name="o11y daily")
    for _ in range(2):
        signup()
        _spaced(clock)
    subscriber = db_session.scalar(sa.select(Subscriber))
    result = subscriptions.request_confirmation(
        db_session, subscriber, other, source="import", ip=None, form="import", config=app.config
    )
    assert result.outcome is SignupOutcome.SENT
    _spaced(clock)
    result = subscriptions.request_confirmation(
        db_session, subscriber, other, source="import", ip=None, form="import", config=app.config
    )
    assert result.outcome is SignupOutcome.CAPPED


def test_the_same_signup_again_soon_sends_nothing_and_spends_nothing(
    signup, outbox, clock, db_session, app
):
    """A double click, a reload, an impatient retry: one email, one of the day's three."""
    assert signup().outcome is SignupOutcome.SENT
    clock.advance(seconds=1)
    assert signup().outcome is SignupOutcome.REPEATED
    clock.advance(seconds=subscriptions.REPEAT_WINDOW.total_seconds() - 2)
    assert signup().outcome is SignupOutcome.REPEATED
    assert len(outbox.messages) == 1
    assert db_session.scalar(sa.select(sa.func.count(ConfirmationEmail.id))) == 1
    db_session.rollback()
    # Past the window the reader may ask again, and still has two of the day's three.
    clock.advance(seconds=2)
    assert signup().outcome is SignupOutcome.SENT
    _spaced(clock)
    assert signup().outcome is SignupOutcome.SENT
    _spaced(clock)
    assert signup().outcome is SignupOutcome.CAPPED
    assert len(outbox.messages) == 3


def test_active_address_gets_no_email(signup, outbox, make_subscriber, weekly, db_session):
    sub = make_subscriber(weekly, email="reader@example.com")
    result = signup()
    assert result.outcome is SignupOutcome.ALREADY_ACTIVE
    assert outbox.messages == []
    db_session.refresh(sub)
    assert sub.status is SubscriptionStatus.ACTIVE


@pytest.mark.parametrize("source", ["form", "import"])
def test_bounced_gets_no_email(signup, outbox, make_subscriber, weekly, db_session, source):
    sub = make_subscriber(weekly, email="reader@example.com", status=SubscriptionStatus.BOUNCED)
    db_session.add(Suppression(email="reader@example.com", reason=SuppressionReason.HARD_BOUNCE))
    db_session.commit()
    result = signup(source=source)
    assert result.outcome is SignupOutcome.SUPPRESSED
    assert result.subscription is None or result.subscription.id == sub.id
    assert outbox.messages == []


def test_complained_reader_may_come_back_only_through_double_opt_in(
    signup, outbox, make_subscriber, weekly, db_session, app
):
    sub = make_subscriber(weekly, email="reader@example.com", status=SubscriptionStatus.COMPLAINED)
    db_session.add(Suppression(email="reader@example.com", reason=SuppressionReason.COMPLAINT))
    db_session.commit()

    imported = subscriptions.request_confirmation(
        db_session, sub.subscriber, weekly, source="import", ip=None, form=None, config=app.config
    )
    assert imported.outcome is SignupOutcome.SUPPRESSED  # an import never lifts a complaint

    result = signup()
    assert result.outcome is SignupOutcome.SENT
    assert result.subscription.status is SubscriptionStatus.PENDING
    # Until the reader confirms, the address stays suppressed for every send.
    assert db_session.scalar(sa.select(Suppression.reason)) is SuppressionReason.COMPLAINT

    token = _link(outbox.messages[-1]).rsplit("/", 1)[1]
    subscriptions.confirm(db_session, token, ip="192.0.2.9", config=app.config)
    db_session.commit()
    assert db_session.get(Subscription, sub.id).status is SubscriptionStatus.ACTIVE
    assert db_session.scalar(sa.select(sa.func.count(Suppression.id))) == 0


def test_suppressed_address_gets_no_email_and_nothing_is_stored(signup, outbox, db_session):
    db_session.add(Suppression(email="reader@example.com", reason=SuppressionReason.MANUAL))
    db_session.commit()
    assert signup("READER@example.com").outcome is SignupOutcome.SUPPRESSED
    assert outbox.messages == []
    assert db_session.scalar(sa.select(sa.func.count(Subscriber.id))) == 0


def test_confirm_activates_once(signup, outbox, app, db_session, clock):
    sub = signup().subscription
    token = _link(outbox.messages[0]).rsplit("/", 1)[1]
    assert subscriptions.pending_for_token(db_session, token, app.config).id == sub.id
    clock.advance(hours=2)
    confirmed = subscriptions.confirm(db_session, token, ip="192.0.2.9", config=app.config)
    db_session.commit()
    assert confirmed.status is SubscriptionStatus.ACTIVE
    assert confirmed.confirmed_at == clock.current
    assert confirmed.confirm_nonce is None
    assert _events(db_session, sub.id)[-1] == (SubscriptionStatus.ACTIVE, "confirm")
    with pytest.raises(subscriptions.TokenAlreadyUsed):
        subscriptions.confirm(db_session, token, ip=None, config=app.config)


def test_confirmation_link_expires(signup, outbox, app, db_session, monkeypatch):
    import itsdangerous.timed

    signup()
    token = _link(outbox.messages[0]).rsplit("/", 1)[1]
    later = itsdangerous.timed.time.time() + app.config["CONFIRM_MAX_AGE"] + 60
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        subscriptions.confirm(db_session, token, ip=None, config=app.config)


def test_unsubscribe_is_idempotent_and_recorded(app, db_session, weekly, make_subscriber, clock):
    sub = make_subscriber(weekly)
    token = tokens.make_unsubscribe_token(app.config["SECRET_KEY"], sub.id)
    for _ in range(2):
        result = subscriptions.unsubscribe(
            db_session, token, reason="one-click", ip="192.0.2.1", config=app.config
        )
        db_session.commit()
        assert result.status is SubscriptionStatus.UNSUBSCRIBED
    assert result.unsubscribed_at == clock.current
    assert _events(db_session, sub.id) == [(SubscriptionStatus.UNSUBSCRIBED, "one-click")]


def test_unsubscribed_reader_signing_up_again_starts_a_new_opt_in(signup, outbox, app, db_session):
    sub = signup().subscription
    old_token = _link(outbox.messages[0]).rsplit("/", 1)[1]
    unsub = tokens.make_unsubscribe_token(app.config["SECRET_KEY"], sub.id)
    subscriptions.unsubscribe(db_session, unsub, reason="unsubscribe", ip=None, config=app.config)
    db_session.commit()
    # The pending reader's old link cannot bring them back after they left.
    with pytest.raises(tokens.InvalidToken):
        subscriptions.confirm(db_session, old_token, ip=None, config=app.config)
    db_session.rollback()

    assert signup().outcome is SignupOutcome.SENT
    new_token = _link(outbox.messages[-1]).rsplit("/", 1)[1]
    assert new_token != old_token
    db_session.refresh(sub)
    assert sub.status is SubscriptionStatus.PENDING
    assert [reason for _, reason in _events(db_session, sub.id)] == [
        "signup",
        "unsubscribe",
        "signup",
    ]


def test_resubscribe_from_the_link_undoes_a_recent_unsubscribe(
    app, db_session, weekly, make_subscriber, outbox, clock
):
    sub = make_subscriber(weekly)
    token = tokens.make_unsubscribe_token(app.config["SECRET_KEY"], sub.id)
    subscriptions.unsubscribe(db_session, token, reason="one-click", ip=None, config=app.config)
    db_session.commit()
    clock.advance(days=2)
    result = subscriptions.resubscribe(db_session, token, ip="192.0.2.3", config=app.config)
    db_session.commit()
    assert result.outcome is SignupOutcome.RESTORED
    assert result.subscription.status is SubscriptionStatus.ACTIVE
    assert outbox.messages == []
    assert _events(db_session, sub.id)[-1] == (SubscriptionStatus.ACTIVE, "resubscribe")


def test_resubscribe_long_after_needs_double_opt_in(
    app, db_session, weekly, make_subscriber, outbox, clock
):
    sub = make_subscriber(weekly)
    token = tokens.make_unsubscribe_token(app.config["SECRET_KEY"], sub.id)
    subscriptions.unsubscribe(db_session, token, reason="one-click", ip=None, config=app.config)
    db_session.commit()
    clock.advance(days=31)
    result = subscriptions.resubscribe(db_session, token, ip=None, config=app.config)
    db_session.commit()
    mail.send_deferred(db_session, outbox)
    assert result.outcome is SignupOutcome.SENT
    assert result.subscription.status is SubscriptionStatus.PENDING
    assert len(outbox.messages) == 1


def test_import_request_respects_suppression_and_unsubscribes(
    app, db_session, weekly, make_subscriber, outbox
):
    left = make_subscriber(weekly, email="left@example.com", status=SubscriptionStatus.UNSUBSCRIBED)
    result = subscriptions.request_confirmation(
        db_session,
        left.subscriber,
        weekly,
        source="import",
        ip=None,
        form="import readers.csv",
        config=app.config,
        reopen_unsubscribed=False,
    )
    assert result.outcome is SignupOutcome.REFUSED
    db_session.add(Suppression(email="left@example.com", reason=SuppressionReason.COMPLAINT))
    db_session.flush()
    result = subscriptions.request_confirmation(
        db_session,
        left.subscriber,
        weekly,
        source="import",
        ip=None,
        form="import readers.csv",
        config=app.config,
    )
    assert result.outcome is SignupOutcome.SUPPRESSED
    db_session.commit()
    mail.send_deferred(db_session, outbox)
    assert outbox.messages == []


def test_address_rate_limit_does_nothing_beyond_it(app, signup, outbox, db_session, clock):
    app.config["SIGNUP_ADDRESS_LIMIT"] = 2
    outcomes = []
    for _ in range(3):
        outcomes.append(signup().outcome)
        _spaced(clock)
    assert outcomes == [SignupOutcome.SENT, SignupOutcome.SENT, SignupOutcome.RATE_LIMITED]
    assert len(outbox.messages) == 2


@pytest.mark.parametrize(
    ("address", "name", "message"),
    [
        ("", None, "enter your email"),
        ("not-an-address", None, "not valid"),
        ("a@b", None, "not valid"),
        ("reader@example.com\r\nBcc: x@example.com", None, "line breaks"),
        ("x" * 10_000 + "@example.com", None, "too long"),
        ("reader@example.com", "René\r\nBcc: victim@example.com", "line breaks"),
        ("reader@example.com", "n" * 10_000, "at most"),
    ],
)
def test_bad_signups_raise_and_store_nothing(signup, db_session, outbox, address, name, message):
    with pytest.raises(subscriptions.SignupError, match=message):
        signup(address, name)
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(Subscription.id))) == 0
    assert outbox.messages == []


def test_concurrent_confirmation_requests_respect_the_cap(app, weekly, make_list, make_subscriber):
    """Twenty transactions at once for one address on four lists: three emails (the cap).

    Each list gets at most one (the repeat rule); the daily cap holds across the lists.
    """
    import threading

    from newsletter.mail import MemoryMailer

    subscriber_id = make_subscriber(weekly, status=SubscriptionStatus.PENDING).subscriber_id
    others = [make_list(slug=f"list-{n}", name=f"List {n}") for n in range(3)]
    every_list = [weekly, *others]
    database = app.extensions["newsletter.db"]
    sent = MemoryMailer()
    threads = 20
    barrier = threading.Barrier(threads)

    def worker(index: int):
        session = database.session()
        try:
            barrier.wait()
            subscriber = session.get(Subscriber, subscriber_id)
            mailing_list = session.merge(every_list[index % len(every_list)], load=False)
            subscriptions.request_confirmation(
                session,
                subscriber,
                mailing_list,
                source="import",
                ip=None,
                form=None,
                config=app.config,
            )
            session.commit()
            mail.send_deferred(session, sent)
        finally:
            session.close()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(sent.messages) == 3
    with database.transaction() as session:
        assert session.scalar(sa.select(sa.func.count(ConfirmationEmail.id))) == 3


def test_internationalised_domain_is_stored_readably_and_mailed_in_ascii(
    signup, outbox, db_session, clock
):
    assert signup("Reader@Bücher.Example").outcome is SignupOutcome.SENT
    subscriber = db_session.scalar(sa.select(Subscriber))
    assert (subscriber.email, subscriber.display_email) == (
        "reader@xn--bcher-kva.example",  # the one address key: ASCII, punycode, lower case
        "Reader@bücher.example",
    )
    (message,) = outbox.messages
    assert message.recipient == "Reader@xn--bcher-kva.example"
    message.as_bytes().decode("ascii")  # the whole message is 7-bit on the wire
    # The same address typed differently is the same subscriber.
    _spaced(clock)
    assert signup("reader@xn--bcher-kva.example").outcome is SignupOutcome.SENT
    assert db_session.scalar(sa.select(sa.func.count(Subscriber.id))) == 1
