"""A timeline's keys straight from an index, on every backend.

Revision ID: 0005
Revises: 0004

A timeline is ordered by (time, event id, flow), an instant's entries by event id code
point by code point, as Python compares the merged keys and SQLite compares text.

- PostgreSQL compared event ids in the database's locale, so its queries asked for
  ``COLLATE "C"`` one expression at a time, and no index could give that order. The
  column now has collation "C" (PostgreSQL only; every index on it is rebuilt).
- ``ix_flow_entries_asset`` was (asset, time, id): a page's keys were sorted from all
  the asset's entries after the cursor. It is now (asset, time, event id, flow, id), the
  keys' own order, so a page reads a page's worth of the index.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OLD = ["asset_id", "time_ms", "id"]
_NEW = ["asset_id", "time_ms", "event_id", "flow", "id"]


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"ALTER TABLE flow_entries ALTER COLUMN event_id TYPE VARCHAR(200) COLLATE {collation}"
    )


def _asset_index(columns: list[str]) -> None:
    op.drop_index("ix_flow_entries_asset", table_name="flow_entries")
    op.create_index("ix_flow_entries_asset", "flow_entries", columns, unique=False)


def upgrade() -> None:
    _collate('"C"')
    _asset_index(_NEW)


def downgrade() -> None:
    _asset_index(_OLD)
    _collate('"default"')
