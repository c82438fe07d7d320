"""Several workers on one database: claims (row locks), signer nonces, worker status.

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

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # one row per claimable thing ("anchor:<stream>", "indexer"); a worker holds a claim
    # by holding the row's lock (SELECT … FOR UPDATE SKIP LOCKED) for as long as it works
    op.create_table(
        "claims",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # one row per signing key; its lock serializes "read the nonce, send" across processes
    op.create_table(
        "signer_nonces",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("last_nonce", BIG, nullable=True),
        sa.Column("last_tx_hash", sa.String(length=64), nullable=True),
        sa.Column("updated_at_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    # each worker's heartbeat, pass and error counts, for /v1/health and /metrics
    op.create_table(
        "worker_status",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at_ms", BIG, nullable=False),
        sa.Column("heartbeat_at_ms", BIG, nullable=False),
        sa.Column("passes", BIG, nullable=False),
        sa.Column("errors", BIG, nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("last_error_at_ms", BIG, nullable=True),
        sa.PrimaryKeyConstraint("worker_id"),
    )
    # the health and metrics figures read the most recently anchored batches
    op.create_index("ix_batches_anchored_at", "batches", ["anchored_at_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_batches_anchored_at", table_name="batches")
    op.drop_table("worker_status")
    op.drop_table("signer_nonces")
    op.drop_table("claims")
