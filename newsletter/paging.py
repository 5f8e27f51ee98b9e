"""What every paged console list tells its pager: how many rows, and where a page starts.

Shared by the subscriber directory (newsletter.directory) and the sends on the issues page
(newsletter.progress); templates/admin/_pager.html shows both the same way ("51–100 of N").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Count:
    """How many rows match: exact, at least `value` (capped), or estimated."""

    value: int
    capped: bool = False
    estimated: bool = False

    @property
    def exact(self) -> bool:
        return not (self.capped or self.estimated)


@dataclass(frozen=True)
class Position:
    """Where a page's first row stands among the matches (1-based); `about` if estimated."""

    start: int
    about: bool = False
