"""directory orders: indexes for sorting subscribers by name, date, list status, confirmation

Revision ID: c2e7a9d4f1b3
Revises: b1d4e6f8a2c3
Create Date: 2026-12-05 06:35:00

The console's subscriber directory sorts by address (the unique index), and now also by
name and date subscribed (partial indexes on the live records, `WHERE erased_at IS NULL`,
with the id as tie-breaker) and, with a list chosen, by status and date confirmed on that
list. Each order is read a page at a time from an index in that order (keyset paging),
so any page costs the same at a million subscribers. (list_id, status, subscriber_id)
replaces the index on list_id alone, which it covers; the one on status alone stays.
Written by hand; on PostgreSQL, a large table may rather get them with CREATE INDEX
CONCURRENTLY before upgrading (same names), as this migration locks writes while it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c2e7a9d4f1b3"
down_revision: str | Sequence[str] | None = "b1d4e6f8a2c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "erased_at IS NULL"


def upgrade() -> None:
    """Create the order indexes; drop the list_id index the first one covers."""
    for name, columns in (
        ("ix_subscriber_name_id", ["name", "id"]),
        ("ix_subscriber_created_at_id", ["created_at", "id"]),
    ):
        op.create_index(
            name,
            "subscriber",
            columns,
            unique=False,
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
    op.create_index(
        "ix_subscription_list_status_subscriber",
        "subscription",
        ["list_id", "status", "subscriber_id"],
        unique=False,
    )
    op.create_index(
        "ix_subscription_list_confirmed_subscriber",
        "subscription",
        ["list_id", "confirmed_at", "subscriber_id"],
        unique=False,
    )
    op.drop_index("ix_subscription_list_id", table_name="subscription")


def downgrade() -> None:
    """Put the list_id index back and drop the order indexes."""
    op.create_index("ix_subscription_list_id", "subscription", ["list_id"], unique=False)
    op.drop_index("ix_subscription_list_confirmed_subscriber", table_name="subscription")
    op.drop_index("ix_subscription_list_status_subscriber", table_name="subscription")
    op.drop_index("ix_subscriber_created_at_id", table_name="subscriber")
    op.drop_index("ix_subscriber_name_id", table_name="subscriber")
