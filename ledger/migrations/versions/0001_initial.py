"""The schema as of the four-flow histories (issue 5): every table before migrations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # 64-bit; SQLite's INTEGER is


def upgrade() -> None:
    op.create_table(
        "aggregations",
        sa.Column("parent", sa.String(length=200), nullable=False),
        sa.Column("child", sa.String(length=200), nullable=False),
        sa.Column("packed", sa.Boolean(), nullable=False),
        sa.Column("since_ms", BIG, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("parent", "child"),
    )
    op.create_table(
        "alarm_acks",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=42), nullable=False),
        sa.Column("at_ms", BIG, nullable=False),
        sa.Column("statement", sa.String(), nullable=False),
        sa.Column("signature", sa.String(length=132), nullable=False),
        sa.PrimaryKeyConstraint("key", "state", "by"),
    )
    op.create_table(
        "alarms",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_ms", BIG, nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("evidence", sa.String(), nullable=False),
        sa.Column("details", sa.String(), nullable=False),
        sa.Column("fact", sa.String(length=32), nullable=True),
        sa.Column("pledge_id", BIG, nullable=True),
        sa.Column("record_event_id", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_alarms_state", "alarms", ["state", "opened_ms"], unique=False)
    op.create_table(
        "asset_keys",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("asset_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key", "asset_id"),
    )
    op.create_table(
        "batches",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("first_event_time_ms", BIG, nullable=False),
        sa.Column("last_event_time_ms", BIG, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=64), nullable=True),
        sa.Column("block_number", BIG, nullable=True),
        sa.Column("gas_used", BIG, nullable=True),
        sa.Column("sealed_at_ms", BIG, nullable=False),
        sa.Column("anchored_at_ms", BIG, nullable=True),
        sa.PrimaryKeyConstraint("stream", "seq"),
    )
    op.create_table(
        "capture_jobs",
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("created_at_ms", BIG, nullable=False),
        sa.Column("finished_at_ms", BIG, nullable=True),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_behaviour", sa.String(length=16), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("captured_by", sa.String(length=200), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("event_ids", sa.String(), nullable=False),
        sa.Column("errors", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("capture_id"),
    )
    op.create_table(
        "chain_blocks",
        sa.Column("number", BIG, nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "chain_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("block_number", BIG, nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "chain_logs",
        sa.Column("id", BIG, nullable=False),
        sa.Column("block_number", BIG, nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("block_time_ms", BIG, nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("contract", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("args", sa.String(), nullable=False),
        sa.Column("topics", sa.String(), nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.Column("receipt_id", BIG, nullable=True),
        sa.Column("pledge_id", BIG, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("block_number", "log_index", name="uq_chain_logs_position"),
    )
    op.create_index(
        "ix_chain_logs_pledge",
        "chain_logs",
        ["pledge_id", "block_number", "log_index"],
        unique=False,
    )
    op.create_index(
        "ix_chain_logs_receipt",
        "chain_logs",
        ["receipt_id", "block_number", "log_index"],
        unique=False,
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", BIG, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "custody",
        sa.Column("asset_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("possessor", sa.String(length=200), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("since_ms", BIG, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("asset_id"),
    )
    op.create_table(
        "epcis_events",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("biz_step", sa.String(length=200), nullable=True),
        sa.Column("disposition", sa.String(length=200), nullable=True),
        sa.Column("read_point", sa.String(length=200), nullable=True),
        sa.Column("biz_location", sa.String(length=200), nullable=True),
        sa.Column("event_time_ms", BIG, nullable=False),
        sa.Column("record_time_ms", BIG, nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_epcis_events_location", "epcis_events", ["biz_location", "event_time_ms"], unique=False
    )
    op.create_index(
        "ix_epcis_events_step", "epcis_events", ["biz_step", "event_time_ms"], unique=False
    )
    op.create_index(
        "ix_epcis_events_time", "epcis_events", ["event_time_ms", "event_id"], unique=False
    )
    op.create_table(
        "epcis_identifiers",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("identifier", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "identifier", "role"),
    )
    op.create_index(
        "ix_epcis_identifiers_id", "epcis_identifiers", ["identifier", "role"], unique=False
    )
    op.create_table(
        "event_assets",
        sa.Column("asset_id", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", "event_id"),
    )
    op.create_table(
        "events",
        sa.Column("position", BIG, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("submitter", sa.String(length=42), nullable=False),
        sa.Column("event_time_ms", BIG, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("leaf", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.String(), nullable=False),
        sa.Column("received_at_ms", BIG, nullable=False),
        sa.Column("batch_seq", sa.Integer(), nullable=True),
        sa.Column("leaf_index", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_events_batch", "events", ["stream", "batch_seq", "leaf_index"], unique=False
    )
    op.create_index(
        "ix_events_pending", "events", ["stream", "batch_seq", "position"], unique=False
    )
    op.create_table(
        "facts",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("pledge_id", BIG, nullable=False),
        sa.Column("receipt_id", BIG, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("quantity", BIG, nullable=False),
        sa.Column("observed_at", BIG, nullable=False),
        sa.Column("event_id", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_ms", BIG, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_facts_state", "facts", ["state"], unique=False)
    op.create_table(
        "flow_entries",
        sa.Column("id", BIG, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("asset_id", sa.String(length=200), nullable=False),
        sa.Column("flow", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("time_ms", BIG, nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_flow_entries_asset", "flow_entries", ["asset_id", "time_ms", "id"], unique=False
    )
    op.create_index("ix_flow_entries_event", "flow_entries", ["event_id"], unique=False)
    op.create_table(
        "quarantine",
        sa.Column("id", BIG, nullable=False),
        sa.Column("received_ms", BIG, nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("raw", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "siwe_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("issued_ms", BIG, nullable=False),
        sa.Column("expires_ms", BIG, nullable=False),
        sa.Column("used_ms", BIG, nullable=True),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_siwe_nonces_expires_ms", "siwe_nonces", ["expires_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_siwe_nonces_expires_ms", table_name="siwe_nonces")
    op.drop_index("ix_flow_entries_event", table_name="flow_entries")
    op.drop_index("ix_flow_entries_asset", table_name="flow_entries")
    op.drop_index("ix_facts_state", table_name="facts")
    op.drop_index("ix_events_pending", table_name="events")
    op.drop_index("ix_events_batch", table_name="events")
    op.drop_index("ix_epcis_identifiers_id", table_name="epcis_identifiers")
    op.drop_index("ix_epcis_events_time", table_name="epcis_events")
    op.drop_index("ix_epcis_events_step", table_name="epcis_events")
    op.drop_index("ix_epcis_events_location", table_name="epcis_events")
    op.drop_index("ix_chain_logs_receipt", table_name="chain_logs")
    op.drop_index("ix_chain_logs_pledge", table_name="chain_logs")
    op.drop_index("ix_alarms_state", table_name="alarms")
    op.drop_table("siwe_nonces")
    op.drop_table("quarantine")
    op.drop_table("flow_entries")
    op.drop_table("facts")
    op.drop_table("events")
    op.drop_table("event_assets")
    op.drop_table("epcis_identifiers")
    op.drop_table("epcis_events")
    op.drop_table("custody")
    op.drop_table("cursors")
    op.drop_table("chain_logs")
    op.drop_table("chain_cursor")
    op.drop_table("chain_blocks")
    op.drop_table("capture_jobs")
    op.drop_table("batches")
    op.drop_table("asset_keys")
    op.drop_table("alarms")
    op.drop_table("alarm_acks")
    op.drop_table("aggregations")
