"""Per-reader parts of a compiled issue: placeholders filled cheaply for every reader.

A compiled issue holds markers such as ``{{nl:unsubscribe_url}}`` and regions shown only in
the email (``{{nl:email}}...{{nl:/email}}``) or only on the web page (``{{nl:web}}...``).
Each compiled string is turned once into a %-format string (cached), so filling it for a
reader is one C-level formatting call: this is the hot path of sending.
"""

from __future__ import annotations

import re
import threading
from html import escape

GREETING = "{{nl:greeting}}"
WEB_URL = "{{nl:web_url}}"
UNSUBSCRIBE_URL = "{{nl:unsubscribe_url}}"
SUBSCRIBE_URL = "{{nl:subscribe_url}}"
EMAIL_ONLY = ("{{nl:email}}", "{{nl:/email}}")
WEB_ONLY = ("{{nl:web}}", "{{nl:/web}}")

_SLOT_RE = re.compile(r"\{\{nl:([a-z_]+)\}\}")
_SLOTS = {"greeting", "web_url", "unsubscribe_url", "subscribe_url"}
_REGIONS = {
    "email": (EMAIL_ONLY, WEB_ONLY),  # (kept, dropped)
    "web": (WEB_ONLY, EMAIL_ONLY),
}
_MAX_CACHED = 32

_lock = threading.Lock()
_by_text: dict[tuple[str, str], str] = {}
# Fast path when the caller passes the same string object again (no re-hash of 60 KB).
_by_identity: dict[tuple[str, int], tuple[str, str]] = {}


def _prepare(compiled: str, mode: str) -> str:
    kept, dropped = _REGIONS[mode]
    drop = re.compile(re.escape(dropped[0]) + r".*?" + re.escape(dropped[1]), re.DOTALL)
    text = drop.sub("", compiled).replace(kept[0], "").replace(kept[1], "")
    pieces = _SLOT_RE.split(text.replace("%", "%%"))
    for index in range(1, len(pieces), 2):
        name = pieces[index]
        if name not in _SLOTS:
            raise ValueError(f"unknown placeholder {{{{nl:{name}}}}} in a compiled issue")
        pieces[index] = f"%({name})s"
    return "".join(pieces)


def template_for(compiled: str, mode: str) -> str:
    """Return the cached %-format string for a compiled part in "email" or "web" mode."""
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


def render_for_reader(
    compiled_html: str,
    compiled_text: str,
    *,
    unsubscribe_url: str,
    web_url: str,
    name: str | None,
) -> tuple[str, str]:
    """Fill one reader's unsubscribe link, web-version link and name into HTML and text."""
    html_template = template_for(compiled_html, "email")
    text_template = template_for(compiled_text, "email")
    html = html_template % {
        "greeting": f"Hi {escape(name)}," if name else "Hello,",
        "web_url": escape(web_url),
        "unsubscribe_url": escape(unsubscribe_url),
        "subscribe_url": "",
    }
    text = text_template % {
        "greeting": f"Hi {name}," if name else "Hello,",
        "web_url": web_url,
        "unsubscribe_url": unsubscribe_url,
        "subscribe_url": "",
    }
    return html, text


def render_web_version(compiled_html: str, *, web_url: str, subscribe_url: str) -> str:
    """Return the archive page of an issue: no personal links, a subscribe link instead."""
    return template_for(compiled_html, "web") % {
        "greeting": "",
        "web_url": escape(web_url),
        "unsubscribe_url": "",
        "subscribe_url": escape(subscribe_url),
    }
