"""Prometheus metrics: the web app's /metrics and `newsletter worker --metrics-port`.

Counters and histograms live in each process (prometheus_client's default registry; with
PROMETHEUS_MULTIPROC_DIR set, in files that every gunicorn worker shares, as
prometheus_client documents). What all machines share (the queue, the send rate, the SES
quota, the live workers) is read from the database when scraped (DatabaseCollector), so
any web machine or worker answers the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from newsletter.db import Database

# prometheus_client opens its files in this folder as each metric is created, and a
# missing folder would stop every process (web, CLI, worker) right here.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

MESSAGES = Counter(
    "newsletter_messages",
    "Messages handed to the mail backend, by outcome (sent, failed, unknown, retried, throttled, "
    "deferred: back in the queue for a paused send) and issue id.",
    ["outcome", "issue"],
)
SUPPRESSED = Counter(
    "newsletter_messages_suppressed",
    "Messages not sent because the reader left or was suppressed just before, by issue id.",
    ["issue"],
)
SES_CALL_SECONDS = Histogram(
    "newsletter_ses_call_seconds",
    "Time one SES SendEmail call took, answered or failed.",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0),
)
THROTTLES = Counter(
    "newsletter_ses_throttles", "SES answers that said 'slow down' (the shared rate drops)."
)
SIGNUPS = Counter("newsletter_signups", "Subscriptions opened pending (signups, re-signups).")
CONFIRMATIONS = Counter(
    "newsletter_confirmations",
    "Subscriptions made active by their reader: confirmed, or taken back within 30 days.",
)
UNSUBSCRIBES = Counter(
    "newsletter_unsubscribes",
    "Subscriptions that became unsubscribed (by the reader or an editor).",
)
SNS_NOTIFICATIONS = Counter(
    "newsletter_sns_notifications",
    "SNS posts to /webhooks/ses that were verified, by SES event type (bounce, complaint, "
    "delivery, ...; subscription for SNS's own messages) and outcome.",
    ["type", "outcome"],
)
WEBHOOK_FAILURES = Counter(
    "newsletter_webhook_failures",
    "Posts to /webhooks/ses that were refused or could not be processed, by reason.",
    ["reason"],
)

# SES event types, as lowercase label values; anything else is "other".
SES_EVENT_TYPES = frozenset(
    {
        "bounce",
        "complaint",
        "delivery",
        "send",
        "reject",
        "open",
        "click",
        "renderingfailure",
        "deliverydelay",
        "subscription",
    }
)


def sns_received(event_type: str | None, outcome: str) -> None:
    """Count one verified SNS post."""
    kind = (event_type or "subscription").lower()
    SNS_NOTIFICATIONS.labels(
        type=kind if kind in SES_EVENT_TYPES else "other", outcome=outcome
    ).inc()


def message_done(
    issue_id: int, error: BaseException | None, failed: bool, *, unknown: bool = False
) -> None:
    """Count what one attempt to send a message came to (see MESSAGES' outcomes)."""
    from newsletter.mail import AccountPausedError
    from newsletter.mail import QuotaExceededError
    from newsletter.mail import ThrottledError

    if error is None:
        outcome = "sent"
    elif unknown:
        outcome = "unknown"  # the call may have reached SES: never retried by itself
    elif failed:
        outcome = "failed"
    elif isinstance(error, ThrottledError):
        outcome = "throttled"
        THROTTLES.inc()
    elif isinstance(error, (QuotaExceededError, AccountPausedError)):
        outcome = "deferred"
    else:
        outcome = "retried"
    MESSAGES.labels(outcome=outcome, issue=str(issue_id)).inc()


# --- Counting what a transaction records, once it commits ---------------------------------

_PENDING = "newsletter.metrics.pending"
_listening = False


def count_on_commit(session: so.Session, counter: Any) -> None:
    """Increment `counter` when the session's transaction commits (never if it rolls back)."""
    session.info.setdefault(_PENDING, []).append(counter)
    _listen()


def _listen() -> None:
    global _listening
    if _listening:
        return
    _listening = True
    sa.event.listen(so.Session, "after_commit", _on_commit)
    sa.event.listen(so.Session, "after_soft_rollback", _on_rollback)


def _on_commit(session: so.Session) -> None:
    for counter in session.info.pop(_PENDING, ()):
        counter.inc()


def _on_rollback(session: so.Session, previous_transaction: Any) -> None:
    if not session.in_transaction():  # the whole transaction, not a savepoint
        session.info.pop(_PENDING, None)


# --- What every machine shares, read from the database ------------------------------------


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape: queue depth, rate, quota, workers."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from newsletter.models import Delivery
        from newsletter.models import DeliveryStatus
        from newsletter.models import SendPace
        from newsletter.models import Worker
        from newsletter.models import WorkerStatus
        from newsletter.pacing import PACE_NAME

        queued = GaugeMetricFamily(
            "newsletter_queue_depth",
            "Messages waiting to be sent (queued), by issue id.",
            labels=["issue"],
        )
        in_flight = GaugeMetricFamily(
            "newsletter_messages_in_flight",
            "Messages handed to a worker and not yet recorded (sending), by issue id.",
            labels=["issue"],
        )
        rate = GaugeMetricFamily(
            "newsletter_send_rate",
            "The sending rate all workers share now, messages per second (lowered by throttles).",
        )
        max_rate = GaugeMetricFamily(
            "newsletter_send_rate_max", "The most the shared rate may reach, messages per second."
        )
        quota_left = GaugeMetricFamily(
            "newsletter_ses_quota_left",
            "Messages the SES 24-hour quota still allows, as last read plus reservations since.",
        )
        workers = GaugeMetricFamily("newsletter_workers", "Delivery workers registered as running.")
        up = GaugeMetricFamily(
            "newsletter_database_up", "1 when the database answered this scrape, else 0."
        )
        try:
            with self.database.session() as session:
                rows = session.execute(
                    sa.select(Delivery.issue_id, Delivery.status, sa.func.count())
                    .where(Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]))
                    .group_by(Delivery.issue_id, Delivery.status)
                ).all()
                pace = session.get(SendPace, PACE_NAME)
                running = session.scalar(
                    sa.select(sa.func.count()).where(Worker.status == WorkerStatus.RUNNING)
                )
        except sa.exc.SQLAlchemyError:
            # Still answer: the process's own counters matter most when the database is away.
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for issue_id, status, count in rows:
            family = queued if status is DeliveryStatus.QUEUED else in_flight
            family.add_metric([str(issue_id)], count)
        if pace is not None:
            rate.add_metric([], pace.rate)
            max_rate.add_metric([], pace.max_rate)
            if pace.quota_max is not None:
                left = pace.quota_max - pace.quota_sent - pace.quota_used_since
                quota_left.add_metric([], max(left, 0.0))
        workers.add_metric([], running or 0)
        yield from (up, queued, in_flight, rate, max_rate, quota_left, workers)


def scrape_registry(database: Database) -> CollectorRegistry:
    """Return the registry to expose: this process's metrics (or, with
    PROMETHEUS_MULTIPROC_DIR, every process's) and the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(DatabaseCollector(database))
    return registry


class _Forward(Collector):
    """Expose another registry's metrics (the process-wide one) inside a new registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return iter(self.registry.collect())


def serve(database: Database, port: int, host: str = "0.0.0.0") -> Any:
    """Serve this process's metrics over HTTP on a thread (`newsletter worker --metrics-port`)."""
    from prometheus_client import start_http_server

    from newsletter.errors import NewsletterError

    try:
        return start_http_server(port, addr=host, registry=scrape_registry(database))
    except OSError as exc:
        raise NewsletterError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None


def exposition(database: Database, accept: str | None = None) -> tuple[bytes, str]:
    """Return the metrics and their content type, in the format the scraper accepts."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(scrape_registry(database)), content_type
