"""Subscribers as operators see them: list, export, remove, erase (imports: newsletter.imports)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import status_changes
from newsletter import subscriptions
from newsletter.addresses import InvalidAddress
from newsletter.addresses import normalize_address
from newsletter.directory import search_condition
from newsletter.errors import NotFound
from newsletter.lists import get_list
from newsletter.models import ConfirmationEmail
from newsletter.models import Delivery
from newsletter.models import FeedbackEvent
from newsletter.models import MailingList
from newsletter.models import RateLimitCounter
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus
from newsletter.models import Suppression
from newsletter.suppressions import address_key

# Cells a spreadsheet would run as a formula: the export puts an apostrophe before them
# (and newsletter.imports takes it off again).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = ("email", "name", "list", "status", "created_at", "confirmed_at")
_LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)
ERASED_DOMAIN = "@erased.invalid"


@dataclass(frozen=True)
class SubscriberRow:
    email: str
    name: str | None
    list_slug: str
    status: SubscriptionStatus
    created_at: datetime
    confirmed_at: datetime | None


def iter_subscriptions(
    session: so.Session,
    *,
    list_slug: str | None = None,
    status: SubscriptionStatus | None = None,
    search: str | None = None,
    batch_size: int = 1000,
    include_erased: bool = True,
) -> Iterator[SubscriberRow]:
    """Yield one row per subscription, by address, streaming in batches.

    `search` keeps the subscribers whose address or name contains it, as the console's
    directory does.
    """
    query = (
        sa.select(
            Subscriber.display_email,
            Subscriber.name,
            MailingList.slug,
            Subscription.status,
            Subscription.created_at,
            Subscription.confirmed_at,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .order_by(Subscriber.email, MailingList.slug)
    )
    if list_slug is not None:
        query = query.where(Subscription.list_id == get_list(session, list_slug).id)
    if status is not None:
        query = query.where(Subscription.status == status)
    if not include_erased:
        query = query.where(Subscriber.erased_at.is_(None))
    found = search_condition(session, search)
    if found is not None:
        query = query.where(found)
    result = session.execute(query.execution_options(yield_per=batch_size))
    for row in result:
        yield SubscriberRow(*row)


# --- Export -------------------------------------------------------------------------------


def _cell(value: str | None) -> str:
    """A text cell no spreadsheet runs as a formula (CSV injection)."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def export_csv(
    session: so.Session,
    *,
    list_slug: str | None = None,
    status: SubscriptionStatus | str | None = None,
    search: str | None = None,
    bom: bool = False,
    chunk_rows: int = 1000,
) -> Iterator[str]:
    """Yield a CSV of subscriptions in text chunks: for stdout or a streaming response.

    Columns: email,name,list,status,created_at,confirmed_at (times in ISO 8601, UTC).
    `search` narrows it to the subscribers whose address or name contains the text (the
    console's search). Erased subscribers are left out. A cell starting with = + - @ tab
    or CR gets a leading apostrophe, so a spreadsheet shows it instead of running it;
    `bom` starts the file with a UTF-8 BOM, which Excel needs to read non-ASCII names right.
    """
    rows = iter_subscriptions(
        session,
        list_slug=list_slug,
        status=SubscriptionStatus(status) if status else None,
        search=search,
        include_erased=False,
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if bom:
        buffer.write("\ufeff")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(
            (
                _cell(row.email),
                _cell(row.name),
                _cell(row.list_slug),
                row.status.value,
                _time(row.created_at),
                _time(row.confirmed_at),
            )
        )
        count += 1
        if count % chunk_rows == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- Remove and erase ---------------------------------------------------------------------


def find_subscriber(session: so.Session, email_or_subscriber: str | Subscriber) -> Subscriber:
    """Return the subscriber (locked) of an address or object, or raise NotFound."""
    if isinstance(email_or_subscriber, Subscriber):
        subscriber_id = email_or_subscriber.id
        query = sa.select(Subscriber).where(Subscriber.id == subscriber_id)
        shown = email_or_subscriber.email
    else:
        shown = email_or_subscriber.strip().lower()
        # An erased record's placeholder is not a mailable address (.invalid), so the
        # address checks would refuse it: look it up as it is.
        if not shown.endswith(ERASED_DOMAIN):
            shown = address_key(email_or_subscriber)
        query = sa.select(Subscriber).where(Subscriber.email == shown)
    subscriber = session.scalar(query.with_for_update().execution_options(populate_existing=True))
    if subscriber is None:
        raise NotFound(f"{shown} is not a subscriber")
    return subscriber


@dataclass(frozen=True)
class Removal:
    """What `remove` did: the address and the lists it was unsubscribed from."""

    email: str
    lists: list[str]  # slugs of the subscriptions that were active or pending


def remove(session: so.Session, email: str) -> Removal:
    """Unsubscribe an address from every list, keeping the record.

    The kept record is what stops an import or an old list from bringing the reader back
    (imports refuse unsubscribed readers). Bounced and complained subscriptions stay so.
    """
    subscriber = find_subscriber(session, email)
    now = clock.now()
    rows = session.execute(
        sa.select(Subscription, MailingList.slug)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.subscriber_id == subscriber.id)
        .order_by(MailingList.slug)
        .with_for_update(of=Subscription)
    ).all()
    changed = []
    for subscription, slug in rows:
        if subscription.status not in _LIVE:
            continue
        # Also voids an old confirmation link: it must not undo this.
        status_changes.change_status(
            session, subscription, SubscriptionStatus.UNSUBSCRIBED, "admin", now=now
        )
        changed.append(slug)
    session.flush()
    return Removal(email=subscriber.email, lists=changed)


def erased_address(subscriber_id: int) -> str:
    """The placeholder that replaces an erased subscriber's address (unique, never mailable)."""
    return f"erased-{subscriber_id}{ERASED_DOMAIN}"


@dataclass(frozen=True)
class Erasure:
    """What `erase` did."""

    subscriber_id: int
    placeholder: str
    subscriptions: int  # subscriptions kept, anonymous and unsubscribed
    already_erased: bool = False


def _address_forms(subscriber: Subscriber) -> set[str]:
    forms = {subscriber.email.lower(), subscriber.display_email.lower()}
    try:
        forms.add(normalize_address(subscriber.display_email).ascii.lower())
    except InvalidAddress:
        pass
    return forms


def _scrub(text: str | None, forms: set[str], placeholder: str) -> str | None:
    if not text:
        return text
    for form in forms:
        text = re.sub(re.escape(form), placeholder, text, flags=re.IGNORECASE)
    return text


def erase(session: so.Session, email_or_subscriber: str | Subscriber) -> Erasure:
    """Erase a subscriber's personal data for good (GDPR article 17); keep anonymous counts.

    - The address becomes a placeholder (erased_address), the name goes, erased_at is set.
    - Each subscription stays, anonymous, so list and issue figures still add up: active and
      pending ones become unsubscribed, and each gets an "erase" event. Consent IP and
      form, the confirmation nonce and every event's IP are cleared. The subscriptions are
      stored again under new ids (events and ledger rows follow): old unsubscribe and
      confirmation links carry the old id, so they answer "no longer on our lists" and
      nothing in the reader's mailbox points at the anonymous record any more.
    - Confirmation-email records and the address's rate-limit counters are deleted;
      feedback events and ledger rows are kept with the address replaced by the
      placeholder (also inside bounce diagnostics), so issue figures stay.
    - The address's suppression rows are deleted too: keeping them would keep the
      address. So a later signup starts afresh (it needs a double opt-in) and a later
      import may add the address again. For a reader who only wants no more email, use
      `remove`, which keeps the record that stops imports from bringing them back.

    Erasing an erased subscriber again does nothing.
    """
    subscriber = find_subscriber(session, email_or_subscriber)
    placeholder = erased_address(subscriber.id)
    if subscriber.erased_at is not None:
        return Erasure(subscriber.id, subscriber.email, 0, already_erased=True)
    now = clock.now()
    forms = _address_forms(subscriber)
    kept = _rekey_subscriptions(session, subscriber.id, now)

    session.execute(
        sa.delete(ConfirmationEmail).where(ConfirmationEmail.subscriber_id == subscriber.id)
    )
    session.execute(
        sa.delete(RateLimitCounter).where(
            RateLimitCounter.key.in_([subscriptions.address_limit_key(f) for f in forms])
        )
    )
    session.execute(sa.delete(Suppression).where(Suppression.email.in_(forms)))
    feedback = session.execute(
        sa.select(FeedbackEvent.id, FeedbackEvent.detail).where(
            sa.or_(FeedbackEvent.subscriber_id == subscriber.id, FeedbackEvent.email.in_(forms))
        )
    ).all()
    if feedback:
        session.execute(
            sa.update(FeedbackEvent),
            [
                {
                    "id": row.id,
                    "email": placeholder,
                    "detail": _scrub(row.detail, forms, placeholder),
                }
                for row in feedback
            ],
        )
    errors = session.execute(
        sa.select(Delivery.id, Delivery.error).where(
            Delivery.subscriber_id == subscriber.id, Delivery.error.is_not(None)
        )
    ).all()
    scrubbed = [
        {"id": row.id, "error": _scrub(row.error, forms, placeholder)}
        for row in errors
        if _scrub(row.error, forms, placeholder) != row.error
    ]
    if scrubbed:
        session.execute(sa.update(Delivery), scrubbed)
    subscriber.email = placeholder
    subscriber.display_email = placeholder
    subscriber.name = None
    subscriber.erased_at = now
    session.flush()
    return Erasure(subscriber.id, placeholder, kept)


def _rekey_subscriptions(session: so.Session, subscriber_id: int, now: datetime) -> int:
    """Store a subscriber's subscriptions again, anonymous, under new ids; return how many."""
    table = cast(sa.Table, Subscription.__table__)
    events = cast(sa.Table, SubscriptionEvent.__table__)
    old_rows = session.execute(
        sa.select(table).where(table.c.subscriber_id == subscriber_id).with_for_update()
    ).all()
    for old in old_rows:
        history = session.execute(
            sa.select(events.c.status, events.c.at, events.c.reason)
            .where(events.c.subscription_id == old.id)
            .order_by(events.c.at, events.c.id)
        ).all()
        ledger = session.scalars(
            sa.select(Delivery.id).where(Delivery.subscription_id == old.id)
        ).all()
        # Deleting first frees the (subscriber, list) key; its events go with it.
        session.execute(sa.delete(table).where(table.c.id == old.id))
        live = old.status in _LIVE
        status = SubscriptionStatus.UNSUBSCRIBED if live else old.status
        new_id: int = session.execute(
            sa.insert(table)
            .values(
                subscriber_id=subscriber_id,
                list_id=old.list_id,
                status=status,
                created_at=old.created_at,
                status_changed_at=now if live else old.status_changed_at,
                confirmed_at=old.confirmed_at,
                unsubscribed_at=old.unsubscribed_at or (now if live else None),
                source=old.source,
                consent_at=old.consent_at,
                consent_ip=None,
                consent_form=None,
                confirm_nonce=None,
            )
            .returning(table.c.id)
        ).scalar_one()
        session.execute(
            sa.insert(events),
            [
                {"subscription_id": new_id, "status": e.status, "at": e.at, "reason": e.reason}
                for e in history
            ]
            + [{"subscription_id": new_id, "status": status, "at": now, "reason": "erase"}],
        )
        if ledger:
            session.execute(
                sa.update(Delivery).where(Delivery.id.in_(ledger)).values(subscription_id=new_id)
            )
    # The ORM may hold the old rows: forget them. By identity key, not by attribute: an
    # expired object (after a commit) would reload its deleted row and raise.
    old_ids = {old.id for old in old_rows}
    for obj in [o for o in session.identity_map.values() if isinstance(o, Subscription)]:
        identity = sa.inspect(obj).identity
        if identity is not None and identity[0] in old_ids:
            session.expunge(obj)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is not None:
        session.expire(subscriber, ["subscriptions"])
    return len(old_rows)
