"""The store's schema comes from Alembic migrations, on SQLite and on PostgreSQL: the
migrated database equals the models, revisions upgrade data in place and downgrade,
processes starting together migrate once, and stores the code cannot serve are refused."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import api.auth  # noqa: F401 - registers the sign-in nonces' table
import ledger.alarms
import ledger.flows
import ledger.history
import ledger.indexer
import ledger.ops
import ledger.oracle_state  # noqa: F401
from ledger import schema
from ledger.errors import StoreError
from ledger.flows import place_of
from ledger.store import Store
from tests.conftest import fresh_pg_database


def test_head_is_the_newest_revision() -> None:
    scripts = ScriptDirectory.from_config(schema.alembic_config())
    assert scripts.get_heads() == [schema.HEAD]
    assert [rev for rev, _ in schema.history()][-1] == schema.HEAD


def test_the_migrated_database_is_exactly_the_models(any_db_url: str) -> None:
    store = Store.open(any_db_url)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    store.close()
    assert diff == []


_ENTRIES = [  # (flow, summary) of flow entries written before 0004
    ("logistics", '{"biz_location":"urn:epc:id:sgln:0614141.00001.0","read_point":"x"}'),
    ("logistics", '{"biz_location":"","read_point":"urn:epc:id:sgln:0614141.00002.0"}'),
    ("logistics", '{"head_count":3}'),
    ("logistics", '{"read_point":""}'),
    ("information", '{"biz_location":"urn:epc:id:sgln:0614141.00001.0"}'),
    ("logistics", '{"biz_location":5,"read_point":"R"}'),  # not text: Python's truth
    ("logistics", '{"biz_location":false,"read_point":"R"}'),
    ("logistics", '{"read_point":["x"]}'),
]


def _event_rows(url: str) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id, stream FROM events")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def _event_id_collation(engine: Any) -> str | None:
    with engine.connect() as connection:
        value: str | None = connection.execute(
            text(
                "SELECT collation_name FROM information_schema.columns"
                " WHERE table_name = 'flow_entries' AND column_name = 'event_id'"
            )
        ).scalar()
    return value


def test_upgrade_keeps_data_and_downgrade_undoes(any_db_url: str) -> None:
    engine = create_engine(any_db_url)
    with engine.begin() as connection:
        command.upgrade(schema.alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO events (event_id, stream, kind, submitter, event_time_ms, digest,"
                " leaf, envelope, received_at_ms) VALUES ('e-1', 's', 'k', '0x0', 1, 'd', 'l',"
                " '{}', 2)"
            )
        )
        for i, (flow, summary) in enumerate(_ENTRIES):
            connection.execute(
                text(
                    "INSERT INTO flow_entries (event_id, asset_id, flow, kind, time_ms, summary)"
                    " VALUES ('e-1', :asset, :flow, 'k', 1, :summary)"
                ),
                {"asset": f"a-{i}", "flow": flow, "summary": summary},
            )
    assert schema.current(engine) == "0001"
    assert schema.migrate(engine) == ["0002", "0003", "0004", "0005"]
    assert schema.current(engine) == schema.HEAD
    assert inspect(engine).has_table("claims")
    assert inspect(engine).has_table("batch_nodes")
    assert _event_rows(any_db_url) == [("e-1", "s")]
    with engine.connect() as connection:  # 0004 gave the entries their places
        places = connection.execute(text("SELECT place FROM flow_entries ORDER BY id")).all()
    assert (
        [p for (p,) in places]
        == [place_of(flow, json.loads(summary)) for flow, summary in _ENTRIES]
        == [
            "urn:epc:id:sgln:0614141.00001.0",
            "urn:epc:id:sgln:0614141.00002.0",
            None,
            "",
            None,
            None,
            "R",
            None,
        ]
    )
    assert schema.migrate(engine) == []  # nothing left to do
    if engine.dialect.name == "postgresql":  # 0005: event ids compare as bytes
        assert _event_id_collation(engine) == "C"
        with engine.begin() as connection:
            command.downgrade(schema.alembic_config(connection), "0004")
        assert _event_id_collation(engine) is None
    with engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "0003")
    assert "place" not in {c["name"] for c in inspect(engine).get_columns("flow_entries")}
    with engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "0002")
    assert not inspect(engine).has_table("batch_nodes")
    assert inspect(engine).has_table("claims")
    with engine.begin() as connection:
        command.downgrade(schema.alembic_config(connection), "0001")
    assert not inspect(engine).has_table("claims")
    assert _event_rows(any_db_url) == [("e-1", "s")]
    engine.dispose()


def test_a_store_from_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite"
    engine = create_engine(url)
    with engine.begin() as connection:  # what create_all left behind in issue 5
        command.upgrade(schema.alembic_config(connection), "0001")
        connection.execute(text("DROP TABLE alembic_version"))
    assert schema.current(engine) is None
    store = Store.open(url)
    assert schema.current(store.engine) == schema.HEAD
    store.close()


def test_an_incomplete_pre_migration_store_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/partial.sqlite"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE events (position INTEGER PRIMARY KEY)"))
    with pytest.raises(StoreError, match="predates schema migrations and lacks tables"):
        Store.open(url)
    assert inspect(engine).get_table_names() == ["events"]  # untouched


def test_a_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/newer.sqlite"
    Store.open(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="9999, newer than this fourflow"):
        Store.open(url)
    assert schema.current(engine) == "9999"


def test_without_auto_migration_an_old_schema_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/manual.sqlite"
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(schema.alembic_config(connection), "0001")
    monkeypatch.setenv("FOURFLOW_DB_AUTO_MIGRATE", "0")
    with pytest.raises(StoreError, match="fourflow db upgrade"):
        Store.open(url)
    assert schema.current(engine) == "0001"


def _open(url: str, barrier: Any) -> str | None:
    barrier.wait(60)  # all four open the new store at the same moment
    store = Store.open(url)
    revision = schema.current(store.engine)
    store.close()
    return revision


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_processes_starting_together_migrate_once(db: str, tmp_path: Path) -> None:
    def run(url: str) -> None:
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, context.Pool(4) as pool:
            barrier = manager.Barrier(4)
            assert pool.starmap(_open, [(url, barrier)] * 4) == [schema.HEAD] * 4
        engine = create_engine(url)
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert [v[0] for v in versions] == [schema.HEAD]

    if db == "sqlite":
        run(f"sqlite:///{tmp_path}/race.sqlite")
    else:
        with fresh_pg_database() as url:
            run(url)


def test_the_db_commands(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import fourflow_bin

    url = f"sqlite:///{tmp_path}/cli.sqlite"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [fourflow_bin(), "db", *args], capture_output=True, text=True, timeout=60, check=False
        )

    behind = run("current", "--db", url)
    assert behind.returncode == 1 and "none (behind" in behind.stdout
    upgraded = run("upgrade", "--db", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"to {schema.HEAD}: 0001, 0002, 0003, 0004, 0005" in upgraded.stdout
    assert run("upgrade", "--db", url).stdout.strip() == f"already at {schema.HEAD}"
    assert run("current", "--db", url).stdout.strip() == f"{schema.HEAD} (up to date)"
    assert "0003" in run("history").stdout
    bad = run("upgrade", "--db", "nosuchdriver://x")
    assert bad.returncode == 2 and "nosuchdriver" in bad.stderr and not bad.stdout


def test_a_migration_that_fails_halfway_leaves_nothing_behind(any_db_url: str) -> None:
    """All of a revision or none of it, on SQLite too (where the driver would commit
    before each CREATE TABLE): a store killed or failing mid-migration opens again."""
    engine = create_engine(any_db_url)
    with engine.begin() as connection:
        command.upgrade(schema.alembic_config(connection), "0001")
        # in the way of 0002's third table: its first two get created, then it fails
        connection.execute(text("CREATE TABLE worker_status (worker_id VARCHAR(128))"))
    with pytest.raises(StoreError, match="cannot migrate"):
        Store.open(any_db_url)
    assert schema.current(engine) == "0001"
    assert not inspect(engine).has_table("claims")  # rolled back with the rest
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE worker_status"))
    Store.open(any_db_url).close()  # and once the obstacle is gone, it migrates
    assert schema.current(engine) == schema.HEAD
    engine.dispose()
