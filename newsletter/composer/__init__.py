"""The composer: issue YAML to responsive email (MJML) and a real plain-text part.

load_issue -> IssueDocument -> compile_issue (once per issue) -> CompiledIssue, whose html
and text carry placeholders that render_for_reader fills for each reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.lazy_names import lazy_getattr

if TYPE_CHECKING:
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

# Each name's module, imported on first use: issue_email pulls in MJML, premailer and
# cssutils (about 0.2 s), which a worker that only sends compiled issues never needs.
_HOMES = {
    "ClippedIssue": "newsletter.composer.issue_email",
    "CompiledIssue": "newsletter.composer.issue_email",
    "check_clipping": "newsletter.composer.issue_email",
    "compile_issue": "newsletter.composer.issue_email",
    "render_mjml": "newsletter.composer.issue_email",
    "Image": "newsletter.composer.issue_file",
    "IssueDocument": "newsletter.composer.issue_file",
    "IssueFileError": "newsletter.composer.issue_file",
    "Item": "newsletter.composer.issue_file",
    "Section": "newsletter.composer.issue_file",
    "load_issue": "newsletter.composer.issue_file",
    "load_issue_text": "newsletter.composer.issue_file",
    "render_for_reader": "newsletter.composer.placeholders",
    "render_web_version": "newsletter.composer.placeholders",
}

__getattr__ = lazy_getattr(__name__, _HOMES)
