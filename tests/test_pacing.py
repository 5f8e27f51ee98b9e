"""The shared pace without a real clock: rate changes per window, in-flight sizing."""

from __future__ import annotations

import random

import pytest

from newsletter import pacing
from newsletter.models import SendPace
from newsletter.pacing import LatencyGauge
from newsletter.pacing import Pacer
from newsletter.pacing import PaceSettings
from newsletter.pacing import in_flight_for
from newsletter.pacing import next_rate


@pytest.mark.parametrize(
    ("rate", "calls", "throttles", "usual", "expected"),
    [
        (100, 0, 0, None, 100),  # nothing sent: nothing learned
        (100, 90, 0, None, 100),  # at the maximum: stays
        (50, 60, 0, None, 62.5),  # no throttles: grows by a quarter
        (5, 6, 0, None, 15),  # or by a tenth of the maximum when that is more
        (95, 100, 0, None, 100),  # never above the maximum
        (100, 100, 50, None, 50),  # half throttled (our rate): lands on what SES took
        (100, 100, 100, None, 5),  # all throttled: the floor, not zero
        (10, 10, 10, None, 5),
        (100, 100, 8, None, 100),  # 8% (not ours): drops 8, grows 10 back
        (60, 100, 8, None, 65.2),  # and keeps recovering under random throttling
        (100, 100, 20, None, 80),  # 20%: too many to be chance; no growth
        (100, 100, 20, 0.08, 90),  # unless it is one noisy window among calm ones
        (100, 100, 8, 0.3, 92),  # a calm window after many throttled ones: no growth yet
        (100, 0, 3, None, 5),  # throttles without a counted call: all throttled
    ],
)
def test_next_rate(rate, calls, throttles, usual, expected):
    assert next_rate(rate, 100, calls, throttles, usual) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rate", "latency", "cap", "expected"),
    [
        (None, 0.05, 64, 64),  # no limit (outbox, memory): the cap
        (200, None, 64, 8),  # nothing measured yet: a small start
        (200, None, 4, 4),
        (200, 0.05, 64, 17),  # 200 x 0.05 = 10 in flight; x 1.5 + 2
        (200, 0.2, 64, 62),  # 200 x 0.2 = 40; x 1.5 + 2
        (200, 0.5, 64, 64),  # more than the cap allows
        (1, 0.05, 64, 3),
        (0.1, 0.01, 64, 3),
    ],
)
def test_in_flight_for(rate, latency, cap, expected):
    assert in_flight_for(rate, latency, cap) == expected


def test_latency_gauge_reads_the_high_end_of_recent_calls():
    gauge = LatencyGauge(size=100, every=10)
    assert gauge.value() is None
    for _ in range(85):
        gauge.add(0.05)
    for _ in range(15):
        gauge.add(0.5)
    assert gauge.value() == pytest.approx(0.5)
    for _ in range(100):  # the slow calls age out
        gauge.add(0.2)
    assert gauge.value() == pytest.approx(0.2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def paced(app):
    """A Pacer at 100/s on the test database, with a clock the test moves."""
    database = app.extensions["newsletter.db"]
    clock = FakeClock()
    pacer = Pacer(database, PaceSettings(max_rate=100.0, quota=None), clock=clock)
    pacer.setup()

    def shared_rate() -> float:
        with database.transaction() as session:
            return session.get(SendPace, "ses").rate

    return pacer, clock, shared_rate


def _window(pacer: Pacer, clock: FakeClock, *, calls: int, throttles: int) -> None:
    """One second of sending: `calls` slots reserved, `throttles` of them throttled."""
    left = calls
    while left > 0:  # (a reservation hands out at most 0.1 s worth)
        left -= len(pacer.reserve(left))
    pacer.throttled(throttles)
    clock.now += pacer_window()
    pacer.recover_rate()


def pacer_window() -> float:
    return pacing.RATE_WINDOW


def test_a_burst_of_throttles_lowers_the_rate_once_per_window(paced):
    pacer, clock, shared_rate = paced
    for _ in range(10):
        pacer.reserve(1)
    for _ in range(5):  # many throttles in one window: one decrease, not five halvings
        pacer.throttled()
    assert shared_rate() == 100
    clock.now += 0.5
    pacer.recover_rate()  # the window is not over yet
    assert shared_rate() == 100
    clock.now += 0.5
    pacer.recover_rate()
    assert shared_rate() == pytest.approx(50)
    assert pacer.rate == pytest.approx(50)


def test_the_rate_recovers_within_seconds_when_throttling_stops(paced):
    pacer, clock, shared_rate = paced
    _window(pacer, clock, calls=10, throttles=10)
    assert shared_rate() == pytest.approx(5)  # the floor
    seconds = 0
    while shared_rate() < 100:
        _window(pacer, clock, calls=5, throttles=0)
        seconds += pacer_window()
    assert seconds <= 10


@pytest.mark.parametrize("share", [0.04, 0.08])
def test_random_throttling_keeps_most_of_the_rate(paced, share):
    pacer, clock, shared_rate = paced
    chance = random.Random(7)
    rates = []
    for _ in range(30):
        calls = max(int(pacer.rate or 0), 1)
        throttles = sum(chance.random() < share for _ in range(calls))
        _window(pacer, clock, calls=calls, throttles=throttles)
        rates.append(shared_rate())
    assert min(rates) >= 80 and sum(rates) / len(rates) >= 90


def test_throttling_caused_by_our_rate_settles_near_what_ses_takes(paced):
    pacer, clock, shared_rate = paced
    accepted = 40  # SES takes 40 a second; everything above is throttled
    rates = []
    for _ in range(30):
        calls = max(int(pacer.rate or 0), 1)
        _window(pacer, clock, calls=calls, throttles=max(calls - accepted, 0))
        rates.append(shared_rate())
    tail = rates[10:]
    assert min(tail) >= accepted * 0.95 and max(tail) <= accepted * 1.3


def test_a_second_worker_cannot_change_the_rate_again_within_the_window(app, paced):
    pacer, clock, shared_rate = paced
    other = Pacer(
        app.extensions["newsletter.db"], PaceSettings(max_rate=100.0, quota=None), clock=clock
    )
    for each in (pacer, other):
        for _ in range(10):
            each.reserve(1)
        each.throttled(5)
    clock.now += pacing.RATE_WINDOW
    pacer.recover_rate()
    other.recover_rate()
    assert shared_rate() == pytest.approx(50)  # halved once, not twice


def test_slots_follow_the_lowered_rate(paced):
    pacer, clock, _ = paced
    _window(pacer, clock, calls=10, throttles=5)
    clock.now += 10  # past every slot reserved so far
    slots = pacer.reserve(3)
    assert [round(b - a, 6) for a, b in zip(slots, slots[1:], strict=False)] == [0.02, 0.02]


# --- the slot book's share: slots reserved a batch at a time, passed slots kept unbounded ---


@pytest.mark.parametrize(
    ("held_until", "free", "waiting", "batch", "expected"),
    [
        (None, 4, 100, 0, 4),  # no batch (no limit): one slot per free thread
        (None, 4, 100, 20, 20),  # nothing held: a batch at once
        (None, 4, 3, 20, 3),  # never more than the messages in hand
        (0.04, 4, 100, 20, 17),  # held ones run out soon: top up to a batch
        (0.08, 4, 100, 20, 0),  # enough held for a while: no round trip
        (None, 0, 100, 20, 0),  # no thread free: nothing to send them with
    ],
)
def test_slot_book_reserves_a_batch_when_the_held_slots_run_out(
    held_until, free, waiting, batch, expected
):
    from newsletter.sending.slots import SlotBook

    clock = FakeClock()
    book = SlotBook(capacity=free, now=clock)
    if held_until is not None:
        book.add(clock.now + held_until * i / 3 for i in range(1, 4))  # 3 slots held
    assert book.wanted(waiting, batch) == expected


@pytest.mark.parametrize(("strict", "taken"), [(True, 1), (False, 3)])
def test_passed_slots_are_dropped_only_while_the_rate_can_bind(strict, taken):
    from newsletter.sending.slots import SlotBook

    clock = FakeClock()
    book = SlotBook(capacity=8, now=clock)
    book.add([clock.now - 1.0, clock.now - 0.5, clock.now])
    book.strict = strict
    assert len(book.take(10)) == taken
    assert book.unused == 3 - taken
