"""Personalise benchmark: readers per second per core to fill in each reader's HTML + text.

Usage: .venv/bin/python bench/personalise.py [--readers 100000] [--rounds 5]

The example issue is compiled once; then, for each reader, render_for_reader fills the
unsubscribe link, the web-version link and the name into the HTML and the text part (the
hot path of sending). One process, so one core. Side by side, in alternating rounds:
the naive way (a chain of str.replace calls per part per reader; it also skips the
web-only regions, so it does less), and the same loop including
the signing of each reader's unsubscribe token (newsletter.tokens), which the sending engine
does too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.composer import compile_issue  # noqa: E402
from newsletter.composer import load_issue  # noqa: E402
from newsletter.composer import placeholders  # noqa: E402
from newsletter.composer import render_for_reader  # noqa: E402
from newsletter.models import MailingList  # noqa: E402
from newsletter.tokens import unsubscribe_url  # noqa: E402

BASE_URL = "https://news.example.com"
SECRET = "bench-secret-key-0123456789abcdef"
NAMES = ["René Luçon", None, "Zoë Ångström", "Ada Lovelace", "山田 健二", None, "O'Brien <x>"]


def naive(html: str, text: str, unsubscribe: str, web: str, name: str | None) -> tuple[str, str]:
    from html import escape

    greeting = f"Hi {name}," if name else "Hello,"
    parts = []
    for part, esc in ((html, escape), (text, str)):
        out = part.replace(placeholders.GREETING, esc(greeting))
        out = out.replace(placeholders.UNSUBSCRIBE_URL, unsubscribe)
        out = out.replace(placeholders.WEB_URL, web)
        out = out.replace(placeholders.EMAIL_ONLY[0], "").replace(placeholders.EMAIL_ONLY[1], "")
        parts.append(out)
    return parts[0], parts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    mailing_list = MailingList(
        slug="o11y-news",
        name="o11y news",
        from_address="news@example.com",
        postal_address="o11y news, Rosenthaler Straße 40, 10178 Berlin, Germany",
    )
    compiled = compile_issue(
        load_issue(ROOT / "examples" / "issue.yaml"), mailing_list, base_url=BASE_URL
    )
    html, text = compiled.html, compiled.text
    web = f"{BASE_URL}/archive/{compiled.slug}"
    readers = [
        (unsubscribe_url(BASE_URL, SECRET, 1000 + n), NAMES[n % len(NAMES)])
        for n in range(args.readers)
    ]

    def ours() -> None:
        for unsubscribe, name in readers:
            render_for_reader(html, text, unsubscribe_url=unsubscribe, web_url=web, name=name)

    def with_tokens() -> None:
        for n, (_, name) in enumerate(readers):
            render_for_reader(
                html,
                text,
                unsubscribe_url=unsubscribe_url(BASE_URL, SECRET, 1000 + n),
                web_url=web,
                name=name,
            )

    def replace_chain() -> None:
        for unsubscribe, name in readers:
            naive(html, text, unsubscribe, web, name)

    results: dict[str, list[float]] = {"ours": [], "naive": [], "tokens": []}
    ours()  # warm the cache of the pre-split template
    for _ in range(args.rounds):
        for key, fn in (("ours", ours), ("naive", replace_chain), ("tokens", with_tokens)):
            start = time.perf_counter()
            fn()
            results[key].append(args.readers / (time.perf_counter() - start))

    sample_html, sample_text = render_for_reader(
        html, text, unsubscribe_url=readers[0][0], web_url=web, name=readers[0][1]
    )
    assert readers[0][0] in sample_html and "{{nl:" not in sample_html + sample_text
    print(
        f"example issue: HTML {len(sample_html.encode()):,} B + text "
        f"{len(sample_text.encode()):,} B per reader; "
        f"{args.readers:,} readers x {args.rounds} rounds"
    )
    ours_rate = statistics.median(results["ours"])
    for key, label in (
        ("ours", "render_for_reader (cached pre-split template)"),
        ("naive", "naive str.replace chain"),
        ("tokens", "render_for_reader + signing the unsubscribe token"),
    ):
        rate = statistics.median(results[key])
        print(
            f"{label:50s} {rate:10,.0f} messages/s/core "
            f"({1e6 / rate:5.1f} us each; ours / this {ours_rate / rate:4.2f})"
        )


if __name__ == "__main__":
    main()
