"""sending: workers, the shared send pace, issue resume time and preheader

Revision ID: 5e7d1c2a9b40
Revises: 830c49af685d
Create Date: 2026-11-25 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e7d1c2a9b40"
down_revision: str | Sequence[str] | None = "830c49af685d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the worker and send_pace tables and the columns the sending engine needs."""
    op.create_table(
        "worker",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running", "stopped", "lost", name="workerstatus", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker")),
    )
    with op.batch_alter_table("worker", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_worker_status"), ["status"], unique=False)

    op.create_table(
        "send_pace",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("max_rate", sa.Float(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("rate_changed_at", sa.Float(), nullable=False),
        sa.Column("next_slot", sa.Float(), nullable=False),
        sa.Column("quota_max", sa.Float(), nullable=True),
        sa.Column("quota_sent", sa.Float(), nullable=False),
        sa.Column("quota_used_since", sa.Float(), nullable=False),
        sa.Column("quota_read_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_send_pace")),
    )

    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resume_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("preheader", sa.String(length=500), nullable=True))

    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_claimed_by"), ["claimed_by"], unique=False)


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_claimed_by"))
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("preheader")
        batch_op.drop_column("resume_at")
    op.drop_table("send_pace")
    with op.batch_alter_table("worker", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worker_status"))
    op.drop_table("worker")
