"""Drafts: issue YAML an editor pasted or uploaded in the console, kept until it is sent.

A draft is one `issue_draft` row: the YAML text as given, the list it is meant for and the
name it came with. It is in the database so that any web machine can serve the editor's
next request. The issue itself is stored only when the editor sends: then as it was
checked (newsletter.sending). Drafts not saved for the retention are removed by
`newsletter db prune`.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from newsletter import clock
from newsletter.db import rowcount
from newsletter.errors import NotFound
from newsletter.models import IssueDraft

# The public name: callers and templates use drafts.Draft.
Draft = IssueDraft

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MISSING = "There is no such draft (it may have been removed)."


def save_draft(
    session: so.Session,
    *,
    text: str,
    list_slug: str,
    source_name: str,
    editor_id: int | None = None,
    token: str | None = None,
) -> Draft:
    """Store a draft (a new one, or over the draft `token`) and return it (flushed)."""
    if token is not None and not TOKEN_RE.match(token):
        raise NotFound(MISSING)
    draft = session.get(IssueDraft, token) if token else None
    if draft is None:
        draft = IssueDraft(token=token or secrets.token_urlsafe(18))
        session.add(draft)
    draft.list_slug = list_slug[:64]
    draft.source_name = source_name[:255]
    draft.text = text
    draft.editor_id = editor_id
    draft.updated_at = clock.now()
    session.flush()
    return draft


def load_draft(session: so.Session, token: str) -> Draft:
    """Return the draft `token`, or raise NotFound."""
    if not TOKEN_RE.match(token or ""):
        raise NotFound(MISSING)
    draft = session.get(IssueDraft, token)
    if draft is None:
        raise NotFound(MISSING)
    return draft


def prune(session: so.Session, older_than: datetime) -> int:
    """Delete drafts last saved before `older_than`; return how many."""
    result = session.execute(sa.delete(IssueDraft).where(IssueDraft.updated_at < older_than))
    return rowcount(result)
