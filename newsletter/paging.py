"""What every paged console list tells its pager: how many rows, and where a page starts.

Shared by the subscriber directory (newsletter.directory) and the sends on the issues page
(newsletter.progress); templates/admin/_pager.html shows both the same way ("51–100 of N").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Generic
from typing import TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so

Row = TypeVar("Row")

# Row ids are INTEGER columns: a cursor past this is past every row (and PostgreSQL refuses
# to compare an INTEGER with a larger number).
MAX_ROW_ID = 2**31 - 1


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


@dataclass(frozen=True)
class PageOf(Generic[Row]):
    """One page of a console list, and what its pager needs (keyset links, "51–100 of N")."""

    rows: list[Row]
    has_prev: bool
    has_next: bool
    count: Count
    # Where the first row stands among the matches; None only on an empty page.
    position: Position | None = None

    @property
    def start(self) -> int | None:
        return self.position.start if self.position else None

    @property
    def end(self) -> int | None:
        return self.position.start + len(self.rows) - 1 if self.position else None

    @property
    def first_id(self) -> int | None:
        return self.row_id(self.rows[0]) if self.rows else None

    @property
    def last_id(self) -> int | None:
        return self.row_id(self.rows[-1]) if self.rows else None

    def row_id(self, row: Row) -> int:
        """The keyset id of a row (the pager's before/after links carry it)."""
        raise NotImplementedError


def estimate(session: so.Session, query: sa.Select[Any]) -> int:
    """PostgreSQL's planner estimate of the rows a query returns (no rows are read)."""
    # Values inline: the plan is made for them, as it is for the page itself.
    text = query.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    plan = session.execute(sa.text(f"EXPLAIN (FORMAT JSON) {text}")).scalar()
    assert isinstance(plan, list)
    return int(plan[0]["Plan"]["Plan Rows"])
