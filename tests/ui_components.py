"""The console's and reader pages' components, as a browser sees them (tests/test_components.py
checks the templates; this checks the rendered page, JavaScript-made buttons included)."""

from __future__ import annotations

from typing import Any

from newsletter import models

BUTTON_VARIANTS = frozenset({"secondary", "danger", "link"})
BUTTON_CLASSES = BUTTON_VARIANTS | {"button", "small"}
# Every status a badge can show: the enums' values, and an erased subscriber.
STATUSES = frozenset(
    status.value
    for kind in (
        models.SubscriptionStatus,
        models.IssueStatus,
        models.DeliveryStatus,
        models.ImportStatus,
        models.FeedbackKind,
        models.WorkerStatus,
    )
    for status in kind
) | {"erased"}

# What the page says about each button and badge: its classes and the computed style that
# makes it look like what it is.
_SURVEY = """() => {
  const look = (el) => {
    const s = getComputedStyle(el);
    return [s.backgroundColor, s.color, s.borderTopColor, s.borderTopWidth, s.borderRadius,
            s.fontSize, s.fontWeight, s.paddingTop, s.paddingLeft,
            // "auto" is how a flex item reports no minimum height
            s.minHeight === "auto" ? "0px" : s.minHeight];
  };
  const buttons = [...document.querySelectorAll(
      "button, a.button, input[type=submit], input[type=button], input[type=reset], [role=button]")]
    .map((el) => ({tag: el.tagName.toLowerCase(), classes: [...el.classList],
                   text: el.textContent.trim().slice(0, 40), look: look(el)}));
  const badges = [...document.querySelectorAll("[class*=status]")]
    .filter((el) => [...el.classList].some((c) => c === "status" || c.startsWith("status-")))
    .map((el) => ({tag: el.tagName.toLowerCase(), classes: [...el.classList],
                   text: el.textContent.trim(), look: look(el)}));
  return {buttons, badges};
}"""


def survey(page: Any) -> dict[str, list[dict[str, Any]]]:
    """Return every button-like element and every status badge on the page."""
    page.mouse.move(0, 0)  # nothing hovered: the look compared is the resting one
    return page.evaluate(_SURVEY)


def problems(found: dict[str, list[dict[str, Any]]], where: str) -> list[str]:
    """Say which buttons and badges are outside the component set."""
    wrong = []
    for button in found["buttons"]:
        classes = set(button["classes"])
        variants = classes & BUTTON_VARIANTS
        if button["tag"] not in ("button", "a"):
            wrong.append(
                f"{where}: <{button['tag']}> {button['text']!r}: use <button class=button>"
            )
        elif "button" not in classes or not classes <= BUTTON_CLASSES or len(variants) > 1:
            wrong.append(f"{where}: {button['text']!r} has classes {sorted(classes)}")
    for badge in found["badges"]:
        classes = badge["classes"]
        status = classes[1].removeprefix("status-") if len(classes) == 2 else None
        if badge["tag"] != "span" or classes[0] != "status" or status not in STATUSES:
            wrong.append(f"{where}: badge {badge['text']!r} has classes {classes}")
    return wrong


def looks(found: dict[str, list[dict[str, Any]]], into: dict[str, set[str]]) -> None:
    """Collect the computed look of each kind of button and badge, to compare across pages."""
    for button in found["buttons"]:
        kind = " ".join(sorted(set(button["classes"]) - {"button"})) or "primary"
        look = button["look"]
        if "link" in kind:  # a link button takes the text's colour, size and weight
            look = [value for n, value in enumerate(look) if n not in _TEXT]
        into.setdefault(f"button {kind}", set()).add(" ".join(look))
    for badge in found["badges"]:
        into.setdefault(f"badge {' '.join(badge['classes'])}", set()).add(" ".join(badge["look"]))


# Positions of color, border colour (currentColor for a link), font size and weight in a look.
_TEXT = frozenset({1, 2, 5, 6})
