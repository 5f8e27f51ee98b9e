"""Issue 13's fault scenario: N readers, several workers on PostgreSQL, an SES-compatible
server (tests/sesfake.py) that at random takes a message and then drops or resets the
connection, answers after the client's read timeout, throttles, or fails with and
without an error body. Counts what the promise is about: readers with two copies, and
accepted messages that are not on their row as `sent` or `unknown`.

    .venv/bin/python bench/send_faults.py --readers 2000 --workers 3

Needs PostgreSQL on 127.0.0.1:5432 (user postgres); uses the database bench_faults.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter

import benchsetup as bs
import sqlalchemy as sa

sys.path.insert(0, str(bs.ROOT / "tests"))

from sesfake import SesFake  # noqa: E402

from newsletter.db import make_engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=1.0, help="the workers' SES timeout")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    url = bs.fresh_database("bench_faults")
    bs.add_readers(url, args.readers)
    issue_id, _ = bs.start_send(url)
    fake = SesFake(
        latency=0.01,
        quota={"Max24HourSend": 1e9, "MaxSendRate": args.rate},
        chaos={
            "drop": 0.02,  # taken, then the connection closes without an answer
            "reset": 0.01,  # taken, then the connection is reset
            "late": 0.02,  # taken, answered after the read timeout
            "throttle": 0.02,  # not taken: retried
            "error500": 0.01,  # not taken, the body names the cause: retried
            "bare500": 0.01,  # a 5xx without a body: may have been taken
        },
        chaos_seconds=args.timeout * 1.5,
        seed=args.seed,
    )
    fake.start()

    class Endpoint:
        url = fake.url

    env = bs.worker_env(url, Endpoint(), rate=args.rate)  # type: ignore[arg-type]
    env["NEWSLETTER_SES_TIMEOUT"] = str(args.timeout)
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [bs.NEWSLETTER, "worker", "--once"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.workers)
    ]
    codes = [worker.wait(timeout=600) for worker in workers]
    seconds = time.monotonic() - started
    for worker, code in zip(workers, codes, strict=True):
        if code != 0:
            print((worker.stderr.read() if worker.stderr else "")[-2000:], file=sys.stderr)
    fake.stop()

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, status, ses_message_id FROM delivery WHERE issue_id = :issue"),
            {"issue": issue_id},
        ).all()
    engine.dispose()
    by_id = {row.id: row for row in rows}
    statuses = Counter(row.status for row in rows)
    copies = Counter(r for message in fake.accepted for r in message.recipients)
    twice = sum(1 for n in copies.values() if n > 1)
    off_ledger = 0
    for message in fake.accepted:
        row = by_id[int(message.tags["delivery"])]
        if not (
            row.status == "unknown"
            or (row.status == "sent" and row.ses_message_id == message.message_id)
        ):
            off_ledger += 1
    missing = sum(1 for row in rows if row.status not in ("sent", "unknown", "failed"))
    print(
        f"readers {args.readers}, workers {args.workers} (exit codes {codes}), {seconds:.1f} s; "
        f"SES requests {fake.requests}, accepted {len(fake.accepted)}"
    )
    print(f"ledger: {dict(sorted(statuses.items()))}")
    print(
        f"readers with two or more copies: {twice}; accepted messages not on their row as "
        f"sent (with that MessageId) or unknown: {off_ledger}; rows left neither sent, "
        f"failed nor unknown: {missing}"
    )


if __name__ == "__main__":
    main()
