"""Wall time of `newsletter --help`, for one or more checkouts side by side.

    .venv/bin/python bench/cli_help.py [CHECKOUT ...]   (default: this checkout)

Each checkout's package is imported through PYTHONPATH with this interpreter; the runs
are interleaved (N rounds, every checkout once per round) so machine load hits all alike.
Prints the median and the ratio to the first checkout.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROUNDS = 15


def one_run(checkout: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from newsletter.cli import main; main()", "--help"],
        env=env,
        cwd=checkout,  # `python -c` puts the working directory first on sys.path
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    checkouts = [Path(a).resolve() for a in argv] or [Path(__file__).resolve().parent.parent]
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    for _ in range(ROUNDS):
        for checkout in checkouts:
            times[checkout].append(one_run(checkout))
    first = statistics.median(times[checkouts[0]])
    for checkout in checkouts:
        median = statistics.median(times[checkout])
        print(
            f"{checkout}: median {median * 1000:.0f} ms over {ROUNDS} runs "
            f"(ratio {median / first:.2f})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
