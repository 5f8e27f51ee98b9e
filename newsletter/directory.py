"""The subscriber directory behind the console: filtered pages, counts, one subscriber's history.

Pages use keyset pagination on the subscriber's address (`subscriber.email`, unique):
each page is "the next N addresses after this one" (or before it), read straight off the
unique index, so the first, a middle and the last page all cost the same at a million
subscribers. The last page is read backwards and flipped. A cursor is a subscriber id, not
an address, so no address ends up in URLs, browser histories or proxy logs. A filter with
few matches (up to COUNT_CAP) has them read through their own indexes first and sorted,
rather than found by walking the address index (see _matches).

Search is a case-insensitive substring match on the address or the name (ILIKE), served
on PostgreSQL by pg_trgm GIN indexes (see the migration d8a3b6f2c915).

Counts are exact up to COUNT_CAP and "more than COUNT_CAP" beyond: an exact count of a
broad filter at a million rows would cost more than the page itself. Without any filter,
PostgreSQL's own row estimate stands in for the total (shown as "about").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

import idna
import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.lists import get_list
from newsletter.models import Delivery
from newsletter.models import DeliveryStatus
from newsletter.models import FeedbackEvent
from newsletter.models import FeedbackKind
from newsletter.models import Issue
from newsletter.models import MailingList
from newsletter.models import Subscriber
from newsletter.models import Subscription
from newsletter.models import SubscriptionEvent
from newsletter.models import SubscriptionStatus

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
COUNT_CAP = 10_000
MAX_SEARCH = 200
# The status filter also offers "erased": anonymous records kept for the counts.
ERASED = "erased"
STATUS_FILTERS = (*(s.value for s in SubscriptionStatus), ERASED)
HISTORY_LIMIT = 200


class DirectoryError(NewsletterError):
    """A filter or page link that cannot be used (bad status, oversized search...)."""


class StaleCursor(NewsletterError):
    """The page link points at a subscriber who is no longer there."""

    status_code = 404


@dataclass(frozen=True)
class Filters:
    """What the editor narrowed the directory to; every field optional."""

    list_slug: str | None = None
    status: str | None = None  # a SubscriptionStatus value, or "erased"
    search: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.list_slug or self.status or self.search)


@dataclass(frozen=True)
class Membership:
    """One subscription as shown in a directory row."""

    list_slug: str
    status: SubscriptionStatus


@dataclass(frozen=True)
class DirectoryRow:
    """One subscriber on a page."""

    id: int
    email: str
    name: str | None
    created_at: datetime
    erased: bool
    memberships: list[Membership] = field(default_factory=list)


@dataclass(frozen=True)
class Count:
    """How many subscribers match: exact, at least `value` (capped), or estimated."""

    value: int
    capped: bool = False
    estimated: bool = False


@dataclass(frozen=True)
class Page:
    """A page of the directory and what the pager needs."""

    rows: list[DirectoryRow]
    has_prev: bool
    has_next: bool
    count: Count
    # Position of the first row among the matches (1-based), when known cheaply: always on
    # the first page, and on any page when the count is exact (at most COUNT_CAP matches).
    start: int | None = None

    @property
    def first_id(self) -> int | None:
        return self.rows[0].id if self.rows else None

    @property
    def last_id(self) -> int | None:
        return self.rows[-1].id if self.rows else None


@dataclass(frozen=True)
class _Where:
    """A filter as SQL: the subscriber's own conditions and the subscription ones."""

    own: list[sa.ColumnElement[bool]]
    membership: list[sa.ColumnElement[bool]]
    by_list: bool

    @property
    def conditions(self) -> list[sa.ColumnElement[bool]]:
        if not self.membership:
            return self.own
        has = sa.exists().where(Subscription.subscriber_id == Subscriber.id, *self.membership)
        return [*self.own, has]


def _where(session: so.Session, filters: Filters) -> _Where:
    """The WHERE clauses of a filter, checked (raises DirectoryError or NotFound)."""
    status = filters.status or None
    if status is not None and status not in STATUS_FILTERS:
        raise DirectoryError(f"Unknown status {status!r}: use one of {', '.join(STATUS_FILTERS)}.")
    own: list[sa.ColumnElement[bool]] = [
        Subscriber.erased_at.is_not(None) if status == ERASED else Subscriber.erased_at.is_(None)
    ]
    found = search_condition(session, filters.search)
    if found is not None:
        own.append(found)
    membership: list[sa.ColumnElement[bool]] = []
    if filters.list_slug:
        membership.append(Subscription.list_id == get_list(session, filters.list_slug).id)
    if status is not None and status != ERASED:
        membership.append(Subscription.status == SubscriptionStatus(status))
    return _Where(own, membership, by_list=bool(filters.list_slug))


def search_condition(session: so.Session, text: str | None) -> sa.ColumnElement[bool] | None:
    """The directory's search as SQL on Subscriber: address or name contains the text.

    None for a blank search; raises DirectoryError for one over MAX_SEARCH characters.
    Case is ignored, non-ASCII letters too.
    """
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > MAX_SEARCH:
        raise DirectoryError(f"The search is too long (at most {MAX_SEARCH} characters).")
    escaped = _escape(text)
    # Address keys are ASCII (punycode domains): "exämple" is looked for as "xn--exmple-cua".
    ascii_form = _punycode(text)
    extra = _escape(ascii_form) if ascii_form != text else None
    if session.get_bind().dialect.name == "sqlite":
        # SQLite's lower() and LIKE fold ASCII only: "ØRSTED" would miss "Ørsted".
        # Python's lower() on both sides does what PostgreSQL's ILIKE does.
        driver = session.connection().connection.driver_connection
        assert driver is not None
        driver.create_function("nl_lower", 1, _lower, deterministic=True)
        pattern = f"%{escaped.lower()}%"
        conditions = [
            sa.func.nl_lower(Subscriber.email).like(pattern, escape="\\"),
            sa.func.nl_lower(Subscriber.name).like(pattern, escape="\\"),
        ]
        if extra:
            conditions.append(Subscriber.email.like(f"%{extra.lower()}%", escape="\\"))
        return sa.or_(*conditions)
    # ILIKE on the plain columns is what the pg_trgm GIN indexes serve.
    pattern = f"%{escaped}%"
    conditions = [
        Subscriber.email.ilike(pattern, escape="\\"),
        Subscriber.name.ilike(pattern, escape="\\"),
    ]
    if extra:
        conditions.append(Subscriber.email.ilike(f"%{extra}%", escape="\\"))
    return sa.or_(*conditions)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _punycode(text: str) -> str:
    """The text with each non-ASCII label (between @ and dots) in IDNA form, when it has one."""
    pieces = re.split(r"([@.])", text)
    for index, piece in enumerate(pieces):
        if piece and not piece.isascii():
            try:
                pieces[index] = idna.encode(piece, uts46=True).decode("ascii")
            except idna.IDNAError:
                pass
    return "".join(pieces)


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _email_of(session: so.Session, subscriber_id: int) -> str:
    email = session.scalar(sa.select(Subscriber.email).where(Subscriber.id == subscriber_id))
    if email is None:
        raise StaleCursor("That page is out of date: the subscriber it started from is gone.")
    return email


def subscriber_page(
    session: so.Session,
    filters: Filters = Filters(),
    *,
    after: int | None = None,
    before: int | None = None,
    last: bool = False,
    size: int = PAGE_SIZE,
) -> Page:
    """Return a page of subscribers by address: the first, `after`/`before` an id, or the last.

    Raises DirectoryError for a bad filter, NotFound for an unknown list and StaleCursor
    when the cursor's subscriber no longer exists.
    """
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise DirectoryError(f"A page holds 1 to {MAX_PAGE_SIZE} subscribers.")
    if sum((after is not None, before is not None, last)) > 1:
        raise DirectoryError("Ask for one page: after, before or last.")
    where = _where(session, filters)
    counted = _count(session, where, filters)
    matches = _matches(session, where, filters, counted)
    query = sa.select(
        matches.c.id,
        matches.c.display_email,
        matches.c.name,
        matches.c.created_at,
        matches.c.erased_at,
    )
    backwards = last or before is not None
    if after is not None:
        query = query.where(matches.c.email > _email_of(session, after))
    if before is not None:
        query = query.where(matches.c.email < _email_of(session, before))
    order = matches.c.email.desc() if backwards else matches.c.email.asc()
    # One extra row tells whether there is a further page in the reading direction.
    found = list(session.execute(query.order_by(order).limit(size + 1)).all())
    more = len(found) > size
    found = found[:size]
    if backwards:
        found.reverse()
    rows = _with_memberships(session, found)
    if backwards:
        has_prev, has_next = more, before is not None
    else:
        has_prev, has_next = after is not None, more
    start = None
    if rows and not has_prev:
        start = 1
    elif rows and not (counted.capped or counted.estimated):
        # The matches are few (the count is exact): counting those before the page is cheap.
        earlier = session.scalar(
            sa.select(sa.func.count())
            .select_from(matches)
            .where(matches.c.email < _email_of(session, rows[0].id))
        )
        start = (earlier or 0) + 1
    return Page(
        rows=rows,
        has_prev=has_prev,
        has_next=has_next,
        count=counted,
        start=start,
    )


def _matches(session: so.Session, where: _Where, filters: Filters, counted: Count) -> sa.CTE:
    """The subscribers a filter matches, as a CTE for the page to order and cut.

    Left to itself, PostgreSQL answers "ORDER BY email LIMIT 51" by walking the address
    index and filtering, whenever its estimate of the matches (from ANALYZE's sample) is
    large enough. For a search or a small list that misses by a few times, the walk
    reads most of the table: a name search at a million went from 12 ms to 555 ms
    between two ANALYZE runs. So when the count (already needed for the page) found at
    most COUNT_CAP matches, the CTE is MATERIALIZED: the matches come from the search
    and list indexes and at most COUNT_CAP rows are sorted. Past the cap they are dense
    enough that the walk finds a page soon, and the plain CTE is inlined into it.

    A list filter without a search starts from the list's subscriptions and probes each
    subscriber by id (LATERAL ... LIMIT 1): asked the other way, PostgreSQL hashes the
    list and scans every subscriber (75 ms against 24 ms for 5,000 of a million).
    """
    columns = (
        Subscriber.id,
        Subscriber.email,
        Subscriber.display_email,
        Subscriber.name,
        Subscriber.created_at,
        Subscriber.erased_at,
    )
    few = filters.any and not (counted.capped or counted.estimated)
    if not few or session.get_bind().dialect.name != "postgresql":
        return sa.select(*columns).where(*where.conditions).cte("matches")
    if where.by_list and len(where.own) == 1:
        probe = (
            sa.select(*columns)
            .where(Subscriber.id == Subscription.subscriber_id, *where.own)
            .correlate(Subscription)
            .limit(1)
            .lateral("s")
        )
        query = (
            sa.select(*probe.c)
            .select_from(Subscription)
            .join(probe, sa.true())
            .where(*where.membership)
        )
    else:
        query = sa.select(*columns).where(*where.conditions)
    return query.cte("matches").prefix_with("MATERIALIZED")


def _with_memberships(session: so.Session, found: list[sa.Row]) -> list[DirectoryRow]:
    ids = [row.id for row in found]
    memberships: dict[int, list[Membership]] = {i: [] for i in ids}
    if ids:
        for subscriber_id, slug, status in session.execute(
            sa.select(Subscription.subscriber_id, MailingList.slug, Subscription.status)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.subscriber_id.in_(ids))
            .order_by(MailingList.slug)
        ):
            memberships[subscriber_id].append(Membership(slug, status))
    return [
        DirectoryRow(
            id=row.id,
            email=row.display_email,
            name=row.name,
            created_at=row.created_at,
            erased=row.erased_at is not None,
            memberships=memberships[row.id],
        )
        for row in found
    ]


def count(session: so.Session, filters: Filters = Filters()) -> Count:
    """Count the subscribers a filter matches, exactly up to COUNT_CAP (see the module doc)."""
    return _count(session, _where(session, filters), filters)


def _count(session: so.Session, where: _Where, filters: Filters) -> Count:
    if where.by_list and len(where.own) == 1:
        # A list filter (and maybe a status) without a search: count the list's matching
        # subscriptions (one per subscriber), with the erased check as a per-row lookup.
        # Asked through the subscribers instead, PostgreSQL hashes the matches and scans
        # the subscriber table until it has COUNT_CAP of them: ~85 ms against ~35 ms at a
        # million. (A status alone needs one row per subscriber, and DISTINCT loses more
        # than this wins: that one stays on the subscriber side.)
        erased_at = (
            sa.select(Subscriber.erased_at)
            .where(Subscriber.id == Subscription.subscriber_id)
            .scalar_subquery()
        )
        capped = (
            sa.select(Subscription.subscriber_id)
            .where(*where.membership, erased_at.is_(None))
            .limit(COUNT_CAP + 1)
            .subquery()
        )
    else:
        capped = sa.select(Subscriber.id).where(*where.conditions).limit(COUNT_CAP + 1).subquery()
    value = session.scalar(sa.select(sa.func.count()).select_from(capped)) or 0
    if value <= COUNT_CAP:
        return Count(value)
    if not filters.any and session.get_bind().dialect.name == "postgresql":
        estimate = session.scalar(
            sa.text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'subscriber'::regclass")
        )
        if estimate and estimate > COUNT_CAP:
            return Count(int(estimate), estimated=True)
    return Count(COUNT_CAP, capped=True)


# --- One subscriber's history -------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionHistory:
    """A subscription with its consent record and its status changes, oldest first."""

    subscription: Subscription
    list_slug: str
    list_name: str
    events: list[SubscriptionEvent]


@dataclass(frozen=True)
class DeliveryRow:
    """One ledger row: what happened to one issue sent to this subscriber."""

    issue_id: int
    issue_title: str
    list_slug: str
    status: DeliveryStatus
    attempts: int
    sent_at: datetime | None
    updated_at: datetime
    error: str | None


@dataclass(frozen=True)
class FeedbackRow:
    """A bounce, complaint or delivery report from SES."""

    kind: FeedbackKind
    occurred_at: datetime
    issue_title: str | None
    bounce_type: str | None
    bounce_subtype: str | None
    detail: str | None


@dataclass(frozen=True)
class History:
    """Everything the console shows about one subscriber (newest deliveries and feedback first)."""

    subscriber: Subscriber
    subscriptions: list[SubscriptionHistory]
    deliveries: list[DeliveryRow]
    feedback: list[FeedbackRow]
    more_deliveries: bool
    more_feedback: bool


def get_subscriber(session: so.Session, subscriber_id: int) -> Subscriber:
    """Return the subscriber with this id, or raise NotFound."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("There is no such subscriber (erased records keep their page).")
    return subscriber


def subscriber_history(
    session: so.Session, subscriber_id: int, *, limit: int = HISTORY_LIMIT
) -> History:
    """Return a subscriber's subscriptions, consent, status changes, ledger rows and feedback."""
    subscriber = get_subscriber(session, subscriber_id)
    subscriptions = []
    for subscription, slug, name in session.execute(
        sa.select(Subscription, MailingList.slug, MailingList.name)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.subscriber_id == subscriber.id)
        .order_by(MailingList.slug)
    ).all():
        events = list(
            session.scalars(
                sa.select(SubscriptionEvent)
                .where(SubscriptionEvent.subscription_id == subscription.id)
                .order_by(SubscriptionEvent.at, SubscriptionEvent.id)
            )
        )
        subscriptions.append(SubscriptionHistory(subscription, slug, name, events))

    ledger = session.execute(
        sa.select(
            Delivery.issue_id,
            Issue.title,
            MailingList.slug,
            Delivery.status,
            Delivery.attempts,
            Delivery.sent_at,
            Delivery.updated_at,
            Delivery.error,
        )
        .join(Issue, Issue.id == Delivery.issue_id)
        .join(MailingList, MailingList.id == Issue.list_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id.desc())
        .limit(limit + 1)
    ).all()
    feedback = session.execute(
        sa.select(
            FeedbackEvent.kind,
            FeedbackEvent.occurred_at,
            Issue.title,
            FeedbackEvent.bounce_type,
            FeedbackEvent.bounce_subtype,
            FeedbackEvent.detail,
        )
        .outerjoin(Issue, Issue.id == FeedbackEvent.issue_id)
        .where(
            sa.or_(
                FeedbackEvent.subscriber_id == subscriber.id,
                FeedbackEvent.email == subscriber.email,
            )
        )
        .order_by(FeedbackEvent.occurred_at.desc(), FeedbackEvent.id.desc())
        .limit(limit + 1)
    ).all()
    return History(
        subscriber=subscriber,
        subscriptions=subscriptions,
        deliveries=[DeliveryRow(*row) for row in ledger[:limit]],
        feedback=[FeedbackRow(*row) for row in feedback[:limit]],
        more_deliveries=len(ledger) > limit,
        more_feedback=len(feedback) > limit,
    )
