"""Benchmark: SNS notifications processed per second by POST /webhooks/ses.

gunicorn (sync workers) on PostgreSQL (database bounces_bench), every post signed
(SignatureVersion 2, SHA256) and verified, the certificate cached after its first fetch.
Three figures from one run, so the noisy shared machine affects them alike:

  fresh    new notifications (Delivery events, 5% hard bounces): verify + apply + commit
  replay   the same notifications again: verify + dedupe on the SNS MessageId
  verify   signature verification alone, in this process (no HTTP, no database)

Usage: .venv/bin/python bench/webhook.py [--count 2000] [--workers 2] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sns_fixtures import CERT_URL  # noqa: E402
from sns_fixtures import TOPIC_ARN  # noqa: E402
from sns_fixtures import SnsSigner  # noqa: E402
from sns_fixtures import notification  # noqa: E402
from sns_fixtures import ses_event  # noqa: E402

from newsletter import clock  # noqa: E402
from newsletter import migrations  # noqa: E402
from newsletter.db import make_engine  # noqa: E402
from newsletter.models import Delivery  # noqa: E402
from newsletter.models import DeliveryStatus  # noqa: E402
from newsletter.models import Issue  # noqa: E402
from newsletter.models import IssueStatus  # noqa: E402
from newsletter.models import MailingList  # noqa: E402
from newsletter.models import Subscriber  # noqa: E402
from newsletter.models import Subscription  # noqa: E402
from newsletter.models import SubscriptionStatus  # noqa: E402
from newsletter.sns import CertificateStore  # noqa: E402
from newsletter.sns import SnsGateway  # noqa: E402

DB_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bounces_bench"


def fresh_database(url: str) -> sa.Engine:
    admin = make_engine(str(sa.engine.make_url(url).set(database="postgres")))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        name = sa.engine.make_url(url).database
        if not conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    migrations.upgrade(engine)
    return engine


def seed(engine: sa.Engine, count: int) -> list[tuple[str, str]]:
    """One issue sent to `count` readers; return (address, MessageId) per ledger row."""
    with so.Session(engine) as session, session.begin():
        weekly = MailingList(slug="weekly", name="Weekly", from_address="news@example.com")
        session.add(weekly)
        session.flush()
        issue = Issue(
            list_id=weekly.id,
            slug="bench",
            title="Bench",
            subject="Bench",
            issue_date=clock.now(),
            status=IssueStatus.SENT,
            source_yaml="",
            compiled_html="",
            compiled_text="",
        )
        session.add(issue)
        rows = []
        for i in range(count):
            email = f"reader{i}@example.com"
            subscriber = Subscriber(email=email, display_email=email)
            session.add(subscriber)
            session.flush()
            subscription = Subscription(
                subscriber_id=subscriber.id,
                list_id=weekly.id,
                status=SubscriptionStatus.ACTIVE,
                source="import",
            )
            session.add(subscription)
            session.flush()
            message_id = f"0100018e-bench-{i:06d}-000000"
            session.add(
                Delivery(
                    issue_id=issue.id,
                    subscriber_id=subscriber.id,
                    subscription_id=subscription.id,
                    status=DeliveryStatus.SENT,
                    sent_at=clock.now(),
                    ses_message_id=message_id,
                )
            )
            rows.append((email, message_id))
    return rows


def post_all(url: str, bodies: list[bytes], clients: int) -> tuple[float, dict[int, int]]:
    def post(body: bytes) -> int:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=UTF-8"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return elapsed, counts


def wait_ready(base: str, process: subprocess.Popen) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise SystemExit("gunicorn exited; see its output above")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="notifications per run")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--clients", type=int, default=4, help="concurrent posting threads")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    args = parser.parse_args()

    engine = fresh_database(DB_URL)
    rows = seed(engine, args.count)
    signer = SnsSigner.create()
    bodies = []
    for i, (email, message_id) in enumerate(rows):
        kind = "Bounce" if i % 20 == 0 else "Delivery"
        event = ses_event(kind, email, message_id=message_id)
        bodies.append(json.dumps(notification(signer, event, version="2")).encode())

    # The same verification the app runs, alone: the cost floor of the endpoint.
    gateway = SnsGateway(
        topic_arns=frozenset({TOPIC_ARN}), certificates=CertificateStore(fetch=signer.fetch)
    )
    started = time.perf_counter()
    for body in bodies:
        gateway.verify(body)
    verify_rate = len(bodies) / (time.perf_counter() - started)

    if args.port:
        port = args.port
    else:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as pem:
        pem.write(signer.pem)
    env = dict(
        os.environ,
        NEWSLETTER_DATABASE_URL=DB_URL,
        NEWSLETTER_SECRET_KEY="bench-secret-key",
        NEWSLETTER_BASE_URL="https://news.example.com",
        NEWSLETTER_SNS_TOPIC_ARNS=TOPIC_ARN,
        BENCH_SNS_CERT_PEM=pem.name,
        BENCH_SNS_CERT_URL=CERT_URL,
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [
            str(gunicorn),
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--pythonpath",
            str(ROOT / "bench"),
            "--log-level",
            "warning",
            "webhook_wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        fresh_time, fresh_status = post_all(f"{base}/webhooks/ses", bodies, args.clients)
        replay_time, replay_status = post_all(f"{base}/webhooks/ses", bodies, args.clients)
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.unlink(pem.name)

    with engine.connect() as conn:
        by_status = dict(
            conn.execute(
                sa.select(Delivery.status, sa.func.count()).group_by(Delivery.status)
            ).all()
        )
    engine.dispose()
    fresh_rate = args.count / fresh_time
    replay_rate = args.count / replay_time
    print(f"notifications: {args.count} (SignatureVersion 2; 1 in 20 a hard bounce)")
    print(f"gunicorn: {args.workers} sync workers; {args.clients} posting threads; PostgreSQL")
    print(f"fresh:  {fresh_rate:8.1f} notifications/s  {fresh_status}")
    print(f"replay: {replay_rate:8.1f} notifications/s  {replay_status}")
    print(f"verify: {verify_rate:8.1f} verifications/s in-process (no HTTP, no database)")
    print(
        f"ratios: replay/fresh {replay_rate / fresh_rate:.2f}; "
        f"verify/fresh {verify_rate / fresh_rate:.1f}"
    )
    print(f"ledger after: { {k.value: v for k, v in by_status.items()} }")
    expected = {DeliveryStatus.DELIVERED: args.count - len(range(0, args.count, 20))}
    if by_status.get(DeliveryStatus.DELIVERED) != expected[DeliveryStatus.DELIVERED]:
        raise SystemExit("ledger does not match the notifications posted")
    if set(fresh_status) != {200} or set(replay_status) != {200}:
        raise SystemExit("some posts were not answered 200")


if __name__ == "__main__":
    main()
