"""Shared fixtures. Everything is real: eth-tester and anvil chains, SQLite files, the
PostgreSQL server on 127.0.0.1:5432 (a fresh database per test session)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from ledger.chain import Chain
from ledger.models import EventBody
from ledger.runtime import DevKeys, Runtime
from ledger.store import EventRow, Store

ROOT = Path(__file__).resolve().parent.parent
ANVIL = ROOT / "contracts" / "node_modules" / ".bin" / "anvil"
# anvil's first dev account: a well-known, publicly documented test key, funded by anvil
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# the real-browser fixtures (chromium through Playwright), registered once for the session
pytest_plugins = ("tests.browser",)

PG_ADMIN_URL = os.environ.get("FOURFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def store_bare_leaves(store: Store, stream: str, leaves: Sequence[bytes]) -> None:
    """Rows for ``leaves`` in the events table, pending in ``stream``, without envelopes:
    enough to seal and prove a batch of 10^5 or 10^6 leaves without signing that many
    events (Merkle benchmarks and tests; never for anything that reads envelopes)."""
    rows = [
        {"event_id": f"{stream}-{i}", "stream": stream, "kind": "bare", "submitter": "0x0",
         "event_time_ms": i, "digest": leaf.hex(), "leaf": leaf.hex(), "envelope": "{}",
         "received_at_ms": 0}
        for i, leaf in enumerate(leaves)
    ]  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(insert(EventRow), rows)


def make_events(
    submitter: str,
    n: int,
    *,
    stream: str = "acme.custody",
    prefix: str | None = None,
    asset: str = "urn:epc:id:sgtin:0614141.107346.2018",
) -> list[EventBody]:
    prefix = prefix or uuid.uuid4().hex[:8]
    return [
        EventBody(
            kind="epcis.ObjectEvent",
            schema_version=1,
            stream=stream,
            event_id=f"{prefix}-{i}",
            asset_ids=[asset],
            event_time=f"2026-11-26T08:{i % 60:02d}:00.000+08:00",
            payload={"bizStep": "urn:epcglobal:cbv:bizstep:shipping", "seq": i},
            submitter=submitter,
        )
        for i in range(n)
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's URL on each supported database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def db_url(any_db_url: str) -> str:
    """Every test of the store and the API that takes ``db_url`` (or ``dev``) runs on
    both databases."""
    return any_db_url


@pytest.fixture
def dev(db_url: str) -> Iterator[tuple[Runtime, DevKeys]]:
    """A fresh registry on a fresh in-process chain, with one registered submitter."""
    runtime, keys = Runtime.dev(db_url=db_url, submitters=2)
    yield runtime, keys
    runtime.close()


class AnvilNode:
    def __init__(self, state_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = state_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                str(ANVIL),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                "31337",
                "--silent",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                Chain.connect(self.url, timeout=1).chain_id  # noqa: B018 - a liveness probe
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"anvil did not start on {self.url}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ServeProcess:
    """`fourflow serve` as a process on a loopback port, its output appended to ``log``.
    ``start`` returns it answering /v1/health; ``stop`` (also on leaving a ``with``)
    terminates it, kills it if it has not exited in time, and may be called again."""

    def __init__(self, proc: subprocess.Popen[bytes], *, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        *args: str,
        log: Path,
        port: int | None = None,
        wait: float = 60,
        ready: Container[int] = (200,),
        stderr_only: bool = False,
    ) -> ServeProcess:
        """Start it with ``env`` and the extra CLI ``args`` and wait up to ``wait`` seconds
        for /v1/health to answer with a status in ``ready``; stopped again if it exits or
        the time runs out. ``stderr_only``: the log holds stderr, stdout is discarded."""
        port = port or free_port()
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [fourflow_bin(), "serve", "--port", str(port), *args],
                env=env,
                stdout=subprocess.DEVNULL if stderr_only else sink,
                stderr=sink,
            )
        server = cls(proc, port=port, log=log)
        try:
            server._wait_healthy(wait, ready)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_healthy(self, wait: float, ready: Container[int]) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code in ready:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fourflow serve exited ({self.proc.returncode}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"fourflow serve did not answer on {self.url} within {wait:g} s:\n{self.tail()}"
                )
            time.sleep(0.1)

    def tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    """One anvil node (from contracts/node_modules) for the session; auto-mining."""
    if not ANVIL.exists():
        pytest.fail(f"{ANVIL} missing: run `make contracts-deps`")
    node = AnvilNode(tmp_path_factory.mktemp("anvil"))
    node.start()
    yield node
    node.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Any]:
    """A deployment on its own anvil node with the real worker and API processes around
    one SQLite store, for the fault tests (tests/worker_rig.py); everything stopped after."""
    from tests.worker_rig import Rig

    rig = Rig.start(tmp_path)
    try:
        yield rig
    finally:
        rig.close()


@contextmanager
def fresh_pg_database(icu_locale: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards; with
    ``icu_locale``, its text compares in that locale (as a bank's server may), not bytes."""
    import psycopg2

    name = f"fourflow_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        if icu_locale is None:
            cur.execute(f'CREATE DATABASE "{name}"')
        else:
            cur.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                f"ICU_LOCALE '{icu_locale}' LOCALE 'C.UTF-8'"
            )
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg2://{base.split('://', 1)[1]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server for one test, dropped after it."""
    with fresh_pg_database() as url:
        yield url


def fourflow_bin() -> str:
    found = shutil.which("fourflow", path=str(ROOT / ".venv" / "bin")) or shutil.which("fourflow")
    assert found, "the fourflow command is not installed"
    return found
