"""The send pace: one budget of send slots and daily quota that every worker draws from.

Workers on any number of machines share the rate through one database row. A worker
reserves a few slots at a time (GCRA-style: the row holds the time of the next free
slot; a reservation moves it forward by n / rate), then sends each message at its slot.
Nothing but the database coordinates workers, so the limit holds across all of them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from typing import Protocol

import sqlalchemy as sa

from newsletter import clock
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.mail import Mailer
from newsletter.mail import SesMailer
from newsletter.models import SendPace

log = logging.getLogger(__name__)

PACE_NAME = "ses"
# AWS: the accepted rate "might be less than the maximum send rate"; pace below it.
SES_RATE_SHARE = 0.9
# How long to reserve ahead: short, so a slow worker wastes little of the budget.
RESERVE_HORIZON = 0.1
# After a throttle: the lowest rate as a share of the maximum, and the pause for everyone.
MIN_RATE_SHARE = 0.05
THROTTLE_COOL_OFF = 1.0
# Recovery after throttling: every RECOVERY_STEP seconds, add this share of the maximum.
RECOVERY_STEP = 2.0
RECOVERY_SHARE = 0.1
QUOTA_REFRESH = timedelta(minutes=5)


class QuotaExhausted(NewsletterError):
    """The SES 24-hour quota is used up; sending resumes when it frees."""


class QuotaUnavailable(NewsletterError):
    """The SES account quota cannot be read."""


@dataclass(frozen=True)
class AccountQuota:
    """What SES allows this account: messages per second and per rolling 24 hours."""

    max_send_rate: float
    max_24_hour_send: float | None  # None: unlimited
    sent_last_24_hours: float
    sending_enabled: bool = True


class QuotaSource(Protocol):
    """Reads the account's sending quota (sesv2 GetAccount, or a fake in tests)."""

    def read(self) -> AccountQuota: ...


class SesQuotaSource:
    """Reads the quota with sesv2.get_account (a control-plane call: at most 1/s)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self) -> AccountQuota:
        """Return the account's quota, or raise QuotaUnavailable."""
        from botocore.exceptions import BotoCoreError
        from botocore.exceptions import ClientError

        try:
            account = self.client.get_account()
        except (ClientError, BotoCoreError) as exc:
            raise QuotaUnavailable(f"could not read the SES account quota: {exc}") from exc
        quota = account.get("SendQuota", {})
        daily = quota.get("Max24HourSend")
        return AccountQuota(
            max_send_rate=float(quota.get("MaxSendRate", 1.0)),
            max_24_hour_send=None if daily is None or daily < 0 else float(daily),
            sent_last_24_hours=float(quota.get("SentLast24Hours", 0.0)),
            sending_enabled=bool(account.get("SendingEnabled", True)),
        )


class FixedQuotaSource:
    """A quota that never changes unless told (tests, and backends without a quota)."""

    def __init__(self, quota: AccountQuota) -> None:
        self.quota = quota
        self.reads = 0

    def read(self) -> AccountQuota:
        """Return the fixed quota."""
        self.reads += 1
        return self.quota


def quota_source_for(mailer: Mailer) -> QuotaSource | None:
    """Return where the mailer's quota comes from; None for backends without one."""
    if isinstance(mailer, SesMailer):
        return SesQuotaSource(mailer.client)
    return None


@dataclass(frozen=True)
class PaceSettings:
    """The rate and quota a worker starts with."""

    max_rate: float | None  # None: no limit (outbox, memory)
    quota: AccountQuota | None


def decide_settings(configured_rate: float | None, source: QuotaSource | None) -> PaceSettings:
    """Work out the shared rate: NEWSLETTER_SEND_RATE if set, else 90% of SES MaxSendRate."""
    quota = None
    if source is not None:
        try:
            quota = source.read()
        except QuotaUnavailable as exc:
            if configured_rate is None:
                raise QuotaUnavailable(
                    f"{exc}. Set NEWSLETTER_SEND_RATE (messages per second) to send anyway."
                ) from None
            log.warning(
                "%s; using NEWSLETTER_SEND_RATE=%s without a daily quota", exc, configured_rate
            )
    if configured_rate is not None:
        return PaceSettings(max_rate=float(configured_rate), quota=quota)
    if quota is None:
        return PaceSettings(max_rate=None, quota=None)
    return PaceSettings(max_rate=max(quota.max_send_rate * SES_RATE_SHARE, 0.1), quota=quota)


class Pacer:
    """Hands out send slots from the shared budget; one per worker process."""

    def __init__(
        self,
        database: Database,
        settings: PaceSettings,
        source: QuotaSource | None = None,
        *,
        name: str = PACE_NAME,
    ) -> None:
        self.database = database
        self.settings = settings
        self.source = source
        self.name = name
        self.unlimited = settings.max_rate is None
        self._rate = float(settings.max_rate or 1.0)
        self._postgres = database.engine.dialect.name == "postgresql"
        # The database's clock minus this host's (seconds): slot times in the shared row
        # are on the database's clock, so a host whose clock is off neither pushes the
        # others' slots away nor sends early.
        self.clock_offset = 0.0

    def _db_epoch(self) -> sa.ColumnElement[float]:
        """The database's current Unix time, as a SQL expression."""
        if self._postgres:
            return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
        return (sa.func.julianday("now") - 2440587.5) * 86400.0

    def _measure_clock(self) -> None:
        with self.database.engine.connect() as connection:
            db_time = connection.scalar(sa.select(self._db_epoch()))
        self.clock_offset = float(db_time) - time.time()

    def _time(self) -> float:
        """The database's time (Unix seconds), as this host best knows it."""
        return time.time() + self.clock_offset

    def setup(self) -> None:
        """Create or update the shared row with this worker's settings."""
        if self.unlimited:
            return
        self._measure_clock()
        now = self._time()
        max_rate = float(self.settings.max_rate or 0)
        with self.database.transaction() as session:
            # Workers starting together: create the row once, then everyone locks it.
            if session.get_bind().dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            session.execute(
                insert(SendPace)
                .values(
                    name=self.name,
                    max_rate=max_rate,
                    rate=max_rate,
                    rate_changed_at=now,
                    next_slot=now,
                    quota_sent=0.0,
                    quota_used_since=0.0,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = session.get(SendPace, self.name, with_for_update=True, populate_existing=True)
            if row is None:
                row = SendPace(
                    name=self.name,
                    max_rate=max_rate,
                    rate=max_rate,
                    rate_changed_at=now,
                    next_slot=now,
                    quota_sent=0.0,
                    quota_used_since=0.0,
                )
                session.add(row)
            else:
                # The newest worker's settings win: operators change the rate by restarting.
                if row.max_rate != max_rate:
                    row.rate = min(row.rate, max_rate) if row.rate < row.max_rate else max_rate
                    row.max_rate = max_rate
            self._store_quota(row, self.settings.quota)

    def _store_quota(self, row: SendPace, quota: AccountQuota | None) -> None:
        if quota is None:
            return
        row.quota_max = quota.max_24_hour_send
        row.quota_sent = quota.sent_last_24_hours
        row.quota_used_since = 0.0
        row.quota_read_at = clock.now()

    def refresh_quota(self, *, force: bool = False) -> None:
        """Re-read the daily quota from SES when the stored reading is old."""
        if self.unlimited or self.source is None:
            return
        with self.database.transaction() as session:
            row = session.get(SendPace, self.name)
            if row is None:
                return
            read_at = row.quota_read_at
            if not force and read_at is not None and clock.now() - read_at < QUOTA_REFRESH:
                return
        try:
            quota = self.source.read()
        except QuotaUnavailable as exc:
            log.warning("%s", exc)
            return
        with self.database.transaction() as session:
            row = session.get(SendPace, self.name, with_for_update=True)
            if row is not None:
                self._store_quota(row, quota)

    def quota_left(self) -> float | None:
        """Return how many messages the daily quota still allows (None: unlimited)."""
        if self.unlimited:
            return None
        with self.database.transaction() as session:
            row = session.get(SendPace, self.name)
            if row is None or row.quota_max is None:
                return None
            return row.quota_max - row.quota_sent - row.quota_used_since

    def reserve(self, wanted: int) -> list[float]:
        """Reserve up to `wanted` slots; return their Unix times (spaced 1/rate apart).

        One UPDATE ... RETURNING: it runs for every few messages, so it must be cheap.
        Raises QuotaExhausted when the daily quota has nothing left.
        """
        if wanted <= 0:
            return []
        if self.unlimited:
            return [time.time()] * wanted
        count = min(wanted, max(1, math.floor(self._rate * RESERVE_HORIZON)))
        table = SendPace.__table__
        greatest = sa.func.greatest if self._postgres else sa.func.max
        with self._connection() as connection:
            while count >= 1:
                row = connection.execute(
                    sa.update(table)
                    .where(
                        table.c.name == self.name,
                        sa.or_(
                            table.c.quota_max.is_(None),
                            table.c.quota_max - table.c.quota_sent - table.c.quota_used_since
                            >= count,
                        ),
                    )
                    .values(
                        next_slot=greatest(table.c.next_slot, self._db_epoch())
                        + count / table.c.rate,
                        quota_used_since=table.c.quota_used_since + count,
                    )
                    .returning(table.c.next_slot, table.c.rate, self._db_epoch())
                ).first()
                if row is not None:
                    break
                left = connection.scalar(
                    sa.select(
                        table.c.quota_max - table.c.quota_sent - table.c.quota_used_since
                    ).where(table.c.name == self.name)
                )
                if left is None:
                    raise NewsletterError("the send pace is not set up")
                count = min(count - 1, math.floor(left))
            else:
                raise QuotaExhausted("The SES daily sending quota is used up.")
        end, self._rate, db_time = row
        self.clock_offset = float(db_time) - time.time()
        interval = 1.0 / self._rate
        # Slots on this host's clock: the worker waits for them with time.time().
        return [end - self.clock_offset - (count - i) * interval for i in range(count)]

    def _connection(self):
        # PostgreSQL: each statement commits on its own (one round trip, no BEGIN/COMMIT);
        # SQLite: a transaction, so BEGIN IMMEDIATE serialises it with everything else.
        if self._postgres:
            return self.database.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.database.engine.begin()

    def give_back(self, unused: int) -> None:
        """Return slots that were reserved but not used to the daily quota."""
        if self.unlimited or unused <= 0:
            return
        table = SendPace.__table__
        greatest = sa.func.greatest if self._postgres else sa.func.max
        with self._connection() as connection:
            connection.execute(
                sa.update(table)
                .where(table.c.name == self.name)
                .values(quota_used_since=greatest(table.c.quota_used_since - unused, 0.0))
            )

    def recover_rate(self) -> None:
        """Raise the shared rate again, step by step, after throttling stopped."""
        if self.unlimited:
            return
        now = self._time()
        table = SendPace.__table__
        least = sa.func.least if self._postgres else sa.func.min
        with self.database.engine.begin() as connection:
            row = connection.execute(
                sa.update(table)
                .where(
                    table.c.name == self.name,
                    table.c.rate < table.c.max_rate,
                    table.c.rate_changed_at <= now - RECOVERY_STEP,
                )
                .values(
                    rate=least(table.c.max_rate, table.c.rate + RECOVERY_SHARE * table.c.max_rate),
                    rate_changed_at=now,
                )
                .returning(table.c.rate)
            ).first()
        if row is not None:
            self._rate = row[0]

    def throttled(self) -> float:
        """Slow everyone down after SES said "too many requests"; return the new rate."""
        if self.unlimited:
            return 0.0
        now = self._time()
        with self.database.transaction() as session:
            row = session.get(SendPace, self.name, with_for_update=True, populate_existing=True)
            if row is None:
                return 0.0
            # Many workers see the same burst of 429s: halve once per cool-off, not per error.
            if now - row.rate_changed_at >= THROTTLE_COOL_OFF or row.rate >= row.max_rate:
                row.rate = max(row.rate / 2, row.max_rate * MIN_RATE_SHARE)
                row.rate_changed_at = now
            row.next_slot = max(row.next_slot, now + THROTTLE_COOL_OFF * random.uniform(0.8, 1.2))
            self._rate = row.rate
            return row.rate
