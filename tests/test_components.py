"""One set of components: every button and status badge in the templates, scripts and CSS.

The rendered pages are checked in Chromium too (tests/ui_components.py, used by
test_console_screens.py and test_reader_paths_browser.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ui_components import BUTTON_CLASSES
from tests.ui_components import BUTTON_VARIANTS
from tests.ui_components import STATUSES

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
PAGES = sorted(p for p in TEMPLATES.rglob("*.html") if p.name != "_components.html")
CSS = sorted(STATIC.glob("*.css"))

_BUTTON_TAG = re.compile(r"<button\b[^>]*>", re.S)
_LINK_BUTTON_TAG = re.compile(r"<a\b[^>]*\bclass=\"[^\"]*\bbutton\b[^\"]*\"[^>]*>", re.S)
_CLASS = re.compile(r"\bclass=\"([^\"]*)\"")


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _button_problem(tag: str) -> str | None:
    match = _CLASS.search(tag)
    if match is None:
        return 'no class (wants class="button ...")'
    if "{" in match.group(1):
        return "a computed class: write each variant out"
    classes = set(match.group(1).split())
    if "button" not in classes or not classes <= BUTTON_CLASSES:
        return f"classes {sorted(classes)} (allowed: {sorted(BUTTON_CLASSES)})"
    if len(classes & BUTTON_VARIANTS) > 1:
        return "more than one variant"
    return None


@pytest.mark.parametrize("template", PAGES, ids=_name)
def test_every_button_is_a_component_button(template: Path) -> None:
    source = template.read_text()
    found = _BUTTON_TAG.findall(source) + _LINK_BUTTON_TAG.findall(source)
    wrong = [(tag, problem) for tag in found if (problem := _button_problem(tag))]
    assert wrong == []
    assert not re.search(r"<input\b[^>]*type=\"?(submit|button|reset)", source), "use <button>"


@pytest.mark.parametrize("template", PAGES, ids=_name)
def test_status_badges_come_from_the_macro(template: Path) -> None:
    source = template.read_text()
    assert not re.search(r"class=\"status\b|\bstatus-\{\{", source), "use badge() from _components"


def test_scripts_make_component_buttons_and_badges() -> None:
    for script in STATIC.glob("*.js"):
        source = script.read_text()
        made = re.findall(r"\bbutton\.className = \"([^\"]*)\"", source)
        if 'createElement("button")' in source:
            assert made, f"{script.name} makes a button without the component's classes"
        for classes in made:
            assert _button_problem(f'<button class="{classes}">') is None, (script.name, classes)
        # A badge a script updates keeps the macro's shape: "status status-<value>".
        for badge in re.findall(r"className = (\"status[^;]*);", source):
            assert badge.startswith('"status status-" + '), (script.name, badge)


def _rules(css: str) -> list[tuple[str, str]]:
    """Return (selector, body) for each rule, media queries unwrapped."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@media[^{]*\{", "", css)
    return [(sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)]


def test_buttons_are_styled_in_one_place() -> None:
    """Only the component block in site.css styles buttons: no page-specific overrides."""
    outside = []
    for sheet in CSS:
        for selector, _body in _rules(sheet.read_text()):
            mentions = re.search(
                r"(^|[\s,>+~(])button(?![\w-])|\.(button|secondary|danger|link)(?![\w-])", selector
            )
            if mentions and sheet.name != "site.css":
                outside.append(f"{sheet.name}: {selector}")
    assert outside == []


def test_every_status_has_exactly_one_colour() -> None:
    """Each status is named once in admin.css's badge rules, and nowhere else."""
    named: dict[str, list[str]] = {}
    for sheet in CSS:
        for selector, _body in _rules(sheet.read_text()):
            for status in re.findall(r"\.status-([a-z_]+)\b", selector):
                named.setdefault(status, []).append(sheet.name)
    assert {status: sheets for status, sheets in named.items() if sheets != ["admin.css"]} == {}
    assert set(named) == STATUSES


def test_destructive_buttons_ask_first() -> None:
    """A danger button sits behind a confirmation: a confirm step, a typed check or <details>."""
    guarded = re.compile(r"confirm|<details|required", re.I)
    for template in PAGES:
        source = template.read_text()
        for match in re.finditer(r"<button\b[^>]*\bdanger\b[^>]*>", source):
            form_start = source.rfind("<form", 0, match.start())
            context = source[source.rfind("<section", 0, form_start) : match.start()]
            if template.parts[-2] == "public":
                continue  # the reader's own unsubscribe page is the confirmation step
            assert guarded.search(context), f"{_name(template)}: {match.group(0)}"
