"""Markdown in issues: HTML with raw HTML escaped, typography, and the plain-text rendering."""

from __future__ import annotations

import pytest

from newsletter.composer import markdown


@pytest.mark.parametrize(
    ("source", "html"),
    [
        ('He said "hi" -- it\'s fine...', '<p dir="auto">He said “hi” – it’s fine…</p>\n'),
        ("a --- b", '<p dir="auto">a — b</p>\n'),
        ("<b>bold</b>", '<p dir="auto">&lt;b&gt;bold&lt;/b&gt;</p>\n'),
        (
            "<div onclick=x>\nblock\n</div>",
            '<p dir="auto">&lt;div onclick=x&gt;\nblock\n&lt;/div&gt;</p>\n',
        ),
        ("[x](javascript:alert(1))", '<p dir="auto">[x](javascript:alert(1))</p>\n'),
        (
            '`<i>` and `"q"`',
            '<p dir="auto"><code>&lt;i&gt;</code> and <code>&quot;q&quot;</code></p>\n',
        ),
        ("Zoë, Straße, 日本語 — ok", '<p dir="auto">Zoë, Straße, 日本語 — ok</p>\n'),
    ],
)
def test_html(source: str, html: str) -> None:
    assert markdown.to_html(source) == html


def test_titles_are_plain_text_with_typography() -> None:
    assert markdown.inline_html('*C++* <b> "x" -- y') == "*C++* &lt;b&gt; “x” – y"
    assert markdown.inline_text('*C++* <b> "x" -- y') == "*C++* <b> “x” – y"


def test_text_rendering_of_blocks() -> None:
    source = (
        "A paragraph with a [link](https://example.com/a) and **strong** and *em* text,\n"
        "long enough to wrap at seventy-two characters, https://example.com/a-very-long-url"
        "-that-must-never-be-broken-across-lines/and-more\n\n"
        "- first\n- second [again](https://example.com/a)\n\n"
        "1. one\n2. two\n\n"
        "> quoted *words*\n\n"
        "```\ncode  keeps   spacing\n```\n\n"
        "Line one  \nline two"
    )
    assert markdown.to_text(source).split("\n") == [
        "A paragraph with a link (https://example.com/a) and *strong* and _em_",
        "text, long enough to wrap at seventy-two characters,",
        "https://example.com/a-very-long-url-that-must-never-be-broken-across-lines/and-more",
        "",
        "- first",
        "- second again (https://example.com/a)",
        "",
        "1. one",
        "2. two",
        "",
        "> quoted _words_",
        "",
        "    code  keeps   spacing",
        "",
        "Line one",
        "line two",
    ]


def test_text_links_that_show_their_url_are_not_doubled() -> None:
    assert markdown.to_text("<https://example.com/x> and [mail](mailto:a@example.com)") == (
        "https://example.com/x and mail (a@example.com)"
    )
    assert markdown.to_text("[a@example.com](mailto:a@example.com)") == "a@example.com"


def test_wrap_never_breaks_words() -> None:
    word = "x" * 100
    assert markdown.wrap(f"a {word} b", width=10) == ["a", word, "b"]
    assert markdown.wrap("", first="> ", rest="> ") == [">"]
