"""Housekeeping: delete rows kept only for a while (`newsletter db prune`, daily by workers).

What goes, each after its retention (README, "Configuration"):
- rate-limit counters whose window started before NEWSLETTER_RATE_LIMIT_RETENTION_DAYS;
- SNS dedupe rows (the MessageIds already applied) older than
  NEWSLETTER_SNS_DEDUPE_RETENTION_DAYS: SNS stops redelivering a message within hours;
- console drafts not saved for NEWSLETTER_DRAFT_RETENTION_DAYS;
- staged CSV uploads older than NEWSLETTER_UPLOAD_RETENTION_DAYS (never imported, or left
  by a process that stopped mid-import).
Nothing else is touched: subscribers, their history, issues and the sending ledger stay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from newsletter import clock
from newsletter import drafts
from newsletter.config import settings_of
from newsletter.db import Database
from newsletter.db import rowcount
from newsletter.models import RateLimitCounter
from newsletter.models import SnsNotification

log = logging.getLogger(__name__)

# Workers prune this often (seconds), first when they start.
EVERY = 24 * 3600


@dataclass(frozen=True)
class Pruned:
    """How many rows of each kind were deleted."""

    rate_limit_counters: int = 0
    sns_notifications: int = 0
    drafts: int = 0
    uploads: int = 0

    def lines(self) -> list[str]:
        """One line per kind, for the command's output."""
        return [
            f"rate-limit counters: {self.rate_limit_counters}",
            f"SNS dedupe rows: {self.sns_notifications}",
            f"drafts: {self.drafts}",
            f"staged uploads: {self.uploads}",
        ]


def cutoffs(config: Mapping[str, Any], now: datetime) -> dict[str, datetime]:
    """Return, per kind, the time before which rows go."""

    settings = settings_of(config)
    return {
        "rate_limit_counters": now - timedelta(days=settings.rate_limit_retention_days),
        "sns_notifications": now - timedelta(days=settings.sns_dedupe_retention_days),
        "drafts": now - timedelta(days=settings.draft_retention_days),
        "uploads": now - timedelta(days=settings.upload_retention_days),
    }


def prune(session: so.Session, config: Mapping[str, Any]) -> Pruned:
    """Delete what is past its retention, in the session's transaction; say how much."""
    # Imported here: newsletter.imports pulls in subscriptions and their templates, which a
    # worker's start-up (it prunes daily) should not pay for.
    from newsletter.imports import uploads

    before = cutoffs(config, clock.now())
    counters = session.execute(
        sa.delete(RateLimitCounter).where(
            RateLimitCounter.window_start < before["rate_limit_counters"]
        )
    )
    notifications = session.execute(
        sa.delete(SnsNotification).where(SnsNotification.received_at < before["sns_notifications"])
    )
    return Pruned(
        rate_limit_counters=rowcount(counters),
        sns_notifications=rowcount(notifications),
        drafts=drafts.prune(session, before["drafts"]),
        uploads=uploads.prune(session, before["uploads"]),
    )


def prune_in_background(database: Database, config: Mapping[str, Any]) -> Pruned | None:
    """Prune in a transaction of its own (the workers' daily run); log, never raise."""
    try:
        with database.transaction() as session:
            pruned = prune(session, config)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        log.warning("daily prune not done (the next one will be): %s", exc)
        return None
    log.info("daily prune: deleted %s", ", ".join(pruned.lines()))
    return pruned
