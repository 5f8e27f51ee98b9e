"""The slot book: when a worker may hand a message to SES.

Two kinds of slot, both counted here and nowhere else:

- in-flight slots: at most `capacity` messages are in the threads' hands at once. Each
  one is a row marked `sending`, so `capacity` also bounds how many rows a crash can
  leave `unknown`. `capacity` may be changed at any time (it takes effect as calls end).
- pace slots: times, reserved from the shared budget (newsletter.pacing), at which a
  message may start. A slot that has passed is dropped, not used late: late sends would
  bunch up and break the rate in some one-second window. Dropped and unused slots still
  count against the daily quota until `release()` hands them back.

It reads the time from `now` (time.time by default), so tests drive it with a fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable

# A slot older than this is dropped rather than used late.
STALE_SLOT = 0.01
# A thread that gets to the SES call this late (a busy CPU) gives its slot up and the
# message goes back in line for a new one: sending anyway would bunch messages up.
LATE_SLOT = 0.02
# Hand a message to a thread this long before its slot (the thread renders it and waits
# the rest): on a busy CPU rendering in 5 ms failed often, and the slot was lost.
SLOT_LEAD = 0.02
# Reserve pace slots again when the ones held run out within this time.
REFILL_AHEAD = 0.05
# The longest the main loop waits without looking at its results.
MAX_WAIT = 0.25


def clamp(seconds: float, most: float = MAX_WAIT) -> float:
    """Return a wait between 0 and `most`: never a negative sleep, whatever the clocks do."""
    if seconds != seconds or seconds <= 0:  # NaN or past
        return 0.0
    return min(seconds, most)


class SlotBook:
    """A worker's in-flight and pace slots (used by its main thread only)."""

    def __init__(self, capacity: int, *, now: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.busy = 0  # messages handed to threads whose outcome is not yet collected
        self.unused = 0  # pace slots dropped or given up, still counted against the quota
        # Whether the rate may bind (set by the worker): only then is a passed slot dropped.
        self.strict = True
        self._pace: deque[float] = deque()
        self._now = now

    @property
    def free(self) -> int:
        """In-flight slots free now."""
        return max(self.capacity - self.busy, 0)

    @property
    def held(self) -> int:
        """Pace slots reserved and not yet used."""
        return len(self._pace)

    def wanted(self, waiting: int, batch: int = 0) -> int:
        """How many more pace slots to reserve for `waiting` messages in hand.

        With `batch` (the pace's 0.1 s worth), that many at once, and only when the slots
        held run out within REFILL_AHEAD: one round trip to the shared row per batch.
        """
        held = len(self._pace)
        if self.free <= 0 or (held and self._pace[-1] - self._now() >= REFILL_AHEAD):
            return 0
        return max(min(max(self.free, batch), waiting) - held, 0)

    def add(self, slots: Iterable[float]) -> None:
        """Add reserved pace slots (times, ascending)."""
        self._pace.extend(slots)

    def take(self, waiting: int) -> list[float]:
        """Take the pace slots due now for up to `waiting` messages; each takes an in-flight
        slot too. Slots that have passed are dropped first (counted in `unused`)."""
        now = self._now()
        while self.strict and self._pace and self._pace[0] < now - STALE_SLOT:
            self._pace.popleft()
            self.unused += 1
        taken: list[float] = []
        while (
            len(taken) < min(self.free, waiting) and self._pace and self._pace[0] <= now + SLOT_LEAD
        ):
            taken.append(self._pace.popleft())
        self.busy += len(taken)
        return taken

    def done(self, count: int, *, unused: int = 0) -> None:
        """`count` messages left the threads' hands; `unused` of them never used their slot."""
        self.busy = max(self.busy - count, 0)
        self.unused += unused

    def wait(self, waiting: int) -> float:
        """How long the main loop may wait for results before it has something to do."""
        if self.free <= 0:
            return MAX_WAIT
        if waiting and self._pace:
            return clamp(self._pace[0] - SLOT_LEAD - self._now())
        if waiting:
            return 0.0
        return MAX_WAIT if self.busy else 0.05

    def drop(self) -> None:
        """Drop the pace slots held (the rate changed): they count as unused."""
        self.unused += len(self._pace)
        self._pace.clear()

    def release(self) -> int:
        """Return how many slots to give back to the daily quota (held and unused), and
        forget them."""
        count = self.unused + len(self._pace)
        self.unused = 0
        self._pace.clear()
        return count
