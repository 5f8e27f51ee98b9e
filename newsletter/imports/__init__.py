"""Subscriber imports from CSV files: parse, validate, merge, store in set-based batches.

The file is streamed (memory stays flat whatever its size) and stored batch by batch, each
batch in its own transaction with a few set-based statements. Rows that cannot be used are
reported with their physical line number and the reason; the rest of the file is imported.
Nobody who unsubscribed, bounced or complained on the list, and nobody on the suppression
list, is ever subscribed again by an import.

The parts: reading (the file, its CSV records and columns), rows (checking one row),
batches (sorting and storing a batch) with its two stores, sqlite_store (portable Core) and
postgres_store, importer (running an import), and jobs (the console's background imports,
an ImportJob row each, whose counters it shows while the import runs).
"""

from typing import TYPE_CHECKING

from newsletter.lazy_names import lazy_getattr

if TYPE_CHECKING:
    from newsletter.imports.importer import POSTGRES_LANES
    from newsletter.imports.importer import import_csv
    from newsletter.imports.jobs import JOB_STALE_AFTER
    from newsletter.imports.jobs import STALLED_JOB_ERROR
    from newsletter.imports.jobs import bad_rows
    from newsletter.imports.jobs import create_job
    from newsletter.imports.jobs import get_job
    from newsletter.imports.jobs import recent_jobs
    from newsletter.imports.jobs import run_job
    from newsletter.imports.reading import MAX_LINE_BYTES
    from newsletter.imports.reading import detect_columns
    from newsletter.imports.reading import read_columns
    from newsletter.imports.reading import read_sample
    from newsletter.imports.report import BadRow
    from newsletter.imports.report import ImportFileError
    from newsletter.imports.report import ImportReport
    from newsletter.imports.rows import fast_address
    from newsletter.models import ImportMode

__all__ = [
    "JOB_STALE_AFTER",
    "MAX_LINE_BYTES",
    "POSTGRES_LANES",
    "STALLED_JOB_ERROR",
    "BadRow",
    "ImportFileError",
    "ImportMode",
    "ImportReport",
    "bad_rows",
    "create_job",
    "detect_columns",
    "fast_address",
    "get_job",
    "import_csv",
    "read_sample",
    "read_columns",
    "recent_jobs",
    "run_job",
]

# Each name's module, imported on first use: the importer pulls in subscriptions, the
# directory and their templates (about 25 ms), which a worker's daily prune (it needs
# only newsletter.imports.uploads) should not pay for at start-up.
_HOMES = {
    "POSTGRES_LANES": "newsletter.imports.importer",
    "import_csv": "newsletter.imports.importer",
    "JOB_STALE_AFTER": "newsletter.imports.jobs",
    "STALLED_JOB_ERROR": "newsletter.imports.jobs",
    "bad_rows": "newsletter.imports.jobs",
    "create_job": "newsletter.imports.jobs",
    "get_job": "newsletter.imports.jobs",
    "recent_jobs": "newsletter.imports.jobs",
    "run_job": "newsletter.imports.jobs",
    "MAX_LINE_BYTES": "newsletter.imports.reading",
    "detect_columns": "newsletter.imports.reading",
    "read_columns": "newsletter.imports.reading",
    "read_sample": "newsletter.imports.reading",
    "BadRow": "newsletter.imports.report",
    "ImportFileError": "newsletter.imports.report",
    "ImportReport": "newsletter.imports.report",
    "fast_address": "newsletter.imports.rows",
    "ImportMode": "newsletter.models",
}


_PARTS = frozenset(
    ("reading", "rows", "batches", "sqlite_store", "postgres_store", "importer", "jobs", "report")
)

__getattr__ = lazy_getattr(__name__, _HOMES, _PARTS)
