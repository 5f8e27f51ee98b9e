"""The outcome rules (pure), the classification of SES and network errors, the slot book."""

from __future__ import annotations

import math

import pytest
from botocore import exceptions as boto

from newsletter.mail import AccountPausedError
from newsletter.mail import QuotaExceededError
from newsletter.mail import RecipientRejectedError
from newsletter.mail import ThrottledError
from newsletter.mail import TransientError
from newsletter.mail import UnknownOutcomeError
from newsletter.mail import classify_botocore_error
from newsletter.mail import classify_ses_error
from newsletter.models import DeliveryStatus
from newsletter.sending import outcomes
from newsletter.sending.outcomes import MAX_ATTEMPTS
from newsletter.sending.outcomes import Happened
from newsletter.sending.outcomes import Pause
from newsletter.sending.outcomes import decide
from newsletter.sending.outcomes import happened
from newsletter.sending.slots import SLOT_LEAD
from newsletter.sending.slots import STALE_SLOT
from newsletter.sending.slots import SlotBook
from newsletter.sending.slots import clamp

Q, S, F, U = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNKNOWN,
)

# The table of docs/sending.md, "What each answer does": (what happened, attempts before)
# -> (status, attempts after, retried later, stays in the worker's hands, counts toward the
# errors-in-a-row pause, pauses the send, slows the shared rate).
TABLE = [
    (Happened.SENT, 0, S, 1, False, False, False, None, False),
    (Happened.SENT, 3, S, 4, False, False, False, None, False),
    (Happened.NOT_CALLED, 2, Q, 2, False, True, False, None, False),
    (Happened.BROKEN, 0, F, 0, False, False, True, None, False),
    (Happened.THROTTLED, 2, Q, 2, True, False, False, None, True),
    (Happened.QUOTA, 0, Q, 0, False, False, False, Pause.QUOTA, False),
    (Happened.ACCOUNT, 0, Q, 0, False, False, False, Pause.ACCOUNT, False),
    (Happened.REJECTED, 0, F, 1, False, False, True, None, False),
    (Happened.NOT_TAKEN, 0, Q, 1, True, False, True, None, False),
    (Happened.NOT_TAKEN, MAX_ATTEMPTS - 2, Q, MAX_ATTEMPTS - 1, True, False, True, None, False),
    (Happened.NOT_TAKEN, MAX_ATTEMPTS - 1, F, MAX_ATTEMPTS, False, False, True, None, False),
    (Happened.MAYBE_TAKEN, 0, U, 1, False, False, True, None, False),
    (Happened.MAYBE_TAKEN, 2, U, 3, False, False, True, None, False),
]


@pytest.mark.parametrize(
    ("what", "before", "status", "after", "retried", "kept", "streak", "pause", "slows"), TABLE
)
def test_outcome_table(what, before, status, after, retried, kept, streak, pause, slows):
    change = decide(what, before, "SomeError: detail")
    assert change.status is status
    assert change.attempts == after
    assert (change.retry_in is not None) is retried
    assert change.keep_claim is kept
    assert change.streak is streak
    assert change.pause is pause
    assert change.slow_down is slows
    if status in (F, U):
        assert "SomeError: detail" in change.error


def test_every_happening_has_a_rule():
    assert {row[0] for row in TABLE} == set(Happened)


def test_a_maybe_taken_call_is_never_retried_whatever_the_attempts():
    for attempts in range(MAX_ATTEMPTS + 2):
        change = decide(Happened.MAYBE_TAKEN, attempts, "ReadTimeoutError")
        assert change.status is U and change.retry_in is None and not change.keep_claim
        assert "may or may not have accepted" in change.error


def test_retries_back_off_exponentially_with_jitter(monkeypatch):
    monkeypatch.setattr(outcomes.random, "uniform", lambda a, b: b)
    waits = [decide(Happened.NOT_TAKEN, n, "x").retry_in for n in range(3)]
    assert waits == [2.0, 4.0, 8.0]
    assert outcomes.backoff(10).total_seconds() == 60.0  # capped


@pytest.mark.parametrize(
    ("error", "called", "expected"),
    [
        (None, True, Happened.SENT),
        (None, False, Happened.NOT_CALLED),
        (ValueError("template"), False, Happened.BROKEN),
        (ThrottledError("TooManyRequestsException: slow down"), True, Happened.THROTTLED),
        (QuotaExceededError("LimitExceededException"), True, Happened.QUOTA),
        (AccountPausedError("SendingPausedException"), True, Happened.ACCOUNT),
        (RecipientRejectedError("MessageRejected"), True, Happened.REJECTED),
        (TransientError("EndpointConnectionError"), True, Happened.NOT_TAKEN),
        (UnknownOutcomeError("ReadTimeoutError"), True, Happened.MAYBE_TAKEN),
        # Anything unexpected from the call itself may have happened after the request.
        (RuntimeError("boom"), True, Happened.MAYBE_TAKEN),
        (OSError("connection reset"), True, Happened.MAYBE_TAKEN),
    ],
)
def test_what_happened_is_classified(error, called, expected):
    assert happened(error, called=called) is expected


URL = "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails"


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        # Provably not taken: no connection was made.
        (boto.EndpointConnectionError(endpoint_url=URL), TransientError),
        (boto.ConnectTimeoutError(endpoint_url=URL), TransientError),
        (boto.ProxyConnectionError(proxy_url="http://proxy:3128"), TransientError),
        # Never sent: our side.
        (boto.NoCredentialsError(), AccountPausedError),
        (boto.NoRegionError(), AccountPausedError),
        (boto.ParamValidationError(report="Invalid type"), RecipientRejectedError),
        # May have reached SES: the request was (or may have been) written.
        (boto.ReadTimeoutError(endpoint_url=URL), UnknownOutcomeError),
        (boto.ConnectionClosedError(endpoint_url=URL), UnknownOutcomeError),
        (boto.HTTPClientError(error="ProtocolError('Connection aborted.')"), UnknownOutcomeError),
        (boto.ResponseStreamingError(error="IncompleteRead"), UnknownOutcomeError),
        (boto.SSLError(endpoint_url=URL, error="EOF in violation"), UnknownOutcomeError),
    ],
)
def test_network_errors_are_classified_by_whether_ses_may_have_the_message(exception, expected):
    assert type(classify_botocore_error(exception)) is expected


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("InternalFailure", "We encountered an internal error.", 500, TransientError),
        ("ServiceUnavailable", "Service unavailable.", 503, TransientError),
        # A 5xx whose body names nothing (a proxy, an empty body): botocore puts the status
        # or nothing in the code. The request may have been processed behind it.
        ("500", "Internal Server Error", 500, UnknownOutcomeError),
        ("502", "Bad Gateway", 502, UnknownOutcomeError),
        ("", "", 504, UnknownOutcomeError),
        ("Unknown", "", 500, UnknownOutcomeError),
    ],
)
def test_server_errors_are_retried_only_when_they_name_their_cause(code, message, status, expected):
    assert type(classify_ses_error(code, message, status)) is expected


def test_ses_clients_make_one_attempt_per_call(monkeypatch):
    from newsletter.mail import SesMailer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mailer = SesMailer(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    retries = mailer.client.meta.config.retries
    assert retries["total_max_attempts"] == 1


# --- The slot book, on a fake clock --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-300.0, 0.0), (-0.001, 0.0), (0.0, 0.0), (0.1, 0.1), (5.0, 0.25), (math.nan, 0.0)],
)
def test_waits_are_never_negative(seconds, expected):
    assert clamp(seconds) == expected


def test_slot_book_hands_out_at_most_capacity():
    clock = FakeClock()
    book = SlotBook(3, now=clock)
    assert book.wanted(10) == 3
    book.add([clock.now + i * 0.001 for i in range(3)])
    assert book.wanted(10) == 0
    assert len(book.take(10)) == 3 and book.busy == 3 and book.free == 0
    book.add([clock.now])
    assert book.take(10) == [] and book.held == 1  # no in-flight slot free
    book.done(2)
    assert book.free == 2 and book.take(10) == [clock.now]
    assert book.busy == 2


def test_slot_book_waits_for_a_slot_and_drops_passed_ones():
    clock = FakeClock()
    book = SlotBook(4, now=clock)
    book.add([1000.5, 1001.0])
    assert book.take(2) == []
    assert book.wait(2) == pytest.approx(0.25)  # at most MAX_WAIT
    clock.now = 1000.5 - SLOT_LEAD
    assert book.wait(2) == 0.0 and book.take(2) == [1000.5]
    clock.now = 1001.0 + STALE_SLOT * 2  # a busy CPU: the second slot has passed
    assert book.take(2) == [] and book.unused == 1 and book.held == 0
    clock.now = 0.0  # the clock jumped back: no negative wait
    book.add([1002.0])
    assert 0.0 <= book.wait(1) <= 0.25


def test_slot_book_capacity_can_change_under_load():
    clock = FakeClock()
    book = SlotBook(4, now=clock)
    book.add([clock.now] * 4)
    assert len(book.take(4)) == 4
    book.capacity = 2  # the pace slowed down: fewer in flight as calls end
    assert book.free == 0
    book.done(1)
    assert book.free == 0
    book.done(2)
    assert book.free == 1


def test_slot_book_gives_back_every_slot_not_used():
    clock = FakeClock()
    book = SlotBook(4, now=clock)
    book.add([clock.now] * 3)
    book.take(1)
    book.done(1, unused=1)  # its thread found the slot gone
    book.drop()  # held slots dropped (the rate changed)
    book.add([clock.now + 1])
    assert book.release() == 1 + 2 + 1
    assert book.release() == 0 and book.held == 0
