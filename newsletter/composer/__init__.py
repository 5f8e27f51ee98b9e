"""The composer: issue YAML to responsive email (MJML) and a real plain-text part.

load_issue -> IssueDocument -> compile_issue (once per issue) -> CompiledIssue, whose html
and text carry placeholders that render_for_reader fills for each reader.
"""

from __future__ import annotations

from newsletter.composer.issue_email import ClippedIssue
from newsletter.composer.issue_email import CompiledIssue
from newsletter.composer.issue_email import check_clipping
from newsletter.composer.issue_email import compile_issue
from newsletter.composer.issue_email import render_mjml
from newsletter.composer.issue_file import Image
from newsletter.composer.issue_file import IssueDocument
from newsletter.composer.issue_file import IssueFileError
from newsletter.composer.issue_file import Item
from newsletter.composer.issue_file import Section
from newsletter.composer.issue_file import load_issue
from newsletter.composer.issue_file import load_issue_text
from newsletter.composer.placeholders import render_for_reader
from newsletter.composer.placeholders import render_web_version

__all__ = [
    "ClippedIssue",
    "CompiledIssue",
    "check_clipping",
    "Image",
    "IssueDocument",
    "IssueFileError",
    "Item",
    "Section",
    "compile_issue",
    "load_issue",
    "load_issue_text",
    "render_for_reader",
    "render_mjml",
    "render_web_version",
]
