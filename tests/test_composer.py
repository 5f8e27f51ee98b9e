"""The composer: golden structure of the example issue, escaping, personalisation, MIME."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import lxml.html
import pytest
import yaml

from newsletter.composer import compile_issue
from newsletter.composer import load_issue
from newsletter.composer import load_issue_text
from newsletter.composer import render_for_reader
from newsletter.composer import render_web_version
from newsletter.composer.issue_email import GMAIL_CLIP_BYTES
from newsletter.lists import ListIdentity
from newsletter.mail import build_message
from newsletter.models import MailingList

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "issue.yaml"
BASE_URL = "https://news.example.com"
UNSUBSCRIBE = f"{BASE_URL}/u/1.abcDEF_-xyz"
WEB = f"{BASE_URL}/archive/unlocking-the-kernel"

LINK_RE = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


def example_list() -> MailingList:
    data = yaml.safe_load((ROOT / "examples" / "list.yaml").read_text(encoding="utf-8"))
    return MailingList(
        slug=data["slug"],
        name=data["name"],
        from_address=data["from_address"],
        postal_address=data["postal_address"],
    )


@pytest.fixture(scope="module")
def example() -> dict:
    """The example issue as a reader gets it, plus the raw YAML it came from."""
    compiled = compile_issue(load_issue(EXAMPLE), example_list(), base_url=BASE_URL)
    html, text = render_for_reader(
        compiled.html, compiled.text, unsubscribe_url=UNSUBSCRIBE, web_url=WEB, name="René Luçon"
    )
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return {"compiled": compiled, "html": html, "text": text, "raw": raw}


def fold(text: str) -> str:
    """Fold typographic quotes and dashes back to ASCII and collapse white space."""
    for fancy, plain in {"“": '"', "”": '"', "‘": "'", "’": "'", "—": "---", "–": "--"}.items():
        text = text.replace(fancy, plain)
    return " ".join(text.split())


def paragraphs(markdown: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", markdown.strip()) if p.strip()]


def visible_text(html: str) -> str:
    return fold(lxml.html.document_fromstring(html).text_content())


def hrefs(html: str) -> set[str]:
    return {a.get("href") for a in lxml.html.document_fromstring(html).iter("a")}


def items(raw: dict) -> list[dict]:
    return [item for section in raw["sections"] for item in section["items"]]


def test_example_uses_every_story_of_the_seed(example) -> None:
    seed_names = ["SpeakEasy", "Charity Majors", "Fatih Koç", "Grafana", "Airbnb", "Yosifovich"]
    seed_names += ["Haidar Braimaanie", "Brendan Gregg", "System Initiative"]
    sources = " ".join(item["body"] for item in items(example["raw"]))
    assert all(name in sources for name in seed_names)
    assert len(example["raw"]["sections"]) >= 5


def test_every_title_paragraph_link_and_image_is_in_html_and_text(example) -> None:
    html_text = visible_text(example["html"])
    text = fold(example["text"])
    links = hrefs(example["html"])
    images = {
        img.get("src"): img.get("alt")
        for img in lxml.html.document_fromstring(example["html"]).iter("img")
    }
    raw = example["raw"]
    for section in raw["sections"]:
        assert fold(section["title"]) in html_text
        assert fold(section["title"]).upper() in text
    for item in items(raw):
        assert fold(item["title"]) in html_text, item["title"]
        assert fold(item["title"]) in text, item["title"]
        assert item["url"] in links and item["url"] in text
        for para in paragraphs(item["body"]):
            as_html = fold(LINK_RE.sub(r"\1", para))
            as_text = fold(LINK_RE.sub(r"\1 (\2)", para))
            assert as_html in html_text, para[:60]
            assert as_text in text, para[:60]
            for _label, url in LINK_RE.findall(para):
                assert url in links and url in text
        if "image" in item:
            assert images[item["image"]["src"]] == item["image"]["alt"]
            assert item["image"]["src"] in text and item["image"]["alt"] in text
        if "button" in item:
            assert item["button"] in html_text and f"{item['button']}: {item['url']}" in text
        if "source" in item:
            assert fold(item["source"]) in html_text and fold(item["source"]) in text
    for para in paragraphs(raw["intro"]) + paragraphs(raw["outro"]):
        plain = fold(LINK_RE.sub(r"\1", para).replace("*", ""))
        assert plain in html_text


def test_footer_header_and_reader_parts(example) -> None:
    html, text = example["html"], example["text"]
    assert "{{nl:" not in html and "{{nl:" not in text
    assert UNSUBSCRIBE in hrefs(html) and WEB in hrefs(html)
    assert f"Unsubscribe:\n{UNSUBSCRIBE}" in text
    assert f"View this issue in your browser:\n{WEB}" in text
    postal = example_list().postal_address
    assert postal in visible_text(html) and postal in text
    assert "Hi René Luçon," in visible_text(html) and "Hi René Luçon," in text
    assert "Unsubscribe" in visible_text(html)
    assert f"{BASE_URL}/archive" in hrefs(html)  # the list name links to the archive


def test_compiled_html_keeps_what_mail_clients_need(example) -> None:
    html = example["compiled"].html
    assert html.lower().startswith("<!doctype html>")
    assert "@media only screen and (min-width:480px)" in html  # MJML's responsive columns
    assert "!important" in html
    assert "prefers-color-scheme: dark" in html
    tree = lxml.html.document_fromstring(html)
    assert tree.xpath("//meta[@name='color-scheme']/@content") == ["light dark"]
    assert "<!--[if mso" in html  # Outlook's conditional comments survive minifying
    assert "fonts.googleapis.com" not in html  # no web font fetch, no tracking
    assert example["compiled"].warnings == []
    assert len(example["html"].encode()) < GMAIL_CLIP_BYTES


def test_preheader_is_hidden_without_low_contrast_colour(example) -> None:
    doc = lxml.html.document_fromstring(example["html"])
    (pre,) = doc.find_class("nl-preheader")
    assert fold(pre.text_content().replace("\u200c", "")) == fold(example["raw"]["preheader"])
    style = pre.get("style").replace(" ", "")
    assert "display:none" in style
    assert "color" not in style and "font-size" not in style  # SpamAssassin's hidden-text rules


def test_web_version_has_no_personal_links(example) -> None:
    page = render_web_version(
        example["compiled"].html, web_url=WEB, subscribe_url=f"{BASE_URL}/subscribe?list=o11y"
    )
    assert "{{nl:" not in page
    assert UNSUBSCRIBE not in page and "/u/" not in page
    assert f"{BASE_URL}/subscribe?list=o11y" in hrefs(page)
    text = visible_text(page)
    assert "Unsubscribe" not in text and "Hello," not in text and "Hi " not in text
    assert "This is the web version of an issue of o11y news." in text
    assert fold(example["raw"]["sections"][0]["items"][0]["title"]) in text


ISSUE = """\
title: "Escapes <img src=x onerror=alert(1)> & “quotes”"
date: 2024-02-29
preheader: "<b>not bold</b>"
intro: |
  <script>alert("intro")</script> and <b>bold?</b> 100% sure, 50%s {0} {{ x }}
sections:
  - title: "<i>Section</i>"
    items:
      - title: Ça "marche" -- déjà vu
        url: https://example.com/a?x=1&y=2
        source: "<u>me</u>"
        body: |
          Raw <iframe src="https://evil.example"></iframe> stays text.

          <script>alert(1)</script>

          A [link](https://example.com/b?q=1&r=2) and `<code>` and **strong**.
"""


def test_raw_html_in_markdown_and_titles_is_escaped() -> None:
    doc = load_issue_text(ISSUE)
    compiled = compile_issue(doc, example_list(), base_url=BASE_URL)
    html, text = render_for_reader(
        compiled.html, compiled.text, unsubscribe_url=UNSUBSCRIBE, web_url=WEB, name="<b>Eve</b>"
    )
    tree = lxml.html.document_fromstring(html)
    assert not list(tree.iter("script", "iframe", "u", "i"))
    assert [b.text for b in tree.iter("b")] == []
    assert not [img for img in tree.iter("img") if img.get("onerror")]
    # Minified: "<" is always escaped in text, ">" need not be.
    assert "&lt;script>alert(1)&lt;/script>" in html
    assert "&lt;iframe" in html and "&lt;b&gt;Eve&lt;/b&gt;" in html  # the name: per reader
    shown = tree.text_content()
    assert '<script>alert("intro")</script>' in fold(shown).replace('"', '"')
    assert "Ça “marche” – déjà vu" in shown  # typography, non-ASCII intact
    assert "100% sure, 50%s {0} {{ x }}" in shown  # format characters pass through
    assert "https://example.com/a?x=1&y=2" in hrefs(html)
    assert "A link (https://example.com/b?q=1&r=2) and `<code>` and *strong*." in text
    assert "Hi <b>Eve</b>," in text  # the text part is not HTML


def test_non_ascii_round_trips_through_mime(example) -> None:
    subject = "o11y news #42 – Ça va, Zoë? 日本語"
    message = build_message(
        from_address="news@example.com",
        from_name="o11y news",
        to_address="rene@example.com",
        to_name="René Luçon",
        subject=subject,
        text=example["text"],
        html=example["html"],
        list_unsubscribe_url=UNSUBSCRIBE,
        list_id=ListIdentity("o11y news", "o11y-news.news.example.com"),
    )
    raw = message.as_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    raw.decode("ascii")  # everything on the wire is encoded
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == "René Luçon"
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert text.replace("\r\n", "\n") == example["text"]
    assert html.replace("\r\n", "\n").rstrip("\n") == example["html"].rstrip("\n")
    assert "Fatih Koç" in text and "Fatih Koç" in html and "Rosenthaler Straße" in html


def test_each_compiled_issue_renders_its_own_content() -> None:
    first = compile_issue(load_issue(EXAMPLE), example_list(), base_url=BASE_URL)
    second = compile_issue(load_issue_text(ISSUE), example_list(), base_url=BASE_URL)
    for _ in range(2):  # the second round comes from the cache
        a, _ = render_for_reader(
            first.html, first.text, unsubscribe_url="u1", web_url="w", name=None
        )
        b, _ = render_for_reader(
            second.html, second.text, unsubscribe_url="u2", web_url="w", name="Bo"
        )
        assert "Unlocking" in a and "Unlocking" not in b
        assert "u1" in hrefs(a) and "u2" in hrefs(b)
        assert "Hello," in a and "Hi Bo," in b
    # An equal string that is another object takes the text-keyed cache.
    copy = "".join(list(first.html))
    assert render_for_reader(copy, first.text, unsubscribe_url="u1", web_url="w", name=None)[0] == a
