"""Compose benchmark: our YAML -> final HTML + text, side by side with Node MJML's compile.

Usage: .venv/bin/python bench/compose.py [--rounds 10] [--batch 20] [--file examples/issue.yaml]
       .venv/bin/python bench/compose.py --minify [--rounds 10] [--batch 20]

Ours: read the issue YAML text, validate it, render Markdown and the MJML template, compile
with mjml-python, inline CSS with premailer, write the text part, and fill one reader's
links (render_for_reader): everything a send does once per issue, plus one reader.
Node: the official `mjml` npm package (bench/node_modules; `npm install` in bench/)
compiling the same MJML source, in one warm process. Batches alternate between the two
so both see the same load on a shared machine; medians are over every run.

--minify: our whole compose (YAML -> one reader's HTML + text) with the minify-html step
and without it (the step replaced by nothing), taking turns run by run, for the example
issue and the 40-story issue (tests/data/forty-items.yaml): time and HTML size side by
side, as ratios. No Node needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.composer import compile_issue  # noqa: E402
from newsletter.composer import load_issue_text  # noqa: E402
from newsletter.composer import mjml as mjml_module  # noqa: E402
from newsletter.composer import render_for_reader  # noqa: E402
from newsletter.composer import render_mjml  # noqa: E402
from newsletter.composer.mjml import compile_mjml  # noqa: E402
from newsletter.composer.plaintext import build_text  # noqa: E402
from newsletter.models import MailingList  # noqa: E402

BASE_URL = "https://news.example.com"


def example_list() -> MailingList:
    return MailingList(
        slug="o11y-news",
        name="o11y news",
        from_address="news@example.com",
        postal_address="o11y news, Rosenthaler Straße 40, 10178 Berlin, Germany",
    )


def pipeline(text: str, mailing_list: MailingList) -> tuple[str, str]:
    doc = load_issue_text(text, filename="issue.yaml")
    compiled = compile_issue(doc, mailing_list, base_url=BASE_URL)
    return render_for_reader(
        compiled.html,
        compiled.text,
        unsubscribe_url=f"{BASE_URL}/u/1.8Zq4mUvX0cKpYlW3rT9aBn2dE6f",
        web_url=f"{BASE_URL}/archive/unlocking-the-kernel",
        name="René Luçon",
    )


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def spread(values: list[float]) -> str:
    deciles = statistics.quantiles(values, n=10)
    return f"p10 {deciles[0]:.2f}, p90 {deciles[-1]:.2f}"


def minify_comparison(rounds: int, batch: int) -> None:
    """Compose with and without the minify step, side by side, for two issues."""
    mailing_list = example_list()
    minify = mjml_module.minify
    issues = {
        "example issue (16 stories)": ROOT / "examples" / "issue.yaml",
        "40-story issue": ROOT / "tests" / "data" / "forty-items.yaml",
    }
    print(f"runs: {rounds * batch} per variant and issue, the two variants taking turns")
    for label, path in issues.items():
        text = path.read_text(encoding="utf-8")
        results: dict[str, list[float]] = {"plain": [], "minified": []}
        sizes: dict[str, int] = {}
        variants = {"plain": lambda html: html, "minified": minify}
        for name in ("plain", "minified") * 3:  # warm both
            mjml_module.minify = variants[name]
            sizes[name] = len(pipeline(text, mailing_list)[0].encode())
        # One run of each, in turn (the order flips every time), so both see the same load.
        for index in range(rounds * batch):
            order = ("plain", "minified") if index % 2 else ("minified", "plain")
            for name in order:
                mjml_module.minify = variants[name]
                results[name] += timed(lambda text=text: pipeline(text, mailing_list), 1)
        mjml_module.minify = minify
        plain, small = statistics.median(results["plain"]), statistics.median(results["minified"])
        print(
            f"{label}: without minify {plain:.2f} ms, HTML {sizes['plain']:,} B; "
            f"minified {small:.2f} ms, HTML {sizes['minified']:,} B; "
            f"time x{small / plain:.3f}, size x{sizes['minified'] / sizes['plain']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "examples" / "issue.yaml"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--minify", action="store_true", help="minify on/off comparison only")
    args = parser.parse_args()
    if args.minify:
        minify_comparison(args.rounds, args.batch)
        return

    text = Path(args.file).read_text(encoding="utf-8")
    mailing_list = example_list()
    doc = load_issue_text(text)
    mjml_source = render_mjml(doc, mailing_list, base_url=BASE_URL)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    mjml_file = out / "issue.mjml"
    mjml_file.write_text(mjml_source, encoding="utf-8")

    node = subprocess.Popen(
        ["node", str(ROOT / "bench" / "mjml_node.js"), str(mjml_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def node_batch(runs: int) -> dict:
        node.stdin.write(f"{runs}\n")
        node.stdin.flush()
        return json.loads(node.stdout.readline())

    # Warm both: Node's JIT, our caches of the template's CSS rules and Jinja template.
    node_batch(20)
    for _ in range(20):
        pipeline(text, mailing_list)

    ours: list[float] = []
    theirs: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in ("load", "mjml", "compile", "text")}
    html_out = compile_mjml(mjml_source)
    node_info: dict = {}
    for _ in range(args.rounds):
        ours += timed(lambda: pipeline(text, mailing_list), args.batch)
        node_info = node_batch(args.batch)
        theirs += node_info["times"]
        stages["load"] += timed(lambda: load_issue_text(text), 5)
        stages["mjml"] += timed(lambda: render_mjml(doc, mailing_list, base_url=BASE_URL), 5)
        stages["compile"] += timed(lambda: compile_mjml(mjml_source), 5)
        stages["text"] += timed(lambda: build_text(doc, mailing_list), 5)
    node.stdin.write("validate\n")
    node.stdin.flush()
    validation = json.loads(node.stdout.readline())["errors"]
    node.stdin.close()
    node.wait(timeout=10)

    ours_median = statistics.median(ours)
    theirs_median = statistics.median(theirs)
    html, plain = pipeline(text, mailing_list)
    print(f"issue: {args.file} (MJML source {len(mjml_source):,} bytes)")
    print(f"runs: {len(ours)} each, in {args.rounds} alternating batches of {args.batch}")
    print(
        f"ours  YAML -> final HTML + text (one reader): median {ours_median:.2f} ms "
        f"({spread(ours)}); HTML {len(html.encode()):,} B, text {len(plain.encode()):,} B"
    )
    print(
        f"node  mjml {node_info.get('version')} compile only (warm, in-process): "
        f"median {theirs_median:.2f} ms ({spread(theirs)}); "
        f"HTML {node_info.get('bytes', 0):,} B (ours before personalising: "
        f"{len(html_out.encode()):,} B)"
    )
    print(f"ratio ours / node: {ours_median / theirs_median:.2f}")
    print(f"Node mjml strict validation of our template's MJML: {len(validation)} errors")
    for error in validation:
        print(f"  {error}")
    print(
        "our stages (median ms): "
        + ", ".join(
            f"{name} {statistics.median(values):.2f}"
            for name, values in (
                ("load+validate YAML and Markdown", stages["load"]),
                ("render MJML template", stages["mjml"]),
                ("mjml-python + premailer", stages["compile"]),
                ("text part", stages["text"]),
            )
        )
    )


if __name__ == "__main__":
    main()
