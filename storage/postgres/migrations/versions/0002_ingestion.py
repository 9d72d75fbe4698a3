"""Ingestion: channel cursors, the albums.parsed outbox, and what de-duplication compares.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per ingested channel: everything up to `cursor` (a message id) is stored, so a
    # restart, a reconnect or a second process resumes there.
    op.create_table(
        "ingest_channels",
        sa.Column("channel_id", sa.BigInteger, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_seen_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # Transactional outbox: written in the transaction that stores an album, sent to Kafka by
    # the publisher, then marked sent. Nothing is emitted that was not committed.
    op.create_table(
        "ingest_outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("album_id", sa.BigInteger, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_ingest_outbox_unsent",
        "ingest_outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    # The persistent album_seen: the fingerprint of what Telegram returned for an album (to
    # skip downloads of an unchanged album) and of the albums.parsed content last emitted.
    op.add_column("media_groups", sa.Column("source_fingerprint", sa.String(64)))
    op.add_column("media_groups", sa.Column("content_fingerprint", sa.String(64)))
    op.add_column(
        "media_groups",
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column("media_groups", sa.Column("deleted_at", sa.DateTime(timezone=True)))
    op.create_index("ix_posts_channel_grouped", "posts", ["channel_id", "grouped_id"])


def downgrade() -> None:
    op.drop_index("ix_posts_channel_grouped", "posts")
    for col in ("deleted_at", "revision", "content_fingerprint", "source_fingerprint"):
        op.drop_column("media_groups", col)
    op.drop_index("ix_ingest_outbox_unsent", "ingest_outbox")
    op.drop_table("ingest_outbox")
    op.drop_table("ingest_channels")
