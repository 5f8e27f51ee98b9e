"""Previews for editors: the list an issue is shown for, and the files `issue preview` writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import lists as lists_core
from newsletter.composer.issue_email import CompiledIssue
from newsletter.composer.issue_email import compile_issue
from newsletter.composer.issue_file import IssueFileError
from newsletter.composer.issue_file import load_issue
from newsletter.composer.placeholders import render_for_reader
from newsletter.errors import NewsletterError
from newsletter.errors import NotFound
from newsletter.models import MailingList

PLACEHOLDER_BASE_URL = "https://news.example.com"


class PreviewError(NewsletterError):
    """The file asked for cannot be previewed."""


def placeholder_list() -> MailingList:
    """Return an unsaved stand-in list, for previews before any list exists."""
    return MailingList(
        slug="example",
        name="Your newsletter",
        from_address="news@example.com",
        postal_address="Your postal address, shown in every footer",
    )


@dataclass
class PreviewList:
    mailing_list: MailingList
    note: str | None  # said to the editor when the list was not the one asked for


def choose_list(session: so.Session | None, slug: str | None) -> PreviewList:
    """Return the list named, else the only/first list, else a placeholder (with a note)."""
    if slug:
        if session is None:
            raise lists_core.ListError("--list needs the database (check NEWSLETTER_DATABASE_URL)")
        return PreviewList(lists_core.get_list(session, slug), None)
    rows = []
    if session is not None:
        try:
            rows = lists_core.all_lists(session)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            session.rollback()
            rows = []
    if not rows:
        return PreviewList(
            placeholder_list(),
            "No list in the database: previewing with a placeholder list name and address.",
        )
    note = None
    if len(rows) > 1:
        note = f"Previewing for the list {rows[0].slug!r} (choose another with --list SLUG)."
    return PreviewList(rows[0], note)


def sample_links(base_url: str, slug: str) -> tuple[str, str]:
    """Return (unsubscribe URL, web-version URL) shaped like real ones, for previews."""
    base = base_url.rstrip("/")
    return f"{base}/u/preview-only-link", f"{base}/archive/{slug}"


def render_preview(
    compiled: CompiledIssue, *, base_url: str, name: str | None = None
) -> tuple[str, str]:
    """Return the HTML and text a reader would get, with sample personal links."""
    unsubscribe, web = sample_links(base_url, compiled.slug)
    return render_for_reader(
        compiled.html, compiled.text, unsubscribe_url=unsubscribe, web_url=web, name=name
    )


def write_preview(
    path: str | Path,
    out_dir: str | Path,
    mailing_list: MailingList,
    *,
    base_url: str,
    name: str | None = None,
) -> tuple[CompiledIssue, Path, Path]:
    """Compile an issue file and write SLUG.html and SLUG.txt into out_dir."""
    compiled = compile_issue(load_issue(path), mailing_list, base_url=base_url)
    html, text = render_preview(compiled, base_url=base_url, name=name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{compiled.slug}.html"
    text_path = out / f"{compiled.slug}.txt"
    html_path.write_text(html, encoding="utf-8")
    text_path.write_text(text, encoding="utf-8")
    return compiled, html_path, text_path


def check_issue(path: str | Path, mailing_list: MailingList | None = None) -> CompiledIssue:
    """Validate an issue file and compile it (to find size and other warnings)."""
    return compile_issue(
        load_issue(path), mailing_list or placeholder_list(), base_url=PLACEHOLDER_BASE_URL
    )


@dataclass
class LivePreview:
    """What the live preview page shows for one state of an issue file."""

    version: str
    errors: list[str]
    warnings: list[str]
    subject: str | None = None
    html: str | None = None
    text: str | None = None


def file_version(path: Path) -> str:
    """Return a short fingerprint of a file's content (changes when the editor saves)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def resolve_issue_path(root: str | Path, name: str) -> Path:
    """Return the issue file `name` under `root`, refusing anything outside it or not YAML."""
    base = Path(root).resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise PreviewError("Only issue files inside the project folder can be previewed.")
    if path.suffix not in (".yaml", ".yml"):
        raise PreviewError("Only .yaml and .yml issue files can be previewed.")
    if not path.is_file():
        raise NotFound(f"There is no issue file {name!r}.")
    return path


def issue_files(root: str | Path) -> list[str]:
    """Return the YAML files in the project folder and in examples/ and issues/, relative."""
    base = Path(root).resolve()
    found: list[Path] = []
    for folder in (base, base / "examples", base / "issues"):
        found += sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    return [str(p.relative_to(base)) for p in found]


def live_preview(path: Path, mailing_list: MailingList, *, base_url: str) -> LivePreview:
    """Compile an issue file for the live preview; errors are shown, not raised."""
    version = file_version(path)
    try:
        compiled = compile_issue(load_issue(path), mailing_list, base_url=base_url)
    except IssueFileError as exc:
        return LivePreview(version=version, errors=exc.errors, warnings=[])
    html, text = render_preview(compiled, base_url=base_url)
    return LivePreview(
        version=version,
        errors=[],
        warnings=compiled.warnings,
        subject=compiled.subject,
        html=html,
        text=text,
    )
