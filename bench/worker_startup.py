"""Start-up of `newsletter worker --once` on an empty, migrated SQLite database: 10 runs, median.

    .venv/bin/python bench/worker_startup.py .venv/bin/newsletter [sqlite:////tmp/ws/empty.db]

Runs `newsletter db upgrade` on the database first, then one warm-up run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    exe = sys.argv[1]
    url = sys.argv[2] if len(sys.argv) > 2 else "sqlite:////tmp/ws/empty.db"
    env = dict(os.environ, NEWSLETTER_ENV="development", NEWSLETTER_DATABASE_URL=url)
    subprocess.run([exe, "db", "upgrade"], env=env, capture_output=True, check=True)
    subprocess.run([exe, "worker", "--once"], env=env, capture_output=True, check=True)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        subprocess.run([exe, "worker", "--once"], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"median {median:.3f}s min {min(times):.3f}s max {max(times):.3f}s (10 runs)")


if __name__ == "__main__":
    main()
