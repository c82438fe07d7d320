"""Flow entries' event ids compare byte by byte on PostgreSQL too.

Revision ID: 0005
Revises: 0004

The timeline orders an instant's entries by event id, code point by code point, as
Python compares the merged keys and as SQLite compares text. PostgreSQL compared them
in the database's locale, so its queries asked for ``COLLATE "C"`` one expression at a
time, and ``ix_flow_entries_custody`` (built in the locale's order) could not answer a
custody walk that needed the other order. The column now has collation "C", and every
index on it is rebuilt in that order. SQLite already compares text as bytes: nothing to
do there.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"ALTER TABLE flow_entries ALTER COLUMN event_id TYPE VARCHAR(200) COLLATE {collation}"
    )


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
