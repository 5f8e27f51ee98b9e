"""The issue file: YAML loading and validation, every error with file, line and field path."""

from __future__ import annotations

import datetime as dt
import textwrap
import time

import pytest

from newsletter.composer import IssueFileError
from newsletter.composer import load_issue
from newsletter.composer import load_issue_text

VALID = """\
title: Unlocking the Kernel
date: 2023-11-06
sections:
  - title: eBPF
    items:
      - title: Unlocking The Kernel
        url: https://example.com/k
        body: It has been an incredible couple of years for eBPF.
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(IssueFileError) as caught:
        load_issue_text(textwrap.dedent(text), filename="issue.yaml")
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def test_valid_minimal_issue_gets_defaults() -> None:
    doc = load_issue_text(VALID, filename="issue.yaml")
    assert doc.title == "Unlocking the Kernel"
    assert doc.date == dt.date(2023, 11, 6)
    assert doc.subject == doc.title  # defaults to the title
    assert doc.slug == "unlocking-the-kernel"  # derived from the title
    assert doc.preheader is None and doc.intro is None and doc.outro is None
    assert doc.sections[0].items[0].url == "https://example.com/k"
    assert doc.source_yaml == VALID


def test_derived_slug_folds_accents_and_falls_back_to_the_date() -> None:
    doc = load_issue_text(VALID.replace("title: Unlocking the Kernel", "title: Ça va, Zoë?"))
    assert doc.slug == "ca-va-zoe"
    doc = load_issue_text(VALID.replace("title: Unlocking the Kernel", "title: 日本語"))
    assert doc.slug == "issue-2023-11-06"


def test_quoted_date_and_numeric_title_are_accepted() -> None:
    text = VALID.replace("title: Unlocking the Kernel", "title: 2024").replace(
        "date: 2023-11-06", 'date: "2023-11-06"'
    )
    doc = load_issue_text(text)
    assert doc.title == "2024" and doc.date == dt.date(2023, 11, 6)


ITEM = "      - title: Unlocking The Kernel\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            VALID.replace("title: Unlocking the Kernel\n", ""),
            ["issue.yaml:1: title: missing (required)"],
            id="missing-title",
        ),
        pytest.param(
            VALID.replace("date: 2023-11-06", "date: 2023-13-45"),
            ["issue.yaml:2: date: expected a date like 2023-11-06, got '2023-13-45'"],
            id="impossible-date",
        ),
        pytest.param(
            VALID.replace("date: 2023-11-06", "date: next monday"),
            ["issue.yaml:2: date: expected a date like 2023-11-06, got 'next monday'"],
            id="date-not-a-date",
        ),
        pytest.param(
            VALID.replace("date: 2023-11-06", "date: 2023-11-06 10:00:00"),
            ["issue.yaml:2: date: expected a date like 2023-11-06, got '2023-11-06 10:00:00'"],
            id="date-with-time",
        ),
        pytest.param(
            VALID.replace("date: 2023-11-06", "date: !!python/name:os.system"),
            ["issue.yaml:2: date: expected a date like 2023-11-06, got ''"],
            id="date-with-python-tag",
        ),
        pytest.param(
            VALID.replace("date: 2023-11-06", "date: 20231106"),
            ["issue.yaml:2: date: expected a date like 2023-11-06, got '20231106'"],
            id="date-as-number",
        ),
        pytest.param(
            VALID + "subjekt: Hello\n",
            ["issue.yaml:9: subjekt: unknown field (did you mean 'subject'?)"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            VALID + "        colour: red\n",
            ["issue.yaml:9: sections[0].items[0].colour: unknown field"],
            id="unknown-item-key",
        ),
        pytest.param(
            VALID + "title: Again\n",
            ["issue.yaml:9: title: duplicate field (already set on line 1)"],
            id="duplicate-key",
        ),
        pytest.param(
            VALID.replace("url: https://example.com/k", "url: javascript:alert(1)"),
            ["issue.yaml:7: sections[0].items[0].url: not an http(s) URL"],
            id="url-not-http",
        ),
        pytest.param(
            VALID.replace("url: https://example.com/k", "url: example.com/k"),
            ["issue.yaml:7: sections[0].items[0].url: not an http(s) URL"],
            id="url-without-scheme",
        ),
        pytest.param(
            VALID + "        image: {src: https://example.com/k.png}\n",
            ["issue.yaml:9: sections[0].items[0].image.alt: missing: every image needs alt text"],
            id="image-without-alt",
        ),
        pytest.param(
            VALID + '        image: {src: https://example.com/k.png, alt: ""}\n',
            ["issue.yaml:9: sections[0].items[0].image.alt: must not be empty"],
            id="image-with-empty-alt",
        ),
        pytest.param(
            VALID + "        image: {src: /k.png, alt: A kernel}\n",
            ["issue.yaml:9: sections[0].items[0].image.src: not an http(s) URL"],
            id="image-relative-src",
        ),
        pytest.param(
            VALID.replace("        url: https://example.com/k\n", "") + "        button: Watch\n",
            ["issue.yaml:8: sections[0].items[0].button: a button needs the item's url"],
            id="button-without-url",
        ),
        pytest.param(
            VALID + "preheader: " + "x" * 151 + "\n",
            ["issue.yaml:9: preheader: too long: 151 characters (at most 150)"],
            id="preheader-over-150",
        ),
        pytest.param(
            VALID + "subject: |\n  two\n  lines\n",
            ["issue.yaml:9: subject: must be one line"],
            id="subject-two-lines",
        ),
        pytest.param(
            VALID + "slug: Not A Slug\n",
            ["issue.yaml:9: slug: use lowercase letters, digits and hyphens"],
            id="bad-slug",
        ),
        pytest.param(
            "title: T\ndate: 2023-11-06\nsections: []\n",
            ["issue.yaml:3: sections: needs at least one section"],
            id="no-sections",
        ),
        pytest.param(
            "title: T\ndate: 2023-11-06\nsections:\n  - title: S\n    items: []\n",
            ["issue.yaml:5: sections[0].items: needs at least one item"],
            id="no-items",
        ),
        pytest.param(
            "title: T\ndate: 2023-11-06\nsections:\n  - title: S\n",
            ["issue.yaml:4: sections[0].items: missing (required)"],
            id="section-without-items",
        ),
        pytest.param(
            "title: T\ndate: 2023-11-06\nsections: eBPF\n",
            ["issue.yaml:3: sections: expected a list of sections, got text"],
            id="sections-not-a-list",
        ),
        pytest.param(
            VALID.replace("title: Unlocking the Kernel", "title: [a, b]"),
            ["issue.yaml:1: title: expected text, got a list"],
            id="title-not-text",
        ),
        pytest.param(
            VALID.replace("title: Unlocking the Kernel", "title:"),
            ["issue.yaml:1: title: must not be empty"],
            id="title-empty",
        ),
        pytest.param(
            VALID.replace(
                "body: It has been an incredible couple of years for eBPF.",
                "body: |\n          Fine.\n\n          See [the notes](notes.html).",
            ),
            ["issue.yaml:11: sections[0].items[0].body: link 'notes.html' is not an http(s) URL"],
            id="markdown-relative-link",
        ),
        pytest.param(
            VALID.replace(ITEM, ITEM + "        body: Again\n"),
            ["issue.yaml:9: sections[0].items[0].body: duplicate field (already set on line 7)"],
            id="duplicate-body",
        ),
        pytest.param(
            VALID + "intro: Hi {{nl:unsubscribe_url}}\n",
            [
                "issue.yaml:9: intro: contains '{{nl:', which is reserved for reader details",
            ],
            id="reserved-placeholder",
        ),
        pytest.param(
            "title: [unclosed\ndate: 2023-11-06\n",
            ["issue.yaml:2: YAML syntax: did not find expected ',' or ']'"],
            id="yaml-syntax",
        ),
        pytest.param(
            "- just\n- a list\n",
            ["issue.yaml:1: file: expected a mapping of fields, got a list"],
            id="not-a-mapping",
        ),
        pytest.param(
            "", ["issue.yaml:1: file: empty (an issue needs title, date and sections)"], id="empty"
        ),
        pytest.param(
            "!!python/object/apply:os.system [echo hacked]\n",
            ["issue.yaml:1: file: expected a mapping of fields, got a list"],
            id="unsafe-tag-never-constructed",
        ),
    ],
)
def test_validation_errors(text: str, expected: list[str]) -> None:
    assert errors_of(text) == expected


def test_all_errors_are_reported_at_once_in_line_order() -> None:
    text = """\
        title: T
        date: 2023-02-30
        sections:
          - titel: S
            items:
              - title: A
                url: ftp://example.com/a
                body: Body
                button: Go
              - url: https://example.com/b
                image: {src: https://example.com/b.png}
        preheader: %s
        """ % ("p" * 200)
    assert errors_of(text) == [
        "issue.yaml:2: date: expected a date like 2023-11-06, got '2023-02-30'",
        "issue.yaml:4: sections[0].titel: unknown field (did you mean 'title'?)",
        "issue.yaml:7: sections[0].items[0].url: not an http(s) URL",
        "issue.yaml:10: sections[0].items[1].title: missing (required)",
        "issue.yaml:10: sections[0].items[1].body: missing (required)",
        "issue.yaml:11: sections[0].items[1].image.alt: missing: every image needs alt text",
        "issue.yaml:12: preheader: too long: 200 characters (at most 150)",
    ]


def test_alias_bomb_is_never_expanded() -> None:
    lines = ["title: T", "date: 2023-11-06", "x0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        refs = ", ".join([f"*a{n - 1}"] * 10)
        lines.append(f"x{n}: &a{n} [{refs}]")
    lines.append("sections: [{items: *a8}]")
    started = time.perf_counter()
    errors = errors_of("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0  # 10**9 nodes if anything expanded them
    assert errors[0] == "issue.yaml:3: x0: unknown field"
    assert any(
        e.endswith(" sections[0].items[0]: expected a mapping of fields, got a list")
        for e in errors
    )


def test_very_many_items_are_refused() -> None:
    item = "{title: T, body: B}"
    text = (
        "title: T\ndate: 2023-11-06\nsections:\n  - items: [" + ", ".join([item] * 20_000) + "]\n"
    )
    assert errors_of(text) == ["issue.yaml:1: file: too many elements (at most 50000)"]


def test_load_issue_reads_files_and_reports_unreadable_ones(tmp_path) -> None:
    path = tmp_path / "issue.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert load_issue(path).title == "Unlocking the Kernel"
    path.write_bytes(b"title: caf\xe9\n")
    with pytest.raises(IssueFileError) as caught:
        load_issue(path)
    assert caught.value.errors == [f"{path}:1: file: not UTF-8 text"]
    with pytest.raises(IssueFileError) as caught:
        load_issue(tmp_path / "missing.yaml")
    assert caught.value.errors[0].endswith("file: cannot read it (No such file or directory)")


def test_oversized_file_is_refused() -> None:
    errors = errors_of(VALID + "intro: |\n" + ("  " + "x" * 99 + "\n") * 11_000)
    assert errors == ["issue.yaml:1: file: too large (at most 1 MB)"]


# YAML escapes reach every control character; each is refused with the field and line.
CONTROL_ESCAPES = [
    ("\\x00", "U+0000 (NUL)"),
    ("\\x1b", "U+001B (ESCAPE)"),
    ("\\v", "U+000B (VERTICAL TAB)"),
    ("\\f", "U+000C (FORM FEED)"),
    ("\\x1c", "U+001C"),
    ("\\x1d", "U+001D"),
    ("\\x1e", "U+001E"),
    ("\\x7f", "U+007F"),
    ("\\N", "U+0085 (NEXT LINE)"),
    ("\\x9b", "U+009B"),
    ("\\L", "U+2028 (LINE SEPARATOR)"),
    ("\\P", "U+2029 (PARAGRAPH SEPARATOR)"),
]


@pytest.mark.parametrize(("escape", "named"), CONTROL_ESCAPES, ids=[n for _, n in CONTROL_ESCAPES])
@pytest.mark.parametrize(
    ("field", "where"),
    [
        ("subject", 'subject: "Issue{c}42"\n'),
        ("preheader", 'preheader: "a{c}b"\n'),
        ("title", None),
        ("sections[0].items[0].title", None),
        ("sections[0].items[0].body", None),
    ],
)
def test_control_characters_are_refused_naming_field_and_line(escape, named, field, where):
    if field == "title":
        text = VALID.replace("title: Unlocking the Kernel", f'title: "Unlocking{escape}Kernel"')
        line = 1
    elif field == "sections[0].items[0].title":
        text = VALID.replace("- title: Unlocking The Kernel", f'- title: "A{escape}B"')
        line = 6
    elif field == "sections[0].items[0].body":
        text = VALID.replace(
            "body: It has been", f'body: "First line\\n\\nsecond {escape} line, has been'
        ).replace("eBPF.\n", 'eBPF."\n')
        line = 8
    else:
        text = VALID + where.format(c=escape)
        line = 9
    (error,) = errors_of(text)
    assert error.startswith(f"issue.yaml:{line}: {field}: contains the control character")
    assert named in error


def test_tabs_and_line_breaks_stay_allowed_in_markdown():
    text = VALID.replace(
        "body: It has been an incredible couple of years for eBPF.",
        "body: |\n          First\tparagraph.\n\n          Second.",
    )
    assert load_issue_text(text).sections[0].items[0].body.startswith("First\tparagraph.")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("de", "de"), ("pt_br", "pt-BR"), ("AR", "ar"), ("ja-JP", "ja-JP")],
)
def test_language_is_a_bcp47_tag(value, expected):
    assert load_issue_text(VALID + f"language: {value}\n").language == expected


def test_a_bad_language_is_an_error_with_its_line():
    (error,) = errors_of(VALID + "language: klingon!\n")
    assert error.startswith("issue.yaml:9: language: 'klingon!' is not a language tag")
