"""The send pace: one budget of send slots and daily quota that every worker draws from.

Workers on any number of machines share the rate through one database row. A worker
reserves a few slots at a time (GCRA-style: the row holds the time of the next free
slot; a reservation moves it forward by n / rate), then sends each message at its slot.
Nothing but the database coordinates workers, so the limit holds across all of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from typing import Protocol
from typing import cast

import sqlalchemy as sa

from newsletter import clock
from newsletter.db import Database
from newsletter.db import dialect_insert
from newsletter.errors import NewsletterError
from newsletter.mail import Mailer
from newsletter.mail import SesMailer
from newsletter.models import SendPace

log = logging.getLogger(__name__)

PACE_NAME = "ses"
# Pace at SES's MaxSendRate itself: slots are spaced exactly 1/rate apart, so no second
# goes over it, and if SES accepts less it throttles and the rate comes down (below).
SES_RATE_SHARE = 1.0
# How long to reserve ahead: short, so a slow worker wastes little of the budget.
RESERVE_HORIZON = 0.1
# The shared rate changes at most once per window (SES counts its rate per second).
RATE_WINDOW = 1.0
# The lowest rate throttling can bring the pace down to, as a share of the maximum.
MIN_RATE_SHARE = 0.05
# A window with throttles: the rate drops by the share of calls throttled (so it lands on
# what SES took). Up to this share the throttles may not be ours (SES throttles a few
# calls at any rate): the rate also grows back by RECOVERY_SHARE, so it does not sink.
TOLERATED_SHARE = 0.15
# Weight of the newest window in the usual throttled share (one window's count is noisy).
SHARE_SMOOTHING = 0.3
# A window without throttles: the rate grows by this factor, or this share of the
# maximum if more: from the floor back to the maximum in about eight seconds.
RECOVERY_FACTOR = 1.25
RECOVERY_SHARE = 0.1
# In-flight calls a worker keeps: rate x measured latency (Little's law) x this headroom,
# plus a few, within the cap (NEWSLETTER_SEND_CONCURRENCY).
IN_FLIGHT_HEADROOM = 1.5
IN_FLIGHT_EXTRA = 2
# Before the first answers have measured the latency.
IN_FLIGHT_START = 8
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


def next_rate(
    rate: float, max_rate: float, calls: int, throttles: int, usual_share: float | None = None
) -> float:
    """Return the shared rate for the next window, from one window's calls and throttles.

    Throttles caused by our rate shrink as the rate falls; throttles SES gives a few calls
    at any rate do not. So the rate drops by the share throttled, which lands it on what
    SES took; while the usual share (smoothed over windows; this window's if None) stays
    small, it also grows back, so random throttling cannot sink it.
    """
    floor = max_rate * MIN_RATE_SHARE
    if throttles <= 0:
        if calls <= 0:
            return rate
        grown = max(rate * RECOVERY_FACTOR, rate + RECOVERY_SHARE * max_rate)
        return max(min(grown, max_rate), min(rate, max_rate))
    share = min(throttles / max(calls, throttles), 1.0)
    new = rate * (1.0 - share)
    if (share if usual_share is None else usual_share) <= TOLERATED_SHARE:
        new += RECOVERY_SHARE * max_rate
    return min(max(new, floor), max_rate)


def in_flight_for(rate: float | None, latency: float | None, cap: int) -> int:
    """Return how many SES calls to keep in flight for `rate` at `latency` (Little's law).

    rate None (no limit): the cap. latency None (nothing measured yet): a small start.
    """
    if rate is None:
        return cap
    if latency is None:
        return max(1, min(cap, IN_FLIGHT_START))
    # (less a hair: 200 x 0.05 x 1.5 is 15.000000000000002 in floating point)
    need = math.ceil(rate * latency * IN_FLIGHT_HEADROOM - 1e-9) + IN_FLIGHT_EXTRA
    return max(1, min(cap, need))


class LatencyGauge:
    """Recent SES call times (seconds); `value` is their 90th percentile, None before any."""

    def __init__(self, size: int = 256, every: int = 16) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._every = every
        self._fresh = 0
        self._value: float | None = None

    def add(self, seconds: float) -> None:
        """Record one call's time."""
        self._samples.append(seconds)
        self._fresh += 1

    def value(self) -> float | None:
        """Return the 90th percentile of recent calls (recomputed every few samples)."""
        if self._samples and (self._value is None or self._fresh >= self._every):
            ordered = sorted(self._samples)
            self._value = ordered[int(0.9 * (len(ordered) - 1))]
            self._fresh = 0
        return self._value


class RateWindow:
    """One worker's calls and throttles in the current window of the shared rate."""

    def __init__(self, start: float, length: float = RATE_WINDOW) -> None:
        self.start = start
        self.length = length
        self.calls = 0
        self.throttles = 0
        self.usual_share: float | None = None  # throttled share, smoothed over windows

    def due(self, now: float) -> bool:
        """True when the window is over and saw calls or throttles."""
        return now - self.start >= self.length and (self.calls > 0 or self.throttles > 0)

    def close(self, now: float) -> tuple[int, int]:
        """Return (calls, throttles) of the window and start the next one."""
        calls, throttles = self.calls, self.throttles
        if calls or throttles:
            share = min(throttles / max(calls, throttles), 1.0)
            usual = self.usual_share
            self.usual_share = share if usual is None else usual + SHARE_SMOOTHING * (share - usual)
        self.start, self.calls, self.throttles = now, 0, 0
        return calls, throttles


class Pacer:
    """Hands out send slots from the shared budget; one per worker process."""

    def __init__(
        self,
        database: Database,
        settings: PaceSettings,
        source: QuotaSource | None = None,
        *,
        name: str = PACE_NAME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.settings = settings
        self.source = source
        self.name = name
        self.unlimited = settings.max_rate is None
        self._rate = float(settings.max_rate or 1.0)
        self._postgres = database.engine.dialect.name == "postgresql"
        self._clock = clock
        self._window = RateWindow(clock())
        # The database's clock minus this host's (seconds): times in the shared row are on
        # the database's clock, so a host whose clock is off neither pushes the other
        # workers' slots away nor sends early. Measured at setup, renewed by the worker.
        self.clock_offset = 0.0

    def _db_epoch(self) -> sa.ColumnElement[float]:
        """The database's current Unix time, as a SQL expression."""
        if self._postgres:
            return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
        return (sa.func.julianday("now") - 2440587.5) * 86400.0

    def measure_clock(self) -> float:
        """Measure how far the database's clock is from this host's; return the offset."""
        with self.database.engine.connect() as connection:
            db_time = connection.scalar(sa.select(self._db_epoch()))
        assert db_time is not None
        self.clock_offset = float(db_time) - self._clock()
        return self.clock_offset

    def _db_time(self) -> float:
        """The database's time (Unix seconds), as this host best knows it."""
        return self._clock() + self.clock_offset

    def setup(self) -> None:
        """Create or update the shared row with this worker's settings."""
        if self.unlimited:
            return
        self.measure_clock()
        now = self._db_time()
        max_rate = float(self.settings.max_rate or 0)
        with self.database.transaction() as session:
            # Workers starting together: create the row once, then everyone locks it.
            session.execute(
                dialect_insert(session, SendPace)
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

    def batch(self) -> int:
        """How many slots one reservation hands out at most (0 without a limit)."""
        if self.unlimited:
            return 0
        return max(1, math.floor(self._rate * RESERVE_HORIZON))

    def reserve(self, wanted: int) -> list[float]:
        """Reserve up to `wanted` slots; return their Unix times (spaced 1/rate apart).

        One UPDATE ... RETURNING: it runs for every few messages, so it must be cheap.
        Raises QuotaExhausted when the daily quota has nothing left.
        """
        if wanted <= 0:
            return []
        now = self._clock()
        if self.unlimited:
            return [now] * wanted
        if self._window.due(now):
            self.adjust_rate()
        count = min(wanted, self.batch())
        table = cast(sa.Table, SendPace.__table__)
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
                        next_slot=greatest(table.c.next_slot, now + self.clock_offset)
                        + count / table.c.rate,
                        quota_used_since=table.c.quota_used_since + count,
                    )
                    .returning(table.c.next_slot, table.c.rate)
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
        end, self._rate = row
        self._window.calls += count
        interval = 1.0 / self._rate
        # On this host's clock: the worker waits for them with time.time().
        end -= self.clock_offset
        return [end - (count - i) * interval for i in range(count)]

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
        table = cast(sa.Table, SendPace.__table__)
        greatest = sa.func.greatest if self._postgres else sa.func.max
        with self._connection() as connection:
            connection.execute(
                sa.update(table)
                .where(table.c.name == self.name)
                .values(quota_used_since=greatest(table.c.quota_used_since - unused, 0.0))
            )

    @property
    def rate(self) -> float | None:
        """The shared rate as last seen (None: no limit)."""
        return None if self.unlimited else self._rate

    def throttled(self, count: int = 1) -> float:
        """Count calls SES answered "too many requests"; the rate changes once per window."""
        if not self.unlimited:
            self._window.throttles += count
        return self._rate

    def recover_rate(self) -> None:
        """Apply the window's verdict when it is over (also while no slots are reserved)."""
        if not self.unlimited and self._window.due(self._clock()):
            self.adjust_rate()

    def adjust_rate(self) -> float | None:
        """Close this worker's window and change the shared rate by what it saw (next_rate).

        Conditioned on the shared row not having changed within the window: with many
        workers the rate still changes at most once per window. Returns the rate in force.
        """
        if self.unlimited:
            return None
        now = self._clock()
        calls, throttles = self._window.close(now)
        db_now = now + self.clock_offset
        max_rate = float(self.settings.max_rate or self._rate)
        new = next_rate(self._rate, max_rate, calls, throttles, self._window.usual_share)
        if new == self._rate:
            return self._rate
        table = cast(sa.Table, SendPace.__table__)
        with self._connection() as connection:
            row = connection.execute(
                sa.update(table)
                .where(
                    table.c.name == self.name,
                    table.c.rate_changed_at <= db_now - RATE_WINDOW * 0.9,
                )
                .values(
                    rate=sa.func.min(table.c.max_rate, new)
                    if not self._postgres
                    else sa.func.least(table.c.max_rate, new),
                    rate_changed_at=db_now,
                )
                .returning(table.c.rate)
            ).first()
        if row is not None:
            if throttles:
                log.info(
                    "SES throttled %s of %s calls: the shared rate is now %.1f/s",
                    throttles,
                    calls,
                    row[0],
                )
            self._rate = row[0]
        return self._rate
