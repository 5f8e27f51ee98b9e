"""The reader's path: subscribe (double opt-in), confirm, unsubscribe, resubscribe.

Every function takes the request's session and queues its mail with newsletter.mail.defer,
so nothing is sent unless the edge commits. Every status change writes a SubscriptionEvent.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import timedelta
from functools import lru_cache
from typing import Any

import jinja2
import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import i18n
from newsletter import mail
from newsletter import ratelimits
from newsletter import status_changes
from newsletter import suppressions
from newsletter import tokens
from newsletter.addresses import Address
from newsletter.addresses import InvalidAddress
from newsletter.addresses import InvalidName
from newsletter.addresses import clean_name
from newsletter.addresses import normalize_address
from newsletter.config import data_dir
from newsletter.db import dialect_insert
from newsletter.errors import NewsletterError
from newsletter.i18n import N_
from newsletter.lists import list_id_header
from newsletter.models import ConfirmationEmail
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionStatus

# A reader who unsubscribed (or was one-clicked out by a mail provider) can undo it from
# the same link for this long; after that, coming back takes a new double opt-in.
UNDO_WINDOW = timedelta(days=30)
CAP_PERIOD = timedelta(hours=24)
# A second signup of a pending address for the same list this soon after its confirmation
# email (a double click, a reload, an impatient second try) sends nothing more and does not
# count against CONFIRM_EMAILS_PER_DAY: the first email is on its way.
REPEAT_WINDOW = timedelta(minutes=2)
MAX_FORM_LENGTH = 500
SOURCES = frozenset({"form", "embed", "import", "admin"})
# Sources where the reader asked for themselves (may lift a complaint after confirming).
FORM_SOURCES = frozenset({"form", "embed"})


class SignupError(NewsletterError):
    """The signup form was filled in wrongly; the message tells the reader what to fix.

    `field` names the form field, `message` is a catalogue string (shown translated) and
    `detail` the validator's own English explanation, if any.
    """

    status_code = 422

    def __init__(self, message: str, *, field: str, detail: str | None = None) -> None:
        super().__init__(detail or message)
        self.message = message
        self.field = field
        self.detail = detail


class TokenAlreadyUsed(tokens.InvalidToken):
    """The confirmation link was used already (it works once)."""

    status_code = 410

    def __init__(self, message: str, subscription: Subscription | None = None) -> None:
        super().__init__(message)
        self.subscription = subscription


class SubscriptionGone(NewsletterError):
    """The subscription a valid link points at no longer exists (erased)."""

    status_code = 410


class SignupOutcome(enum.StrEnum):
    """What a signup did. The reader sees the same page for every outcome (no enumeration)."""

    SENT = "sent"  # a confirmation email is queued
    CAPPED = "capped"  # the address had its confirmation emails for today
    ALREADY_ACTIVE = "already_active"  # nothing to do
    SUPPRESSED = "suppressed"  # suppressed, bounced or complained: never mailed
    RATE_LIMITED = "rate_limited"  # too many posts for this address: nothing done
    REFUSED = "refused"  # not reopened (e.g. an import of someone who unsubscribed)
    RESTORED = "restored"  # an unsubscribe undone from the reader's own link
    REPEATED = "repeated"  # the same signup again within REPEAT_WINDOW: nothing more sent


@dataclass(frozen=True)
class SignupResult:
    """What a signup did, and the subscription it concerns (None when nothing was stored)."""

    outcome: SignupOutcome
    subscription: Subscription | None = None


# --- Signup ------------------------------------------------------------------------------


def subscribe(
    session: so.Session,
    mailing_list: MailingList,
    *,
    email: str,
    name: str | None,
    source: str,
    ip: str | None,
    form: str | None,
    config: Mapping[str, Any],
) -> SignupResult:
    """Record a signup as pending and queue a confirmation email (within the daily cap)."""
    address, clean = _validate(email, name, config)
    # A complaint is lifted only by a fresh double opt-in through the form; a bounce never.
    if suppressions.is_suppressed(session, address.key) and not suppressions.may_send_confirmation(
        session, address.key
    ):
        return SignupResult(SignupOutcome.SUPPRESSED)
    limit = ratelimits.hit(
        session,
        address_limit_key(address.key),
        limit=config["SIGNUP_ADDRESS_LIMIT"],
        window=config["SIGNUP_ADDRESS_WINDOW"],
    )
    if not limit.allowed:
        return SignupResult(SignupOutcome.RATE_LIMITED)
    subscriber = lock_subscriber(session, address, clean)
    return _open_pending(
        session, subscriber, address, mailing_list, source, ip, form, config, reopen=True
    )


def _validate(email: str | None, name: str | None, config: Mapping[str, Any]) -> tuple:
    if email is None or not email.strip():
        raise SignupError(N_("Please enter your email address."), field="email")
    try:
        address = normalize_address(
            email, check_deliverability=bool(config.get("CHECK_DELIVERABILITY"))
        )
    except InvalidAddress as exc:
        raise SignupError(
            N_("That does not look like an email address we can write to: please check it."),
            field="email",
            detail=str(exc),
        ) from None
    try:
        clean = clean_name(name)
    except InvalidName as exc:
        raise SignupError(
            N_("Please give a name of at most 200 characters on one line, or leave it empty."),
            field="name",
            detail=str(exc),
        ) from None
    return address, clean


def address_limit_key(address_key: str) -> str:
    """Return the rate-limit key of an address (hashed: the table keeps no addresses)."""
    return "signup-address:" + hashlib.sha256(address_key.encode()).hexdigest()[:32]


def lock_subscriber(session: so.Session, address: Address, name: str | None) -> Subscriber:
    """Create the subscriber if new, then lock its row until the transaction ends.

    The insert-or-nothing followed by SELECT ... FOR UPDATE serialises concurrent signups
    of one address on PostgreSQL (SQLite serialises all writers with BEGIN IMMEDIATE), so
    the cap below counts every confirmation email committed before.
    """
    session.execute(
        dialect_insert(session, Subscriber)
        .values(email=address.key, display_email=address.display, name=name, created_at=clock.now())
        .on_conflict_do_nothing(index_elements=["email"])
    )
    subscriber = session.scalar(
        sa.select(Subscriber)
        .where(Subscriber.email == address.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert subscriber is not None  # inserted above or already there
    return subscriber


def request_confirmation(
    session: so.Session,
    subscriber: Subscriber,
    mailing_list: MailingList,
    *,
    source: str,
    ip: str | None,
    form: str | None,
    config: Mapping[str, Any],
    reopen_unsubscribed: bool = True,
) -> SignupResult:
    """Put a subscriber on a list as pending and queue a confirmation email.

    Also the entry point for double opt-in imports. Respects the suppression list, bounced
    and complained subscriptions, and CONFIRM_EMAILS_PER_DAY per address (counted from
    ConfirmationEmail rows under a lock on the subscriber row). With reopen_unsubscribed
    False an unsubscribed reader is left alone (REFUSED).
    """
    session.execute(
        sa.select(Subscriber.id).where(Subscriber.id == subscriber.id).with_for_update()
    )
    address = normalize_address(subscriber.display_email)
    if suppressions.is_suppressed(session, address.key):
        return SignupResult(SignupOutcome.SUPPRESSED)
    return _open_pending(
        session,
        subscriber,
        address,
        mailing_list,
        source,
        ip,
        form,
        config,
        reopen=reopen_unsubscribed,
    )


def _open_pending(
    session: so.Session,
    subscriber: Subscriber,
    address: Address,
    mailing_list: MailingList,
    source: str,
    ip: str | None,
    form: str | None,
    config: Mapping[str, Any],
    *,
    reopen: bool,
) -> SignupResult:
    # The caller holds the lock on the subscriber row and checked the suppression list.
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    now = clock.now()
    subscription = session.scalar(
        sa.select(Subscription).where(
            Subscription.subscriber_id == subscriber.id,
            Subscription.list_id == mailing_list.id,
        )
    )
    if subscription is None:
        subscription = Subscription(
            subscriber_id=subscriber.id,
            list_id=mailing_list.id,
            status=SubscriptionStatus.PENDING,
            created_at=now,
            status_changed_at=now,
            source=source,
        )
        session.add(subscription)
        _consent(subscription, source, ip, form, now)
        session.flush()
        status_changes.record_event(session, subscription, "signup", ip)
    elif subscription.status is SubscriptionStatus.BOUNCED or (
        subscription.status is SubscriptionStatus.COMPLAINED and source not in FORM_SOURCES
    ):
        return SignupResult(SignupOutcome.SUPPRESSED, subscription)
    elif subscription.status is SubscriptionStatus.ACTIVE:
        return SignupResult(SignupOutcome.ALREADY_ACTIVE, subscription)
    elif subscription.status in (SubscriptionStatus.UNSUBSCRIBED, SubscriptionStatus.COMPLAINED):
        if not reopen:
            return SignupResult(SignupOutcome.REFUSED, subscription)
        status_changes.change_status(
            session, subscription, SubscriptionStatus.PENDING, "signup", ip=ip, now=now
        )
        subscription.source = source
        subscription.confirm_nonce = None  # a new opt-in gets a new link
        _consent(subscription, source, ip, form, now)
    else:  # pending: a reminder, with the latest request as the proof
        last_sent = session.scalar(
            sa.select(sa.func.max(ConfirmationEmail.sent_at)).where(
                ConfirmationEmail.subscriber_id == subscriber.id,
                ConfirmationEmail.list_id == mailing_list.id,
            )
        )
        if last_sent is not None and now - _aware(last_sent) < REPEAT_WINDOW:
            return SignupResult(SignupOutcome.REPEATED, subscription)
        _consent(subscription, source, ip, form, now)

    sent_today = session.scalar(
        sa.select(sa.func.count(ConfirmationEmail.id)).where(
            ConfirmationEmail.subscriber_id == subscriber.id,
            ConfirmationEmail.sent_at > now - CAP_PERIOD,
        )
    )
    if sent_today >= config["CONFIRM_EMAILS_PER_DAY"]:
        session.flush()
        return SignupResult(SignupOutcome.CAPPED, subscription)

    if subscription.confirm_nonce is None:
        subscription.confirm_nonce = tokens.new_nonce()
    session.add(
        ConfirmationEmail(subscriber_id=subscriber.id, list_id=mailing_list.id, sent_at=now)
    )
    session.flush()
    mail.defer(
        session, confirmation_message(subscription, subscriber, mailing_list, address, config)
    )
    return SignupResult(SignupOutcome.SENT, subscription)


def _aware(moment: Any) -> Any:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _consent(
    subscription: Subscription, source: str, ip: str | None, form: str | None, now: Any
) -> None:
    subscription.consent_at = now
    subscription.consent_ip = (ip or "")[:45] or None
    subscription.consent_form = (form or "")[:MAX_FORM_LENGTH] or None


# --- The confirmation email ---------------------------------------------------------------


@lru_cache(maxsize=1)
@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=lambda name: name is not None and name.endswith(".mjml.j2"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    i18n.install(env)
    # Imported on first use: MJML and premailer cost a fifth of a second at start-up, and
    # most processes (workers, most commands) never write a confirmation email.
    from newsletter.composer import markdown

    env.filters["wrap"] = lambda text: "\n".join(markdown.wrap(str(text)))
    return env


def _language_context(language: str | None) -> dict[str, str]:
    direction = i18n.text_direction(language)
    return {
        "lang": i18n.html_lang(language),
        "dir": direction,
        "start": "right" if direction == "rtl" else "left",
    }


_URL_PLACEHOLDER = "https://confirm.invalid/__CONFIRM_URL__"


@lru_cache(maxsize=64)
def _compiled_html(
    list_name: str, postal_address: str | None, max_age_days: int, language: str
) -> str:
    # MJML compilation takes tens of milliseconds: compile once per list and splice the
    # reader's link in (it holds only URL-safe characters, so no escaping changes it).
    with i18n.using(language):
        source = (
            _templates()
            .get_template("email/confirm.mjml.j2")
            .render(
                list_name=list_name,
                postal_address=postal_address,
                confirm_url=_URL_PLACEHOLDER,
                max_age_days=max_age_days,
                **_language_context(language),
            )
        )
    from newsletter.composer.mjml import compile_mjml

    return compile_mjml(source)


def confirm_url(config: Mapping[str, Any], subscription: Subscription) -> str:
    """Return the confirmation link for a pending subscription's current nonce."""
    token = tokens.make_confirm_token(
        config["SECRET_KEY"], subscription.id, subscription.confirm_nonce or ""
    )
    return f"{config['BASE_URL']}/confirm/{token}"


def confirmation_message(
    subscription: Subscription,
    subscriber: Subscriber,
    mailing_list: MailingList,
    address: Address,
    config: Mapping[str, Any],
) -> mail.OutgoingMessage:
    """Build the confirmation email in the list's language (transactional: no List-Unsubscribe)."""
    url = confirm_url(config, subscription)
    max_age_days = max(1, round(config["CONFIRM_MAX_AGE"] / 86400))
    language = i18n.html_lang(getattr(mailing_list, "language", None))
    html = _compiled_html(mailing_list.name, mailing_list.postal_address, max_age_days, language)
    with i18n.using(language):
        text = (
            _templates()
            .get_template("email/confirm.txt.j2")
            .render(
                list_name=mailing_list.name,
                postal_address=mailing_list.postal_address,
                confirm_url=url,
                max_age_days=max_age_days,
            )
        )
        subject = i18n.gettext(
            "Please confirm your subscription to %(list)s", list=mailing_list.name
        )
    return mail.build_message(
        from_address=mailing_list.from_address,
        from_name=mailing_list.name,
        to_address=address.ascii,
        to_name=subscriber.name,
        subject=subject,
        text=text,
        html=html.replace(_URL_PLACEHOLDER, url),
        reply_to=mailing_list.reply_to,
        list_id=list_id_header(mailing_list, config["BASE_URL"]),
        headers={"Auto-Submitted": "auto-generated"},
        tags={"kind": "confirmation", "list": mailing_list.slug},
    )


# --- Confirm ------------------------------------------------------------------------------


def pending_for_token(
    session: so.Session, token: str, config: Mapping[str, Any], *, lock: bool = False
) -> Subscription:
    """Return the pending subscription a confirmation link is for, or raise InvalidToken."""
    subscription_id, nonce = tokens.read_confirm_token(
        config["SECRET_KEY"], token, config["CONFIRM_MAX_AGE"]
    )
    subscription = session.get(Subscription, subscription_id, with_for_update=lock)
    if subscription is None:
        raise tokens.InvalidToken(N_("This confirmation link is not valid any more."))
    current = subscription.confirm_nonce
    if current is None or not hmac.compare_digest(current, nonce):
        if subscription.status is SubscriptionStatus.ACTIVE:
            raise TokenAlreadyUsed(
                N_("This confirmation link has been used already: you are subscribed."),
                subscription,
            )
        raise TokenAlreadyUsed(
            N_("This confirmation link has been used already or was replaced."), subscription
        )
    if subscription.status is not SubscriptionStatus.PENDING:
        raise tokens.InvalidToken(N_("This subscription is not waiting for a confirmation."))
    return subscription


def confirm(
    session: so.Session, token: str, *, ip: str | None, config: Mapping[str, Any]
) -> Subscription:
    """Make a pending subscription active; the link works once."""
    subscription = pending_for_token(session, token, config, lock=True)
    now = clock.now()
    subscription.confirm_nonce = None
    subscription.confirmed_at = now
    subscription.unsubscribed_at = None
    status_changes.change_status(
        session, subscription, SubscriptionStatus.ACTIVE, "confirm", ip=ip, now=now
    )
    # Confirming a fresh signup is the reader's explicit consent after a complaint.
    suppressions.lift_after_opt_in(session, subscription.subscriber.email)
    session.flush()
    return subscription


# --- Unsubscribe and resubscribe --------------------------------------------------------------


def subscription_for_unsubscribe_token(
    session: so.Session, token: str, config: Mapping[str, Any], *, lock: bool = False
) -> Subscription:
    """Return the subscription an unsubscribe link is for, or raise InvalidToken/Gone."""
    subscription_id = tokens.read_unsubscribe_token(config["SECRET_KEY"], token)
    subscription = session.get(Subscription, subscription_id, with_for_update=lock)
    if subscription is None:
        raise SubscriptionGone(N_("This address is no longer on our lists: nothing more to do."))
    return subscription


def unsubscribe(
    session: so.Session,
    token: str,
    *,
    reason: str,
    ip: str | None,
    config: Mapping[str, Any],
) -> Subscription:
    """Unsubscribe at once (idempotent); bounced and complained stay as they are."""
    subscription = subscription_for_unsubscribe_token(session, token, config, lock=True)
    if subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING):
        # change_status also voids an old confirmation link: it must not bring them back.
        status_changes.change_status(
            session, subscription, SubscriptionStatus.UNSUBSCRIBED, reason, ip=ip
        )
        session.flush()
    return subscription


def resubscribe(
    session: so.Session, token: str, *, ip: str | None, config: Mapping[str, Any]
) -> SignupResult:
    """Undo an unsubscribe from the reader's own link.

    The link came in an email to the reader, so a POST from its page within UNDO_WINDOW of
    a confirmed subscription's unsubscribe restores it at once (an undo after a mistaken
    click). Later, or if the reader never confirmed, it takes a new double opt-in.
    """
    subscription = subscription_for_unsubscribe_token(session, token, config, lock=True)
    if subscription.status is not SubscriptionStatus.UNSUBSCRIBED:
        outcome = (
            SignupOutcome.ALREADY_ACTIVE
            if subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)
            else SignupOutcome.SUPPRESSED
        )
        return SignupResult(outcome, subscription)
    subscriber = subscription.subscriber
    now = clock.now()
    undo = (
        subscription.confirmed_at is not None
        and subscription.unsubscribed_at is not None
        and now - subscription.unsubscribed_at <= UNDO_WINDOW
        and not suppressions.is_suppressed(session, subscriber.email)
    )
    if not undo:
        return request_confirmation(
            session,
            subscriber,
            subscription.list,
            source=subscription.source if subscription.source in SOURCES else "form",
            ip=ip,
            form="resubscribe link",
            config=config,
        )
    subscription.unsubscribed_at = None
    status_changes.change_status(
        session, subscription, SubscriptionStatus.ACTIVE, "resubscribe", ip=ip, now=now
    )
    session.flush()
    return SignupResult(SignupOutcome.RESTORED, subscription)
