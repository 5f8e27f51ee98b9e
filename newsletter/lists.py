"""Lists (publications): create, edit, find."""

from __future__ import annotations

import re
from typing import NamedTuple

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter.addresses import InvalidAddress
from newsletter.addresses import normalize_address
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.headers import control_problem
from newsletter.i18n import DEFAULT_LANGUAGE
from newsletter.i18n import InvalidLanguage
from newsletter.i18n import normalize_language
from newsletter.models import MailingList

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class ListError(NewsletterError):
    """A list could not be created or changed as asked."""


def check_lines(label: str, text: str | None) -> None:
    """Refuse control characters in a multi-line text (postal address), naming the line."""
    for number, line in enumerate((text or "").replace("\r\n", "\n").split("\n"), start=1):
        problem = control_problem(line.replace("\t", " "))
        if problem:
            raise ListError(f"{label}, line {number}: {problem}.")


def _check_fields(name: str, from_address: str, reply_to: str | None) -> tuple[str, str | None]:
    if not name or not name.strip():
        raise ListError("The list needs a name.")
    if len(name) > 200:
        raise ListError("The list name must be one line of at most 200 characters.")
    problem = control_problem(name)
    if problem:
        raise ListError(f"The list name {problem}.")
    try:
        sender = normalize_address(from_address).ascii
    except InvalidAddress as exc:
        raise ListError(f"From address: {exc}") from None
    reply = None
    if reply_to:
        try:
            reply = normalize_address(reply_to).ascii
        except InvalidAddress as exc:
            raise ListError(f"Reply-to address: {exc}") from None
    return sender, reply


def _check_language(language: str | None) -> str:
    try:
        return normalize_language(language or DEFAULT_LANGUAGE)
    except InvalidLanguage as exc:
        raise ListError(f"Language: {exc}") from None


def create_list(
    session: so.Session,
    slug: str,
    *,
    name: str,
    from_address: str,
    reply_to: str | None = None,
    postal_address: str | None = None,
    description: str | None = None,
    language: str | None = None,
) -> MailingList:
    """Create a list; the slug is its short name in URLs and commands."""
    if not SLUG_RE.match(slug or ""):
        raise ListError(
            f"{slug!r} is not a valid list slug: use lowercase letters, digits and hyphens."
        )
    sender, reply = _check_fields(name, from_address, reply_to)
    check_lines("The postal address", postal_address)
    check_lines("The description", description)
    tag = _check_language(language)
    if session.scalar(sa.select(MailingList.id).where(MailingList.slug == slug)) is not None:
        raise ListError(f"A list with the slug {slug!r} already exists.")
    mailing_list = MailingList(
        slug=slug,
        name=name.strip(),
        from_address=sender,
        reply_to=reply,
        postal_address=(postal_address or "").strip() or None,
        description=(description or "").strip() or None,
        language=tag,
    )
    session.add(mailing_list)
    session.flush()
    return mailing_list


def update_list(
    session: so.Session,
    mailing_list: MailingList,
    *,
    name: str,
    from_address: str,
    reply_to: str | None = None,
    postal_address: str | None = None,
    description: str | None = None,
    language: str | None = None,
) -> MailingList:
    """Change a list's name, addresses, footer and language (None keeps the language)."""
    sender, reply = _check_fields(name, from_address, reply_to)
    check_lines("The postal address", postal_address)
    check_lines("The description", description)
    if language is not None:
        mailing_list.language = _check_language(language)
    mailing_list.name = name.strip()
    mailing_list.from_address = sender
    mailing_list.reply_to = reply
    mailing_list.postal_address = (postal_address or "").strip() or None
    mailing_list.description = (description or "").strip() or None
    session.flush()
    return mailing_list


def get_list(session: so.Session, slug: str) -> MailingList:
    """Return the list with this slug, or raise NotFound."""
    mailing_list = session.scalar(sa.select(MailingList).where(MailingList.slug == slug))
    if mailing_list is None:
        raise NotFound(f"There is no list {slug!r}.")
    return mailing_list


def all_lists(session: so.Session) -> list[MailingList]:
    """Return every list, by slug."""
    return list(session.scalars(sa.select(MailingList).order_by(MailingList.slug)))


class ListIdentity(NamedTuple):
    """What the list headers of a message say: List-Id (RFC 2919) and List-Archive."""

    label: str  # the list's name, written as the List-Id phrase (encoded when needed)
    value: str  # the list id: the slug under the site's host name
    archive_url: str | None = None


def list_id_header(mailing_list: MailingList, base_url: str) -> ListIdentity:
    """Return the list's identity for List-Id and List-Archive (the public web archive)."""
    host = re.sub(r"^https?://", "", base_url).split("/")[0].split(":")[0] or "localhost"
    host = host.strip("[]").replace(":", "-") or "localhost"
    archive = f"{base_url.rstrip('/')}/archive?list={mailing_list.slug}"
    return ListIdentity(mailing_list.name, f"{mailing_list.slug}.{host}", archive)
