"""subscribers: search indexes for the console (pg_trgm), feedback by subscriber

Revision ID: d8a3b6f2c915
Revises: c4f2a8e1d7b3
Create Date: 2026-11-25 08:00:00

On PostgreSQL the address and name get trigram GIN indexes, so the console's substring
search (ILIKE '%text%') stays fast at a million subscribers; SQLite gets plain indexes of
the same names (it has neither GIN nor pg_trgm). feedback_event.subscriber_id gets an
index: a subscriber's history and an erasure look feedback up by subscriber.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "d8a3b6f2c915"
down_revision: str | Sequence[str] | None = "c4f2a8e1d7b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the search indexes and the feedback index."""
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        if postgres:
            batch_op.create_index(
                "ix_subscriber_email_trgm",
                ["email"],
                unique=False,
                postgresql_using="gin",
                postgresql_ops={"email": "gin_trgm_ops"},
            )
            batch_op.create_index(
                "ix_subscriber_name_trgm",
                ["name"],
                unique=False,
                postgresql_using="gin",
                postgresql_ops={"name": "gin_trgm_ops"},
            )
        else:
            batch_op.create_index("ix_subscriber_email_trgm", ["email"], unique=False)
            batch_op.create_index("ix_subscriber_name_trgm", ["name"], unique=False)
    with op.batch_alter_table("feedback_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_event_subscriber_id"), ["subscriber_id"], unique=False
        )


def downgrade() -> None:
    """Drop the indexes (the pg_trgm extension stays: other objects may use it)."""
    with op.batch_alter_table("feedback_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_event_subscriber_id"))
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_name_trgm")
        batch_op.drop_index("ix_subscriber_email_trgm")
