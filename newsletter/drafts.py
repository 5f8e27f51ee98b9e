"""Drafts: issue YAML an editor pasted or uploaded in the console, kept until it is sent.

A draft is one small JSON file under the instance folder (`drafts/<token>.json`): the YAML
text as given, the list it is meant for and the name it came with. Nothing goes into the
database until the editor sends: then the issue is stored as it was checked (sending.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import NotFound

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Drafts nobody opened for this long are removed when a new one is saved.
MAX_AGE = 30 * 24 * 3600


@dataclass
class Draft:
    """An unsent issue text and the list it is for."""

    token: str
    list_slug: str
    source_name: str
    text: str
    editor_id: int | None = None


def _path(directory: str | Path, token: str) -> Path:
    if not TOKEN_RE.match(token or ""):
        raise NotFound("There is no such draft (it may have been removed).")
    return Path(directory) / f"{token}.json"


def save_draft(
    directory: str | Path,
    *,
    text: str,
    list_slug: str,
    source_name: str,
    editor_id: int | None = None,
    token: str | None = None,
) -> Draft:
    """Store a draft (a new one, or over the draft `token`) and return it."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    draft = Draft(
        token=token or secrets.token_urlsafe(18),
        list_slug=list_slug,
        source_name=source_name,
        text=text,
        editor_id=editor_id,
    )
    final = _path(folder, draft.token)
    partial = final.with_suffix(f".{os.getpid()}.part")
    # Write then rename: a crash never leaves half a draft behind.
    partial.write_text(json.dumps(asdict(draft), ensure_ascii=False), encoding="utf-8")
    partial.replace(final)
    _remove_old(folder)
    return draft


def load_draft(directory: str | Path, token: str) -> Draft:
    """Return the draft `token`, or raise NotFound."""
    path = _path(directory, token)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound("There is no such draft (it may have been removed).") from None
    return Draft(
        token=token,
        list_slug=str(data.get("list_slug", "")),
        source_name=str(data.get("source_name", "issue.yaml")),
        text=str(data.get("text", "")),
        editor_id=data.get("editor_id"),
    )


def _remove_old(folder: Path) -> None:
    cutoff = time.time() - MAX_AGE
    for path in folder.glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            continue
