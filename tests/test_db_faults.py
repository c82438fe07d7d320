"""The database fails under a request: it is locked, it goes away, or the writer dies
mid-transaction. The API answers 503 with a retry hint (never a hang, never a 500),
recovers without a restart, and nothing half-written remains: a submission is stored
whole or not at all, and exactly once after it is sent again.

On SQLite and on PostgreSQL, through the app in process (FastAPI's TestClient) on an
in-process chain: the faults are the database's, so a server process adds nothing here
(tests/test_fuzz_api.py runs the real server); the writer killed before its COMMIT is a
Python process of its own. The store's lock wait is cut to
LOCK_WAIT_MS with ``FOURFLOW_DB_LOCK_TIMEOUT_MS`` (SQLite busy_timeout, PostgreSQL
lock_timeout) so a held lock is answered quickly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.siwe_client import sign_in
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import Store
from tests.conftest import PG_ADMIN_URL, make_events

LOCK_WAIT_MS = 300
ANSWER_WITHIN_S = 30.0  # a request still unanswered after this hangs: a failure
T = TypeVar("T")


class Answer(Protocol):
    """An HTTP answer as the TestClient gives it."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def headers(self) -> Any: ...

    def json(self) -> Any: ...


@dataclass
class Site:
    """The app on one database, with a signed-in firm, and the means to break it."""

    kind: str  # "sqlite" or "postgres"
    url: str
    runtime: Runtime
    keys: DevKeys
    client: TestClient

    @property
    def dsn(self) -> str:
        """The PostgreSQL database for psycopg2 (no SQLAlchemy driver suffix)."""
        return self.url.replace("postgresql+psycopg2://", "postgresql://", 1)

    @property
    def database(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def sqlite_file(self) -> str:
        return self.url.removeprefix("sqlite:///")

    def submission(self, n: int, prefix: str) -> dict[str, Any]:
        firm = self.keys.submitters[0]
        events = make_events(firm.address, n, prefix=prefix)
        signed = sign_submission(events, private_key=firm.key, domain=self.runtime.intake.domain)
        return signed.model_dump(mode="json")

    def counts(self) -> dict[str, int]:
        """The counts through a store of its own (not the app's pool)."""
        store = Store.open(self.url)
        try:
            counts = store.counts()
            with store.session() as session:
                counts["event_assets"] = int(
                    session.connection()
                    .exec_driver_sql("SELECT count(*) FROM event_assets")
                    .scalar_one()
                )
            return counts
        finally:
            store.close()

    def stored_ids(self, body: dict[str, Any]) -> set[str]:
        return self.runtime.store.stored_ids([e["event_id"] for e in body["events"]])

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Another connection holds the write lock until the block ends. SQLite: BEGIN
        EXCLUSIVE (in WAL mode readers go on); PostgreSQL: the events table in ACCESS
        EXCLUSIVE mode (reads of it wait too)."""
        if self.kind == "sqlite":
            holder = sqlite3.connect(self.sqlite_file, isolation_level=None, timeout=0)
            try:
                holder.execute("BEGIN EXCLUSIVE")
                yield
                holder.execute("ROLLBACK")
            finally:
                holder.close()
            return
        import psycopg2

        pg = psycopg2.connect(self.dsn)
        try:
            with pg.cursor() as cur:
                cur.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # opens a transaction
            yield
            pg.rollback()
        finally:
            pg.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("FOURFLOW_DB_LOCK_TIMEOUT_MS", str(LOCK_WAIT_MS))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite"
    else:
        url = request.getfixturevalue("pg_url")
    runtime, keys = Runtime.dev(db_url=url, submitters=1)
    settings = Settings(max_body_bytes=1024 * 1024, max_events_per_submission=500)
    try:
        with TestClient(create_app(runtime, settings=settings)) as client:
            client.headers["Authorization"] = f"Bearer {sign_in(client, keys.submitters[0])}"
            yield Site(request.param, url, runtime, keys, client)
    finally:
        runtime.close()


def bounded(call: Callable[[], T], *, within_s: float = ANSWER_WITHIN_S) -> T:
    """``call()``, failing the test if it has not returned within ``within_s``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="bounded-request", daemon=True)
    worker.start()
    worker.join(within_s)
    assert not worker.is_alive(), f"no answer within {within_s} s: the request hangs"
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


# what a store failure's answer must not tell a client: the driver's words, the SQL and
# its parameters (other callers' data), the database's name
_INTERNALS = ("SQL", "parameters", "sqlite3", "psycopg2", "OperationalError", "fourflow_test_")


def assert_unavailable(answer: Answer) -> None:
    """503, a Retry-After in whole seconds, the store's error code, a plain message."""
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.json()
    error = body["error"] if "error" in body else {"code": body["code"], "message": body["detail"]}
    assert error["code"] == "store_unavailable", error
    assert "retry" in error["message"]
    leaked = [word for word in _INTERNALS if word in answer.text]
    assert not leaked, f"the answer shows {leaked}: {answer.text[:300]}"


# --- (1) locked ------------------------------------------------------------------------------


def test_a_locked_database_is_a_503_then_the_same_submission_is_stored_once(site: Site) -> None:
    first = site.submission(1, "before-lock")
    assert site.client.post("/v1/events", json=first).status_code == 202
    body = site.submission(20, "under-lock")
    with site.write_lock():
        started = time.monotonic()
        answer = bounded(lambda: site.client.post("/v1/events", json=body))
        assert_unavailable(answer)
        waited = time.monotonic() - started
        assert waited < 10 * LOCK_WAIT_MS / 1000 + 5, (
            f"answered after {waited:.1f} s: the store did not honour FOURFLOW_DB_LOCK_TIMEOUT_MS"
        )
        read = bounded(lambda: site.client.get(f"/v1/events/{first['events'][0]['event_id']}"))
        if site.kind == "postgres":  # ACCESS EXCLUSIVE keeps readers out as well
            assert_unavailable(read)
        else:  # SQLite's write lock leaves WAL readers alone
            assert read.status_code == 200, read.text
    assert site.stored_ids(body) == set()
    assert (site.counts()["events"], site.counts()["event_assets"]) == (1, 1)

    again = bounded(lambda: site.client.post("/v1/events", json=body))
    assert again.status_code == 202, again.text
    assert (again.json()["accepted"], again.json()["duplicates"]) == (20, 0)
    replay = bounded(lambda: site.client.post("/v1/events", json=body))
    assert (replay.json()["accepted"], replay.json()["duplicates"]) == (0, 20)
    counts = site.counts()
    assert counts["events"] == counts["pending"] == 21
    assert counts["event_assets"] == 21
    assert site.stored_ids(body) == {e["event_id"] for e in body["events"]}


# --- (2) gone ------------------------------------------------------------------------------


@contextmanager
def database_unreachable(site: Site) -> Iterator[None]:
    """PostgreSQL refuses new connections to the database and ends the ones it has (the
    app's pool included), until the block ends."""
    import psycopg2

    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{site.database}" ALLOW_CONNECTIONS false')
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (site.database,),
            )
            deadline = time.monotonic() + 10
            while True:  # termination is asynchronous: wait until they are all gone
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (site.database,)
                )
                row = cur.fetchone()
                if row is not None and row[0] == 0:
                    break
                assert time.monotonic() < deadline, "backends outlived pg_terminate_backend"
                time.sleep(0.05)
        yield
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{site.database}" ALLOW_CONNECTIONS true')
        admin.close()


def test_a_database_that_goes_away_is_a_503_and_the_api_recovers_without_a_restart(
    site: Site,
) -> None:
    if site.kind == "sqlite":
        pytest.skip(
            "no honest equivalent for an embedded file: the pool's open connections keep "
            "the file's inode, so a moved or deleted file goes on taking writes no one "
            "else sees, and permissions do not stop root (these tests run as root)"
        )
    first = site.submission(1, "before-outage")
    assert site.client.post("/v1/events", json=first).status_code == 202
    event_id = first["events"][0]["event_id"]
    body = site.submission(5, "during-outage")
    with database_unreachable(site):
        assert_unavailable(bounded(lambda: site.client.post("/v1/events", json=body)))
        assert_unavailable(bounded(lambda: site.client.get(f"/v1/events/{event_id}")))
        assert_unavailable(bounded(lambda: site.client.post("/v1/auth/nonce")))  # sign-in writes
        assert_unavailable(bounded(lambda: site.client.get("/v1/epcis/events")))  # RFC 7807
        health = bounded(lambda: site.client.get("/v1/health"))
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert health.json()["store"]["ok"] is False
    # back: the same app, no restart; its pool pings and reconnects
    again = bounded(lambda: site.client.post("/v1/events", json=body))
    assert again.status_code == 202, again.text
    assert again.json()["accepted"] == 5
    assert bounded(lambda: site.client.get(f"/v1/events/{event_id}")).status_code == 200
    assert bounded(lambda: site.client.get("/v1/health")).status_code == 200
    assert site.counts()["events"] == 6


# --- (3) cut off mid-transaction -------------------------------------------------------------

_STALL_KEY = 0x66660003  # the advisory lock the stalled INSERT waits on


@contextmanager
def stall_insert_of(site: Site, event_id: str) -> Iterator[Any]:
    """A trigger makes the INSERT of the asset row of ``event_id`` (the last event of a
    submission: every event and the other asset rows are written before it) wait on an
    advisory lock this connection holds, until the block ends. Yields the admin cursor."""
    import psycopg2

    admin = psycopg2.connect(site.dsn)
    admin.autocommit = True
    cur = admin.cursor()
    try:
        cur.execute("SELECT pg_advisory_lock(%s)", (_STALL_KEY,))
        cur.execute(
            f"""
            CREATE FUNCTION stall_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.event_id = '{event_id}' THEN
                    PERFORM set_config('lock_timeout', '0', true);  -- wait as long as we hold it
                    PERFORM pg_advisory_xact_lock({_STALL_KEY});
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER stall_for_test AFTER INSERT ON event_assets
                FOR EACH ROW EXECUTE FUNCTION stall_for_test();
            """
        )
        yield cur
    finally:
        cur.execute("SELECT pg_advisory_unlock(%s)", (_STALL_KEY,))
        cur.execute("DROP TRIGGER IF EXISTS stall_for_test ON event_assets")
        cur.execute("DROP FUNCTION IF EXISTS stall_for_test()")
        cur.close()
        admin.close()


def _stalled_writer(cur: Any) -> int:
    """The backend waiting in the trigger; fails unless it appears within 20 s."""
    deadline = time.monotonic() + 20
    while True:
        cur.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
            (_STALL_KEY & 0xFFFFFFFF,),
        )
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
        assert time.monotonic() < deadline, "the submission never reached the stalled INSERT"
        time.sleep(0.02)


def _tables_written_by(cur: Any, pid: int) -> set[str]:
    cur.execute(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = %s AND l.mode = 'RowExclusiveLock' AND l.granted",
        (pid,),
    )
    return {name for (name,) in cur.fetchall()}


def test_a_submission_whose_database_backend_dies_mid_write_leaves_nothing(site: Site) -> None:
    """PostgreSQL: the backend writing a large submission is terminated while its
    transaction holds every event and all but the last asset row."""
    if site.kind == "sqlite":
        pytest.skip("SQLite has no backend to terminate; see the killed-writer test below")
    body = site.submission(400, "cut-off")
    last = body["events"][-1]["event_id"]
    before = site.counts()
    with stall_insert_of(site, last) as cur:
        answer: dict[str, Answer] = {}

        def submit() -> None:
            answer["r"] = site.client.post("/v1/events", json=body)

        writer = threading.Thread(target=submit, name="stalled-submission", daemon=True)
        writer.start()
        pid = _stalled_writer(cur)
        assert {"events", "event_assets"} <= _tables_written_by(cur, pid)  # mid-write
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        writer.join(ANSWER_WITHIN_S)
        assert not writer.is_alive(), "the request hangs after its backend died"
    assert_unavailable(answer["r"])
    assert site.counts() == before
    assert site.stored_ids(body) == set()

    _resubmitted_whole(site, body, before)


_KILL_BEFORE_COMMIT = """
import json, os, signal, sys
from sqlalchemy import event
from ledger.models import Eip712Domain, SubmissionIn
from ledger.signing import envelopes_for
from ledger.store import Store

url, submission_file, report_file = sys.argv[1:4]
data = json.loads(open(submission_file).read())
store = Store.open(url)

def die_before_commit(connection):
    # the transaction's own view: every row written, none committed
    written = connection.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
    with open(report_file, "w") as report:
        report.write(str(written))
        report.flush()
        os.fsync(report.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

event.listen(store.engine, "commit", die_before_commit)
sealed = envelopes_for(SubmissionIn.model_validate(data["submission"]),
                       domain=Eip712Domain.model_validate(data["domain"]))
store.accept(sealed.envelopes)
print("committed: the kill did not happen")
"""


def test_a_submission_whose_writer_is_killed_before_commit_leaves_nothing(
    site: Site, tmp_path: Path
) -> None:
    """Any database: the process writing a large submission is SIGKILLed after all its
    rows are written and before COMMIT. The kill comes from a SQLAlchemy commit hook in
    that process, the only way to stop it at that exact point (as ledger/faults.py)."""
    body = site.submission(400, "killed")
    before = site.counts()
    job = tmp_path / "submission.json"
    job.write_text(
        json.dumps({"submission": body, "domain": site.runtime.intake.domain.model_dump()})
    )
    report = tmp_path / "written.txt"
    env = os.environ | {"FOURFLOW_DB_LOCK_TIMEOUT_MS": str(LOCK_WAIT_MS)}
    writer = subprocess.run(
        [sys.executable, "-c", _KILL_BEFORE_COMMIT, site.url, str(job), str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stdout + writer.stderr
    assert int(report.read_text()) == before["events"] + 400  # it was all there, uncommitted
    assert site.counts() == before
    assert site.stored_ids(body) == set()

    _resubmitted_whole(site, body, before)


def _resubmitted_whole(site: Site, body: dict[str, Any], before: dict[str, int]) -> None:
    """The submission sent again is stored, all 400 events of it, each once."""
    again = bounded(lambda: site.client.post("/v1/events", json=body))
    assert again.status_code == 202, again.text
    assert again.json()["accepted"] == 400
    after = site.counts()
    assert after["events"] == before["events"] + 400
    assert after["event_assets"] == before["event_assets"] + 400
