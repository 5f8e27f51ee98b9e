"""Markdown in issues: email HTML with raw HTML escaped, and a plain-text rendering."""

from __future__ import annotations

import functools
import os
import re
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from wcwidth import wcswidth
from wcwidth import wcwidth

TEXT_WIDTH = 72
_URL_START = re.compile(r"^[(<\[\"']?(https?://|mailto:|www\.)", re.IGNORECASE)
# Kinsoku: characters that must not begin a line (closing marks) or end one (opening).
_NO_LINE_START = set("、。，．・：；？！ー）」』】〕〉》〙〗｝］,.!?:;)]}…")
_NO_LINE_END = set("（「『【〔〈《〘〖｛［")
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


def parse(source: str) -> list[Token]:
    """Parse Markdown once; to_html, to_text and link_problems take the tokens."""
    return _block().parse(source)


# Blocks that get dir="auto": each lays out by its own first strong letter, so an Arabic
# paragraph in an English issue (or the reverse) reads right.
_DIR_AUTO = {"paragraph_open", "heading_open", "list_item_open", "blockquote_open"}


def to_html(source: str, tokens: list[Token] | None = None) -> str:
    """Render Markdown to HTML; raw HTML in it comes out escaped, as text."""
    md = _block()
    tokens = tokens if tokens is not None else md.parse(source)
    for token in tokens:
        if token.type in _DIR_AUTO:
            token.attrSet("dir", "auto")
    return md.renderer.render(tokens, md.options, {})


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


def link_problems(tokens: list[Token]) -> list[tuple[int, str]]:
    """Return (line offset, message) for links and images that cannot work in an email."""
    problems = []
    for token in tokens:
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
            out.append(f"`{child.content}`")
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


def display_width(text: str) -> int:
    """Columns a text takes in a monospaced client: wide (CJK) characters count two."""
    if text.isascii():
        return len(text)
    width = wcswidth(text)
    return width if width >= 0 else sum(max(wcwidth(ch), 0) for ch in text)


def _pieces(word: str) -> list[str]:
    """Split a word where a line may break without a space: around wide (CJK) characters.

    URLs are never split; closing punctuation stays with the character before it.
    """
    if word.isascii() or _URL_START.match(word):
        return [word]
    pieces: list[str] = []
    for ch in word:
        wide = wcwidth(ch) == 2
        if pieces and (ch in _NO_LINE_START or not (wide or _last_wide(pieces[-1]))):
            pieces[-1] += ch
        else:
            pieces.append(ch)
    return pieces


def _last_wide(piece: str) -> bool:
    return wcwidth(piece[-1]) == 2 and piece[-1] not in _NO_LINE_END


def wrap(text: str, first: str = "", rest: str = "", width: int = TEXT_WIDTH) -> list[str]:
    """Wrap by display width at spaces and between CJK characters, never inside a URL."""
    lines: list[str] = []
    for index, piece in enumerate(text.split("\n")):
        line = first if index == 0 else rest
        used = display_width(line)
        empty = True
        for word in piece.split():
            for number, part in enumerate(_pieces(word)):
                gap = 1 if number == 0 and not empty else 0
                size = display_width(part)
                if empty:
                    line += part
                    used += size
                    empty = False
                elif used + gap + size <= width:
                    line += " " * gap + part
                    used += gap + size
                else:
                    lines.append(line)
                    line = rest + part
                    used = display_width(line)
        lines.append(line.rstrip() if empty else line)
    return lines


def to_text(source: str, tokens: list[Token] | None = None, width: int = TEXT_WIDTH) -> str:
    """Render Markdown as wrapped plain text: links as readable URLs, lists, quotes, code."""
    # (lines, tight: no blank line before it, the quote marks its blank line before carries)
    blocks: list[tuple[list[str], bool, str]] = []
    prefixes: list[str] = []  # one per open block quote or list item
    pending_marker: str | None = None  # the bullet waiting for the item's first line
    lists: list[list[int | None]] = []  # counters of open lists (None: bullets)
    tight_stack: list[tuple[bool, int]] = []  # (tight list?, its first block's index)

    def prefix_pair() -> tuple[str, str]:
        nonlocal pending_marker
        rest = "".join(prefixes)
        if pending_marker is None:
            return rest, rest
        first = "".join(prefixes[:-1]) + pending_marker
        pending_marker = None
        return first, rest

    if tokens is None:
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
            tight = index + 2 < len(tokens) and tokens[index + 2].hidden
            tight_stack.append((tight, len(blocks)))
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
            tight = bool(tight_stack and tight_stack[-1][0] and len(blocks) > tight_stack[-1][1])
            blocks.append((wrap(text, first, rest, width), tight, "".join(prefixes).rstrip()))
        elif kind in ("fence", "code_block"):
            first, rest = prefix_pair()
            code = token.content.rstrip("\n").split("\n")
            lines = [(first if i == 0 else rest) + "    " + line for i, line in enumerate(code)]
            blocks.append(([line.rstrip() for line in lines], False, "".join(prefixes).rstrip()))
        elif kind == "hr":
            blocks.append((["".join(prefixes) + "-" * 20], False, "".join(prefixes).rstrip()))
    out: list[str] = []
    previous = ""
    for lines, tight, quote in blocks:
        if out and not tight:
            # Inside a quote the blank line keeps the ">" of the quotes around both blocks
            # (a bare blank line would end the quote).
            common = os.path.commonprefix([previous, quote])
            out.append(common[: common.rfind(">") + 1])
        previous = quote
        out.extend(lines)
    return "\n".join(out).strip("\n")
