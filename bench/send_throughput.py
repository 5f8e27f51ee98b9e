"""Sending speed with default settings, against a local SES stub, side by side in one run.

    .venv/bin/python bench/send_throughput.py [--messages 3000] [--parts quota,unbounded,throttle]

quota      `newsletter send` of N readers on SQLite (the embedded default's engine), no rate
           setting: the product reads a 200/s quota from the stub's GetAccount. Timed from
           the command's start to its end, at 50 ms and at 200 ms SES latency. Target: >= 90%
           of the quota, no one-second window (sliding, every arrival) more than 5% over it.
unbounded  quota 100,000/s, 50 ms: the best bare `sesv2.send_email` loop (one prebuilt message,
           8/16/32/64/128/256 threads) vs `newsletter send` on SQLite and on PostgreSQL, and one
           `newsletter worker --once` on PostgreSQL. Rates at the stub (first to last
           arrival); the commands' start-to-end rates beside them. Target: >= 0.9x of the
           best bare loop each.
throttle   the stub answers 8% of the calls at random with 429 TooManyRequestsException (not
           caused by our rate); `newsletter send` on SQLite with NEWSLETTER_SEND_RATE=150:
           accepted messages per second as a share of 150 (target >= 50%). Stopped (SIGINT)
           after --time-limit seconds if not done.
two        two workers on PostgreSQL sharing NEWSLETTER_SEND_RATE: aggregate and busiest second.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import benchsetup as bs

BARE_THREADS = (8, 16, 32, 64, 128, 256)


def prebuilt_message(url: str):
    """The example issue as one reader gets it (wire bytes, tags)."""
    message = bs.example_renderer(url).message(
        email="r1@example.com", name="Reader 1", subscription_id=1, delivery_id=1
    )
    return message.as_bytes(), [{"Name": k, "Value": v} for k, v in message.tags.items()]


def bare_loop(stub: bs.Stub, raw: bytes, tags: list, messages: int, threads: int) -> float:
    """sesv2.send_email with a prebuilt message from `threads` threads; rate at the stub."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=stub.url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=threads),
    )

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
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, [messages // threads] * threads))
    return bs.rate_from(stub.stats()["times"])


def timed(command: list[str], env: dict, time_limit: float | None = None) -> tuple[float, float]:
    """Run a command; return (seconds from start to end, Unix time it started)."""
    wall = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    stopped = False
    try:
        _, err = process.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stopped = True
        _, err = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0 and not stopped:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    return seconds, wall


def sqlite_send(
    stub: bs.Stub, folder: str, messages: int, *, rate: float | None = None, limit=None
) -> dict:
    """`newsletter send` of the example issue to `messages` readers on a fresh SQLite file."""
    url = bs.fresh_sqlite(folder)
    bs.add_readers_sqlite(url, messages)
    return cli_send(stub, url, folder, messages, rate=rate, limit=limit)


def pg_send(stub: bs.Stub, folder: str, messages: int) -> dict:
    """`newsletter send` of the example issue to `messages` readers on PostgreSQL."""
    url = bs.fresh_database("sending_bench")
    bs.add_readers(url, messages)
    return cli_send(stub, url, folder, messages)


def cli_send(
    stub: bs.Stub, url: str, folder: str, messages: int, *, rate: float | None = None, limit=None
) -> dict:
    """Time `newsletter send` from the command's start to its end on the database at `url`."""
    env = bs.worker_env(url, stub, rate=rate)
    env["NEWSLETTER_OUTBOX_DIR"] = os.path.join(folder, "outbox")
    stub.reset()
    command = [bs.NEWSLETTER, "send", str(bs.ISSUE), "--list", "bench", "--yes"]
    seconds, wall = timed(command, env, limit)
    stats = stub.stats()
    times = sorted(stats["times"])
    if limit is None:
        assert stats["count"] == messages, (stats["count"], messages)
    return {
        "seconds": seconds,
        "end_to_end": len(times) / seconds,
        "at_stub": bs.rate_from(times),
        "busiest": bs.busiest_second(times),
        "accepted": len(times),
        "throttled": stats["throttled"],
        "first_arrival": (times[0] - wall) if times else None,
    }


def pg_worker(stub: bs.Stub, messages: int) -> dict:
    """One `newsletter worker --once` on PostgreSQL (ledger stored beforehand, untimed)."""
    url = bs.fresh_database("sending_bench")
    bs.add_readers(url, messages)
    bs.start_send(url)
    stub.reset()
    seconds, _ = timed([bs.NEWSLETTER, "worker", "--once"], bs.worker_env(url, stub))
    stats = stub.stats()
    assert stats["count"] == messages, stats["count"]
    at_stub = bs.rate_from(stats["times"])
    return {"seconds": seconds, "end_to_end": messages / seconds, "at_stub": at_stub}


def part_quota(args, folder: str) -> None:
    print(f"## quota: newsletter send, {args.messages} readers, SQLite, 200/s from GetAccount")
    for latency in (0.05, 0.2):
        stub = bs.Stub(latency=latency, max_rate=200.0)
        try:
            for _round in range(args.rounds):
                r = sqlite_send(stub, folder, args.messages)
                print(
                    f"latency {latency * 1000:.0f} ms: {r['seconds']:.2f} s start to end = "
                    f"{r['end_to_end']:.1f} msg/s = {r['end_to_end'] / 200:.1%} of the quota "
                    f"(at the stub {r['at_stub']:.1f}/s, first message {r['first_arrival']:.2f} s "
                    f"after the start); busiest second {r['busiest']} "
                    f"({r['busiest'] / 200 - 1:+.1%} vs 200)",
                    flush=True,
                )
        finally:
            stub.stop()


def compared(label: str, ours: dict, reference: float) -> str:
    """One command's rates at the stub and start to end, as ratios of the bare loop's."""
    return (
        f"{label}: at the stub {ours['at_stub']:.1f}/s = {ours['at_stub'] / reference:.2f}x; "
        f"start to end {ours['seconds']:.2f} s = {ours['end_to_end']:.1f}/s = "
        f"{ours['end_to_end'] / reference:.2f}x"
    )


def part_unbounded(args, folder: str) -> None:
    print(f"## unbounded: quota 100000/s, 50 ms, {args.messages} messages")
    stub = bs.Stub(latency=0.05)
    try:
        url = bs.fresh_database("sending_bench")
        bs.add_readers(url, 10)
        raw, tags = prebuilt_message(url)
        for _round in range(args.rounds):
            # The issue's 8-64 threads, and 128 and 256 as well (the product's default cap
            # on calls in flight is 256): the reference is the best of them all.
            bare = {n: bare_loop(stub, raw, tags, args.messages, n) for n in BARE_THREADS}
            best = max(bare, key=bare.get)
            print(
                "bare loop: "
                + ", ".join(f"{n} threads {rate:.1f}/s" for n, rate in bare.items())
                + f"; best {bare[best]:.1f}/s ({best} threads, {len(raw)} bytes)",
                flush=True,
            )
            runs = (
                ("newsletter send (SQLite)", lambda: sqlite_send(stub, folder, args.messages)),
                ("newsletter send (PostgreSQL)", lambda: pg_send(stub, folder, args.messages)),
                ("newsletter worker (PostgreSQL)", lambda: pg_worker(stub, args.messages)),
            )
            for label, run in runs:  # each printed as soon as it is done
                print(compared(label, run(), bare[best]), flush=True)
            again = bare_loop(stub, raw, tags, args.messages, best)
            print(f"bare loop again, {best} threads: {again:.1f}/s", flush=True)
    finally:
        stub.stop()


def part_throttle(args, folder: str) -> None:
    rate = 150.0
    print(f"## throttle: 8% random 429s, NEWSLETTER_SEND_RATE={rate:g}, 50 ms")
    stub = bs.Stub(latency=0.05, throttle=0.08)
    try:
        for _round in range(args.rounds):
            r = sqlite_send(stub, folder, args.messages, rate=rate, limit=args.time_limit)
            sending = r["seconds"] - (r["first_arrival"] or 0)
            sustained = r["accepted"] / sending if sending > 0 else 0.0
            print(
                f"accepted {r['accepted']} (throttled {r['throttled']}) in {r['seconds']:.1f} s; "
                f"sustained {sustained:.1f} msg/s from the first arrival to the end = "
                f"{sustained / rate:.1%} of {rate:g} (at the stub {r['at_stub']:.1f}/s)",
                flush=True,
            )
    finally:
        stub.stop()


def part_two(args, folder: str) -> None:
    rate = args.rate
    print(f"## two workers on PostgreSQL, NEWSLETTER_SEND_RATE={rate:g}")
    stub = bs.Stub(latency=0.05)
    try:
        url = bs.fresh_database("sending_bench")
        bs.add_readers(url, args.messages)
        bs.start_send(url)
        stub.reset()
        env = bs.worker_env(url, stub, rate=rate)
        processes = [
            subprocess.Popen(
                [bs.NEWSLETTER, "worker", "--once"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        for process in processes:
            assert process.wait() == 0
        times = stub.stats()["times"]
        assert len(times) == args.messages, len(times)
        busiest = bs.busiest_second(times)
        print(
            f"aggregate {bs.rate_from(times):.1f} msg/s, busiest second {busiest} "
            f"({busiest / rate - 1:+.1%} vs the rate)"
        )
    finally:
        stub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--parts", default="quota,unbounded,throttle")
    parser.add_argument("--time-limit", type=float, default=40.0, help="throttle part")
    parser.add_argument("--rate", type=float, default=150.0, help="two-worker part")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    parts = {"quota": part_quota, "unbounded": part_unbounded, "throttle": part_throttle}
    parts["two"] = part_two
    with tempfile.TemporaryDirectory(prefix="send-bench-") as folder:
        for name in args.parts.split(","):
            parts[name](args, folder)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
