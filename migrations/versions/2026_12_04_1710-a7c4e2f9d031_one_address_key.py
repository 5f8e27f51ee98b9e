"""one address key: ASCII, punycode domain, lower case, in every table that stores one

Revision ID: a7c4e2f9d031
Revises: a4c8e2f61b7d
Create Date: 2026-12-04 17:10:00

Addresses were keyed by their Unicode form (`juergen@bücher.example`) in `subscriber`,
`feedback_event` and `user_account`, while `suppression` held whatever form came in: the
SES suppression-list import stored the punycode form SES reports
(`juergen@xn--bcher-kva.example`). The send's suppression join compared the two forms and
a suppressed reader still got mail. From now on the one key is the ASCII form with the
domain in IDNA 2008 punycode, lower case (newsletter.addresses.address_key), and this
migration rewrites the stored rows into it.

Rows that collapse into one key are merged, losing nothing that keeps a reader unmailed:
- suppression: one row per key; a complaint outranks other reasons, then the oldest row;
  the other rows' reasons are kept in `detail`.
- subscriber: the oldest record stays; the others' subscriptions, ledger rows,
  confirmation emails and feedback events move to it. Where both were on one list, the
  subscription that keeps the reader unmailed wins (complained > bounced > unsubscribed >
  active > pending) and the other's history events move over; where both got one issue,
  the stayer's ledger row is kept.
- feedback_event: a duplicate of (SES message, kind, key) is dropped (it was one event).
- user_account: two editor accounts for one key cannot be merged safely (passwords): the
  migration stops and names them, for the operator to remove one first.

The migration is written with the `idna` library directly (not the application's code),
so it keeps doing today's job when that code changes. Downgrade writes the Unicode form
back; merges are not undone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from collections.abc import Sequence

import idna
import sqlalchemy as sa
from alembic import op

revision: str = "a7c4e2f9d031"
down_revision: str | Sequence[str] | None = "a4c8e2f61b7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Most restrictive first: the status that keeps a reader unmailed wins a merge.
_STATUS_RANK = {"complained": 0, "bounced": 1, "unsubscribed": 2, "active": 3, "pending": 4}


def ascii_key(email: str) -> str:
    """The new key: local part and punycode domain, lower case (invalid: lowercased only)."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return email.strip().lower()
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        pass
    return f"{local}@{domain}".lower()


def unicode_key(email: str) -> str:
    """The old key: the domain back in Unicode, lower case (for the downgrade)."""
    local, at, domain = email.rpartition("@")
    if not at or "xn--" not in domain:
        return email
    try:
        return f"{local}@{idna.decode(domain)}".lower()
    except (idna.IDNAError, UnicodeError):
        return email


def _rekey(conn: sa.Connection, table: str, convert: Callable[[str], str]) -> dict[str, list]:
    """Return {new key: [(id, old key), ...]} for the rows whose key changes or collides."""
    rows = conn.execute(sa.text(f"SELECT id, email FROM {table} ORDER BY id")).all()
    groups: dict[str, list] = defaultdict(list)
    for row in rows:
        groups[convert(row.email)].append((row.id, row.email))
    return {
        key: members for key, members in groups.items() if len(members) > 1 or members[0][1] != key
    }


def _merge_suppressions(conn: sa.Connection, convert: Callable[[str], str]) -> None:
    for key, members in _rekey(conn, "suppression", convert).items():
        ids = [member[0] for member in members]
        rows = conn.execute(
            sa.text(
                "SELECT id, reason, detail, created_at FROM suppression WHERE id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": ids},
        ).all()
        rows = sorted(rows, key=lambda r: (r.reason != "complaint", r.created_at, r.id))
        keep, others = rows[0], rows[1:]
        if others:
            merged = "; ".join(
                [keep.detail or keep.reason]
                + [f"also {o.reason}" + (f": {o.detail}" if o.detail else "") for o in others]
            )
            conn.execute(
                sa.text("DELETE FROM suppression WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": [o.id for o in others]},
            )
            conn.execute(
                sa.text("UPDATE suppression SET detail = :detail WHERE id = :id"),
                {"detail": merged, "id": keep.id},
            )
        conn.execute(
            sa.text("UPDATE suppression SET email = :key WHERE id = :id"),
            {"key": key, "id": keep.id},
        )


def _merge_subscriber(conn: sa.Connection, keep: int, gone: int) -> None:
    """Move everything of subscriber `gone` to `keep`, then delete `gone`."""
    mine = {
        row.list_id: row
        for row in conn.execute(
            sa.text("SELECT id, list_id, status FROM subscription WHERE subscriber_id = :s"),
            {"s": keep},
        )
    }
    theirs = conn.execute(
        sa.text(
            "SELECT id, list_id, status, status_changed_at, unsubscribed_at "
            "FROM subscription WHERE subscriber_id = :s"
        ),
        {"s": gone},
    ).all()
    for sub in theirs:
        stay = mine.get(sub.list_id)
        if stay is None:
            conn.execute(
                sa.text("UPDATE subscription SET subscriber_id = :k WHERE id = :id"),
                {"k": keep, "id": sub.id},
            )
            continue
        if _STATUS_RANK.get(sub.status, 9) < _STATUS_RANK.get(stay.status, 9):
            conn.execute(
                sa.text(
                    "UPDATE subscription SET status = :status, status_changed_at = :changed, "
                    "unsubscribed_at = :unsubscribed, confirm_nonce = NULL WHERE id = :id"
                ),
                {
                    "status": sub.status,
                    "changed": sub.status_changed_at,
                    "unsubscribed": sub.unsubscribed_at,
                    "id": stay.id,
                },
            )
        for table in ("subscription_event",):
            conn.execute(
                sa.text(f"UPDATE {table} SET subscription_id = :k WHERE subscription_id = :g"),
                {"k": stay.id, "g": sub.id},
            )
        conn.execute(
            sa.text("UPDATE delivery SET subscription_id = :k WHERE subscription_id = :g"),
            {"k": stay.id, "g": sub.id},
        )
        conn.execute(sa.text("DELETE FROM subscription WHERE id = :id"), {"id": sub.id})
    # Ledger rows: one per issue and subscriber; the stayer's row of an issue is kept.
    taken = {
        row.issue_id: row.id
        for row in conn.execute(
            sa.text("SELECT id, issue_id FROM delivery WHERE subscriber_id = :s"), {"s": keep}
        )
    }
    for row in conn.execute(
        sa.text("SELECT id, issue_id FROM delivery WHERE subscriber_id = :s"), {"s": gone}
    ).all():
        if row.issue_id in taken:
            conn.execute(
                sa.text("UPDATE feedback_event SET delivery_id = :k WHERE delivery_id = :g"),
                {"k": taken[row.issue_id], "g": row.id},
            )
            conn.execute(sa.text("DELETE FROM delivery WHERE id = :id"), {"id": row.id})
        else:
            conn.execute(
                sa.text("UPDATE delivery SET subscriber_id = :k WHERE id = :id"),
                {"k": keep, "id": row.id},
            )
    for table in ("confirmation_email", "feedback_event"):
        conn.execute(
            sa.text(f"UPDATE {table} SET subscriber_id = :k WHERE subscriber_id = :g"),
            {"k": keep, "g": gone},
        )
    conn.execute(sa.text("DELETE FROM subscriber WHERE id = :g"), {"g": gone})


def _merge_subscribers(conn: sa.Connection, convert: Callable[[str], str]) -> None:
    changes = _rekey(conn, "subscriber", convert)
    # Free every key first: a row's new key may be another row's old one.
    for members in changes.values():
        for row_id, _ in members:
            conn.execute(
                sa.text("UPDATE subscriber SET email = :tmp WHERE id = :id"),
                {"tmp": f"migrating-{row_id}@address-key.invalid", "id": row_id},
            )
    for key, members in changes.items():
        keep = members[0][0]  # the oldest record
        for gone, _ in members[1:]:
            _merge_subscriber(conn, keep, gone)
        conn.execute(
            sa.text("UPDATE subscriber SET email = :key WHERE id = :id"), {"key": key, "id": keep}
        )


def _rekey_feedback(conn: sa.Connection, convert: Callable[[str], str]) -> None:
    rows = conn.execute(
        sa.text("SELECT id, ses_message_id, kind, email FROM feedback_event ORDER BY id")
    ).all()
    seen: set[tuple] = set()
    for row in rows:
        seen.add((row.ses_message_id, row.kind, row.email))
    for row in rows:
        key = convert(row.email)
        if key == row.email:
            continue
        if (row.ses_message_id, row.kind, key) in seen:
            conn.execute(sa.text("DELETE FROM feedback_event WHERE id = :id"), {"id": row.id})
            continue
        conn.execute(
            sa.text("UPDATE feedback_event SET email = :key WHERE id = :id"),
            {"key": key, "id": row.id},
        )
        seen.add((row.ses_message_id, row.kind, key))


def _rekey_users(conn: sa.Connection, convert: Callable[[str], str]) -> None:
    changes = _rekey(conn, "user_account", convert)
    clashes = [members for members in changes.values() if len(members) > 1]
    if clashes:
        names = "; ".join(", ".join(email for _, email in members) for members in clashes)
        raise RuntimeError(
            "editor accounts that are one address under the new key: "
            f"{names}. Remove one of each (newsletter admin) and run the upgrade again."
        )
    for key, members in changes.items():
        conn.execute(
            sa.text("UPDATE user_account SET email = :key WHERE id = :id"),
            {"key": key, "id": members[0][0]},
        )


def _run(convert: Callable[[str], str]) -> None:
    conn = op.get_bind()
    _merge_suppressions(conn, convert)
    _merge_subscribers(conn, convert)
    _rekey_feedback(conn, convert)
    _rekey_users(conn, convert)


def upgrade() -> None:
    """Rewrite every stored address key into the ASCII (punycode) form, merging duplicates."""
    _run(ascii_key)


def downgrade() -> None:
    """Write the Unicode-domain form back (merged rows stay merged)."""
    _run(unicode_key)
