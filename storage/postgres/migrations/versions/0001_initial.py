"""Initial schema: posts, media_objects, media_groups, media_group_items.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.BigInteger, nullable=False),
        sa.Column("grouped_id", sa.BigInteger),
        sa.Column("text", sa.Text),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("meta", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.UniqueConstraint("channel_id", "message_id", name="uq_posts_channel_msg"),
    )
    op.create_table(
        "media_objects",
        sa.Column("file_sha256", sa.String(64), primary_key=True),
        sa.Column("id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("mime_type", sa.String(128)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("s3_key", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "media_groups",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.BigInteger, nullable=False),
        sa.Column("grouped_id", sa.BigInteger, nullable=False),
        sa.Column("caption_text", sa.Text),
        sa.Column("cover_media_id", UUID(as_uuid=True)),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("meta", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.UniqueConstraint("channel_id", "grouped_id", name="uq_media_groups_channel_grouped"),
    )
    op.create_table(
        "media_group_items",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "group_id",
            sa.BigInteger,
            sa.ForeignKey("media_groups.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("post_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("media_object_id", UUID(as_uuid=True)),
        sa.Column("media_kind", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("meta", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.UniqueConstraint("group_id", "position", name="uq_media_group_items_position"),
        sa.UniqueConstraint("group_id", "post_id", name="uq_media_group_items_post"),
    )
    op.create_index("ix_media_group_items_post_id", "media_group_items", ["post_id"])
    op.create_index("ix_media_groups_tenant_id", "media_groups", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("media_group_items")
    op.drop_table("media_groups")
    op.drop_table("media_objects")
    op.drop_table("posts")
