"""Signup throughput on the production set-up: gunicorn workers, PostgreSQL, outbox backend.

    .venv/bin/python bench/signup.py [--signups 1500] [--rounds 5] [--concurrency 16] \
        [--workers 1,2,4]

It starts one gunicorn (wsgi:app) per worker count on a fresh PostgreSQL database
(reader_bench); the worker counts take turns in interleaved rounds (the machine is noisy),
and in each a separate load process on loopback posts distinct addresses to
POST /subscribe (each from its own X-Forwarded-For address, NEWSLETTER_PROXY_COUNT=1, so
the per-IP limit does not apply) and GETs /healthz as the baseline of the same stack.
It prints requests/s, p50/p99 latency, and the proof that no signup was lost: subscriber
rows, pending subscriptions, confirmation-email rows and .eml files all equal N.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "reader_bench"
BENCH_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_DB}"


# --- The load process (runs in its own interpreter) ------------------------------------


def load(
    port: int, path: str, start: int, count: int, tag: str, concurrency: int, max_seconds: float
) -> dict:
    """Send `count` requests from `concurrency` threads; return latencies and statuses."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    next_index = iter(range(start, start + count))
    deadline = time.monotonic() + max_seconds

    def one(i: int) -> None:
        headers = {"X-Forwarded-For": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}
        body = None
        if path == "/subscribe":
            body = urlencode(
                {"email": f"{tag}-reader{i}@example.com", "name": f"Reader {i}", "list": "weekly"}
            )
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST" if body else "GET", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
        finally:
            conn.close()
        elapsed = time.perf_counter() - start
        with lock:
            latencies.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            one(i)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "seconds": time.perf_counter() - started,
        "latencies": latencies,
        "statuses": statuses,
    }


def summary(batches: list[dict]) -> dict:
    """Merge the batches of one configuration: requests/s over its busy time, p50, p99."""
    latencies = sorted(x for b in batches for x in b["latencies"])
    statuses: dict[str, int] = {}
    for batch in batches:
        for status, n in batch["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    seconds = sum(b["seconds"] for b in batches)
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "statuses": statuses,
    }


# --- The driver ----------------------------------------------------------------------------


def fresh_database() -> None:
    import sqlalchemy as sa

    from newsletter import migrations
    from newsletter.db import make_engine

    admin = make_engine(ADMIN_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{BENCH_DB}"')
    admin.dispose()
    engine = make_engine(BENCH_URL)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO mailing_list (slug, name, from_address, postal_address, created_at)"
                " VALUES ('weekly', 'o11y weekly', 'news@example.com', '1 Example Street',"
                " now())"
            )
        )
    engine.dispose()


def counts(tag: str) -> dict[str, int]:
    """Count what the signups of one configuration (its addresses start with tag) stored."""
    import sqlalchemy as sa

    from newsletter.db import make_engine

    like = {"like": f"{tag}-reader%"}
    queries = {
        "subscriber rows": "SELECT count(*) FROM subscriber WHERE email LIKE :like",
        "distinct subscriber emails": (
            "SELECT count(DISTINCT email) FROM subscriber WHERE email LIKE :like"
        ),
        "pending subscriptions": (
            "SELECT count(*) FROM subscription JOIN subscriber s ON s.id = subscriber_id"
            " WHERE status = 'pending' AND s.email LIKE :like"
        ),
        "confirmation_email rows": (
            "SELECT count(*) FROM confirmation_email JOIN subscriber s ON s.id = subscriber_id"
            " WHERE s.email LIKE :like"
        ),
    }
    engine = make_engine(BENCH_URL)
    with engine.connect() as conn:
        result = {name: conn.scalar(sa.text(sql), like) for name, sql in queries.items()}
    engine.dispose()
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(workers: int, outbox: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(
        os.environ,
        NEWSLETTER_ENV="production",
        NEWSLETTER_DATABASE_URL=BENCH_URL,
        NEWSLETTER_SECRET_KEY="bench-secret-key-0123456789abcdef",
        NEWSLETTER_BASE_URL="https://news.example.com",
        NEWSLETTER_MAIL_BACKEND="outbox",
        NEWSLETTER_OUTBOX_DIR=str(outbox),
        NEWSLETTER_PROXY_COUNT="1",
        NEWSLETTER_SIGNUP_IP_LIMIT="1000000",
    )
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.terminate()
        raise SystemExit("gunicorn did not start")
    # Warm every worker (imports, first MJML compile) so the figures are steady-state.
    for _ in range(workers * 4):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe?list=weekly").read()
    return process, port


def run_load(port: int, path: str, *args: object) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--load", json.dumps([port, path, *args])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signups", type=int, default=1500, help="distinct addresses posted")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--workers", default="1,2,4", help="gunicorn worker counts to compare")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--max-seconds", type=float, default=60, help="bound on each batch")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(*json.loads(args.load))))
        return

    configs = [int(w) for w in args.workers.split(",")]
    per_batch = args.signups // args.rounds
    fresh_database()
    with tempfile.TemporaryDirectory(prefix="reader-bench-") as tmp:
        servers = {}
        try:
            for workers in configs:
                servers[workers] = start_gunicorn(workers, Path(tmp) / f"outbox-{workers}")
            # All servers stay up; the configurations take turns in small batches, so a
            # neighbour's burst of load falls on all of them alike.
            health = {w: [] for w in configs}
            signup = {w: [] for w in configs}
            for round_ in range(args.rounds):
                for workers in configs:
                    port = servers[workers][1]
                    start = round_ * per_batch
                    common = (args.concurrency, args.max_seconds)
                    health[workers].append(
                        run_load(port, "/healthz", start, per_batch, "", *common)
                    )
                    signup[workers].append(
                        run_load(port, "/subscribe", start, per_batch, f"w{workers}", *common)
                    )
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
        eml = {w: len(list((Path(tmp) / f"outbox-{w}").glob("*.eml"))) for w in configs}

    results = {}
    for workers in configs:
        h, s_ = summary(health[workers]), summary(signup[workers])
        results[workers] = (h, s_)
        print(f"\n== gunicorn --workers {workers}, {args.concurrency} client threads")
        for name, result in (("GET /healthz", h), ("POST /subscribe", s_)):
            print(
                f"{name:16} {result['requests']:6d} requests in {result['seconds']:6.2f} s: "
                f"{result['rps']:7.1f} req/s, p50 {result['p50_ms']:6.1f} ms, "
                f"p99 {result['p99_ms']:7.1f} ms, statuses {result['statuses']}"
            )
        posted = s_["requests"]  # each request posted a different address
        print(f"distinct addresses posted: {posted}, answered 200: {s_['statuses'].get('200', 0)}")
        stored = counts(f"w{workers}")
        stored[".eml files in the outbox"] = eml[workers]
        for name, value in stored.items():
            print(f"  {name:28} {value:6d}  {'= posted' if value == posted else 'MISMATCH'}")

    print(f"\n== side by side (same run, {args.rounds} interleaved rounds)")
    base = results[configs[0]][1]["rps"]
    for workers, (h, s_) in results.items():
        print(
            f"workers {workers}: signup {s_['rps']:6.1f} req/s "
            f"(x{s_['rps'] / base:.2f} of {configs[0]} worker), "
            f"signup/healthz {s_['rps'] / h['rps']:.2f}"
        )


if __name__ == "__main__":
    main()
