"""drafts and staged CSV uploads in the database: issue_draft, import_upload, its chunks

Revision ID: b1d4e6f8a2c3
Revises: a7c4e2f9d031
Create Date: 2026-12-04 18:00:00

Drafts (instance/drafts/*.json) and staged uploads (instance/imports/staged-*.csv) were
files on the web machine that received them, so an editor whose next request went to
another machine lost them. They now live in these tables. Files left on a machine by the
old version are not moved: a draft there is re-pasted, an upload uploaded again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b1d4e6f8a2c3"
down_revision: str | Sequence[str] | None = "a7c4e2f9d031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create issue_draft, import_upload and import_upload_chunk."""
    op.create_table(
        "issue_draft",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("list_slug", sa.String(length=64), nullable=False),
        sa.Column("source_name", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["user_account.id"],
            name=op.f("fk_issue_draft_editor_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_issue_draft")),
    )
    with op.batch_alter_table("issue_draft", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issue_draft_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "import_upload",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_upload")),
        sa.UniqueConstraint("token", name=op.f("uq_import_upload_token")),
    )
    with op.batch_alter_table("import_upload", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_import_upload_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "import_upload_chunk",
        sa.Column("upload_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["import_upload.id"],
            name=op.f("fk_import_upload_chunk_upload_id_import_upload"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "seq", name=op.f("pk_import_upload_chunk")),
    )


def downgrade() -> None:
    """Drop the three tables (drafts and staged uploads in them are lost)."""
    op.drop_table("import_upload_chunk")
    with op.batch_alter_table("import_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_import_upload_created_at"))
    op.drop_table("import_upload")
    with op.batch_alter_table("issue_draft", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issue_draft_updated_at"))
    op.drop_table("issue_draft")
