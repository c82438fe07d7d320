"""Alembic's entry point. fourflow runs migrations through ``ledger.schema.migrate`` on a
connection it already holds (and has locked), so only the online, given-connection path
exists here; ``alembic`` on the command line is not needed."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `fourflow db upgrade` (ledger.schema.migrate)")
context.configure(
    connection=connection,
    render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE by copy on SQLite
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
