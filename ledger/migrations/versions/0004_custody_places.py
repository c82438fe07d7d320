"""Custody chains read from an index: a flow entry keeps its place in a column.

Revision ID: 0004
Revises: 0003

The summary's custody chain walks an asset's logistics entries in time order, looking
only at kind and place; with the place in a column, a covering index answers that walk
without reading any entry's JSON summary. Existing entries get their place from their
summary (business location, else read point), as ``ledger.flows.place_of`` gives it,
a page of 5,000 at a time.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = ["asset_id", "flow", "time_ms", "event_id", "id", "kind", "place"]


def _place(summary: str) -> str | None:
    """``ledger.flows.place_of`` of a logistics entry as of this revision (a migration
    keeps its own copy: it must do the same thing however that function changes)."""
    try:
        value = json.loads(summary)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    place = value.get("biz_location") or value.get("read_point")
    return place if isinstance(place, str) else None


def upgrade() -> None:
    op.add_column("flow_entries", sa.Column("place", sa.String(), nullable=True))
    connection = op.get_bind()
    select_page = sa.text(
        "SELECT id, summary FROM flow_entries WHERE flow = 'logistics' AND id > :after "
        "ORDER BY id LIMIT 5000"
    )
    update = sa.text("UPDATE flow_entries SET place = :place WHERE id = :id")
    after = 0
    while rows := connection.execute(select_page, {"after": after}).all():
        placed = [{"id": i, "place": p} for i, text in rows if (p := _place(text)) is not None]
        if placed:
            connection.execute(update, placed)
        after = rows[-1][0]
    op.create_index("ix_flow_entries_custody", "flow_entries", _COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_flow_entries_custody", table_name="flow_entries")
    op.drop_column("flow_entries", "place")
