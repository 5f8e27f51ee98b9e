"""What an import did (ImportReport, BadRow) and the error for a file that cannot be used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from newsletter.errors import NewsletterError

# Bad rows kept with their reasons (all are counted).
MAX_BAD_ROWS = 1000

ProgressCallback = Callable[[int, int, int], None]


class ImportFileError(NewsletterError):
    """The file cannot be imported at all (missing, not UTF-8 CSV, no email column)."""


@dataclass
class BadRow:
    """A row that was not imported: its physical line in the file (1 = header) and why."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did. Every data row is counted once: imported, merged, refused or bad."""

    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # new subscriptions created (active, or pending in double opt-in)
    confirmations: int = 0  # confirmation emails queued (double opt-in only)
    merged: int = 0  # already on the list (from before, or from an earlier row of the file)
    refused: int = 0  # unsubscribed, bounced or complained on the list, or suppressed
    blank: int = 0  # blank lines skipped
    bad: list[BadRow] = field(default_factory=list)  # the first MAX_BAD_ROWS bad rows
    bad_count: int = 0
    email_column: str | None = None  # the header names used
    name_column: str | None = None

    def add_bad(self, line: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_BAD_ROWS:
            self.bad.append(BadRow(line, reason))
