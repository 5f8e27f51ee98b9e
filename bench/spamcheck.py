"""Deliverability check: score the example issue with SpamAssassin's local rules.

Usage: .venv/bin/python bench/spamcheck.py [--file examples/issue.yaml] [--max-score 2.0]

Builds the message exactly as a reader gets it (newsletter.mail.build_message: From the
list, List-Unsubscribe, multipart text + HTML), writes it to bench/out/spamcheck.eml and
runs `spamassassin -L -t` (Debian package; -L: local tests only, no network, reproducible
scores). Prints the score and every rule hit; exits 1 when the score is not below
--max-score.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.composer import compile_issue  # noqa: E402
from newsletter.composer import load_issue  # noqa: E402
from newsletter.composer import render_for_reader  # noqa: E402
from newsletter.lists import list_id_header  # noqa: E402
from newsletter.mail import build_message  # noqa: E402
from newsletter.models import MailingList  # noqa: E402
from newsletter.tokens import unsubscribe_url  # noqa: E402

BASE_URL = "https://news.example.com"
_RULE_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


def build_eml(path: Path, edit_html=None) -> bytes:
    """Return the issue as sent to one reader, as wire bytes (edit_html: change the HTML)."""
    mailing_list = MailingList(
        slug="o11y-news",
        name="o11y news",
        from_address="news@example.com",
        postal_address="o11y news, Rosenthaler Straße 40, 10178 Berlin, Germany",
    )
    compiled = compile_issue(load_issue(path), mailing_list, base_url=BASE_URL)
    unsubscribe = unsubscribe_url(BASE_URL, "spamcheck-secret", 4242)
    html, text = render_for_reader(
        compiled.html,
        compiled.text,
        unsubscribe_url=unsubscribe,
        web_url=f"{BASE_URL}/archive/{compiled.slug}",
        name="René Luçon",
    )
    if edit_html is not None:
        html = edit_html(html)
    message = build_message(
        from_address=mailing_list.from_address,
        from_name=mailing_list.name,
        to_address="rene@example.org",
        to_name="René Luçon",
        subject=compiled.subject,
        text=text,
        html=html,
        list_unsubscribe_url=unsubscribe,
        list_id=list_id_header(mailing_list, "https://news.example.com"),
        bulk=True,
    )
    return message.as_bytes()


def score(raw: bytes) -> tuple[float, list[tuple[float, str, str]], str]:
    """Run spamassassin -L -t on a message; return (score, [(points, rule, text)], report)."""
    with tempfile.TemporaryDirectory() as home:
        prefs = Path(home) / "user_prefs"
        prefs.write_text("", encoding="utf-8")
        # -p: our own (empty) prefs file, so nothing is written to the user's home.
        result = subprocess.run(
            ["spamassassin", "-L", "-t", "-p", str(prefs)],
            input=raw,
            capture_output=True,
            check=True,
            timeout=120,
            env={"HOME": home, "PATH": "/usr/bin:/bin"},
        )
    output = result.stdout.decode("utf-8", "replace")
    match = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", output, re.MULTILINE)
    if match is None:
        raise RuntimeError("spamassassin gave no X-Spam-Status header")
    report = output.split("Content analysis details:", 1)[-1]
    rules = []
    for line in report.splitlines():
        hit = _RULE_RE.match(line)
        if hit:
            rules.append((float(hit.group(1)), hit.group(2), hit.group(3).strip()))
    return float(match.group(1)), rules, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "examples" / "issue.yaml"))
    parser.add_argument("--max-score", type=float, default=2.0)
    args = parser.parse_args()
    raw = build_eml(Path(args.file))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "spamcheck.eml").write_bytes(raw)
    total, rules, _ = score(raw)
    print(f"SpamAssassin (spamassassin -L -t) score: {total:.1f} (limit: below {args.max_score})")
    for points, rule, text in rules:
        print(f"  {points:5.1f} {rule:28s} {text}")
    return 0 if total < args.max_score else 1


if __name__ == "__main__":
    sys.exit(main())
