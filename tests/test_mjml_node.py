"""Node MJML comparison: our MJML validates strictly with the official Node compiler, and
our output (mjml-python, premailer, minify-html) looks the same as Node's in Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_composer_browser import open_issue
from test_email_languages import ARABIC

from newsletter.composer import load_issue
from newsletter.composer import load_issue_text
from newsletter.composer import render_for_reader
from newsletter.composer.issue_email import _EARLY_RE
from newsletter.composer.issue_email import compile_issue
from newsletter.composer.issue_email import render_mjml
from newsletter.models import MailingList

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ARTIFACTS = ROOT / "test-artifacts"
BASE_URL = "https://n.example"

pytestmark = pytest.mark.browser

# Two screenshots as data URLs in, the share of pixels that differ (by more than a
# rounding step in any channel) out.
DIFF = """async ([a, b]) => {
  const load = (src) => new Promise((done) => {
    const img = new Image();
    img.onload = () => done(img);
    img.src = src;
  });
  const [x, y] = await Promise.all([load(a), load(b)]);
  if (x.width !== y.width || x.height !== y.height) {
    return {size: [x.width, x.height, y.width, y.height]};
  }
  const pixels = (img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const g = canvas.getContext('2d');
    g.drawImage(img, 0, 0);
    return g.getImageData(0, 0, img.width, img.height).data;
  };
  const p = pixels(x), q = pixels(y);
  let differ = 0;
  for (let i = 0; i < p.length; i += 4) {
    const d = Math.max(Math.abs(p[i] - q[i]), Math.abs(p[i + 1] - q[i + 1]),
                       Math.abs(p[i + 2] - q[i + 2]));
    if (d > 8) differ++;
  }
  return {share: differ / (p.length / 4)};
}"""


@pytest.fixture(scope="module")
def node_mjml():
    """bench/node_modules with the official mjml (npm ci from bench/package-lock.json)."""
    if not (BENCH / "node_modules" / "mjml").is_dir():
        assert shutil.which("npm"), "npm is needed for the Node MJML comparison"
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True, timeout=300)

    def compile_with_node(source: str) -> dict:
        done = subprocess.run(
            ["node", str(BENCH / "mjml_compile.js")],
            input=source,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return json.loads(done.stdout)

    return compile_with_node


def _list(language: str = "en") -> MailingList:
    return MailingList(
        slug="o11y-news",
        name="o11y news",
        from_address="news@example.com",
        postal_address="o11y news, Rosenthaler Straße 40, 10178 Berlin, Germany",
        language=language,
    )


def _fill(html: str, text: str) -> str:
    filled, _ = render_for_reader(
        html,
        text,
        unsubscribe_url=f"{BASE_URL}/u/1.abc",
        web_url=f"{BASE_URL}/archive/x",
        name="René Luçon",
    )
    return filled


def _shot(browser, html: str, width: int, name: str) -> str:
    context, page = open_issue(browser, html, width)
    try:
        png = page.screenshot(full_page=True)
    finally:
        context.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"mjml-node-{name}-{width}px.png").write_bytes(png)
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.mark.parametrize("issue", ["example", "arabic"])
def test_node_mjml_validates_and_renders_the_same(browser, node_mjml, issue):
    doc = load_issue(ROOT / "examples" / "issue.yaml") if issue == "example" else None
    doc = doc or load_issue_text(ARABIC)
    mailing_list = _list()
    source = render_mjml(doc, mailing_list, base_url=BASE_URL)
    node = node_mjml(source)
    assert node["errors"] == []
    compiled = compile_issue(doc, mailing_list, base_url=BASE_URL)
    ours = _fill(compiled.html, compiled.text)
    theirs = _fill(_EARLY_RE.sub("", node["html"]), compiled.text)
    context, page = open_issue(browser, "<p>diff</p>", 600)
    try:
        for width in (600, 375):
            result = page.evaluate(
                DIFF,
                [
                    _shot(browser, ours, width, f"{issue}-ours"),
                    _shot(browser, theirs, width, f"{issue}-node"),
                ],
            )
            assert "size" not in result, f"different page sizes at {width} px: {result}"
            assert result["share"] < 0.005, f"{result['share']:.2%} of pixels differ at {width} px"
    finally:
        context.close()
