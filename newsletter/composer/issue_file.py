"""The issue file: safe YAML loading and validation with a file:line for every error."""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit

import idna
import yaml
from markdown_it.token import Token

from newsletter.composer import markdown
from newsletter.errors import NewsletterError
from newsletter.headers import CONTROL_CATEGORIES
from newsletter.headers import describe
from newsletter.i18n import InvalidLanguage
from newsletter.i18n import normalize_language

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 50_000
MAX_PREHEADER = 150
MAX_LINE_TEXT = 500
MAX_SLUG = 200
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Per-reader placeholders look like this; editors' text must not forge one.
RESERVED = "{{nl:"

# libyaml's parser when PyYAML has it (about 18x faster); both only build plain data.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class IssueFileError(NewsletterError):
    """The issue file is not valid; `.errors` holds every problem as FILE:LINE: path: message."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass
class Image:
    src: str
    alt: str


@dataclass
class Item:
    title: str
    body: str
    url: str | None = None
    image: Image | None = None
    button: str | None = None
    source: str | None = None


@dataclass
class Section:
    items: list[Item]
    title: str | None = None


@dataclass
class IssueDocument:
    """A validated issue: plain values, Markdown kept as written."""

    title: str
    date: dt.date
    subject: str
    preheader: str | None
    slug: str
    intro: str | None
    sections: list[Section]
    outro: str | None
    source_yaml: str = field(repr=False)
    # BCP 47 tag from the file's `language:`; None means the list's language.
    language: str | None = None
    # Markdown parsed while validating, so compiling does not parse it again.
    _parsed: dict[str, list[Token]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def markdown_tokens(self, source: str) -> list[Token]:
        """Return the parsed Markdown of one of this issue's fields."""
        tokens = self._parsed.get(source)
        if tokens is None:
            tokens = self._parsed[source] = markdown.parse(source)
        return tokens


# Characters a URL may keep as they are (RFC 3986 unreserved and reserved, and %); any
# other (", <, >, `, ', non-ASCII) is percent-encoded, so no URL can break out of an href.
_URL_SAFE = "-._~:/?#[]@!$&()*+,;=%"


def safe_url(url: str) -> str:
    """Return an http(s) URL with every character that is not URL syntax percent-encoded."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = parts.netloc
    if host and not host.isascii():
        try:
            netloc = netloc.replace(host, idna.encode(host, uts46=True).decode("ascii"))
        except idna.IDNAError:
            pass
    rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
    return f"{parts.scheme}://{quote(netloc, safe=_URL_SAFE)}{quote(rest, safe=_URL_SAFE)}"


def slugify(text: str) -> str:
    """Return a URL slug for a title: ASCII letters, digits and hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:80].rstrip("-")


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        return "a number"
    if node.tag == "tag:yaml.org,2002:bool":
        return "true/false"
    if node.tag == "tag:yaml.org,2002:timestamp":
        return "a date"
    return "text"


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL)


class _Checker:
    """Walks the composed YAML tree, collecting every error with its line and field path."""

    def __init__(self, filename: str, loader: Any) -> None:
        self.filename = filename
        self.loader = loader
        self.errors: list[tuple[int, str]] = []
        self.visited = 0
        self.parsed: dict[str, list[Token]] = {}

    def error(self, node: yaml.Node, path: str, message: str, line: int | None = None) -> None:
        number = line if line is not None else node.start_mark.line + 1
        self.errors.append((number, f"{self.filename}:{number}: {path}: {message}"))

    # -- structure --

    def mapping(
        self, node: yaml.Node, path: str, fields: dict[str, bool]
    ) -> dict[str, yaml.Node] | None:
        """Return the mapping's key nodes by name; report unknown, duplicate and missing keys."""
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _TooBig
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path or "file", f"expected a mapping of fields, got {_kind(node)}")
            return None
        found: dict[str, yaml.Node] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or key not in fields:
                suggestion = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean {suggestion[0]!r}?)" if suggestion else ""
                self.error(key_node, where, f"unknown field{hint}")
                continue
            if key in found:
                self.error(key_node, where, f"duplicate field (already set on line {lines[key]})")
                continue
            found[key] = value_node
            lines[key] = key_node.start_mark.line + 1
        for name, required in fields.items():
            if required and name not in found:
                where = f"{path}.{name}" if path else name
                self.error(node, where, "missing (required)")
        return found

    def sequence(self, node: yaml.Node, path: str, what: str) -> list[yaml.Node] | None:
        self.visited += 1
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, path, f"expected a list of {what}s, got {_kind(node)}")
            return None
        if not node.value:
            self.error(node, path, f"needs at least one {what}")
            return None
        return node.value

    # -- values --

    def text(
        self,
        node: yaml.Node | None,
        path: str,
        *,
        required: bool = False,
        one_line: bool = True,
        max_length: int | None = MAX_LINE_TEXT,
    ) -> str | None:
        """Return a text value (numbers and dates are taken as the text written)."""
        if node is None:
            return None
        self.visited += 1
        if _is_null(node) or (isinstance(node, yaml.ScalarNode) and not node.value.strip()):
            if required:
                self.error(node, path, "must not be empty")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, f"expected text, got {_kind(node)}")
            return None
        value = node.value
        if RESERVED in value:
            self.error(node, path, f"contains {RESERVED!r}, which is reserved for reader details")
            return None
        if one_line:
            value = value.strip()
            if "\n" in value or "\r" in value:
                self.error(node, path, "must be one line")
                return None
        odd = _control_offset(value, allow_newlines=not one_line)
        if odd is not None:
            offset, ch = odd
            line = node.start_mark.line + 1
            if node.style == "|":
                # A literal block starts on the line after its indicator, line for line.
                line += 1 + value.count("\n", 0, offset)
            self.error(
                node,
                path,
                f"contains the control character {describe(ch)}: "
                + ("use plain text on one line" if one_line else "remove it"),
                line=line,
            )
            return None
        if max_length is not None and len(value) > max_length:
            self.error(node, path, f"too long: {len(value)} characters (at most {max_length})")
            return None
        return value

    def url(self, node: yaml.Node | None, path: str, *, required: bool = False) -> str | None:
        value = self.text(node, path, required=required, max_length=2000)
        if value is None or node is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
            self.error(node, path, "not an http(s) URL")
            return None
        return safe_url(value)

    def markdown(self, node: yaml.Node | None, path: str, *, required: bool = False) -> str | None:
        value = self.text(node, path, required=required, one_line=False, max_length=100_000)
        if value is None:
            return None
        tokens = self.parsed[value] = markdown.parse(value)
        assert isinstance(node, yaml.ScalarNode)  # text() returned a value: a scalar
        # A block scalar (|) starts on the line after its indicator.
        first = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)
        for offset, message in markdown.link_problems(tokens):
            self.error(node, path, message, line=first + offset)
        return value

    def date(self, node: yaml.Node | None, path: str) -> dt.date | None:
        if node is None:
            return None
        self.visited += 1
        expected = "expected a date like 2023-11-06"
        if _is_null(node) or not isinstance(node, yaml.ScalarNode):
            self.error(node, path, f"{expected}, got {_kind(node)}")
            return None
        try:
            if node.tag == _STR:
                value: Any = dt.date.fromisoformat(node.value.strip())
            elif node.tag == _TIMESTAMP:
                value = self.loader.construct_object(node)
            else:  # numbers, and tags such as !!python/...: never constructed
                value = None
        except (ValueError, yaml.YAMLError):
            self.error(node, path, f"{expected}, got {node.value!r}")
            return None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            self.error(node, path, f"{expected}, got {node.value!r}")
            return None
        return value


def _control_offset(value: str, *, allow_newlines: bool) -> tuple[int, str] | None:
    """Return (offset, character) of the first control character (Cc, Zl, Zp) in a value.

    Markdown fields may hold line breaks and tabs; one-line fields hold none (a subject
    with U+2028 or NUL fails at send time or goes into a header).
    """
    for offset, ch in enumerate(value):
        if allow_newlines and ch in "\n\t":
            continue
        if unicodedata.category(ch) in CONTROL_CATEGORIES:
            return offset, ch
    return None


class _TooBig(Exception):
    pass


_TOP = {
    "title": True,
    "date": True,
    "subject": False,
    "preheader": False,
    "slug": False,
    "language": False,
    "intro": False,
    "sections": True,
    "outro": False,
}
_SECTION = {"title": False, "items": True}
_ITEM = {
    "title": True,
    "url": False,
    "body": True,
    "image": False,
    "button": False,
    "source": False,
}
_IMAGE = {"src": True, "alt": True}


def _check_image(c: _Checker, node: yaml.Node, path: str) -> Image | None:
    if _is_null(node):
        return None
    if isinstance(node, yaml.MappingNode) and not any(k.value == "alt" for k, _ in node.value):
        c.error(node, f"{path}.alt", "missing: every image needs alt text")
        fields = c.mapping(node, path, {"src": True, "alt": False})
    else:
        fields = c.mapping(node, path, _IMAGE)
    if fields is None:
        return None
    src = c.url(fields.get("src"), f"{path}.src", required=True)
    alt = c.text(fields.get("alt"), f"{path}.alt", required=True)
    if src is None or alt is None:
        return None
    return Image(src=src, alt=alt)


def _check_item(c: _Checker, node: yaml.Node, path: str) -> Item | None:
    fields = c.mapping(node, path, _ITEM)
    if fields is None:
        return None
    title = c.text(fields.get("title"), f"{path}.title", required=True)
    url = c.url(fields.get("url"), f"{path}.url")
    body = c.markdown(fields.get("body"), f"{path}.body", required=True)
    image = _check_image(c, fields["image"], f"{path}.image") if "image" in fields else None
    button = c.text(fields.get("button"), f"{path}.button", max_length=100)
    source = c.text(fields.get("source"), f"{path}.source")
    if button is not None and "url" not in fields:
        c.error(fields["button"], f"{path}.button", "a button needs the item's url")
    if title is None or body is None:
        return None
    return Item(title=title, body=body, url=url, image=image, button=button, source=source)


def _check_section(c: _Checker, node: yaml.Node, path: str) -> Section | None:
    fields = c.mapping(node, path, _SECTION)
    if fields is None:
        return None
    title = c.text(fields.get("title"), f"{path}.title")
    items: list[Item] = []
    nodes = c.sequence(fields["items"], f"{path}.items", "item") if "items" in fields else None
    for index, item_node in enumerate(nodes or []):
        item = _check_item(c, item_node, f"{path}.items[{index}]")
        if item is not None:
            items.append(item)
    return Section(title=title, items=items)


def _check_document(c: _Checker, root: yaml.Node, text: str) -> IssueDocument | None:
    fields = c.mapping(root, "", _TOP)
    if fields is None:
        return None
    title = c.text(fields.get("title"), "title", required=True)
    date = c.date(fields.get("date"), "date")
    subject = c.text(fields.get("subject"), "subject")
    preheader = c.text(fields.get("preheader"), "preheader", max_length=MAX_PREHEADER)
    slug = c.text(fields.get("slug"), "slug", max_length=MAX_SLUG)
    if slug is not None and not SLUG_RE.match(slug):
        c.error(fields["slug"], "slug", "use lowercase letters, digits and hyphens")
    language = c.text(fields.get("language"), "language", max_length=35)
    if language is not None:
        try:
            language = normalize_language(language)
        except InvalidLanguage as exc:
            c.error(fields["language"], "language", str(exc))
            language = None
    intro = c.markdown(fields.get("intro"), "intro")
    outro = c.markdown(fields.get("outro"), "outro")
    sections: list[Section] = []
    nodes = c.sequence(fields["sections"], "sections", "section") if "sections" in fields else None
    for index, section_node in enumerate(nodes or []):
        section = _check_section(c, section_node, f"sections[{index}]")
        if section is not None:
            sections.append(section)
    if c.errors or title is None or date is None:
        return None
    slug = slug or slugify(title) or f"issue-{date.isoformat()}"
    document = IssueDocument(
        title=title,
        date=date,
        subject=subject or title,
        preheader=preheader,
        slug=slug,
        intro=intro,
        sections=sections,
        outro=outro,
        source_yaml=text,
        language=language,
    )
    document._parsed.update(c.parsed)
    return document


def load_issue_text(text: str, filename: str = "<issue>") -> IssueDocument:
    """Parse and validate an issue's YAML text; raise IssueFileError listing every problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise IssueFileError([f"{filename}:1: file: too large (at most 1 MB)"])
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            problem = exc.problem or exc.context or "invalid YAML"
            raise IssueFileError([f"{filename}:{line}: YAML syntax: {problem}"]) from None
        except yaml.YAMLError as exc:
            raise IssueFileError([f"{filename}:1: YAML syntax: {exc}"]) from None
        if root is None:
            raise IssueFileError(
                [f"{filename}:1: file: empty (an issue needs title, date and sections)"]
            )
        checker = _Checker(filename, loader)
        try:
            document = _check_document(checker, root, text)
        except _TooBig:
            raise IssueFileError(
                [f"{filename}:1: file: too many elements (at most {MAX_NODES})"]
            ) from None
    finally:
        loader.dispose()
    if checker.errors or document is None:
        checker.errors.sort(key=lambda pair: pair[0])
        raise IssueFileError([message for _, message in checker.errors])
    return document


def load_issue(path: str | Path) -> IssueDocument:
    """Read and validate an issue file; raise IssueFileError listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IssueFileError([f"{path}:1: file: cannot read it ({exc.strerror})"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise IssueFileError([f"{path}:1: file: too large (at most 1 MB)"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueFileError([f"{path}:{line}: file: not UTF-8 text"]) from None
    return load_issue_text(text.removeprefix("\ufeff"), filename=str(path))
