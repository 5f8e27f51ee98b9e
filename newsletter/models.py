"""The data model: lists, subscribers, subscriptions, issues, the delivery ledger, suppressions."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter.db import Base

intpk = Annotated[int, so.mapped_column(primary_key=True)]
created = Annotated[datetime, so.mapped_column(default=clock.now)]
email_str = Annotated[str, so.mapped_column(sa.String(320))]


def enum_column(enum_cls: type[enum.Enum], **kwargs: Any) -> so.MappedColumn[Any]:
    """Store an enum by value as a plain string (readable, and no native type to migrate)."""
    return so.mapped_column(
        sa.Enum(
            enum_cls,
            values_callable=lambda members: [m.value for m in members],
            native_enum=False,
            length=20,
            validate_strings=True,
        ),
        **kwargs,
    )


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class IssueStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for a worker
    SENDING = "sending"  # claimed; the SES call may be in flight
    SENT = "sent"  # SES accepted it (ses_message_id set)
    DELIVERED = "delivered"  # SES reported delivery to the mailbox provider
    FAILED = "failed"  # rejected for this recipient; error says why
    SUPPRESSED = "suppressed"  # skipped: the reader left, bounced or complained
    UNKNOWN = "unknown"  # the call may have reached SES: it may or may not have taken it
    CANCELLED = "cancelled"  # not sent: the editor cancelled the send first
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class WorkerStatus(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # shut down cleanly: nothing left in flight
    LOST = "lost"  # stopped heart-beating (killed, machine gone): its in-flight rows are unknown


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCES = "soft_bounces"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    SES_LIST = "ses_list"


class FeedbackKind(enum.StrEnum):
    """What SES reported about one message and one recipient."""

    SEND = "send"
    DELIVERY = "delivery"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    REJECT = "reject"
    DELIVERY_DELAY = "delivery_delay"


class MailingList(Base):
    """A publication readers subscribe to."""

    __tablename__ = "mailing_list"

    id: so.Mapped[intpk]
    slug: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    from_address: so.Mapped[email_str]
    reply_to: so.Mapped[str | None] = so.mapped_column(sa.String(320))
    postal_address: so.Mapped[str | None] = so.mapped_column(sa.Text)
    description: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # BCP 47 tag: the language of the list's pages and emails (newsletter.i18n).
    language: so.Mapped[str] = so.mapped_column(sa.String(35), default="en", server_default="en")
    created_at: so.Mapped[created]

    subscriptions: so.WriteOnlyMapped[Subscription] = so.relationship(back_populates="list")


class Subscriber(Base):
    """A person, known by one normalized email address."""

    __tablename__ = "subscriber"
    __table_args__ = (
        # The console's substring search (ILIKE '%text%') on address and name: trigram
        # GIN indexes on PostgreSQL (pg_trgm). SQLite gets plain indexes of the same name,
        # which keep the two schemas comparable; it scans for substrings, fine at its scale.
        sa.Index(
            "ix_subscriber_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
        sa.Index(
            "ix_subscriber_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        # The console's "erased" filter, in address order: a few rows in a million, which
        # the address index would be walked end to end to find. Partial, so live
        # subscribers (and imports) never touch it.
        sa.Index(
            "ix_subscriber_erased_email",
            "email",
            postgresql_where=sa.text("erased_at IS NOT NULL"),
            sqlite_where=sa.text("erased_at IS NOT NULL"),
        ),
        # The console's orders by name and by date subscribed, with the id as tie-breaker
        # (keyset pages; see newsletter.directory). Partial: the directory lists erased
        # records apart, and they have no name.
        sa.Index(
            "ix_subscriber_name_id",
            "name",
            "id",
            postgresql_where=sa.text("erased_at IS NULL"),
            sqlite_where=sa.text("erased_at IS NULL"),
        ),
        sa.Index(
            "ix_subscriber_created_at_id",
            "created_at",
            "id",
            postgresql_where=sa.text("erased_at IS NULL"),
            sqlite_where=sa.text("erased_at IS NULL"),
        ),
    )

    id: so.Mapped[intpk]
    # The de-duplication key: the whole address lowercased (email-validator only
    # lowercases the domain). `display_email` keeps what the reader typed.
    email: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    display_email: so.Mapped[email_str]
    name: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    created_at: so.Mapped[created]
    erased_at: so.Mapped[datetime | None]

    subscriptions: so.Mapped[list[Subscription]] = so.relationship(back_populates="subscriber")


class Subscription(Base):
    """A subscriber on a list, with its status and the proof of consent."""

    __tablename__ = "subscription"
    __table_args__ = (
        sa.UniqueConstraint("subscriber_id", "list_id"),
        # A list's subscribers by status and by date confirmed, with the subscriber as
        # tie-breaker: the console's orders on a list (keyset pages). The first also
        # serves every lookup by list (it replaced the index on list_id alone).
        sa.Index("ix_subscription_list_status_subscriber", "list_id", "status", "subscriber_id"),
        sa.Index(
            "ix_subscription_list_confirmed_subscriber", "list_id", "confirmed_at", "subscriber_id"
        ),
    )

    id: so.Mapped[intpk]
    # No index of its own: the unique (subscriber_id, list_id) index serves lookups by
    # subscriber, and one index less is a cheaper insert for every row an import adds.
    subscriber_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("subscriber.id", ondelete="CASCADE")
    )
    list_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("mailing_list.id", ondelete="CASCADE"))
    status: so.Mapped[SubscriptionStatus] = enum_column(SubscriptionStatus, index=True)
    created_at: so.Mapped[created]
    status_changed_at: so.Mapped[datetime] = so.mapped_column(default=clock.now)
    confirmed_at: so.Mapped[datetime | None]
    unsubscribed_at: so.Mapped[datetime | None]
    # How the subscription came about: "form", "embed", "import", "admin".
    source: so.Mapped[str] = so.mapped_column(sa.String(32))
    # Proof of consent: when, from which IP, on which form (or which import).
    consent_at: so.Mapped[datetime | None]
    consent_ip: so.Mapped[str | None] = so.mapped_column(sa.String(45))
    consent_form: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    # Nonce carried by the current confirmation link; cleared once used, so a link works once.
    confirm_nonce: so.Mapped[str | None] = so.mapped_column(sa.String(32))

    subscriber: so.Mapped[Subscriber] = so.relationship(back_populates="subscriptions")
    list: so.Mapped[MailingList] = so.relationship(back_populates="subscriptions")


class SubscriptionEvent(Base):
    """One status change of a subscription: the history shown to editors."""

    __tablename__ = "subscription_event"

    id: so.Mapped[intpk]
    subscription_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("subscription.id", ondelete="CASCADE"), index=True
    )
    status: so.Mapped[SubscriptionStatus] = enum_column(SubscriptionStatus)
    at: so.Mapped[created]
    # What caused it: "signup", "confirm", "unsubscribe", "one-click", "bounce", ...
    reason: so.Mapped[str] = so.mapped_column(sa.String(64))
    ip: so.Mapped[str | None] = so.mapped_column(sa.String(45))


class ConfirmationEmail(Base):
    """A confirmation email sent to an address: counted to cap them per 24 hours."""

    __tablename__ = "confirmation_email"
    __table_args__ = (
        sa.Index("ix_confirmation_email_subscriber_sent", "subscriber_id", "sent_at"),
    )

    id: so.Mapped[intpk]
    subscriber_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("subscriber.id", ondelete="CASCADE")
    )
    list_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("mailing_list.id", ondelete="CASCADE"))
    sent_at: so.Mapped[created]


class RateLimitCounter(Base):
    """A fixed-window hit counter shared by every web process through the database."""

    __tablename__ = "rate_limit_counter"

    key: so.Mapped[str] = so.mapped_column(sa.String(400), primary_key=True)
    window_start: so.Mapped[datetime] = so.mapped_column(primary_key=True)
    count: so.Mapped[int] = so.mapped_column(default=0)


class Issue(Base):
    """One issue of a list, compiled once when the send is created."""

    __tablename__ = "issue"
    __table_args__ = (sa.UniqueConstraint("list_id", "slug"),)

    id: so.Mapped[intpk]
    list_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("mailing_list.id"), index=True)
    slug: so.Mapped[str] = so.mapped_column(sa.String(200))
    title: so.Mapped[str] = so.mapped_column(sa.String(500))
    subject: so.Mapped[str] = so.mapped_column(sa.String(500))
    issue_date: so.Mapped[datetime]
    status: so.Mapped[IssueStatus] = enum_column(IssueStatus, index=True)
    # The YAML as sent, and the compiled parts with per-reader placeholders: later
    # edits of the file change nothing already sending.
    source_yaml: so.Mapped[str] = so.mapped_column(sa.Text)
    compiled_html: so.Mapped[str] = so.mapped_column(sa.Text)
    compiled_text: so.Mapped[str] = so.mapped_column(sa.Text)
    created_at: so.Mapped[created]
    scheduled_at: so.Mapped[datetime | None]
    started_at: so.Mapped[datetime | None]
    finished_at: so.Mapped[datetime | None]
    paused_reason: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # Set when a pause ends by itself (the SES daily quota frees); None needs the editor.
    resume_at: so.Mapped[datetime | None]
    preheader: so.Mapped[str | None] = so.mapped_column(sa.String(500))

    list: so.Mapped[MailingList] = so.relationship()


class Delivery(Base):
    """The ledger: one row per issue and reader, recording what happened to that email."""

    __tablename__ = "delivery"
    __table_args__ = (
        sa.UniqueConstraint("issue_id", "subscriber_id"),
        sa.Index("ix_delivery_issue_status", "issue_id", "status"),
        # A subscriber's ledger rows in id order: the console pages them newest first.
        sa.Index("ix_delivery_subscriber_id_id", "subscriber_id", "id"),
    )

    id: so.Mapped[intpk]
    issue_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("issue.id", ondelete="CASCADE"))
    subscriber_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("subscriber.id", ondelete="CASCADE")
    )
    subscription_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("subscription.id", ondelete="SET NULL")
    )
    status: so.Mapped[DeliveryStatus] = enum_column(DeliveryStatus)
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    claimed_by: so.Mapped[str | None] = so.mapped_column(sa.String(100), index=True)
    claimed_at: so.Mapped[datetime | None]
    # Not before this time (retry back-off after throttling or a network error).
    retry_at: so.Mapped[datetime | None]
    sent_at: so.Mapped[datetime | None]
    updated_at: so.Mapped[datetime] = so.mapped_column(default=clock.now, onupdate=clock.now)
    # SendEmail's MessageId: bounces, complaints and deliveries are matched on it.
    ses_message_id: so.Mapped[str | None] = so.mapped_column(sa.String(200), unique=True)
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)

    issue: so.Mapped[Issue] = so.relationship()
    subscriber: so.Mapped[Subscriber] = so.relationship()


class Worker(Base):
    """A running `newsletter worker` (or in-process send): its heartbeat proves it is alive."""

    __tablename__ = "worker"

    id: so.Mapped[str] = so.mapped_column(sa.String(100), primary_key=True)
    hostname: so.Mapped[str] = so.mapped_column(sa.String(255))
    pid: so.Mapped[int]
    concurrency: so.Mapped[int]
    status: so.Mapped[WorkerStatus] = enum_column(WorkerStatus, index=True)
    started_at: so.Mapped[created]
    heartbeat_at: so.Mapped[datetime] = so.mapped_column(default=clock.now)
    stopped_at: so.Mapped[datetime | None]


class SendPace(Base):
    """The send budget every worker shares: the rate, the next free slot, the daily quota."""

    __tablename__ = "send_pace"

    name: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    # Messages per second allowed (configured, or SES MaxSendRate).
    max_rate: so.Mapped[float] = so.mapped_column(sa.Float)
    # The rate in force now: lowered when SES throttles, raised again slowly.
    rate: so.Mapped[float] = so.mapped_column(sa.Float)
    rate_changed_at: so.Mapped[float] = so.mapped_column(sa.Float, default=0.0)
    # Unix time of the next free send slot. A float, not a timestamp: slots are
    # milliseconds apart and computed with arithmetic on every reservation.
    next_slot: so.Mapped[float] = so.mapped_column(sa.Float, default=0.0)
    # The SES 24-hour quota as last read, and what has been reserved since.
    quota_max: so.Mapped[float | None] = so.mapped_column(sa.Float)
    quota_sent: so.Mapped[float] = so.mapped_column(sa.Float, default=0.0)
    quota_used_since: so.Mapped[float] = so.mapped_column(sa.Float, default=0.0)
    quota_read_at: so.Mapped[datetime | None]


class Suppression(Base):
    """An address that is never mailed, whatever list it is on."""

    __tablename__ = "suppression"

    id: so.Mapped[intpk]
    email: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    reason: so.Mapped[SuppressionReason] = enum_column(SuppressionReason)
    detail: so.Mapped[str | None] = so.mapped_column(sa.Text)
    created_at: so.Mapped[created]


class SnsNotification(Base):
    """An SNS notification already processed: SNS redelivers with the same MessageId."""

    __tablename__ = "sns_notification"

    id: so.Mapped[intpk]
    message_id: so.Mapped[str] = so.mapped_column(sa.String(100), unique=True)
    topic_arn: so.Mapped[str] = so.mapped_column(sa.String(256))
    # The SES event type it carried ("Bounce", "Delivery", ...), for the operator.
    event_type: so.Mapped[str] = so.mapped_column(sa.String(40))
    received_at: so.Mapped[created]


class FeedbackEvent(Base):
    """One SES event for one message and recipient: the source of the per-issue figures."""

    __tablename__ = "feedback_event"
    __table_args__ = (
        # The second idempotency key: SES may publish one event through two topics.
        sa.UniqueConstraint("ses_message_id", "kind", "email"),
        sa.Index("ix_feedback_event_issue_kind", "issue_id", "kind"),
        sa.Index("ix_feedback_event_email_kind_at", "email", "kind", "occurred_at"),
    )

    id: so.Mapped[intpk]
    kind: so.Mapped[FeedbackKind] = enum_column(FeedbackKind)
    ses_message_id: so.Mapped[str] = so.mapped_column(sa.String(200))
    email: so.Mapped[str] = so.mapped_column(sa.String(320))
    # "Permanent", "Transient" or "Undetermined", and SES's subtype (bounces only).
    bounce_type: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    bounce_subtype: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    delivery_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("delivery.id", ondelete="SET NULL")
    )
    issue_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("issue.id", ondelete="SET NULL")
    )
    subscriber_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    # When SES says it happened (the event's own timestamp), and when we heard of it.
    occurred_at: so.Mapped[datetime]
    received_at: so.Mapped[created]
    detail: so.Mapped[str | None] = so.mapped_column(sa.Text)


class User(Base):
    """An editor account for the web console."""

    __tablename__ = "user_account"

    id: so.Mapped[intpk]
    email: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(255))
    created_at: so.Mapped[created]
    last_login_at: so.Mapped[datetime | None]


class ImportMode(enum.StrEnum):
    CONSENTED = "consented"  # the editor vouches for consent: rows become active at once
    DOUBLE_OPT_IN = "double_opt_in"  # each new address gets a confirmation email


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImportJob(Base):
    """A CSV import started from the console: its progress and, once done, its report."""

    __tablename__ = "import_job"

    id: so.Mapped[intpk]
    list_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("mailing_list.id", ondelete="CASCADE"), index=True
    )
    # The uploaded file's name, as the editor's computer called it (shown, never opened).
    filename: so.Mapped[str] = so.mapped_column(sa.String(255))
    mode: so.Mapped[ImportMode] = enum_column(ImportMode)
    status: so.Mapped[ImportStatus] = enum_column(ImportStatus)
    # The header names mapped to the address and the name; None: detected from the header.
    email_column: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    name_column: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    # The counters of newsletter.imports.ImportReport, updated while the import runs.
    rows: so.Mapped[int] = so.mapped_column(default=0)
    imported: so.Mapped[int] = so.mapped_column(default=0)
    confirmations: so.Mapped[int] = so.mapped_column(default=0)
    merged: so.Mapped[int] = so.mapped_column(default=0)
    refused: so.Mapped[int] = so.mapped_column(default=0)
    blank: so.Mapped[int] = so.mapped_column(default=0)
    bad_count: so.Mapped[int] = so.mapped_column(default=0)
    # JSON list of the first bad rows: [{"line": 7, "reason": "..."}, ...].
    bad_rows: so.Mapped[str] = so.mapped_column(sa.Text, default="[]")
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    bytes_total: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    bytes_done: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    created_at: so.Mapped[created]
    started_at: so.Mapped[datetime | None]
    finished_at: so.Mapped[datetime | None]
    updated_at: so.Mapped[datetime] = so.mapped_column(default=clock.now, onupdate=clock.now)

    list: so.Mapped[MailingList] = so.relationship()


class IssueDraft(Base):
    """Issue YAML an editor pasted or uploaded in the console, kept until it is sent.

    In the database, not on a web machine's disk: the editor's next request may land on
    any machine.
    """

    __tablename__ = "issue_draft"

    token: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    list_slug: so.Mapped[str] = so.mapped_column(sa.String(64))
    source_name: so.Mapped[str] = so.mapped_column(sa.String(255))
    text: so.Mapped[str] = so.mapped_column(sa.Text)
    editor_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: so.Mapped[created]
    # Saving sets it; `newsletter db prune` removes drafts not saved for the retention.
    updated_at: so.Mapped[datetime] = so.mapped_column(default=clock.now, index=True)


class ImportUpload(Base):
    """A CSV file uploaded in the console, kept in chunks from the upload to its import."""

    __tablename__ = "import_upload"

    id: so.Mapped[intpk]
    # The secret the mapping form carries (never the client's file name).
    token: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    filename: so.Mapped[str] = so.mapped_column(sa.String(255))
    size: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    created_at: so.Mapped[created] = so.mapped_column(index=True)


class ImportUploadChunk(Base):
    """One piece of an uploaded file (imports.uploads.CHUNK_BYTES; the last may be shorter)."""

    __tablename__ = "import_upload_chunk"

    upload_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("import_upload.id", ondelete="CASCADE"), primary_key=True
    )
    seq: so.Mapped[int] = so.mapped_column(primary_key=True, autoincrement=False)
    data: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
