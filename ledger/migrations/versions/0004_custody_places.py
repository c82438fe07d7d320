"""Custody chains read from an index: a flow entry keeps its place in a column.

Revision ID: 0004
Revises: 0003

The summary's custody chain walks an asset's logistics entries in time order, looking
only at kind and place; with the place in a column, a covering index answers that walk
without reading any entry's JSON summary. Existing entries get their place from their
summary (business location, else read point), as ``ledger.flows.place_of`` gives it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = ["asset_id", "flow", "time_ms", "event_id", "id", "kind", "place"]


def upgrade() -> None:
    op.add_column("flow_entries", sa.Column("place", sa.String(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        field = "(summary::jsonb ->> '{}')".format
    else:
        field = "json_extract(summary, '$.{}')".format
    op.execute(
        "UPDATE flow_entries SET place = "
        f"COALESCE(NULLIF({field('biz_location')}, ''), {field('read_point')}) "
        "WHERE flow = 'logistics'"
    )
    op.create_index("ix_flow_entries_custody", "flow_entries", _COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_flow_entries_custody", table_name="flow_entries")
    op.drop_column("flow_entries", "place")
