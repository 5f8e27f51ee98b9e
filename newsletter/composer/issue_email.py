"""Compile an issue once: MJML from the Jinja template, inlined HTML, and the text part."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from dataclasses import field
from datetime import date

import jinja2
from markupsafe import Markup

from newsletter.composer import markdown
from newsletter.composer import placeholders as ph
from newsletter.composer.issue_file import IssueDocument
from newsletter.composer.mjml import compile_mjml
from newsletter.composer.plaintext import build_text
from newsletter.composer.plaintext import format_date
from newsletter.config import data_dir
from newsletter.models import MailingList

TEMPLATE = "email/issue.mjml.j2"
# Gmail clips an HTML part over about 102 KB ("[Message clipped]"), hiding the footer.
GMAIL_CLIP_BYTES = 102_000
# Room for the longest per-reader values when checking the size.
_SAMPLE_URL = "https://news.example.com/u/" + "x" * 48


@dataclass
class CompiledIssue:
    """An issue compiled once: HTML and text with per-reader placeholders."""

    title: str
    subject: str
    slug: str
    issue_date: date
    preheader: str | None
    html: str
    text: str
    warnings: list[str] = field(default_factory=list)
    source_yaml: str = field(default="", repr=False)


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _item_context(doc: IssueDocument, item) -> dict:
    return {
        "title_html": Markup(markdown.inline_html(item.title)),
        "url": item.url,
        "body_html": Markup(markdown.to_html(item.body, doc.markdown_tokens(item.body))),
        "image": item.image,
        "button": item.button,
        "button_html": Markup(markdown.inline_html(item.button or "")),
        "source": item.source,
        "source_html": Markup(markdown.inline_html(item.source or "")),
    }


def _markdown_html(doc: IssueDocument, source: str | None) -> Markup | str:
    return Markup(markdown.to_html(source, doc.markdown_tokens(source))) if source else ""


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def render_mjml(doc: IssueDocument, mailing_list: MailingList, *, base_url: str) -> str:
    """Return the issue's MJML source (the input of the MJML compiler)."""
    markers = {
        "greeting": Markup(ph.GREETING),
        "web_url": Markup(ph.WEB_URL),
        "unsubscribe_url": Markup(ph.UNSUBSCRIBE_URL),
        "subscribe_url": Markup(ph.SUBSCRIBE_URL),
    }
    context = {
        "title_text": markdown.inline_text(doc.title),
        "title_html": Markup(markdown.inline_html(doc.title)),
        "date_text": format_date(doc.date),
        "preheader": markdown.inline_text(doc.preheader) if doc.preheader else "",
        "intro_html": _markdown_html(doc, doc.intro),
        "outro_html": _markdown_html(doc, doc.outro),
        "sections": [
            {
                "title_html": Markup(markdown.inline_html(s.title)) if s.title else None,
                "entries": [_item_context(doc, item) for item in s.items],
            }
            for s in doc.sections
        ],
        "list_name": mailing_list.name,
        "home_url": f"{base_url.rstrip('/')}/archive",
        "postal_lines": _lines(mailing_list.postal_address),
        "slot": markers,
        "email_only": tuple(Markup(m) for m in ph.EMAIL_ONLY),
        "web_only": tuple(Markup(m) for m in ph.WEB_ONLY),
    }
    return _environment().get_template(TEMPLATE).render(context)


def _warnings(doc: IssueDocument, html: str, text: str) -> list[str]:
    warnings = []
    sample_html, _ = ph.render_for_reader(
        html, text, unsubscribe_url=_SAMPLE_URL, web_url=_SAMPLE_URL, name="Reader"
    )
    size = len(sample_html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        warnings.append(
            f"the HTML is {size / 1000:.0f} KB: Gmail clips messages over 102 KB and hides "
            "the rest, including the unsubscribe link; shorten the issue"
        )
    if not doc.preheader:
        warnings.append("no preheader: inboxes will show the first words of the email instead")
    if len(doc.subject) > 78:
        warnings.append(f"the subject is {len(doc.subject)} characters: inboxes cut it near 60")
    for section in doc.sections:
        for item in section.items:
            if item.image and item.image.src.startswith("http:"):
                warnings.append(f"image {item.image.src} is not https: some clients block it")
    return warnings


def compile_issue(doc: IssueDocument, mailing_list: MailingList, *, base_url: str) -> CompiledIssue:
    """Compile an issue for a list: responsive HTML and text, with per-reader placeholders."""
    html = compile_mjml(render_mjml(doc, mailing_list, base_url=base_url))
    text = build_text(doc, mailing_list)
    return CompiledIssue(
        title=doc.title,
        subject=doc.subject,
        slug=doc.slug,
        issue_date=doc.date,
        preheader=doc.preheader,
        html=html,
        text=text,
        warnings=_warnings(doc, html, text),
        source_yaml=doc.source_yaml,
    )
