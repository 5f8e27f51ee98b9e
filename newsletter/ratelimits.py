"""Fixed-window rate limits kept in the database, so they hold across every web process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter.db import Database
from newsletter.db import dialect_insert
from newsletter.models import RateLimitCounter


@dataclass(frozen=True)
class RateLimit:
    """The answer for one hit: allowed or not, the count so far, and when to retry."""

    allowed: bool
    count: int
    limit: int
    retry_after: int  # seconds until the window ends


def window_start(now: datetime, window: int) -> datetime:
    """Return the start of the fixed window of `window` seconds that holds `now`."""
    seconds = int(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % window, UTC)


def hit(session: so.Session, key: str, *, limit: int, window: int) -> RateLimit:
    """Count one hit on `key` in the current window and say whether it is within `limit`.

    One INSERT .. ON CONFLICT DO UPDATE .. RETURNING: atomic on PostgreSQL and SQLite, so
    concurrent processes never lose a count.
    """
    now = clock.now()
    start = window_start(now, window)
    insert = dialect_insert(session, RateLimitCounter)
    count = session.scalar(
        insert.values(key=key, window_start=start, count=1)
        .on_conflict_do_update(
            index_elements=["key", "window_start"],
            set_={"count": RateLimitCounter.count + 1},
        )
        .returning(RateLimitCounter.count)
    )
    if count == 1:
        # First hit of a new window: drop this key's old windows so the table stays small.
        session.execute(
            sa.delete(RateLimitCounter).where(
                RateLimitCounter.key == key, RateLimitCounter.window_start < start
            )
        )
    retry_after = max(1, int((start + timedelta(seconds=window) - now).total_seconds()))
    return RateLimit(allowed=count <= limit, count=count, limit=limit, retry_after=retry_after)


def hit_alone(database: Database, key: str, *, limit: int, window: int) -> RateLimit:
    """Count a hit in a transaction of its own, committed at once (per-IP limits).

    Every attempt counts, even one that fails later, and no row lock is held while the
    request runs. On PostgreSQL the commit does not wait for the disk: a counter lost in
    a crash is harmless.
    """
    with database.transaction() as session:
        if database.engine.dialect.name == "postgresql":
            session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        return hit(session, key, limit=limit, window=window)
