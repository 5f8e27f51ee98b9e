"""Sending throughput against a 50 ms SES stub, side by side in one run.

    .venv/bin/python bench/send_throughput.py [--messages 3000] [--concurrency 16] [--rounds 2]

1. One `newsletter worker` process (ledger, claims, just-in-time checks, personalisation,
   shared pace) vs a bare loop of sesv2.send_email with one prebuilt message, same
   concurrency, same stub. Rates are measured at the stub (first to last arrival).
2. Two worker processes on PostgreSQL with NEWSLETTER_SEND_RATE: aggregate rate and the
   busiest one-second window vs the configured rate.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import benchsetup as bs


def bare_loop(stub: bs.Stub, url: str, messages: int, concurrency: int) -> float:
    """sesv2.send_email with a prebuilt message, `concurrency` threads; rate at the stub."""
    import boto3
    from botocore.config import Config

    from newsletter import create_app
    from newsletter import sending
    from newsletter.lists import get_list

    app = create_app(
        {"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": bs.SECRET, "BASE_URL": bs.BASE_URL}
    )
    with app.extensions["newsletter.db"].transaction() as session:
        plan = sending.plan_send(session, bs.ISSUE, "bench", base_url=bs.BASE_URL)
        renderer = sending.IssueRenderer(
            issue_id=1,
            slug=plan.compiled.slug,
            subject=plan.compiled.subject,
            html=plan.compiled.html,
            text=plan.compiled.text,
            mailing_list=get_list(session, "bench"),
            base_url=bs.BASE_URL,
            secret_key=bs.SECRET,
        )
        message = renderer.message(
            email="r1@example.com", name="Reader 1", subscription_id=1, delivery_id=1
        )
    raw = message.as_bytes()
    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=stub.url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=concurrency),
    )
    tags = [{"Name": k, "Value": v} for k, v in message.tags.items()]

    def run(count: int) -> None:
        for _ in range(count):
            client.send_email(
                FromEmailAddress="news@example.com",
                Destination={"ToAddresses": ["r1@example.com"]},
                Content={"Raw": {"Data": raw}},
                ConfigurationSetName="bench",
                EmailTags=tags,
            )

    stub.reset()
    share = [messages // concurrency] * concurrency
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, share))
    app.extensions["newsletter.db"].dispose()
    return bs.rate_from(stub.stats()["times"]), len(raw)


def one_worker(stub: bs.Stub, messages: int, concurrency: int) -> float:
    url = bs.fresh_database("sending_bench")
    bs.add_readers(url, messages)
    bs.start_send(url)
    stub.reset()
    subprocess.run(
        [bs.NEWSLETTER, "worker", "--once", "--concurrency", str(concurrency)],
        env=bs.worker_env(url, stub),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stats = stub.stats()
    assert stats["count"] == messages, stats["count"]
    return bs.rate_from(stats["times"])


def two_workers(stub: bs.Stub, messages: int, concurrency: int, rate: float) -> tuple[float, int]:
    url = bs.fresh_database("sending_bench")
    bs.add_readers(url, messages)
    bs.start_send(url)
    stub.reset()
    env = bs.worker_env(url, stub, rate=rate)
    command = [bs.NEWSLETTER, "worker", "--once", "--concurrency", str(concurrency)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    for process in processes:
        assert process.wait() == 0
    times = stub.stats()["times"]
    assert len(times) == messages, len(times)
    return bs.rate_from(times), bs.busiest_second(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=150.0, help="for the two-worker run")
    args = parser.parse_args()

    stub = bs.Stub(latency=0.05)
    try:
        ratios = []
        url = bs.fresh_database("sending_bench")
        bs.add_readers(url, 10)
        for round_ in range(1, args.rounds + 1):
            bare, size = bare_loop(stub, url, args.messages, args.concurrency)
            ours = one_worker(stub, args.messages, args.concurrency)
            url = bs.fresh_database("sending_bench")
            bs.add_readers(url, 10)
            ratios.append(ours / bare)
            print(
                f"round {round_}: bare loop {bare:7.1f} msg/s | worker {ours:7.1f} msg/s | "
                f"ratio {ours / bare:.1%}  ({args.messages} messages of {size} bytes, "
                f"concurrency {args.concurrency}, 50 ms latency)",
                flush=True,
            )
        print(f"median ratio: {statistics.median(ratios):.1%}")
        started = time.perf_counter()
        aggregate, busiest = two_workers(stub, args.messages, args.concurrency, args.rate)
        print(
            f"two workers, rate {args.rate:g}/s: aggregate {aggregate:.1f} msg/s, busiest "
            f"second {busiest} ({busiest / args.rate - 1:+.1%} vs the rate), "
            f"{time.perf_counter() - started:.1f} s"
        )
    finally:
        stub.stop()


if __name__ == "__main__":
    main()
