"""Subscriber import speed and memory: a 1,000,000-row CSV into PostgreSQL.

    .venv/bin/python bench/import_csv.py [--rows 1000000] [--url URL] [--lanes 2] [--no-rerun]
                                         [--keep] [--profile]

Writes a realistic CSV (about 5,000 domains, some non-ASCII names, a few % repeated
addresses in other letter cases, about 1 % bad rows, quoted fields, a BOM, semicolons),
then imports it with newsletter.imports.import_csv in consented mode, the code path of
`newsletter subscribers import --consented`, into a dedicated database (dropped and
re-created, then migrated; default newsletter_bench_import). Prints rows/s and the process's
resident memory at 10 %, 50 % and 100 % of the file, and the peak. Then imports the same
file again (everything is merged: the re-run cost). --profile runs the first import under
cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import pstats
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import imports  # noqa: E402
from newsletter import migrations  # noqa: E402
from newsletter.db import Database  # noqa: E402
from newsletter.db import make_engine  # noqa: E402
from newsletter.mail import MemoryMailer  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_import"
FIRST = [
    "Ada",
    "Grace",
    "Linus",
    "Zoë",
    "José",
    "Åsa",
    "Jürgen",
    "Chloé",
    "Søren",
    "Mei",
    "Ngozi",
    "Ivan",
    "Priya",
    "Olusegun",
    "Anaïs",
    "Björn",
    "Łukasz",
    "Hana",
    "Omar",
    "Ana",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Ångström",
    "Muñoz",
    "Šimek",
    "Nakamura",
    "O'Brien",
    "Dubois",
    "Ødegård",
    "Okafor",
    "Petrov",
    "Sharma",
    "Müller",
    "Smith",
    "García",
]
BAD = ["not-an-email", "two@@at.example", "nodomain@", "spaces in@x.example", "a@b", ""]


def write_csv(path: Path, rows: int, seed: int = 6) -> dict[str, int]:
    """Write the benchmark file; return how many rows of each kind it holds."""
    rng = random.Random(seed)
    domains = [
        f"{rng.choice(['mail', 'post', 'team', 'corp', 'news'])}{n}.example" for n in range(4_000)
    ]
    domains += [f"{w}.example.org" for w in range(1_000)]
    kinds = {"unique": 0, "repeated": 0, "bad": 0}
    recent: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("\ufeff")
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(["E-mail", "Name", "Signed up"])
        for n in range(rows):
            roll = rng.random()
            if roll < 0.01:
                email = rng.choice(BAD)
                kinds["bad"] += 1
            elif roll < 0.04 and recent:
                email = rng.choice(recent).upper()  # the same reader, in capitals
                kinds["repeated"] += 1
            else:
                email = f"{rng.choice(FIRST).lower()[:3]}.{n}@{rng.choice(domains)}"
                email = email.encode("ascii", "ignore").decode()
                kinds["unique"] += 1
                if len(recent) < 50_000:
                    recent.append(email)
                else:
                    recent[rng.randrange(50_000)] = email
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            if n % 20 == 0:
                name = f"{rng.choice(LAST)}; {rng.choice(FIRST)}"  # a quoted field
            writer.writerow([email, name, f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}"])
    return kinds


def fresh_database(url: str) -> None:
    """Drop and re-create the database named in the URL, then migrate it."""
    parsed = sa.engine.make_url(url)
    admin = make_engine(str(parsed.set(database="postgres")))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    admin.dispose()
    engine = make_engine(url)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO mailing_list (slug, name, from_address, postal_address, created_at) "
                "VALUES ('bench', 'o11y news', 'news@example.com', '1 Example Street', now())"
            )
        )
    engine.dispose()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Memory:
    """Samples this process's resident memory every 20 ms while an import runs."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def __enter__(self) -> Memory:
        self.peak_kb = _status_kb("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


def run_import(database: Database, path: Path, label: str, profile: bool) -> None:
    size = path.stat().st_size
    marks = [0.10, 0.50, 1.00]
    seen: list[tuple[float, int, int, float]] = []  # (fraction, rows, rss kB, seconds)
    started = time.perf_counter()

    def progress(rows: int, done: int, total: int) -> None:
        while marks and done >= marks[0] * size:
            seen.append((marks.pop(0), rows, _status_kb("VmRSS"), time.perf_counter() - started))

    profiler = cProfile.Profile() if profile else None
    with Memory() as memory:
        if profiler:
            profiler.enable()
        report = imports.import_csv(
            database,
            path,
            "bench",
            mode=imports.ImportMode.CONSENTED,
            mailer=MemoryMailer(),
            config={"CONFIRM_EMAILS_PER_DAY": 3},
            source_label=f"import: {path.name}",
            progress=progress,
        )
        if profiler:
            profiler.disable()
    seconds = time.perf_counter() - started
    print(
        f"\n{label}: {report.rows:,} rows in {seconds:.1f} s = {report.rows / seconds:,.0f} rows/s"
    )
    print(
        f"  imported {report.imported:,}, merged {report.merged:,}, refused {report.refused:,}, "
        f"bad {report.bad_count:,}, blank {report.blank:,}"
    )
    for fraction, rows, rss, at in seen:
        print(
            f"  RSS at {fraction:>4.0%} of the file ({rows:>9,} rows, {at:6.1f} s): "
            f"{rss / 1024:6.1f} MB"
        )
    print(f"  peak RSS during the import: {memory.peak_kb / 1024:.1f} MB")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--url", default=DEFAULT_URL, help="PostgreSQL URL (dropped and re-created)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the CSV file")
    parser.add_argument("--profile", action="store_true", help="profile the imports (cProfile)")
    parser.add_argument("--no-rerun", action="store_true", help="skip the second import")
    parser.add_argument(
        "--lanes",
        type=int,
        default=imports.POSTGRES_LANES,
        help=f"batches stored at once (default {imports.POSTGRES_LANES})",
    )
    args = parser.parse_args()
    imports.importer.POSTGRES_LANES = args.lanes

    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    path = folder / f"subscribers-{args.rows}.csv"
    started = time.perf_counter()
    kinds = write_csv(path, args.rows)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.rows:,} rows: "
        f"{kinds['unique']:,} new addresses, {kinds['repeated']:,} repeats, {kinds['bad']:,} bad) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    fresh_database(args.url)
    database = Database(args.url)
    print(
        f"database {sa.engine.make_url(args.url).database} re-created; lanes {args.lanes}; "
        f"RSS {_status_kb('VmRSS') / 1024:.1f} MB before the import"
    )
    try:
        run_import(database, path, "first import", args.profile)
        if not args.no_rerun:
            run_import(database, path, "same file again (all merged)", args.profile)
        with database.engine.connect() as conn:
            subs = conn.scalar(sa.text("SELECT count(*) FROM subscription"))
        print(f"\nsubscriptions stored: {subs:,}")
    finally:
        database.dispose()
        if not args.keep:
            path.unlink(missing_ok=True)
            folder.rmdir()


if __name__ == "__main__":
    main()
