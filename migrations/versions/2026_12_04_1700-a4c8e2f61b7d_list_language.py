"""mailing_list: language

Revision ID: a4c8e2f61b7d
Revises: f3a9d2c6b8e1
Create Date: 2026-12-04 17:00:00

A list's language (a BCP 47 tag) chooses the language of its public pages and emails.
Every existing list is English, as it was before: the server default fills the rows in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4c8e2f61b7d"
down_revision: str | Sequence[str] | None = "f3a9d2c6b8e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column; existing lists are English."""
    op.add_column(
        "mailing_list",
        sa.Column("language", sa.String(length=35), server_default="en", nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("mailing_list") as batch:
        batch.drop_column("language")
