"""Compile an issue once: MJML from the Jinja template, inlined HTML, and the text part."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from typing import Any

import jinja2
from markupsafe import Markup

from newsletter import i18n
from newsletter.composer import markdown
from newsletter.composer import placeholders as ph
from newsletter.composer.issue_file import IssueDocument
from newsletter.composer.issue_file import Section
from newsletter.composer.mjml import compile_mjml
from newsletter.composer.plaintext import build_text
from newsletter.config import data_dir
from newsletter.models import MailingList

TEMPLATE = "email/issue.mjml.j2"
# Gmail clips an HTML part over about 102 KB ("[Message clipped]"), hiding the footer.
GMAIL_CLIP_BYTES = 102_000
# Room for the longest per-reader values when checking the size.
_SAMPLE_URL = "https://news.example.com/u/" + "x" * 48
_SAMPLE_NAME = "Maximilian Alexander Reader"
# Around the top bar's unsubscribe link, kept only for issues Gmail would clip.
EARLY = ("{{nl:early}}", "{{nl:/early}}")
_EARLY_RE = re.compile(re.escape(EARLY[0]) + ".*?" + re.escape(EARLY[1]), re.DOTALL)


class ClippedIssue(ValueError):
    """The issue's HTML is over Gmail's clipping limit (the send refuses it unless allowed)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


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
    language: str = i18n.DEFAULT_LANGUAGE
    # Bytes of one reader's HTML (the longest personal values), what Gmail measures.
    html_size: int = 0
    stories: int = 0

    @property
    def clipped(self) -> bool:
        """Whether Gmail would clip this issue (HTML over GMAIL_CLIP_BYTES)."""
        return self.html_size > GMAIL_CLIP_BYTES

    def clipping_problem(self) -> str | None:
        """Say how large the HTML is and what to cut, when Gmail would clip it."""
        if not self.clipped:
            return None
        over = self.html_size - GMAIL_CLIP_BYTES
        per_story = self.html_size // max(1, self.stories)
        fewer = max(1, -(-over // max(1, per_story)))
        return (
            f"the HTML is {self.html_size / 1000:.1f} KB after minifying, over Gmail's "
            f"{GMAIL_CLIP_BYTES // 1000} KB: Gmail would clip it and hide the rest (footer "
            f"and postal address included) behind 'View entire message'. Cut at least "
            f"{over / 1000:.1f} KB: about {fewer} of its {self.stories} stories (move them "
            "to the next issue), or shorten the longest bodies"
        )


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    i18n.install(env)
    return env


def _item_context(doc: IssueDocument, item, level: int) -> dict[str, Any]:
    return {
        "title_html": Markup(markdown.inline_html(item.title)),
        "url": item.url,
        "body_html": Markup(markdown.to_html(item.body, doc.markdown_tokens(item.body))),
        "image": item.image,
        "button": item.button,
        "button_html": Markup(markdown.inline_html(item.button or "")),
        "source": item.source,
        "source_html": Markup(markdown.inline_html(item.source or "")),
        "level": level,
        "rule": False,
    }


def _blocks(doc: IssueDocument, section: Section) -> list[dict[str, Any]]:
    """A section's stories as MJML blocks: runs of text stories share one mj-text.

    Each mj-text costs a table row and a copy of the text styles, each mj-divider a table
    and an Outlook table: stories next to each other in one block, parted by a dotted rule
    inside it, keep long issues under Gmail's clipping limit. Images and buttons stay MJML
    components, so they part the runs (with an mj-divider between components).
    """
    # Headings never skip a level: h3 under a section title, h2 when there is none.
    level = 3 if section.title else 2
    blocks: list[dict[str, Any]] = []
    run: dict[str, Any] | None = None
    for index, item in enumerate(section.items):
        entry = _item_context(doc, item, level)
        if index:
            if run is not None and not item.image:
                entry["rule"] = True
            else:
                blocks.append({"kind": "divider"})
                run = None
        if item.image:
            blocks.append({"kind": "image", "item": entry})
            run = None
        if run is None:
            run = {"kind": "text", "entries": []}
            blocks.append(run)
        run["entries"].append(entry)
        if item.button:
            blocks.append({"kind": "button", "item": entry})
            run = None
    return blocks


def _markdown_html(doc: IssueDocument, source: str | None) -> Markup | str:
    return Markup(markdown.to_html(source, doc.markdown_tokens(source))) if source else ""


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def issue_language(doc: IssueDocument, mailing_list: MailingList) -> str:
    """The issue's language: its own `language:`, else the list's, else English."""
    return doc.language or getattr(mailing_list, "language", None) or i18n.DEFAULT_LANGUAGE


def greeting_html() -> Markup:
    """The compiled greeting in the current language, both forms (see placeholders)."""
    return Markup(
        ph.greeting(
            str(Markup(i18n.gettext("Hi %(name)s,")) % {"name": Markup(ph.NAME)}),
            str(Markup.escape(i18n.gettext("Hello,"))),
        )
    )


def render_mjml(doc: IssueDocument, mailing_list: MailingList, *, base_url: str) -> str:
    """Return the issue's MJML source (the input of the MJML compiler).

    The top bar's unsubscribe link sits between EARLY markers: compile_issue keeps it only
    when Gmail would clip the issue, and takes it out otherwise.
    """
    language = issue_language(doc, mailing_list)
    with i18n.using(language):
        markers = {
            "greeting": greeting_html(),
            "web_url": Markup(ph.WEB_URL),
            "unsubscribe_url": Markup(ph.UNSUBSCRIBE_URL),
            "subscribe_url": Markup(ph.SUBSCRIBE_URL),
        }
        direction = i18n.text_direction(language)
        context = {
            "lang": i18n.html_lang(language),
            "dir": direction,
            "start": "right" if direction == "rtl" else "left",
            "end": "left" if direction == "rtl" else "right",
            "title_text": markdown.inline_text(doc.title),
            "title_html": Markup(markdown.inline_html(doc.title)),
            "date_text": i18n.format_date(doc.date),
            "preheader": markdown.inline_text(doc.preheader) if doc.preheader else "",
            "intro_html": _markdown_html(doc, doc.intro),
            "outro_html": _markdown_html(doc, doc.outro),
            "sections": [
                {
                    "title_html": Markup(markdown.inline_html(s.title)) if s.title else None,
                    "blocks": _blocks(doc, s),
                }
                for s in doc.sections
            ],
            "list_name": mailing_list.name,
            "home_url": f"{base_url.rstrip('/')}/archive",
            "postal_lines": _lines(mailing_list.postal_address),
            "slot": markers,
            "email_only": tuple(Markup(m) for m in ph.EMAIL_ONLY),
            "web_only": tuple(Markup(m) for m in ph.WEB_ONLY),
            "early": tuple(Markup(m) for m in EARLY),
        }
        return _environment().get_template(TEMPLATE).render(context)


def _html_size(html: str, text: str) -> int:
    sample_html, _ = ph.render_for_reader(
        html, text, unsubscribe_url=_SAMPLE_URL, web_url=_SAMPLE_URL, name=_SAMPLE_NAME
    )
    return len(sample_html.encode("utf-8"))


def _warnings(doc: IssueDocument, compiled: CompiledIssue) -> list[str]:
    warnings = []
    problem = compiled.clipping_problem()
    if problem:
        warnings.append(
            f"{problem}. `newsletter send` refuses it unless you pass --allow-clipping "
            "(the unsubscribe link is then repeated at the top)"
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
    """Compile an issue for a list: responsive HTML and text, with per-reader placeholders.

    The HTML is minified. When it would still be clipped by Gmail, the unsubscribe link is
    repeated in the top bar, so it stays inside the part Gmail shows.
    """
    language = issue_language(doc, mailing_list)
    compiled_html = compile_mjml(render_mjml(doc, mailing_list, base_url=base_url))
    with i18n.using(language):
        text = build_text(doc, mailing_list)
    # Compiled once with the early link; it goes unless the issue is clipped without it.
    html = _EARLY_RE.sub("", compiled_html)
    size = _html_size(html, text)
    if size > GMAIL_CLIP_BYTES:
        html = compiled_html.replace(EARLY[0], "").replace(EARLY[1], "")
        size = _html_size(html, text)
    compiled = CompiledIssue(
        title=doc.title,
        subject=doc.subject,
        slug=doc.slug,
        issue_date=doc.date,
        preheader=doc.preheader,
        html=html,
        text=text,
        source_yaml=doc.source_yaml,
        language=i18n.html_lang(language),
        html_size=size,
        stories=sum(len(section.items) for section in doc.sections),
    )
    compiled.warnings = _warnings(doc, compiled)
    return compiled


def check_clipping(compiled: CompiledIssue, *, allow_clipping: bool) -> None:
    """Refuse an issue Gmail would clip (ClippedIssue says by how much) unless allowed."""
    problem = compiled.clipping_problem()
    if problem and not allow_clipping:
        raise ClippedIssue(
            f"Not sent: {problem}. To send it anyway (the unsubscribe link is repeated at the "
            "top), pass --allow-clipping (in the console: tick 'Send it anyway').",
            problem,
        )
