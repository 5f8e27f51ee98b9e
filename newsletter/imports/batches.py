"""Storing a batch: sort its addresses (refused, merged, new) and subscribe the new ones.

The statements come from the store of the session's database: sqlite_store (portable
Core) or postgres_store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import sqlalchemy.orm as so

from newsletter.imports.postgres_store import PostgresStore
from newsletter.imports.rows import Entry
from newsletter.imports.sqlite_store import SqliteStore
from newsletter.models import SubscriptionStatus


@dataclass
class Batch:
    """What a batch found: the addresses to refuse, to merge, and to subscribe."""

    refused: list[Entry]
    merged: list[Entry]
    new: list[tuple[int, Entry]]  # (subscriber id, entry)
    subscribed: list[Entry] = field(default_factory=list)  # added and subscribed at once


@dataclass(frozen=True)
class Stored:
    """What storing one batch did, counted in rows of the file."""

    refused: int = 0
    merged: int = 0
    imported: int = 0
    confirmations: int = 0


@dataclass(frozen=True)
class Subscribe:
    """Subscribe the subscribers a batch adds as it adds them (consented imports)."""

    list_id: int
    label: str


def store_for(session: so.Session) -> SqliteStore:
    """Return the statements for the session's database (PostgresStore overrides each one)."""
    if session.get_bind().dialect.name == "postgresql":
        return PostgresStore(session)
    return SqliteStore(session)


def prepare(
    session: so.Session,
    list_id: int,
    entries: Mapping[str, Entry],
    now: Any,
    subscribe: Subscribe | None = None,
) -> Batch:
    """Create the missing subscribers and sort the batch's addresses (set-based).

    With `subscribe`, the subscribers it adds may come back already subscribed
    (`Batch.subscribed`, on PostgreSQL); the rest are sorted as without it.
    """
    sql = store_for(session)
    candidates = set(entries)
    candidates.update(entry.address.ascii.lower() for entry in entries.values())
    suppressed = sql.suppressed(list(candidates)) if candidates else set()
    refused: list[Entry] = []
    wanted: dict[str, Entry] = {}
    for key, entry in entries.items():
        if key in suppressed or entry.address.ascii.lower() in suppressed:
            refused.append(entry)
        else:
            wanted[key] = entry
    if not wanted:
        return Batch(refused, [], [])

    found = sql.add_subscribers(
        [(key, entry.address.display, entry.name) for key, entry in wanted.items()],
        now,
        subscribe,
    )
    if len(found) < len(wanted):  # added meanwhile by another transaction: look again
        seen = {email for _, email, _, _ in found}
        missing = [key for key in wanted if key not in seen]
        found += [(*row, False) for row in sql.subscribers(missing)]
    ids: dict[int, Entry] = {}
    existing: list[int] = []
    names: list[tuple[int, str]] = []
    subscribed: list[Entry] = []
    for subscriber_id, email, name, added in found:
        entry = wanted[email]
        if added and subscribe is not None:
            subscribed.append(entry)
            continue
        ids[subscriber_id] = entry
        if not added:
            existing.append(subscriber_id)
            if name is None and entry.name is not None:
                names.append((subscriber_id, entry.name))
    if names:  # existing subscribers without a name get the file's
        sql.fill_names(names)
    statuses = sql.statuses(list_id, existing) if existing else {}
    merged: list[Entry] = []
    new: list[tuple[int, Entry]] = []
    for subscriber_id, entry in ids.items():
        status = statuses.get(subscriber_id)
        if status is None:
            new.append((subscriber_id, entry))
        elif status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING):
            merged.append(entry)
        else:  # unsubscribed, bounced or complained on this list: never brought back
            refused.append(entry)
    return Batch(refused, merged, new, subscribed)


def subscribe_consented(
    session: so.Session, list_id: int, new: list[tuple[int, Entry]], label: str, now: Any
) -> set[int]:
    """Insert active subscriptions and their events; return the subscriber ids subscribed."""
    if not new:
        return set()
    return store_for(session).subscribe_active(
        list_id, [subscriber_id for subscriber_id, _ in new], label, now
    )
