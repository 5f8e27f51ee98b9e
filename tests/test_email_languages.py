"""Every language: lang and dir, dir="auto" paragraphs, translated words, CJK-aware text."""

from __future__ import annotations

import email
import email.policy
import html
import re

import lxml.html
import pytest

from newsletter.composer import compile_issue
from newsletter.composer import load_issue_text
from newsletter.composer import markdown
from newsletter.composer import render_for_reader
from newsletter.composer.mjml import compile_mjml
from newsletter.models import MailingList

BASE_URL = "https://news.example.com"
URL = "https://example.com/a/very/long/address/that/must/never/be/broken/across/two/lines/ok"

ARABIC = f"""\
title: النشرة الأسبوعية
date: 2026-12-04
language: ar
intro: |
  مرحبا بكم في النشرة الإخبارية لهذا الأسبوع. هناك الكثير من الأخبار حول النواة ونظام
  التشغيل لينكس والمراقبة، وبعض الكلمات English inside.

  This paragraph is English in an Arabic issue.
sections:
  - title: الأخبار
    items:
      - title: خبر مهم
        url: https://example.com/ar
        body: |
          نص الخبر هنا مع رابط {URL} في الوسط.
"""

JAPANESE = f"""\
title: 今週のニュース
date: 2026-12-04
language: ja
intro: |
  日本語のニュースレターへようこそ。今週はカーネルの話題が盛りだくさんです。詳しくは
  {URL} をご覧ください。eBPF とオブザーバビリティの最新情報を、短くまとめてお届けします。
sections:
  - items:
      - title: カーネルの話
        body: |
          長い段落です。日本語の文章にはスペースがほとんどないため、表示幅で折り返す必要があります。全角文字は二文字分の幅を取ります。
"""


def _list(language: str = "en") -> MailingList:
    return MailingList(
        slug="weekly",
        name="o11y weekly",
        from_address="news@example.com",
        postal_address="1 Example Street, Berlin",
        language=language,
    )


def _render(source: str, mailing_list: MailingList, name: str | None = "Zoë"):
    compiled = compile_issue(load_issue_text(source), mailing_list, base_url=BASE_URL)
    html, text = render_for_reader(
        compiled.html, compiled.text, unsubscribe_url=f"{BASE_URL}/u/1.x", web_url=URL, name=name
    )
    return compiled, lxml.html.document_fromstring(html), text


def _assert_wrapped(text: str) -> None:
    for line in text.splitlines():
        if markdown.display_width(line) > markdown.TEXT_WIDTH:
            # Only a line that is one unbroken URL may run longer.
            assert re.fullmatch(r"\S*https?://\S+", line.strip()), line
    assert URL in text  # never broken


def test_arabic_issue_is_right_to_left_and_paragraphs_follow_their_text():
    compiled, tree, text = _render(ARABIC, _list("en"))  # the issue overrides the list
    assert compiled.language == "ar"
    root = tree.getroottree().getroot()
    assert (root.get("lang"), root.get("dir")) == ("ar", "rtl")
    paragraphs = [p for p in tree.xpath("//p") if p.text_content().strip()]
    assert paragraphs and all(p.get("dir") == "auto" for p in paragraphs)
    assert all(h.get("dir") == "auto" for h in tree.xpath("//h1|//h2|//h3"))
    # Text blocks are aligned to the right, lists and quotes indent from the right.
    aligned = {div.get("style") for div in tree.xpath("//td[contains(@class,'nl-text')]/div")}
    assert aligned and all("text-align:right" in style for style in aligned)
    assert "This paragraph is English in an Arabic issue." in tree.text_content()
    _assert_wrapped(text)


def test_japanese_issue_words_and_text_part_wrap_by_display_width():
    compiled, tree, text = _render(JAPANESE, _list("ja"))
    root = tree.getroottree().getroot()
    assert (root.get("lang"), root.get("dir")) == ("ja", "ltr")
    shown = tree.text_content()
    assert "ブラウザで見る" in shown and "Zoë さん、こんにちは。" in shown
    assert "2026年12月4日" in shown
    assert "Zoë さん、こんにちは。" in text and "登録解除" in text or "Unsubscribe" not in text
    # CJK counts double: no line over 72 columns, but lines are not left half empty.
    _assert_wrapped(text)
    widths = [markdown.display_width(line) for line in text.splitlines()]
    assert max(w for w in widths if w <= markdown.TEXT_WIDTH) >= 60
    assert len(text.splitlines()) > 10


def test_the_list_language_is_the_default_and_every_email_word_is_translated():
    source = ARABIC.replace("language: ar\n", "")
    _, tree, text = _render(source, _list("de"), name=None)
    root = tree.getroottree().getroot()
    assert (root.get("lang"), root.get("dir")) == ("de", "ltr")
    shown = tree.text_content()
    for word in ("Im Browser ansehen", "Abmelden", "Hallo,", "4. Dezember 2026"):
        assert word in shown, word
    assert "Sie erhalten diese E-Mail, weil Sie o11y weekly abonniert haben." in text
    assert "Abmelden:\nhttps://news.example.com/u/1.x" in text


@pytest.mark.parametrize(
    ("language", "greeting"),
    [
        ("en", "Hi Zoë,"),
        ("de", "Hallo Zoë,"),
        ("fr", "Bonjour Zoë,"),
        ("es", "Hola, Zoë:"),
        ("pt", "Olá, Zoë,"),
        ("ja", "Zoë さん、こんにちは。"),
        ("ar", "مرحبًا Zoë،"),
        ("he", "שלום Zoë,"),
    ],
)
def test_greeting_in_each_language(language, greeting):
    _, tree, text = _render(JAPANESE.replace("language: ja\n", ""), _list(language))
    assert greeting in tree.text_content() and greeting in text


def test_confirmation_email_speaks_the_list_language(client, make_list, outbox):
    make_list(language="fr")
    response = client.post("/subscribe", data={"email": "zoe@example.org", "list": "weekly"})
    assert response.status_code == 303
    (message,) = outbox.messages
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Veuillez confirmer votre abonnement à o11y weekly"
    html = parsed.get_body(("html",)).get_content()
    tree = lxml.html.document_fromstring(html)
    assert tree.getroottree().getroot().get("lang") == "fr"
    assert "Confirmer mon abonnement" in tree.text_content()
    text = parsed.get_body(("plain",)).get_content()
    assert "Ouvrez ce lien pour confirmer :" in text


@pytest.mark.parametrize(
    ("language", "subject", "button", "text_words", "chrome"),
    [
        (
            "ar",
            "يُرجى تأكيد اشتراكك في o11y weekly",
            "تأكيد اشتراكي",
            ["افتح هذا الرابط للتأكيد:", "وتبقى صلاحيته 7 أيام."],
            ["اعرضها في المتصفح", "إلغاء الاشتراك", "تصلك هذه الرسالة لأنك مشترك في o11y weekly."],
        ),
        (
            "he",
            "נא לאשר את ההרשמה ל־o11y weekly",
            "אישור ההרשמה",
            ["לאישור יש לפתוח את הקישור הזה:", "ובתוקף למשך 7 ימים."],
            ["לצפייה בדפדפן", "ביטול ההרשמה", "הודעה זו נשלחה אליך כי נרשמת ל־o11y weekly."],
        ),
    ],
)
def test_right_to_left_emails_speak_the_list_language(
    client, make_list, outbox, app, language, subject, button, text_words, chrome
):
    """The confirmation email and an issue's own words, right to left, no English left."""
    app.config["CONFIRM_MAX_AGE"] = 7 * 86400
    make_list(language=language)
    response = client.post("/subscribe", data={"email": "zoe@example.org", "list": "weekly"})
    assert response.status_code == 303
    (message,) = outbox.messages
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == subject
    html = parsed.get_body(("html",)).get_content()
    tree = lxml.html.document_fromstring(html)
    root = tree.getroottree().getroot()
    assert (root.get("lang"), root.get("dir")) == (language, "rtl")
    shown = tree.text_content()
    assert button in shown
    # The email's accessible name, read out first by screen readers, is its subject.
    assert tree.xpath("//div[@role='article']/@aria-label") == [subject]
    text = parsed.get_body(("plain",)).get_content()
    for words in text_words:
        assert words in text
    for english in ("Confirm my subscription", "Open this link", "If the button"):
        assert english not in shown and english not in text

    # An issue to the same list: its chrome (greeting, links, footer) in the list's language.
    _, issue, issue_text = _render(JAPANESE.replace("language: ja\n", ""), _list(language))
    issue_root = issue.getroottree().getroot()
    assert (issue_root.get("lang"), issue_root.get("dir")) == (language, "rtl")
    for words in chrome:
        assert words in issue.text_content() or words in issue_text


@pytest.mark.parametrize(
    "title",
    [
        "يُرجى تأكيد اشتراكك",  # an Arabic vowel sign
        "שָׁלוֹם",  # Hebrew points
        "Cafe\u0301 \u200fo11y",  # a combining accent, a right-to-left mark
        'Say "hi" \\ bye',
    ],
)
def test_the_emails_accessible_name_is_its_title(title):
    """MRML writes marks into the wrapper's aria-label as \\u{64f}; compile_mjml undoes it."""
    source = (
        f"<mjml><mj-head><mj-title>{html.escape(title)}</mj-title></mj-head>"
        "<mj-body><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section>"
        "</mj-body></mjml>"
    )
    tree = lxml.html.document_fromstring(compile_mjml(source))
    assert tree.xpath("//div[@role='article']/@aria-label") == [title]
    assert tree.xpath("//title/text()") == [title]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("> one\n>\n> two", "> one\n>\n> two"),
        ("> one\n>\n> > two\n> >\n> > three", "> one\n>\n> > two\n> >\n> > three"),
        ("Use `code` and `a b`.", "Use `code` and `a b`."),
    ],
)
def test_text_part_keeps_quote_marks_and_backticks(source, expected):
    assert markdown.to_text(source) == expected


def test_wrap_counts_wide_characters_twice_and_never_breaks_urls():
    text = "漢" * 50 + " " + URL + " 終わり。"
    lines = markdown.wrap(text, width=40)
    assert lines[0] == "漢" * 20 and markdown.display_width(lines[0]) == 40
    assert URL in lines
    assert not any(line.startswith(("。", "、")) for line in lines)


@pytest.mark.parametrize(("name", "greeting"), [("Zoë <Z>", "Hallo Zoë <Z>,"), (None, "Hallo,")])
def test_the_sending_path_fills_the_translated_greeting(app, make_list, name, greeting):
    from newsletter.sending.renderer import IssueRenderer

    mailing_list = make_list(language="de")
    compiled = compile_issue(
        load_issue_text(JAPANESE.replace("language: ja\n", "")), mailing_list, base_url=BASE_URL
    )
    renderer = IssueRenderer(
        issue_id=1,
        slug=compiled.slug,
        subject=compiled.subject,
        html=compiled.html,
        text=compiled.text,
        mailing_list=mailing_list,
        base_url=BASE_URL,
        secret_key="k" * 32,
    )
    message = renderer.message(email="zoe@example.org", name=name, subscription_id=3, delivery_id=9)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert greeting in text
    assert greeting in lxml.html.document_fromstring(html).text_content()
    assert "{{nl:" not in html and "{{nl:" not in text
