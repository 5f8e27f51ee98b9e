"""Markdown in issues: email HTML with raw HTML escaped, and a plain-text rendering."""

from __future__ import annotations

import functools
import textwrap
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

TEXT_WIDTH = 72
_LINK_SCHEMES = ("http", "https", "mailto")


@functools.cache
def _block() -> MarkdownIt:
    # html=False escapes raw HTML; typographer gives smart quotes and dashes.
    return MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(
        ["replacements", "smartquotes"]
    )


@functools.cache
def _plain() -> MarkdownIt:
    # Titles are plain text: no Markdown syntax, only typography.
    return MarkdownIt("zero", {"typographer": True}).enable(["replacements", "smartquotes"])


def to_html(source: str) -> str:
    """Render Markdown to HTML; raw HTML in it comes out escaped, as text."""
    return _block().render(source)


def inline_html(text: str) -> str:
    """Render a plain-text title as escaped HTML with typographic quotes and dashes."""
    return _block_inline(text, html=True)


def inline_text(text: str) -> str:
    """Return a plain-text title with typographic quotes and dashes."""
    return _block_inline(text, html=False)


def _block_inline(text: str, *, html: bool) -> str:
    md = _plain()
    if html:
        return md.renderInline(text)
    tokens = md.parseInline(text)
    return "".join(child.content for child in tokens[0].children or [] if child.type == "text")


def link_problems(source: str) -> list[tuple[int, str]]:
    """Return (line offset, message) for links and images that cannot work in an email."""
    problems = []
    for token in _block().parse(source):
        for child in token.children or []:
            if child.type == "link_open":
                href = str(child.attrs.get("href", ""))
                if urlsplit(href).scheme not in _LINK_SCHEMES:
                    problems.append(
                        (token.map[0] if token.map else 0, f"link {href!r} is not an http(s) URL")
                    )
            elif child.type == "image":
                src = str(child.attrs.get("src", ""))
                if urlsplit(src).scheme not in ("http", "https"):
                    problems.append(
                        (token.map[0] if token.map else 0, f"image {src!r} is not an http(s) URL")
                    )
    return problems


def _inline_to_text(token: Token) -> str:
    out: list[str] = []
    link_stack: list[tuple[str, int]] = []
    for child in token.children or []:
        kind = child.type
        if kind == "text":
            out.append(child.content)
        elif kind == "code_inline":
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind in ("em_open", "em_close"):
            out.append("_")
        elif kind in ("strong_open", "strong_close"):
            out.append("*")
        elif kind == "link_open":
            link_stack.append((str(child.attrs.get("href", "")), len(out)))
        elif kind == "link_close" and link_stack:
            href, start = link_stack.pop()
            label = "".join(out[start:])
            bare = href.removeprefix("mailto:")
            if label.strip() not in (href, bare, href.split("://", 1)[-1]):
                out.append(f" ({bare})")
            else:
                del out[start:]
                out.append(bare)
        elif kind == "image":
            out.append(f"[Image: {child.content}] {child.attrs.get('src', '')}")
    return "".join(out)


def _wrap(text: str, first: str, rest: str, width: int) -> list[str]:
    wrapper = textwrap.TextWrapper(
        width=width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    lines: list[str] = []
    for index, piece in enumerate(text.split("\n")):
        wrapper.initial_indent = first if index == 0 else rest
        lines.extend(wrapper.wrap(piece) or [wrapper.initial_indent.rstrip()])
    return lines


def to_text(source: str, width: int = TEXT_WIDTH) -> str:
    """Render Markdown as wrapped plain text: links as readable URLs, lists, quotes, code."""
    blocks: list[tuple[list[str], bool]] = []  # (lines, tight: no blank line before it)
    prefixes: list[str] = []  # one per open block quote or list item
    pending_marker: str | None = None  # the bullet waiting for the item's first line
    lists: list[list[int | None]] = []  # counters of open lists (None: bullets)
    tight_stack: list[bool] = []

    def prefix_pair() -> tuple[str, str]:
        nonlocal pending_marker
        rest = "".join(prefixes)
        if pending_marker is None:
            return rest, rest
        first = "".join(prefixes[:-1]) + pending_marker
        pending_marker = None
        return first, rest

    tokens = _block().parse(source)
    for index, token in enumerate(tokens):
        kind = token.type
        if kind == "blockquote_open":
            prefixes.append("> ")
        elif kind == "blockquote_close":
            prefixes.pop()
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrs.get("start", 1)) if kind == "ordered_list_open" else None
            lists.append([start])
            # markdown-it marks the paragraphs of tight lists hidden.
            tight_stack.append(index + 2 < len(tokens) and tokens[index + 2].hidden)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            tight_stack.pop()
        elif kind == "list_item_open":
            counter = lists[-1]
            if counter[0] is None:
                marker = "- "
            else:
                marker = f"{counter[0]}. "
                counter[0] += 1
            pending_marker = marker
            prefixes.append(" " * len(marker))
        elif kind == "list_item_close":
            prefixes.pop()
        elif kind == "inline":
            first, rest = prefix_pair()
            text = _inline_to_text(token)
            tight = bool(tight_stack and tight_stack[-1] and blocks)
            blocks.append((_wrap(text, first, rest, width), tight))
        elif kind in ("fence", "code_block"):
            first, rest = prefix_pair()
            code = token.content.rstrip("\n").split("\n")
            lines = [(first if i == 0 else rest) + "    " + line for i, line in enumerate(code)]
            blocks.append(([line.rstrip() for line in lines], False))
        elif kind == "hr":
            blocks.append((["".join(prefixes) + "-" * 20], False))
    out: list[str] = []
    for lines, tight in blocks:
        if out and not tight:
            out.append("")
        out.extend(lines)
    return "\n".join(out).strip("\n")
