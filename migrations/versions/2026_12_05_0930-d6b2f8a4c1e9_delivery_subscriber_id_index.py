"""delivery: index (subscriber_id, id) for a subscriber's ledger, newest first

Revision ID: d6b2f8a4c1e9
Revises: c2e7a9d4f1b3
Create Date: 2026-12-05 09:30:00

The console's subscriber page lists that subscriber's ledger rows a page at a time,
newest first (keyset paging on the id). On PostgreSQL the index on subscriber_id alone
keeps equal keys in no useful order, so every page read and sorted all of a subscriber's
rows; (subscriber_id, id) hands them over in order and counts "newer than this row" from
the index. It replaces the subscriber_id index, which it covers (the cascade from a
deleted subscriber and the other lookups by subscriber use its first column), so the
ledger, the largest table, still writes one index entry per row for the subscriber.
Written by hand; on PostgreSQL, a large ledger may rather get it with CREATE INDEX
CONCURRENTLY before upgrading (same name), as this migration locks writes while it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "d6b2f8a4c1e9"
down_revision: str | Sequence[str] | None = "c2e7a9d4f1b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the (subscriber_id, id) index; drop the subscriber_id one it covers."""
    op.create_index(
        "ix_delivery_subscriber_id_id", "delivery", ["subscriber_id", "id"], unique=False
    )
    op.drop_index("ix_delivery_subscriber_id", table_name="delivery")


def downgrade() -> None:
    """Put the subscriber_id index back and drop the pair."""
    op.create_index("ix_delivery_subscriber_id", "delivery", ["subscriber_id"], unique=False)
    op.drop_index("ix_delivery_subscriber_id_id", table_name="delivery")
