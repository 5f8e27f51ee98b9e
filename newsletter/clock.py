"""The one source of the current time, so tests can move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Replace the time source (tests); None restores the system clock."""
    global _source
    _source = source or (lambda: datetime.now(UTC))


def parse_schedule(value: str) -> datetime:
    """Parse when a send should start: ISO 8601, UTC when it names no offset; in the future.

    Raises ValueError with a message for the editor (the CLI and the console show it).
    """
    text = value.strip()[:40]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date and time; write it like 2026-12-01T09:00+01:00 "
            "(without an offset it is UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if when <= now():
        raise ValueError(f"{when:%Y-%m-%d %H:%M} UTC is in the past; pick a later time.")
    return when


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp with its offset (`Z` too), as AWS writes them.

    Raises ValueError when it is not one, or names no offset.
    """
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed
