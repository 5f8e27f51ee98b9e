"""Per-reader parts of a compiled issue: placeholders filled cheaply for every reader.

A compiled issue holds markers such as ``{{nl:unsubscribe_url}}`` and regions shown only in
the email (``{{nl:email}}...{{nl:/email}}``) or only on the web page (``{{nl:web}}...``).
Each compiled string is split once (cached) into its fixed pieces and slot names, so
filling it for a reader is one "".join over a short list: this is the hot path of sending.
(A %-format string was 14x slower: formatting scans all 45 KB; join only copies it.)

The greeting is compiled in the issue's language in both forms, for a reader with a name
and without (``{{nl:named}}Hallo {{nl:name}},{{nl:/named}}{{nl:anonymous}}Hallo,...``).
Splitting turns the pair into one slot whose name carries both forms; the reader's values
(``reader_values``) fill such a slot from the reader's name.
"""

from __future__ import annotations

import json
import re
import threading
from html import escape

# Issues compiled before greetings were translated hold this; it is filled in English.
GREETING = "{{nl:greeting}}"
NAME = "{{nl:name}}"
WEB_URL = "{{nl:web_url}}"
UNSUBSCRIBE_URL = "{{nl:unsubscribe_url}}"
SUBSCRIBE_URL = "{{nl:subscribe_url}}"
EMAIL_ONLY = ("{{nl:email}}", "{{nl:/email}}")
WEB_ONLY = ("{{nl:web}}", "{{nl:/web}}")
NAMED = ("{{nl:named}}", "{{nl:/named}}")
ANONYMOUS = ("{{nl:anonymous}}", "{{nl:/anonymous}}")

_SLOT_RE = re.compile(r"\{\{nl:([a-z_]+)\}\}")
_SLOTS = {"greeting", "web_url", "unsubscribe_url", "subscribe_url"}
_REGIONS = {
    "email": (EMAIL_ONLY, WEB_ONLY),  # (kept, dropped)
    "web": (WEB_ONLY, EMAIL_ONLY),
}
_GREETING_RE = re.compile(
    re.escape(NAMED[0])
    + r"(.*?)"
    + re.escape(NAME)
    + r"(.*?)"
    + re.escape(NAMED[1])
    + re.escape(ANONYMOUS[0])
    + r"(.*?)"
    + re.escape(ANONYMOUS[1]),
    re.DOTALL,
)
_GREETING_MARK = "{{nl:greeting_forms}}"
# A slot name that carries the greeting's forms: "greeting:" + JSON [before, after, bare].
_FORMS = "greeting:"


def greeting(named: str, anonymous: str) -> str:
    """Return the compiled greeting: both forms (`named` holds NAME where the name goes)."""
    return f"{NAMED[0]}{named}{NAMED[1]}{ANONYMOUS[0]}{anonymous}{ANONYMOUS[1]}"


_MAX_CACHED = 32

_lock = threading.Lock()
Template = tuple[tuple[str, ...], tuple[str, ...]]  # (fixed pieces, slot names between them)

_by_text: dict[tuple[str, str], Template] = {}
# Fast path when the caller passes the same string object again (no re-hash of 45 KB).
_by_identity: dict[tuple[str, int], tuple[str, Template]] = {}


def _prepare(compiled: str, mode: str) -> Template:
    kept, dropped = _REGIONS[mode]
    drop = re.compile(re.escape(dropped[0]) + r".*?" + re.escape(dropped[1]), re.DOTALL)
    text = drop.sub("", compiled).replace(kept[0], "").replace(kept[1], "")
    forms = [json.dumps(match.groups()) for match in _GREETING_RE.finditer(text)]
    text = _GREETING_RE.sub(_GREETING_MARK, text)
    pieces = _SLOT_RE.split(text)
    found = iter(forms)
    names = tuple(
        _FORMS + next(found) if name == "greeting_forms" else name for name in pieces[1::2]
    )
    unknown = {name for name in names if not name.startswith(_FORMS)} - _SLOTS
    if unknown:
        raise ValueError(f"unknown placeholders {sorted(unknown)} in a compiled issue")
    return tuple(pieces[0::2]), names


class _ReaderValues(dict):
    """One reader's slot values; a greeting slot is filled from its forms and the name."""

    def __init__(self, values: dict[str, str], name: str) -> None:
        super().__init__(values)
        self.name = name

    def __missing__(self, key: str) -> str:
        if not key.startswith(_FORMS):
            raise KeyError(key)
        before, after, bare = json.loads(key[len(_FORMS) :])
        value = f"{before}{self.name}{after}" if self.name else bare
        self[key] = value
        return value


def _fill(template: Template, values: dict[str, str]) -> str:
    fixed, names = template
    out: list[str | None] = [None] * (len(fixed) + len(names))
    out[0::2] = fixed
    out[1::2] = [values[name] for name in names]
    return "".join(out)  # type: ignore[arg-type]


def template_for(compiled: str, mode: str) -> Template:
    """Return the cached split form of a compiled part in "email" or "web" mode."""
    key = (mode, id(compiled))
    hit = _by_identity.get(key)
    if hit is not None and hit[0] is compiled:
        return hit[1]
    prepared = _by_text.get((mode, compiled))
    if prepared is None:
        prepared = _prepare(compiled, mode)
    with _lock:
        if len(_by_text) >= _MAX_CACHED:
            _by_text.clear()
            _by_identity.clear()
        _by_text[(mode, compiled)] = prepared
        _by_identity[key] = (compiled, prepared)
    return prepared


def reader_values(
    *, unsubscribe_url: str, web_url: str, name: str | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Return one reader's placeholder values for the HTML part and for the text part."""
    html = _ReaderValues(
        {
            "greeting": f"Hi {escape(name)}," if name else "Hello,",
            "web_url": escape(web_url),
            "unsubscribe_url": escape(unsubscribe_url),
        },
        escape(name or ""),
    )
    text = _ReaderValues(
        {
            "greeting": f"Hi {name}," if name else "Hello,",
            "web_url": web_url,
            "unsubscribe_url": unsubscribe_url,
        },
        name or "",
    )
    return html, text


def render_for_reader(
    compiled_html: str,
    compiled_text: str,
    *,
    unsubscribe_url: str,
    web_url: str,
    name: str | None,
) -> tuple[str, str]:
    """Fill one reader's unsubscribe link, web-version link and name into HTML and text."""
    html_values, text_values = reader_values(
        unsubscribe_url=unsubscribe_url, web_url=web_url, name=name
    )
    html = _fill(template_for(compiled_html, "email"), html_values)
    text = _fill(template_for(compiled_text, "email"), text_values)
    return html, text


def render_web_version(compiled_html: str, *, web_url: str, subscribe_url: str) -> str:
    """Return the archive page of an issue: no personal links, a subscribe link instead."""
    return _fill(
        template_for(compiled_html, "web"),
        _ReaderValues(
            {
                "greeting": "",
                "web_url": escape(web_url),
                "unsubscribe_url": "",
                "subscribe_url": escape(subscribe_url),
            },
            "",
        ),
    )
