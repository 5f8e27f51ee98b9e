"""Languages: the list's language, rendering in a locale, the catalogues."""

from __future__ import annotations

import gettext
import re
from typing import Any

import jinja2
import pytest
import sqlalchemy as sa

from newsletter import i18n
from newsletter.models import MailingList
from newsletter.translations import catalogues


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en", "en"),
        ("DE", "de"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("ar", "ar"),
    ],
)
def test_language_tags_are_normalized(tag: str, expected: str) -> None:
    assert i18n.normalize_language(tag) == expected


@pytest.mark.parametrize("tag", ["", "x", "english", "de--", "qq-ZZ-longlonglong", "de\nfr", "<b>"])
def test_bad_language_tags_are_refused(tag: str) -> None:
    with pytest.raises(i18n.InvalidLanguage):
        i18n.normalize_language(tag)


def test_text_direction() -> None:
    assert i18n.text_direction("ar") == "rtl"
    assert i18n.text_direction("he-IL") == "rtl"
    assert i18n.text_direction("ja") == "ltr"
    assert i18n.text_direction(None) == "ltr"


def test_rendering_in_a_locale_outside_a_request() -> None:
    env = jinja2.Environment(autoescape=True)
    i18n.install(env)
    template = env.from_string('<p lang="{{ html_lang() }}">{{ _("Newsletter") }}</p>')
    assert template.render() == '<p lang="en">Newsletter</p>'
    with i18n.using("ja"):
        assert template.render() == '<p lang="ja">ニュースレター</p>'
        assert i18n.gettext("Newsletter") == "ニュースレター"
    # A regional tag falls back to its language's catalogue; an unknown one to English.
    with i18n.using("es-MX"):
        assert i18n.gettext("Newsletter") == "Boletín"
    with i18n.using("nl"):
        assert i18n.gettext("Newsletter") == "Newsletter"
    assert i18n.gettext("Newsletter") == "Newsletter"


def test_dates_in_the_current_language() -> None:
    from datetime import date

    with i18n.using("de"):
        assert i18n.format_date(date(2026, 12, 4)) == "4. Dezember 2026"
    with i18n.using("ja"):
        assert i18n.format_date(date(2026, 12, 4)) == "2026年12月4日"


def test_every_string_is_translated_in_every_catalogue() -> None:
    """A page or email string missing from a catalogue fails here (fix: docs/translating.md)."""
    template = catalogues.extract()
    assert len(template) > 0
    gaps = {
        locale: catalogues.missing(template, catalogues.read(locale))
        for locale in catalogues.LOCALES
    }
    assert gaps == {locale: [] for locale in catalogues.LOCALES}


PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


def test_translations_keep_every_placeholder() -> None:
    """A translation keeps the msgid's placeholders exactly, nothing renamed or added.

    Only a plural form used for a single number may say it in words and leave %(num)d
    out (Arabic "يومين", Hebrew "יומיים": two days), as GNU msgfmt --check allows.
    """
    problems = []
    for locale in catalogues.LOCALES:
        catalog = catalogues.read(locale)
        form_of = gettext.c2py(catalog.plural_expr)
        numbers_per_form = [0] * catalog.num_plurals
        for n in range(1000):
            numbers_per_form[form_of(n)] += 1
        for message in catalog:
            if not message.id:
                continue
            if isinstance(message.id, str):
                pairs = [(message.id, message.string, False)]
            else:
                pairs = [
                    (message.id[1], string, numbers_per_form[form] == 1)
                    for form, string in enumerate(message.string)
                ]
            for source, translated, one_number in pairs:
                wanted = sorted(PLACEHOLDER.findall(source))
                found = sorted(PLACEHOLDER.findall(translated))
                if one_number and found != wanted:
                    wanted = [p for p in wanted if p != "%(num)d"]
                if found != wanted:
                    problems.append(f"{locale}: {translated!r} has {found}, wants {wanted}")
    assert problems == []


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("ar", ["اشترك في o11y weekly", "عنوان البريد الإلكتروني", "اشترك", "(اختياري)"]),
        ("he", ["הרשמה ל־o11y weekly", "כתובת דוא״ל", "הרשמה", "(לא חובה)"]),
    ],
)
def test_right_to_left_lists_speak_their_language(
    client: Any, make_list: Any, language: str, words: list[str]
) -> None:
    make_list(language=language)
    body = client.get("/subscribe?list=weekly").get_data(as_text=True)
    assert f'<html lang="{language}" dir="rtl">' in body
    for word in words:
        assert word in body
    assert "Email address" not in body and "Subscribe" not in body


# --- The list's language ------------------------------------------------------------------


def _language(db_session: Any, slug: str) -> str:
    db_session.expire_all()
    value = db_session.scalar(sa.select(MailingList.language).where(MailingList.slug == slug))
    db_session.rollback()
    return value


def test_lists_create_and_update_language(runner: Any, db_session: Any) -> None:
    created = runner(
        "lists",
        "create",
        "wochen",
        "--name",
        "Wochenpost",
        "--from-address",
        "a@example.com",
        "--language",
        "de",
    )
    assert created.exit_code == 0, created.output
    assert _language(db_session, "wochen") == "de"
    default = runner("lists", "create", "weekly", "--name", "W", "--from-address", "a@example.com")
    assert default.exit_code == 0, default.output
    assert _language(db_session, "weekly") == "en"

    updated = runner("lists", "update", "wochen", "--language", "pt-br")
    assert updated.exit_code == 0, updated.output
    assert _language(db_session, "wochen") == "pt-BR"
    listing = runner("lists")
    assert "wochen\tWochenpost\ta@example.com\tpt-BR" in listing.output

    renamed = runner("lists", "update", "wochen", "--name", "Die Woche")
    assert renamed.exit_code == 0, renamed.output
    assert _language(db_session, "wochen") == "pt-BR"  # untouched settings stay


@pytest.mark.parametrize("language", ["ar", "he", "he-IL"])
def test_lists_take_the_right_to_left_languages(
    runner: Any, db_session: Any, language: str
) -> None:
    created = runner(
        "lists",
        "create",
        "rtl",
        "--name",
        "R",
        "--from-address",
        "a@example.com",
        "--language",
        language,
    )
    assert created.exit_code == 0, created.output
    assert _language(db_session, "rtl") == language
    with i18n.using(language):
        assert i18n.gettext("Unsubscribe") != "Unsubscribe"  # a catalogue, not English
        assert i18n.text_direction(language) == "rtl"


@pytest.mark.parametrize("command", ["create", "update"])
def test_a_bad_language_is_one_clear_line(runner: Any, command: str) -> None:
    runner("lists", "create", "weekly", "--name", "W", "--from-address", "a@example.com")
    args = ["--name", "W", "--from-address", "a@example.com"] if command == "create" else []
    slug = "other" if command == "create" else "weekly"
    result = runner("lists", command, slug, *args, "--language", "klingon!")
    assert result.exit_code == 1
    assert "not a language tag" in result.output
    assert "Traceback" not in result.output


def test_update_of_an_unknown_list(runner: Any) -> None:
    result = runner("lists", "update", "nope", "--language", "de")
    assert result.exit_code == 1
    assert "There is no list 'nope'" in result.output


def test_console_list_form_sets_the_language(admin_client: Any, db_session: Any) -> None:
    form = admin_client.get("/admin/lists/new").get_data(as_text=True)
    assert 'name="language"' in form and 'value="ja"' in form
    assert '<option value="ar">العربية</option>' in form
    assert '<option value="he">עברית</option>' in form
    response = admin_client.post(
        "/admin/lists/new",
        data={
            "slug": "nihon",
            "name": "Nihon",
            "from_address": "n@example.com",
            "language": "ja",
            "csrf_token": admin_client.csrf(),
        },
    )
    assert response.status_code == 302
    assert _language(db_session, "nihon") == "ja"
    bad = admin_client.post(
        "/admin/lists/nihon/edit",
        data={
            "name": "Nihon",
            "from_address": "n@example.com",
            "language": "not a tag",
            "csrf_token": admin_client.csrf(),
        },
    )
    assert bad.status_code == 400
    assert "not a language tag" in bad.get_data(as_text=True)
    assert _language(db_session, "nihon") == "ja"


def test_pages_carry_the_lists_language_and_direction(client: Any, make_list: Any) -> None:
    make_list(slug="arabic", name="نشرة", language="ar")
    body = client.get("/subscribe?list=arabic").get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in body
    make_list(slug="nihon", name="Nihon", language="ja")
    body = client.get("/subscribe?list=nihon").get_data(as_text=True)
    assert '<html lang="ja" dir="ltr">' in body
