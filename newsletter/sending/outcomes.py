"""The outcome rules: from what happened to one SES call to what its ledger row becomes.

Pure functions, no database: the worker asks `decide(happened(error, called=...), ...)`
for every message and writes the answer. The same table is in docs/sending.md.

The rule that keeps the promise "at most once": a call that may have reached SES (read
timeout, connection closed or reset after the request was written, a 5xx without an error
body, anything unexpected from the call) ends `unknown` and is never retried by itself.
Only answers proving SES did not take the message are retried: throttling, no connection
(refused, connect timeout), an error answer naming its cause.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import timedelta

from newsletter.mail import AccountPausedError
from newsletter.mail import MailerError
from newsletter.mail import QuotaExceededError
from newsletter.mail import RecipientRejectedError
from newsletter.mail import ThrottledError
from newsletter.mail import TransientError
from newsletter.models import DeliveryStatus
from newsletter.sending.ledger import Job

# A message that provably did not reach SES is tried this many times in all, then failed.
MAX_ATTEMPTS = 5
# A throttled message waits about this long before it is claimed again.
THROTTLE_RETRY = 1.0


class Happened(enum.Enum):
    """What happened to one message in a worker's thread."""

    SENT = "sent"  # SES answered with a MessageId
    NOT_CALLED = "not called"  # SES was never called: the slot had passed, or the worker halts
    BROKEN = "broken"  # failed before the call (rendering): our bug, not SES's answer
    THROTTLED = "throttled"  # 429 / Throttling: not taken, slow down
    QUOTA = "quota"  # the daily quota is used up: not taken
    ACCOUNT = "account"  # the account cannot send (paused, credentials): not taken
    REJECTED = "rejected"  # SES refused this message or address
    NOT_TAKEN = "not taken"  # provably not taken: no connection, an error naming its cause
    MAYBE_TAKEN = "maybe taken"  # may have reached SES; its answer was lost


class Pause(enum.Enum):
    """Why an outcome pauses the whole send."""

    QUOTA = "quota"  # resumes by itself when the quota frees
    ACCOUNT = "account"  # the editor resumes after fixing the account


@dataclass(frozen=True)
class RowChange:
    """What a ledger row becomes after one outcome."""

    status: DeliveryStatus
    attempts: int  # the row's attempt count afterwards
    error: str | None = None
    retry_in: float | None = None  # seconds before the row may be claimed again
    keep_claim: bool = False  # stays in this worker's hands (queued, claimed by it)
    streak: bool = False  # counts toward the "errors in a row" pause
    pause: Pause | None = None
    slow_down: bool = False  # halve the shared rate


@dataclass
class Outcome:
    """One finished job, as its thread reports it to the main thread."""

    job: Job
    message_id: str | None = None
    error: BaseException | None = None
    called: bool = False  # the SES call was made (or started)
    seconds: float = 0.0  # from the thread taking it to the answer (sizes in-flight calls)

    @property
    def late(self) -> bool:
        """True when SES was never called (the slot had passed or the worker halts)."""
        return not self.called and self.error is None


def backoff(attempt: int) -> timedelta:
    """Return the wait before a retry: exponential with full jitter, capped at a minute."""
    # Jitter: many rows retrying at once do not all come back at once.
    return timedelta(seconds=random.uniform(0.5, 1.0) * min(2**attempt, 60))


def happened(error: BaseException | None, *, called: bool) -> Happened:
    """Classify a thread's result: its exception (None: success) and whether SES was called."""
    if error is None:
        return Happened.SENT if called else Happened.NOT_CALLED
    if not called:
        return Happened.BROKEN
    if isinstance(error, ThrottledError):
        return Happened.THROTTLED
    if isinstance(error, QuotaExceededError):
        return Happened.QUOTA
    if isinstance(error, AccountPausedError):
        return Happened.ACCOUNT
    if isinstance(error, RecipientRejectedError):
        return Happened.REJECTED
    if isinstance(error, TransientError):
        return Happened.NOT_TAKEN
    # UnknownOutcomeError, and anything unexpected raised by the call itself: it may have
    # reached SES.
    return Happened.MAYBE_TAKEN


def describe(error: BaseException | None) -> str:
    """Return the reason stored on the row for an error."""
    if error is None:
        return ""
    if isinstance(error, MailerError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def decide(
    what: Happened, attempts: int, detail: str = "", *, max_attempts: int = MAX_ATTEMPTS
) -> RowChange:
    """Return what a row with `attempts` earlier attempts becomes after `what` happened."""
    queued, failed = DeliveryStatus.QUEUED, DeliveryStatus.FAILED
    if what is Happened.SENT:
        return RowChange(DeliveryStatus.SENT, attempts + 1)
    if what is Happened.NOT_CALLED:
        return RowChange(queued, attempts, keep_claim=True)
    if what is Happened.BROKEN:
        return RowChange(failed, attempts, detail, streak=True)
    if what is Happened.THROTTLED:
        return RowChange(queued, attempts, detail, retry_in=THROTTLE_RETRY, slow_down=True)
    if what is Happened.QUOTA:
        return RowChange(queued, attempts, detail, pause=Pause.QUOTA)
    if what is Happened.ACCOUNT:
        return RowChange(queued, attempts, detail, pause=Pause.ACCOUNT)
    if what is Happened.REJECTED:
        return RowChange(failed, attempts + 1, detail, streak=True)
    if what is Happened.NOT_TAKEN:
        if attempts + 1 < max_attempts:
            wait = backoff(attempts + 1).total_seconds()
            return RowChange(queued, attempts + 1, detail, retry_in=wait, streak=True)
        return RowChange(
            failed, attempts + 1, f"gave up after {attempts + 1} attempts: {detail}", streak=True
        )
    if what is Happened.MAYBE_TAKEN:
        return RowChange(
            DeliveryStatus.UNKNOWN,
            attempts + 1,
            f"SES may or may not have accepted this message ({detail}); "
            "it is not sent again unless the editor asks",
            streak=True,
        )
    raise ValueError(f"no rule for {what!r}")
