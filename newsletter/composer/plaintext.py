"""The plain-text part, written from the issue itself (never scraped from the HTML)."""

from __future__ import annotations

import textwrap

from newsletter.composer import markdown
from newsletter.composer import placeholders as ph
from newsletter.composer.issue_file import IssueDocument
from newsletter.models import MailingList

WIDTH = markdown.TEXT_WIDTH
RULE = "=" * WIDTH
THIN_RULE = "-" * WIDTH


def format_date(value) -> str:
    """Return a date as readers write it: 6 November 2023."""
    return f"{value.day} {value:%B %Y}"


def _heading(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False) or [text]


def build_text(doc: IssueDocument, mailing_list: MailingList) -> str:
    """Return the text part with per-reader placeholders (greeting, links)."""
    out: list[str] = [
        mailing_list.name,
        "",
        *_heading(markdown.inline_text(doc.title)),
        format_date(doc.date),
        "",
        f"{ph.EMAIL_ONLY[0]}{ph.GREETING}{ph.EMAIL_ONLY[1]}",
        "",
    ]
    if doc.intro:
        out += [markdown.to_text(doc.intro), ""]
    for section in doc.sections:
        out.append(RULE)
        if section.title:
            out += [*_heading(markdown.inline_text(section.title).upper()), RULE]
        out.append("")
        for index, item in enumerate(section.items):
            if index:
                out += [THIN_RULE, ""]
            out += _heading(markdown.inline_text(item.title))
            if item.source:
                out.append(f"Source: {markdown.inline_text(item.source)}")
            if item.url:
                out.append(item.url)
            out += ["", markdown.to_text(item.body), ""]
            if item.image:
                out += [f"[Image: {item.image.alt}] {item.image.src}", ""]
            if item.button and item.url:
                out += [f"{markdown.inline_text(item.button)}: {item.url}", ""]
    if doc.outro:
        out += [RULE, "", markdown.to_text(doc.outro), ""]
    out += [
        "-- ",
        f"{ph.EMAIL_ONLY[0]}You are receiving this because you subscribed to {mailing_list.name}.",
        f"Unsubscribe: {ph.UNSUBSCRIBE_URL}",
        f"View this issue in your browser: {ph.WEB_URL}{ph.EMAIL_ONLY[1]}",
    ]
    if mailing_list.postal_address:
        out += ["", *[line.strip() for line in mailing_list.postal_address.splitlines()]]
    return "\n".join(out).rstrip() + "\n"
