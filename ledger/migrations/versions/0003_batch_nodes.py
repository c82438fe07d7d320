"""Fast proofs: a sealed batch keeps the upper nodes of its tree.

Revision ID: 0003
Revises: 0002

Batches sealed before this revision have no nodes; their proofs are built from all their
leaves, as before (Store.batch_proof).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every node at height ledger.merkle.CHUNK_HEIGHT (6) and above, root excluded
    op.create_table(
        "batch_nodes",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("stream", "seq", "height", "idx"),
    )


def downgrade() -> None:
    op.drop_table("batch_nodes")
