"""The store's schema: Alembic migrations, run when a store opens.

Every table fourflow keeps is created and changed only by a revision in
``ledger/migrations/versions``. ``Store.open`` brings the database to ``HEAD``: it reads
the ``alembic_version`` row first (one query when nothing is to do), and otherwise runs
the missing revisions under a lock, so processes that start together against a new
database migrate it once (PostgreSQL: an advisory lock in the migration's transaction;
SQLite: a lock file beside the database). With ``$FOURFLOW_DB_AUTO_MIGRATE=0`` it
refuses an old schema instead, for operators who migrate by hand
(`fourflow db upgrade`). A database written by a newer fourflow is refused, never
touched. A store created before migrations existed (by ``create_all``) holds exactly
revision 0001's tables and is stamped 0001, then upgraded.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import StoreError

__all__ = ["HEAD", "alembic_config", "current", "history", "migrate", "sqlite_path"]

HEAD = "0005"  # the newest revision in ledger/migrations/versions (a test keeps it true)
_LOCK_KEY = 0x666F7572666C6F77  # "fourflow": the PostgreSQL advisory lock for migrating
_BEFORE_MIGRATIONS = "0001"  # what a create_all store of issue 5 holds


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config for fourflow's revisions, run on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


def history() -> list[tuple[str, str]]:
    """(revision, first line of its message), oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    revisions = list(scripts.walk_revisions())
    return [(r.revision, (r.doc or "").splitlines()[0]) for r in reversed(revisions)]


def current(engine: Engine) -> str | None:
    """The database's revision (None: an empty database, or one from before migrations)."""
    try:
        with engine.connect() as connection:
            return _revision(connection)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the store's schema revision: {exc}") from exc


def _revision(connection: Connection) -> str | None:
    # read directly: alembic's MigrationContext logs at INFO each time it is made
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    if len(rows) > 1:
        raise StoreError(f"the store has {len(rows)} schema revisions at once; expected one")
    return str(rows[0][0]) if rows else None


def sqlite_path(engine: Engine) -> Path | None:
    """The file of a file-backed SQLite database (None for memory or other databases)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock, as does the process dying


def migrate(engine: Engine, *, auto: bool = True) -> list[str]:
    """Bring the database to HEAD; returns the revisions applied (empty: none needed)."""
    try:
        with engine.connect() as connection:
            found = _revision(connection)
        if found == HEAD:
            return []
        _refuse_unknown(found)
        if not auto:
            raise StoreError(
                f"the store's schema is at revision {found or 'none'}, this fourflow needs "
                f"{HEAD}: run `fourflow db upgrade` (or unset FOURFLOW_DB_AUTO_MIGRATE=0)"
            )
        path = sqlite_path(engine)
        if path is not None:
            with _file_lock(path.with_name(path.name + ".migrate-lock")):
                migrating = _transactional_sqlite(engine)
                try:
                    return _upgrade(migrating)
                finally:
                    migrating.dispose()
        return _upgrade(engine)  # PostgreSQL: transactional DDL; an in-memory SQLite
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the store's schema: {exc}") from exc


def _refuse_unknown(found: str | None) -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    if found is not None and found not in {r.revision for r in scripts.walk_revisions()}:
        raise StoreError(
            f"the store's schema is at revision {found}, newer than this fourflow "
            f"knows ({HEAD}): upgrade fourflow, never downgrade a store by hand"
        )


def _transactional_sqlite(engine: Engine) -> Engine:
    """An engine on the same SQLite database whose transactions really are transactions
    for DDL too: pysqlite, left to itself, commits before every CREATE TABLE, so a
    migration killed halfway would leave tables its revision row does not know about.
    Here the driver is in autocommit mode and each transaction is an explicit
    ``BEGIN IMMEDIATE`` (SQLAlchemy's documented recipe): all of a migration, or none."""
    migrating = create_engine(engine.url, connect_args={"isolation_level": None})

    @event.listens_for(migrating, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def _upgrade(engine: Engine) -> list[str]:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # a long migration elsewhere is waited for, not failed by the store's
            # lock_timeout; then the lock makes this process's check-and-upgrade one step
            connection.execute(text("SET LOCAL lock_timeout = 0"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        found = _revision(connection)  # again: another process may have migrated meanwhile
        _refuse_unknown(found)
        scripts = ScriptDirectory.from_config(alembic_config())
        if found is None and inspect(connection).has_table("events"):
            found = _stamp_pre_migration(connection)
        applied = [
            r.revision
            for r in reversed(list(scripts.iterate_revisions(HEAD, found)))
            if r.revision != found
        ]
        if applied:
            command.upgrade(alembic_config(connection), HEAD)
        return applied


def _stamp_pre_migration(connection: Connection) -> str:
    tables = set(inspect(connection).get_table_names())
    expected = {
        "aggregations", "alarm_acks", "alarms", "asset_keys", "batches", "capture_jobs",
        "chain_blocks", "chain_cursor", "chain_logs", "cursors", "custody", "epcis_events",
        "epcis_identifiers", "event_assets", "events", "facts", "flow_entries", "quarantine",
        "siwe_nonces",
    }  # fmt: skip
    missing = sorted(expected - tables)
    if missing:
        raise StoreError(
            "this store predates schema migrations and lacks tables "
            f"{', '.join(missing)}: start a new store (the chain keeps the anchors)"
        )
    command.stamp(alembic_config(connection), _BEFORE_MIGRATIONS)
    return _BEFORE_MIGRATIONS
