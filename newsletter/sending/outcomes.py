"""What a send's outcome does to its ledger row."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from newsletter.sending.ledger import Job

# A network error is retried this many times in all before the row is marked failed.
MAX_ATTEMPTS = 5


@dataclass
class Outcome:
    job: Job
    message_id: str | None = None
    error: BaseException | None = None
    late: bool = False  # not sent: the slot had passed
    seconds: float = 0.0  # from the thread taking it to the answer (sizes in-flight calls)


def backoff(attempt: int) -> timedelta:
    # Exponential with full jitter, capped: many rows retrying do not come back at once.
    return timedelta(seconds=random.uniform(0.5, 1.0) * min(2**attempt, 60))
