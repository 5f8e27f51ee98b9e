"""Shared set-up for the sending benchmarks: a PostgreSQL database, readers, the SES stub."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import migrations  # noqa: E402
from newsletter.db import make_engine  # noqa: E402

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
ISSUE = ROOT / "examples" / "issue.yaml"
SECRET = "bench-secret-key-0123456789"
BASE_URL = "https://news.example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(name: str) -> str:
    """(Re)create an empty, migrated PostgreSQL database; return its URL."""
    admin = make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url


def fresh_sqlite(directory: str | Path, name: str = "newsletter.db") -> str:
    """Create an empty, migrated SQLite file (the embedded default's engine); return its URL."""
    path = Path(directory) / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url


def add_readers_sqlite(url: str, count: int) -> None:
    """Add a list "bench" with `count` active readers to a SQLite database."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO mailing_list (slug, name, from_address, postal_address, created_at) "
            "VALUES ('bench', 'o11y news', 'news@example.com', '1 Example Street', "
            "CURRENT_TIMESTAMP)"
        )
        conn.exec_driver_sql(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
            "INSERT INTO subscriber (email, display_email, name, created_at) "
            "SELECT 'r' || n || '@example.com', 'r' || n || '@example.com', 'Reader ' || n, "
            "CURRENT_TIMESTAMP FROM g",
            (count,),
        )
        conn.exec_driver_sql(
            "INSERT INTO subscription (subscriber_id, list_id, status, created_at, "
            "status_changed_at, source) SELECT id, (SELECT id FROM mailing_list), "
            "'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'import' FROM subscriber"
        )
    engine.dispose()


def add_readers(url: str, count: int) -> None:
    """Add a list "bench" with `count` active readers, set-based in SQL."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO mailing_list (slug, name, from_address, postal_address, created_at) "
                "VALUES ('bench', 'o11y news', 'news@example.com', '1 Example Street', now())"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO subscriber (email, display_email, name, created_at) "
                "SELECT 'r' || g || '@example.com', 'r' || g || '@example.com', 'Reader ' || g, "
                "now() FROM generate_series(1, :n) AS g"
            ),
            {"n": count},
        )
        conn.execute(
            sa.text(
                "INSERT INTO subscription (subscriber_id, list_id, status, created_at, "
                "status_changed_at, source) SELECT id, (SELECT id FROM mailing_list), "
                "'active', now(), now(), 'import' FROM subscriber"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def start_send(url: str) -> tuple[int, float]:
    """Store the example issue and its ledger as `newsletter send` does; (issue id, seconds)."""
    from newsletter import create_app
    from newsletter import sending

    app = create_app(
        {"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": SECRET, "BASE_URL": BASE_URL}
    )
    database = app.extensions["newsletter.db"]
    with database.transaction() as session:
        plan = sending.plan_send(session, ISSUE, "bench", base_url=BASE_URL)
    started = time.perf_counter()
    with database.transaction() as session:
        plan.mailing_list = session.merge(plan.mailing_list)
        issue_id = sending.start_send(session, plan).id
    seconds = time.perf_counter() - started
    database.dispose()
    return issue_id, seconds


class Stub:
    """bench/sesstub.py in its own process."""

    def __init__(
        self, latency: float = 0.05, max_rate: float = 100000.0, throttle: float = 0.0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "sesstub.py"),
                "--port",
                str(self.port),
                "--latency",
                str(latency),
                "--max-rate",
                str(max_rate),
                "--throttle",
                str(throttle),
            ],
            stdout=subprocess.PIPE,
        )
        self.process.stdout.readline()

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/stats") as response:
            return json.load(response)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/reset", method="POST"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def worker_env(url: str, stub: Stub, rate: float | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "NEWSLETTER_ENV": "production",
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": BASE_URL,
        "NEWSLETTER_MAIL_BACKEND": "ses",
        "NEWSLETTER_SES_ENDPOINT_URL": stub.url,
        "NEWSLETTER_SES_REGION": "us-east-1",
        "NEWSLETTER_SES_CONFIGURATION_SET": "bench",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    env.pop("NEWSLETTER_SEND_RATE", None)
    if rate is not None:
        env["NEWSLETTER_SEND_RATE"] = str(rate)
    return env


def rate_from(times: list[float]) -> float:
    """Messages per second between the first and the last arrival."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any one-second window."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def example_renderer(url: str):
    """The example issue compiled for the `bench` list of `url`, as a worker renders it."""
    from newsletter import create_app
    from newsletter import sending
    from newsletter.lists import get_list

    app = create_app(
        {"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": SECRET, "BASE_URL": BASE_URL}
    )
    with app.extensions["newsletter.db"].transaction() as session:
        plan = sending.plan_send(session, ISSUE, "bench", base_url=BASE_URL)
        renderer = sending.IssueRenderer(
            issue_id=1,
            slug=plan.compiled.slug,
            subject=plan.compiled.subject,
            html=plan.compiled.html,
            text=plan.compiled.text,
            mailing_list=get_list(session, "bench"),
            base_url=BASE_URL,
            secret_key=SECRET,
        )
    app.extensions["newsletter.db"].dispose()
    return renderer
