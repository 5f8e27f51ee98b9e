"""Languages: the gettext catalogues, the list's language, and rendering in a locale.

Catalogues live in newsletter/translations/<locale>/LC_MESSAGES/messages.po and ship in
the package. Each is compiled in memory the first time a process needs it (a few
milliseconds), so there is no .mo file to build, commit or let go stale: a fresh clone,
`pip install -e .` and a wheel all work as they are. English is the source language and
has no catalogue. tests/test_i18n.py fails when a page or email string is missing from a
catalogue; docs/translating.md has the commands.

In a web request the page's locale is chosen by `web_locale()` (Flask-Babel's locale
selector): the language a view set with `set_page_language()` (a list's pages use the
list's), else the browser's Accept-Language among the shipped ones, else English.

Outside a request (the worker building emails, the CLI) say which locale to use:

    from newsletter import i18n

    env = jinja2.Environment(...)
    i18n.install(env)                      # once: {{ _("...") }} works in its templates
    with i18n.using(mailing_list.language):
        html = env.get_template("email/x.mjml.j2").render(...)
        subject = i18n.gettext("Please confirm your subscription to %(name)s", name=...)

`using()` also wins inside a request, so the same code works from a view.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel import UnknownLocaleError
from babel.support import NullTranslations
from babel.support import Translations

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LANGUAGE = "en"
# Shipped catalogues, and how each language names itself (for the console's list form).
LANGUAGES: dict[str, str] = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "es": "Español",
    "pt": "Português",
    "ja": "日本語",
    "ar": "العربية",
    "he": "עברית",
}
# The editors' pages (console, outbox, preview) are in English, whatever the browser says.
EDITORS_BLUEPRINTS = frozenset({"admin", "outbox", "preview"})
_TAG_RE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
_forced: ContextVar[str | None] = ContextVar("newsletter_locale", default=None)


class InvalidLanguage(ValueError):
    """Not a BCP 47 language tag this system knows."""


def normalize_language(tag: str | None) -> str:
    """Return a BCP 47 tag in its usual spelling (`pt-BR`), or raise InvalidLanguage."""
    raw = (tag or "").strip().replace("_", "-")
    if not raw or len(raw) > 35 or not _TAG_RE.match(raw):
        raise InvalidLanguage(
            f"{raw!r} is not a language tag: use a BCP 47 tag such as en, de, pt-BR or ja."
        )
    try:
        locale = Locale.parse(raw, sep="-")
    except (UnknownLocaleError, ValueError):
        raise InvalidLanguage(
            f"{raw!r} is not a language we know: use a BCP 47 tag such as en, de, pt-BR or ja."
        ) from None
    parts = [locale.language, locale.script, locale.territory, locale.variant]
    return "-".join(part for part in parts if part)


def _babel_locale(tag: str | None) -> Locale:
    try:
        return Locale.parse((tag or DEFAULT_LANGUAGE).replace("_", "-"), sep="-")
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LANGUAGE)


@lru_cache(maxsize=64)
def translations(tag: str | None) -> NullTranslations:
    """Return the catalogue for a language tag, falling back to its base language, then English."""
    locale = _babel_locale(tag)
    if locale.language == DEFAULT_LANGUAGE:
        return NullTranslations()
    for candidate in (str(locale), locale.language):
        po = TRANSLATIONS_DIR / candidate / "LC_MESSAGES" / "messages.po"
        if po.is_file():
            return _compile(po, candidate)
    return NullTranslations()


def _compile(po: Path, locale: str) -> Translations:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as source:
        catalog = read_po(source, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer)


def text_direction(tag: str | None) -> str:
    """Return "rtl" or "ltr" for the HTML `dir` attribute."""
    return _babel_locale(tag).text_direction


def html_lang(tag: str | None) -> str:
    """Return the tag for the HTML `lang` attribute."""
    try:
        return normalize_language(tag)
    except InvalidLanguage:
        return DEFAULT_LANGUAGE


@contextmanager
def using(tag: str | None) -> Iterator[str]:
    """Render everything inside the block in this language (requests and elsewhere)."""
    language = html_lang(tag)
    token = _forced.set(language)
    try:
        yield language
    finally:
        _forced.reset(token)


def current_language() -> str:
    """Return the language in force: using(), else the request's page language, else en."""
    forced = _forced.get()
    if forced:
        return forced
    from flask import has_request_context

    if has_request_context():
        return web_locale()
    return DEFAULT_LANGUAGE


def gettext(message: str, **variables: Any) -> str:
    """Translate a message into the current language; %(name)s placeholders are filled in."""
    text = translations(current_language()).ugettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """Translate a message with a plural form; %(num)d is the number."""
    variables.setdefault("num", num)
    return translations(current_language()).ungettext(singular, plural, num) % variables


def N_(message: str) -> str:  # noqa: N802 (the name gettext's tools look for)
    """Mark a string for the catalogue without translating it now (gettext() it when shown)."""
    return message


def format_date(value: date | datetime, format: str = "long") -> str:
    """Write a date the way the current language does (4. Dezember 2026, 2026年12月4日)."""
    from babel.dates import format_date as babel_format_date

    if isinstance(value, datetime):
        value = value.date()
    return babel_format_date(value, format=format, locale=_babel_locale(current_language()))


def install(env: Any) -> None:
    """Give a Jinja environment _(), gettext(), ngettext() and the |local_date filter."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(
        gettext=lambda s: translations(current_language()).ugettext(s),
        ngettext=lambda s, p, n: translations(current_language()).ungettext(s, p, n),
        newstyle=True,
    )
    env.filters["local_date"] = format_date
    env.globals["text_direction"] = lambda: text_direction(current_language())
    env.globals["html_lang"] = current_language


# --- The web: Flask-Babel ---------------------------------------------------------------


def set_page_language(tag: str | None) -> None:
    """Make this request's page speak a language (a list's pages speak the list's)."""
    from flask import g
    from flask_babel import refresh

    g.page_language = html_lang(tag)
    refresh()


def web_locale() -> str:
    """Flask-Babel's locale selector: the page's language, else the browser's, else en."""
    from flask import g
    from flask import request

    chosen = g.get("page_language")
    if chosen:
        return chosen
    if request.blueprint in EDITORS_BLUEPRINTS:
        return DEFAULT_LANGUAGE
    # Best first; a regional tag takes its language's catalogue (fr-CA: fr) before a
    # less wanted exact match (werkzeug's best_match would pick "de" for "fr-CA, de;q=0.5").
    for value, _quality in request.accept_languages:
        tag = value.replace("_", "-").lower()
        for candidate in (tag, tag.split("-")[0]):
            if candidate in LANGUAGES:
                return candidate
    return DEFAULT_LANGUAGE


def init_app(app: Any) -> None:
    """Set up Flask-Babel and the page templates' translation functions."""
    from flask_babel import Babel

    Babel(
        app,
        locale_selector=lambda: current_language(),
        default_translation_directories=str(TRANSLATIONS_DIR),
    )
    # Our callables replace Flask-Babel's: one catalogue loader (from the .po files) for
    # pages and emails, and they honour using() inside a request too.
    install(app.jinja_env)
