"""Ledger creation for a big list, and a worker's peak memory whatever the list size.

    .venv/bin/python bench/ledger_scale.py [--readers 1000000] [--small 10000] [--seconds 10]

Uses the PostgreSQL database `sending_bench` (dropped and re-created). Peak memory is the
worker process's VmHWM, read from /proc while it sends to the 50 ms stub for --seconds,
then stopped with SIGINT (a clean stop).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time

import benchsetup as bs


def peak_rss_mb(url: str, stub: bs.Stub, seconds: float) -> tuple[float, int]:
    """Run a worker for `seconds`; return (peak RSS in MB, messages it sent)."""
    stub.reset()
    process = subprocess.Popen(
        [bs.NEWSLETTER, "worker", "--concurrency", "16"],
        env=bs.worker_env(url, stub),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    return peak / 1024, stub.stats()["count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    stub = bs.Stub(latency=0.05)
    try:
        results = {}
        for readers in (args.small, args.readers):
            url = bs.fresh_database("sending_bench")
            started = time.perf_counter()
            bs.add_readers(url, readers)
            loaded = time.perf_counter() - started
            _, ledger_seconds = bs.start_send(url)
            print(
                f"{readers:>9} readers: loaded in {loaded:.1f} s; ledger (INSERT ... SELECT, "
                f"one transaction) {ledger_seconds:.2f} s",
                flush=True,
            )
            peak, sent = peak_rss_mb(url, stub, args.seconds)
            results[readers] = peak
            print(f"{readers:>9} readers: worker peak RSS {peak:.1f} MB ({sent} sent)", flush=True)
        small, big = results[args.small], results[args.readers]
        print(f"peak RSS ratio big/small: {big / small:.2f}")
    finally:
        stub.stop()


if __name__ == "__main__":
    main()
