"""`python -m newsletter.translations`: update the catalogues, list what needs translating."""

from __future__ import annotations

import sys

from newsletter.translations.catalogues import update


def run() -> int:
    """Update every catalogue and print the untranslated strings; 1 if any."""
    report = update()
    for locale, gaps in report.items():
        for gap in gaps:
            print(f"{locale}: {gap!r}")
    return 1 if any(report.values()) else 0


if __name__ == "__main__":
    sys.exit(run())
