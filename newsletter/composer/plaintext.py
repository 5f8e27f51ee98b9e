"""The plain-text part, written from the issue itself (never scraped from the HTML)."""

from __future__ import annotations

from newsletter import i18n
from newsletter.composer import markdown
from newsletter.composer import placeholders as ph
from newsletter.composer.issue_file import IssueDocument
from newsletter.models import MailingList

WIDTH = markdown.TEXT_WIDTH
RULE = "=" * WIDTH
THIN_RULE = "-" * WIDTH


def format_date(value) -> str:
    """Return a date as readers of the current language write it: 6 November 2023."""
    return i18n.format_date(value)


def _heading(text: str) -> list[str]:
    return markdown.wrap(text, width=WIDTH)


def build_text(doc: IssueDocument, mailing_list: MailingList) -> str:
    """Return the text part with per-reader placeholders (greeting, links).

    Written in the current language (i18n.using around the call); lines wrap by display
    width (CJK characters take two columns), URLs are never broken.
    """
    greeting = ph.greeting(i18n.gettext("Hi %(name)s,", name=ph.NAME), i18n.gettext("Hello,"))
    out: list[str] = [
        mailing_list.name,
        "",
        *_heading(markdown.inline_text(doc.title)),
        format_date(doc.date),
        "",
        f"{ph.EMAIL_ONLY[0]}{greeting}{ph.EMAIL_ONLY[1]}",
        "",
    ]
    if doc.intro:
        out += [markdown.to_text(doc.intro, doc.markdown_tokens(doc.intro)), ""]
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
                out += _heading(
                    i18n.gettext("Source: %(source)s", source=markdown.inline_text(item.source))
                )
            if item.url:
                out.append(item.url)
            out += ["", markdown.to_text(item.body, doc.markdown_tokens(item.body)), ""]
            if item.image:
                image = i18n.gettext("[Image: %(alt)s]", alt=item.image.alt)
                out += [*_heading(f"{image} {item.image.src}"), ""]
            if item.button and item.url:
                out += [f"{markdown.inline_text(item.button)}: {item.url}", ""]
    if doc.outro:
        out += [RULE, "", markdown.to_text(doc.outro, doc.markdown_tokens(doc.outro)), ""]
    why = i18n.gettext(
        "You are receiving this because you subscribed to %(list)s.", list=mailing_list.name
    )
    out += [
        "-- ",
        ph.EMAIL_ONLY[0] + "\n".join(_heading(why)),
        # Each link on a line of its own: a long URL after its label would overflow.
        f"{i18n.gettext('Unsubscribe')}:",
        ph.UNSUBSCRIBE_URL,
        f"{i18n.gettext('View this issue in your browser')}:",
        f"{ph.WEB_URL}{ph.EMAIL_ONLY[1]}",
    ]
    if mailing_list.postal_address:
        out += ["", *[line.strip() for line in mailing_list.postal_address.splitlines()]]
    return "\n".join(out).rstrip() + "\n"
