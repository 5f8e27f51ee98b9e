"""The console's issue pages: what a watching editor costs, by list size.

    .venv/bin/python bench/admin_issues.py [--readers 10000,100000] [--requests 40]

Uses the PostgreSQL database `nl_helper_issues_bench` (dropped and re-created for each size).
For each size: a list of that many readers, the example issue's ledger, then 70% of the rows
marked sent, 20% delivered, 1% failed, 0.5% bounced (the middle of a send). Timed in
process with Flask's test client, signed in as an editor: the progress JSON that the issue
page polls every second, the issue page, and the issues page (figures of every send), with
a pretend `newsletter worker` registered on another machine, so that the console only
watches (it would deliver itself otherwise). The draft preview pages (they compile the
issue on each request) do not depend on the list size and are timed once.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time

import benchsetup as bs
import sqlalchemy as sa

EDITOR = "bench-editor@example.com"
PASSWORD = "correct horse battery staple"


def _app(url: str, instance: str):
    from newsletter import create_app
    from newsletter.mail import MemoryMailer

    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "SECRET_KEY": bs.SECRET,
            "BASE_URL": bs.BASE_URL,
            "MAIL_BACKEND": "memory",
            "MAILER": MemoryMailer(),
            "INSTANCE_PATH": instance,
            # The pretend worker below stays "alive" for the whole run.
            "WORKER_LEASE": 3600,
        }
    )


def _signed_in(app):
    from newsletter import accounts

    with app.extensions["newsletter.db"].transaction() as session:
        accounts.create_user(session, EDITOR, PASSWORD)
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/admin/login", data={"email": EDITOR, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.status_code
    # A login starts a new session, with a new CSRF token.
    page = client.get("/admin/issues").get_data(as_text=True)
    client.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client


def _mid_send(url: str, issue_id: int) -> None:
    engine = bs.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE delivery SET status = CASE "
                " WHEN id % 1000 < 700 THEN 'sent' WHEN id % 1000 < 900 THEN 'delivered'"
                " WHEN id % 1000 < 910 THEN 'failed' WHEN id % 1000 < 915 THEN 'bounced'"
                " ELSE 'queued' END,"
                " sent_at = CASE WHEN id % 1000 < 915 AND id % 1000 NOT BETWEEN 900 AND 909"
                "  THEN now() ELSE NULL END,"
                " ses_message_id = CASE WHEN id % 1000 < 900 THEN 'm-' || id ELSE NULL END,"
                " error = CASE WHEN id % 1000 BETWEEN 900 AND 909 THEN 'rejected' END"
                " WHERE issue_id = :issue"
            ),
            {"issue": issue_id},
        )
        # A `newsletter worker` elsewhere delivers (as in production): the console only
        # watches, and does not start delivering in its own process.
        conn.execute(
            sa.text(
                "INSERT INTO worker (id, hostname, pid, concurrency, status, started_at, "
                "heartbeat_at) VALUES ('bench:1:x', 'another-machine', 1, 8, 'running', "
                "now(), now())"
            )
        )
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _time(client, path: str, requests: int) -> tuple[float, float]:
    """Return (p50, p95) in ms of `requests` GETs (after one warm-up)."""
    assert client.get(path).status_code == 200, path
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", default="10000,100000")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    sizes = [int(n) for n in args.readers.split(",")]

    print(f"{'readers':>9}  {'page':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for index, readers in enumerate(sizes):
        url = bs.fresh_database("nl_helper_issues_bench")
        bs.add_readers(url, readers)
        issue_id, _ = bs.start_send(url)
        _mid_send(url, issue_id)
        with tempfile.TemporaryDirectory() as instance:
            app = _app(url, instance)
            client = _signed_in(app)
            data = client.get(f"/admin/issues/{issue_id}.json").get_json()
            assert data["total"] == readers, data
            for label, path in (
                ("progress JSON (every 1 s)", f"/admin/issues/{issue_id}.json"),
                ("issue page", f"/admin/issues/{issue_id}"),
                ("issues page (figures)", "/admin/issues"),
            ):
                p50, p95 = _time(client, path, args.requests)
                print(f"{readers:>9}  {label:<28} {p50:>8.1f} {p95:>8.1f}", flush=True)
            if index == 0:
                text = bs.ISSUE.read_text(encoding="utf-8")
                response = client.post(
                    "/admin/issues",
                    data={"yaml": text, "list": "bench", "csrf_token": client.csrf},
                )
                assert response.status_code == 302, response.get_data(as_text=True)[:500]
                draft = response.headers["Location"]
                for label, path in (
                    ("draft page (compiles)", draft),
                    ("draft preview frame", f"{draft}/html"),
                ):
                    p50, p95 = _time(client, path, max(args.requests // 4, 5))
                    print(f"{'-':>9}  {label:<28} {p50:>8.1f} {p95:>8.1f}", flush=True)
            app.extensions["newsletter.db"].dispose()


if __name__ == "__main__":
    main()
