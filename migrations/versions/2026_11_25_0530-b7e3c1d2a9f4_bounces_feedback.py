"""bounces: processed SNS notifications and per-message SES feedback events

Revision ID: b7e3c1d2a9f4
Revises: 5e7d1c2a9b40 (re-chained after merging branch sending)
Create Date: 2026-11-25 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "b7e3c1d2a9f4"
down_revision: str | Sequence[str] | None = "5e7d1c2a9b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create sns_notification (dedupe by SNS MessageId) and feedback_event."""
    op.create_table(
        "sns_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("topic_arn", sa.String(length=256), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sns_notification")),
        sa.UniqueConstraint("message_id", name=op.f("uq_sns_notification_message_id")),
    )
    op.create_table(
        "feedback_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "send",
                "delivery",
                "bounce",
                "complaint",
                "reject",
                "delivery_delay",
                name="feedbackkind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("ses_message_id", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("bounce_type", sa.String(length=20), nullable=True),
        sa.Column("bounce_subtype", sa.String(length=40), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_feedback_event_delivery_id_delivery"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issue.id"],
            name=op.f("fk_feedback_event_issue_id_issue"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_feedback_event_subscriber_id_subscriber"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_event")),
        sa.UniqueConstraint(
            "ses_message_id", "kind", "email", name=op.f("uq_feedback_event_ses_message_id")
        ),
    )
    with op.batch_alter_table("feedback_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_feedback_event_email_kind_at", ["email", "kind", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_feedback_event_issue_kind", ["issue_id", "kind"], unique=False)


def downgrade() -> None:
    """Drop the feedback tables."""
    with op.batch_alter_table("feedback_event", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_event_issue_kind")
        batch_op.drop_index("ix_feedback_event_email_kind_at")
    op.drop_table("feedback_event")
    op.drop_table("sns_notification")
