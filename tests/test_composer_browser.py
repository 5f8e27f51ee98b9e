"""The example issue in headless Chromium: phone and desktop widths, dark mode."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from newsletter.composer import compile_issue
from newsletter.composer import load_issue
from newsletter.composer import render_for_reader
from newsletter.models import MailingList

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser


def png(width: int, height: int) -> bytes:
    """A plain PNG of the given size (the example's images are served from this)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\x4f\x7a\xd8" * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def issue_html() -> str:
    mailing_list = MailingList(
        slug="o11y-news",
        name="o11y news",
        from_address="news@example.com",
        postal_address="o11y news, Rosenthaler Straße 40, 10178 Berlin, Germany",
    )
    compiled = compile_issue(
        load_issue(ROOT / "examples" / "issue.yaml"), mailing_list, base_url="https://n.example"
    )
    html, _ = render_for_reader(
        compiled.html,
        compiled.text,
        unsubscribe_url="https://n.example/u/1.abc",
        web_url="https://n.example/archive/unlocking-the-kernel",
        name="René Luçon",
    )
    return html


def open_issue(browser, html: str, width: int, scheme: str = "light"):
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    image = png(1200, 630)  # wider than any column: it must be scaled down to fit

    def serve(route) -> None:
        if route.request.resource_type == "image":
            route.fulfill(status=200, content_type="image/png", body=image)
        else:
            route.abort()  # nothing else may be fetched: no fonts, no trackers

    page.route("**/*", serve)
    page.set_content(html, wait_until="load")
    return context, page


MEASURE = """() => {
  const images = [...document.images].map(img => {
    const box = img.getBoundingClientRect();
    return {loaded: img.complete && img.naturalWidth > 0, left: box.left, right: box.right,
            width: box.width, height: box.height};
  });
  const buttons = [...document.querySelectorAll('a')]
    .filter(a => ['Watch the trailer', 'Read the launch post'].includes(a.textContent.trim()))
    .map(a => {
      const box = a.getBoundingClientRect();
      return {width: box.width, height: box.height};
    });
  return {viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
          bodyScrollWidth: document.body.scrollWidth, images, buttons};
}"""


@pytest.mark.parametrize("width", [375, 800])
def test_example_fits_phone_and_desktop(browser, issue_html: str, width: int) -> None:
    context, page = open_issue(browser, issue_html, width)
    try:
        m = page.evaluate(MEASURE)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"composer-example-{width}px.png"), full_page=True)
    finally:
        context.close()
    assert m["scrollWidth"] <= m["viewport"], "horizontal scrolling"
    assert m["bodyScrollWidth"] <= m["viewport"]
    assert len(m["images"]) == 2
    for image in m["images"]:
        assert image["loaded"]
        assert image["left"] >= 0 and image["right"] <= m["viewport"]
        assert image["width"] <= min(m["viewport"], 600)
        # Scaled, not cropped or stretched: the 1200x630 aspect ratio holds.
        assert abs(image["height"] / image["width"] - 630 / 1200) < 0.02
    assert len(m["buttons"]) == 2
    for button in m["buttons"]:
        assert button["height"] >= 40, "button too small to tap"
    if width == 375:
        # The content column uses the phone's width, not a fixed 600 px squeezed.
        assert all(image["width"] >= 300 for image in m["images"])


def test_dark_mode_turns_the_page_dark(browser, issue_html: str) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        context, page = open_issue(browser, issue_html, 375, scheme)
        try:
            colours[scheme] = page.evaluate(
                """() => ({
                  page: getComputedStyle(document.body).backgroundColor,
                  card: getComputedStyle(document.querySelector('.nl-card')).backgroundColor,
                  text: getComputedStyle(document.querySelector('.nl-text p:not(.nl-date)')).color,
                })"""
            )
            page.screenshot(path=str(ARTIFACTS / f"composer-example-{scheme}.png"))
        finally:
            context.close()

    def luminance(colour: str) -> float:
        r, g, b = (int(v) for v in colour[colour.index("(") + 1 : -1].split(",")[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    assert luminance(colours["light"]["card"]) > 200 and luminance(colours["light"]["text"]) < 80
    assert luminance(colours["dark"]["card"]) < 60 and luminance(colours["dark"]["text"]) > 180
    assert luminance(colours["dark"]["page"]) < 60
