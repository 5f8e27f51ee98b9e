"""Header fields that cannot be forged: every editor's and reader's text is encoded here.

The email package decodes RFC 2047 encoded words in a value it is handed and writes text
that merely looks like an encoded word unchanged: a subject "=?utf-8?q?x=0D=0ABcc:...?="
became a real Bcc line. So no such text ever goes through its header parser. This module
writes the header lines itself: plain ASCII text only when it is printable and cannot be
read as an encoded word, otherwise base64 encoded words (whose decoded text can contain
no line break: control characters are taken out first). Address fields carry the domain
in IDNA 2008 (punycode) form and refuse a non-ASCII local part (SES cannot deliver it).
"""

from __future__ import annotations

import base64
import re
import unicodedata

import idna

MAX_LINE = 78  # RFC 5322 §2.1.1: SHOULD be no more than 78 characters
# Unicode "other, control" (C0, DEL, C1 including U+0085), line and paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_PLAIN = re.compile(r"^[\x20-\x7e]*$")
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+$")
_URL = re.compile(r"^(https?|mailto):[\x21-\x7e]+$")


class HeaderError(ValueError):
    """A value cannot be written as this header at all (not merely encoded)."""


def control_characters(text: str) -> list[str]:
    """Return the distinct control characters in a text (categories Cc, Zl, Zp), in order."""
    found = [ch for ch in text if unicodedata.category(ch) in CONTROL_CATEGORIES]
    return list(dict.fromkeys(found))


def describe(ch: str) -> str:
    """Name a character for an error message: U+2028 (LINE SEPARATOR)."""
    name = unicodedata.name(ch, "")
    if not name and unicodedata.category(ch) == "Cc":
        name = {
            "\t": "TAB",
            "\n": "LINE FEED",
            "\r": "CARRIAGE RETURN",
            "\x0b": "VERTICAL TAB",
            "\x0c": "FORM FEED",
            "\x1b": "ESCAPE",
            "\x00": "NUL",
            "\x85": "NEXT LINE",
        }.get(ch, "control character")
    return f"U+{ord(ch):04X} ({name})" if name else f"U+{ord(ch):04X}"


def control_problem(text: str) -> str | None:
    """Return why a one-line text cannot be used (its control characters), or None."""
    found = control_characters(text)
    if not found:
        return None
    names = ", ".join(describe(ch) for ch in found[:5])
    return f"contains control characters ({names}): use plain text on one line"


def clean(text: str) -> str:
    """Return one line of text: control characters become spaces, the ends are trimmed."""
    if not any(unicodedata.category(ch) in CONTROL_CATEGORIES for ch in text):
        return text.strip()
    return "".join(
        " " if unicodedata.category(ch) in CONTROL_CATEGORIES else ch for ch in text
    ).strip()


def _encoded_words(text: str, first_budget: int) -> list[str]:
    """Split text into base64 encoded words, whole characters each, within line budgets."""
    words: list[str] = []
    chunk = b""
    budget = first_budget
    for ch in text:
        data = ch.encode("utf-8", "replace")
        # 12 = len("=?utf-8?b?") + len("?="); base64 makes 4 characters of 3 bytes.
        if chunk and ((len(chunk) + len(data) + 2) // 3) * 4 + 12 > budget:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk = b""
            budget = min(75, MAX_LINE - 1)  # continuation lines start with one space
        chunk += data
    if chunk or not words:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return words


def _needs_encoding(text: str) -> bool:
    if not _PLAIN.match(text) or "=?" in text or "  " in text:
        return True
    return any(len(word) > MAX_LINE - 2 for word in text.split(" "))


def _fold_words(name: str, words: list[str]) -> bytes:
    """Join words with spaces into a field, folding (CRLF + space) before one that does not fit."""
    line = f"{name}:"
    lines: list[str] = []
    for index, word in enumerate(words):
        piece = " " + word
        if index and len(line) + len(piece) > MAX_LINE:
            lines.append(line)
            line = " " + word
        else:
            line += piece
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def unstructured(name: str, text: str) -> bytes:
    """Return a whole unstructured field (Subject, ...): 'Name: value' CRLF, folded."""
    value = clean(text)
    if not _needs_encoding(value):
        # Fold only at single spaces between words, so unfolding gives the text back.
        return _fold_words(name, value.split(" "))
    return _fold_words(name, _encoded_words(value, MAX_LINE - len(name) - 2))


def phrase_words(display_name: str, first_budget: int = 60) -> list[str]:
    """Return a display name as ASCII words: atoms, one quoted string, or encoded words."""
    value = clean(display_name)
    if not value:
        return []
    if not _needs_encoding(value):
        if _ATOM.match(value) and "  " not in value:
            return value.split(" ")
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= MAX_LINE - 2:
            return [quoted]
    return _encoded_words(value, first_budget)


def wire_address(address: str) -> str:
    """Return an address as it goes on the wire: ASCII local part, IDNA 2008 domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise HeaderError(f"not an email address: {address!r}")
    if not _LOCAL.match(local) or local.startswith(".") or ".." in local:
        raise HeaderError(
            f"{address!r}: only plain ASCII is possible before the @ (SES cannot deliver it)"
        )
    try:
        ascii_domain = domain.encode("ascii").decode("ascii")
        if ascii_domain.lower().startswith("xn--") or ".xn--" in ascii_domain.lower():
            idna.decode(ascii_domain)  # a punycode label must be valid IDNA 2008
    except UnicodeEncodeError:
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise HeaderError(f"{address!r}: the domain is not a valid IDNA name: {exc}") from None
    except idna.IDNAError as exc:
        raise HeaderError(f"{address!r}: the domain is not a valid IDNA name: {exc}") from None
    if not re.match(r"^[A-Za-z0-9.-]+$", ascii_domain):
        raise HeaderError(f"not an email address: {address!r}")
    return f"{local}@{ascii_domain}"


def address_field(name: str, address: str, display_name: str | None = None) -> bytes:
    """Return a whole address field (From, To, Reply-To): 'Name: phrase <addr>' CRLF."""
    angle = f"<{wire_address(address)}>"
    words = phrase_words(display_name or "", MAX_LINE - len(name) - 2)
    return _fold_words(name, [*words, angle])


def list_id_field(label: str, list_id: str) -> bytes:
    """Return the RFC 2919 List-Id field: the list's name as a phrase, then <list-id>."""
    if not re.match(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+$", list_id):
        raise HeaderError(f"not a list id: {list_id!r}")
    words = phrase_words(label, MAX_LINE - len("List-Id") - 2)
    return _fold_words("List-Id", [*words, f"<{list_id}>"])


def url_list_field(name: str, urls: list[str]) -> bytes:
    """Return a field of <URL> items (RFC 2369): never encoded, folded at the commas."""
    for url in urls:
        if not _URL.match(url) or any(ch in url for ch in "<>,"):
            raise HeaderError(f"{name}: not a plain ASCII URL: {url!r}")
    items = [f"<{url}>" for url in urls]
    return _fold_words(name, [item + "," for item in items[:-1]] + items[-1:])


def plain_field(name: str, value: str) -> bytes:
    """Return a field whose value is our own ASCII token text (Date, Message-ID, ...)."""
    if not _PLAIN.match(value) or not value.strip():
        raise HeaderError(f"{name}: not plain ASCII: {value!r}")
    return f"{name}: {value}\r\n".encode("ascii")
