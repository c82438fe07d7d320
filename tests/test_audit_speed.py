"""The audit's fast paths give what the slow ones give: an envelope's leaf and digest
come out as ledger.canonical's, an envelope is accepted exactly when the models accept
it, and on a store with planted faults the findings are those of the models and of
verify_inclusion event by event.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import ledger.audit as audit
import ledger.audit_decode as audit_decode
from ledger.audit import Auditor
from ledger.canonical import canonical_json, event_digest, leaf_hash, loads_canonical
from ledger.models import SignedEnvelope
from ledger.runtime import Runtime
from ledger.signing import envelopes_for, sign_submission
from tests.conftest import make_events

pytestmark = pytest.mark.filterwarnings("error")


_PAYLOADS = {
    # floats: the standard library reads it, ledger.canonical writes it
    "floats": {"t": 21.5, "n": 1e20, "deep": [{"a": None, "b": True}]},
    # none: orjson reads and writes it (the common case, and most stored envelopes)
    "simple": {"bizStep": "shipping", "n": 2**53 - 1, "deep": [{"a": None, "b": True}], "名": "é😀"},
}  # fmt: skip


@pytest.fixture(scope="module", params=list(_PAYLOADS))
def envelope(request: pytest.FixtureRequest) -> dict[str, Any]:
    runtime, keys = Runtime.dev(db_url="sqlite://", submitters=1)
    try:
        domain = runtime.intake.domain
        events = make_events(keys.submitters[0].address, 5, stream="speed.custody")
        events[2] = events[2].model_copy(update={"payload": _PAYLOADS[request.param]})
        sealed = envelopes_for(
            sign_submission(events, private_key=keys.submitters[0].key, domain=domain),
            domain=domain,
        )
        return sealed.envelopes[2].model_dump(mode="json")
    finally:
        runtime.close()


def _domain(raw: dict[str, Any]) -> audit_decode.Domain:
    return raw["domain"], canonical_json(raw["domain"])


def test_leaf_and_digest_are_ledger_canonicals(envelope: dict[str, Any]) -> None:
    text = canonical_json(envelope).decode()
    raw = loads_canonical(text)
    for domain in (_domain(raw), ({"other": 1}, b"{}")):  # ours, or written afresh
        got, digest, leaf, time_ms, problem, ref_digest = audit_decode.decode(text, domain)
        assert problem is None and got == raw
        assert ref_digest == hashlib.sha256(canonical_json(raw["submission"])).digest()
        assert leaf == leaf_hash(raw)
        assert digest == event_digest(raw["event"])
        assert time_ms == SignedEnvelope.model_validate(raw).event.event_time_ms


def _edits() -> Iterator[tuple[str, Any]]:
    """(name, edit of an envelope): each makes it invalid, or keeps it valid in a way
    the fast path does not take."""

    def put(path: str, value: Any) -> Any:
        def edit(e: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            for key in parents:
                e = e[key]
            e[last] = value

        return edit

    yield "extra key", lambda e: e.update(extra=1)
    yield "missing domain", lambda e: e.pop("domain")
    yield "extra body key", put("event.extra", 1)
    yield "bad kind", put("event.kind", "1bad")
    yield "bool version", put("event.schema_version", True)
    yield "version 0", put("event.schema_version", 0)
    yield "upper stream", put("event.stream", "Speed")
    yield "space in id", put("event.event_id", "a b")
    yield "no assets", put("event.asset_ids", [])
    yield "repeated assets", put("event.asset_ids", ["a", "a"])
    yield "time without zone", put("event.event_time", "2026-11-26T08:00:00")
    yield "time before 1970", put("event.event_time", "1969-12-31T23:00:00Z")
    yield "time with a newline", put("event.event_time", "2026-11-26T08:00:00Z\n")
    yield "arabic digits", put("event.event_time", "٢٠٢٦-11-26T08:00:00Z")
    yield "short submitter", put("event.submitter", "0x1234")
    yield "payload a list", put("event.payload", [1])
    yield "deep payload", put("event.payload", json.loads('{"a":' * 17 + "1" + "}" * 17))
    yield "16 deep payload", put("event.payload", json.loads('{"a":' * 16 + "1" + "}" * 16))
    yield "tiny float", put("event.payload", {"x": 1e-7})
    yield "upper root", put("submission.root", "0x" + "AB" * 32)
    yield "count 0", put("submission.count", 0)
    yield "negative index", put("submission.index", -1)
    yield "index past count", put("submission.index", 99)
    yield "two-key step", put("submission.proof", [{"left": "00" * 32, "right": "00" * 32}])
    yield "middle step", put("submission.proof", [{"middle": "00" * 32}])
    yield "short sibling", put("submission.proof", [{"left": "00"}])
    yield "short signature", put("submission.signature", "0x00")
    yield "string chain id", put("domain.chainId", "1")
    yield "bool chain id", put("domain.chainId", True)
    yield "other contract", put("domain.verifyingContract", "0x" + "11" * 20)
    # what orjson reads or writes otherwise than the standard library and JCS
    yield "big int in payload", put("event.payload.n", 2**53)
    yield "huge int in payload", put("event.payload.n", 10**30)
    yield "negative big int", put("event.payload.deep", [-(2**53)])
    yield "whole float in payload", put("event.payload.n", 2.0)
    yield "float in a list", put("event.payload.deep", [{"a": 0.5}])
    yield "astral key", put("event.payload.deep", [{"\U0001f600": 1, "\ue000": 2}])
    yield "escapes", put("event.payload.deep", ['a"b\\c\n\u0001'])
    yield "whole float count", put("submission.count", 5.0)
    yield "16-digit count", put("submission.count", 10**15)
    yield "big index", put("submission.index", 2**60)
    yield "whole float version", put("event.schema_version", 1.0)
    yield "big chain id", put("domain.chainId", 2**60)
    yield "float chain id", put("domain.chainId", 31337.0)
    yield "astral domain name", put("domain.name", "fourflow😀")


@pytest.mark.parametrize(("name", "edit"), list(_edits()), ids=[n for n, _ in _edits()])
def test_an_envelope_is_accepted_exactly_when_the_models_accept_it(
    envelope: dict[str, Any], name: str, edit: Any
) -> None:
    raw = copy.deepcopy(envelope)
    edit(raw)
    text = json.dumps(raw)  # not necessarily canonical: the audit reads what is stored
    parsed = loads_canonical(text)
    got, digest, leaf, time_ms, problem, ref_digest = audit_decode.decode(text, _domain(envelope))
    assert json.dumps(got) == json.dumps(parsed)  # 2**53 and 2.0**53 differ here
    try:
        model = SignedEnvelope.model_validate(parsed)
    except ValidationError as exc:
        assert problem == str(exc).splitlines()[0]
        assert digest is None and time_ms is None and ref_digest is None
        assert leaf == leaf_hash(parsed)
    else:
        assert problem is None
        submission = model.submission.model_dump(mode="json")
        assert ref_digest == hashlib.sha256(canonical_json(submission)).digest()
        assert digest == event_digest(model.event.model_dump(mode="json"))
        assert leaf == leaf_hash(parsed) and time_ms == model.event.event_time_ms


def test_a_simple_envelope_never_reaches_the_standard_library(
    envelope: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the speed of the audit rests on this: orjson alone reads and writes the common case
    text = canonical_json(envelope).decode()
    simple = "t" not in envelope["event"]["payload"]

    def slow(text: str) -> Any:
        raise AssertionError("the standard library read it")

    monkeypatch.setattr(audit_decode, "loads_canonical", slow)
    if simple:
        _, digest, leaf, _, problem, _ = audit_decode.decode(text, _domain(envelope))
        assert problem is None and leaf == leaf_hash(envelope)
        assert digest == event_digest(envelope["event"])
    else:
        with pytest.raises(AssertionError, match="the standard library read it"):
            audit_decode.decode(text, _domain(envelope))


def test_text_that_is_not_an_envelope_is_named(envelope: dict[str, Any]) -> None:
    assert audit_decode.decode("[1]", _domain(envelope)) == ([1], None, None, None, None, None)
    raw, digest, leaf, _, problem, _ = audit_decode.decode("{not json", _domain(envelope))
    assert raw is None and digest is None and leaf is None and problem
    # deeper than orjson (1,024 levels) and the standard library follow: named, not a crash
    deep = '{"event":' + "[" * 5_000 + "]" * 5_000 + "}"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)  # Python's default (the test runner may have raised it)
    try:
        raw, digest, leaf, time_ms, problem, _ = audit_decode.decode(deep, _domain(envelope))
    finally:
        sys.setrecursionlimit(limit)
    assert raw is None and digest is None and leaf is None and time_ms is None
    assert problem is not None and "recursion" in problem


# --- serial and parallel on a store with planted faults ---------------------------------------


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Runtime]:
    """Two streams of two batches each (one submission in two batches, one submission
    per batch), then: a doctored payload, a forged signature, a deleted event, an
    envelope that is not JSON, two events swapped, an event moved to the next batch."""
    db = tmp_path / "store.sqlite"
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{db}", submitters=2)
    domain = runtime.intake.domain
    for i, key in enumerate(keys.submitters):
        for size in (30, 9):
            events = make_events(key.address, size, stream=f"faults.{i}", prefix=f"f{i}-{size}")
            runtime.intake.submit(sign_submission(events, private_key=key.key, domain=domain))
            runtime.anchorer(keys.oracle, max_batch=20, max_age_s=0).run_once(force=True)
    while runtime.store.backlog():
        runtime.anchorer(keys.oracle, max_batch=20, max_age_s=0).run_once(force=True)

    def sql(statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(db)) as con, con:
            return con.execute(statement, args).fetchall()

    def envelope_at(stream: str, seq: int, index: int) -> tuple[str, dict[str, Any]]:
        ((event_id, text),) = sql(
            "SELECT event_id, envelope FROM events WHERE stream = ? AND batch_seq = ? "
            "AND leaf_index = ?",
            stream,
            seq,
            index,
        )
        return event_id, loads_canonical(text)

    event_id, doctored = envelope_at("faults.0", 0, 3)
    doctored["event"]["payload"]["seq"] = 1000
    sql(
        "UPDATE events SET envelope = ? WHERE event_id = ?",
        canonical_json(doctored).decode(),
        event_id,
    )
    event_id, forged = envelope_at("faults.1", 1, 4)
    forged["submission"]["signature"] = "0x" + "11" * 65
    sql(
        "UPDATE events SET envelope = ? WHERE event_id = ?",
        canonical_json(forged).decode(),
        event_id,
    )
    sql("DELETE FROM events WHERE stream = 'faults.0' AND batch_seq = 1 AND leaf_index = 2")
    sql(
        "UPDATE events SET envelope = '{not json' WHERE stream = 'faults.1' AND batch_seq = 0 "
        "AND leaf_index = 7"
    )
    sql(
        "UPDATE events SET leaf_index = 99 WHERE stream = 'faults.1' AND batch_seq = 0 AND leaf_index = 1"
    )
    sql(
        "UPDATE events SET leaf_index = 1 WHERE stream = 'faults.1' AND batch_seq = 0 AND leaf_index = 2"
    )
    sql(
        "UPDATE events SET leaf_index = 2 WHERE stream = 'faults.1' AND batch_seq = 0 AND leaf_index = 99"
    )
    sql(
        "UPDATE events SET batch_seq = 1 WHERE stream = 'faults.0' AND batch_seq = 0 AND leaf_index = 9"
    )
    try:
        yield runtime
    finally:
        runtime.close()


def test_the_fast_paths_report_what_the_slow_ones_do(
    faulty: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run() -> dict[str, Any]:
        auditor = Auditor(faulty.chain, faulty.deployment, source=faulty.store, bytecode=False)
        return auditor.run().to_json()

    fast = run()
    # every envelope through the models, every inclusion through verify_inclusion
    monkeypatch.setattr(audit_decode, "_hashes", lambda raw, domain, simple: None)
    monkeypatch.setattr(audit.Auditor, "_included", lambda self, events: set())
    slow = run()
    assert fast == slow
    codes = {f["code"] for f in fast["findings"]}
    assert {
        "payload_tampered",
        "signature_invalid",
        "event_missing",
        "envelope_invalid",
        "root_mismatch",
    } <= codes
    assert not fast["ok"]


def _dies_on_a_chunk(positions: list[int]) -> Any:
    """decode_stored, in a worker that dies on the chunk holding position 40."""
    if 40 in positions:
        os._exit(3)
    return audit_decode.decode_stored(positions)


@pytest.mark.parametrize("fault", ["none", "a worker dies"])
def test_worker_processes_report_what_the_auditor_alone_does(
    faulty: Runtime, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Envelopes read and decoded in worker processes (``jobs``), 5 at a time, give the
    report that the auditor alone gives; and a worker that dies mid-audit costs nothing
    but time."""

    def run(jobs: int) -> tuple[dict[str, Any], int]:
        quick = 0
        original = Auditor._from_quick

        def counted(self: Auditor, row: Any, sent: Any) -> Any:
            nonlocal quick
            quick += 1
            return original(self, row, sent)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Auditor, "_from_quick", counted)
            auditor = Auditor(
                faulty.chain, faulty.deployment, source=faulty.store, bytecode=False, jobs=jobs
            )
            return auditor.run().to_json(), quick

    monkeypatch.setattr(audit, "_PARALLEL_FROM", 0)
    monkeypatch.setattr(audit, "_CHUNK", 5)
    alone, none_sent = run(jobs=1)
    if fault == "a worker dies":
        monkeypatch.setattr(audit, "decode_stored", _dies_on_a_chunk)
    workers, sent = run(jobs=2)
    assert workers == alone
    assert none_sent == 0
    total = alone["counts"]["events"]
    if fault == "none":
        assert sent == total - 1  # all but the envelope that is not JSON
    else:
        assert 0 < sent < total - 5  # some chunks, then the auditor alone


def test_workers_read_each_database(any_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite and PostgreSQL alike, the workers read every envelope themselves."""
    runtime, keys = Runtime.dev(db_url=any_db_url, submitters=1)
    try:
        key, domain = keys.submitters[0], runtime.intake.domain
        for b in range(3):
            events = make_events(key.address, 7, stream="workers.db", prefix=f"w{b}")
            runtime.intake.submit(sign_submission(events, private_key=key.key, domain=domain))
        runtime.anchorer(keys.oracle, max_batch=10, max_age_s=0).run_once(force=True)
        monkeypatch.setattr(audit, "_PARALLEL_FROM", 0)
        monkeypatch.setattr(audit, "_CHUNK", 4)
        sent: list[Any] = []
        original = Auditor._from_quick
        monkeypatch.setattr(
            Auditor, "_from_quick", lambda self, row, q: sent.append(q) or original(self, row, q)
        )
        reports = [
            Auditor(
                runtime.chain, runtime.deployment, source=runtime.store, bytecode=False, jobs=jobs
            )
            .run()
            .to_json()
            for jobs in (1, 2)
        ]
        assert reports[0] == reports[1] and reports[0]["ok"]
        assert reports[0]["counts"]["events"] == len(sent) == 21
    finally:
        runtime.close()


def test_jobs_must_be_one_or_more(faulty: Runtime) -> None:
    from ledger.errors import InvalidInput

    with pytest.raises(InvalidInput, match="jobs must be 1 or more, got 0"):
        Auditor(faulty.chain, faulty.deployment, source=faulty.store, bytecode=False, jobs=0)


def test_the_cycle_collector_is_paused_for_the_events_and_left_as_found(faulty: Runtime) -> None:
    import gc

    seen: list[bool] = []
    original = Auditor._check_stream_events

    def spy(self: Auditor, *args: Any) -> None:
        seen.append(gc.isenabled())
        original(self, *args)

    auditor = Auditor(faulty.chain, faulty.deployment, source=faulty.store, bytecode=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Auditor, "_check_stream_events", spy)
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            try:
                auditor.run()
                assert gc.isenabled() is enabled
            finally:
                gc.enable()
    assert seen and not any(seen)


def test_the_audit_lets_each_valid_envelope_go_once_decoded(tmp_path: Path) -> None:
    """What the auditor holds per event while it checks a stream is what the signature
    checks read (_Event's signing, sub_index, ref_digest), not the parsed envelope
    (about 6 kB of Python objects a stored envelope, 6 GB for a stream of 10^6). Four
    submissions of 1,000 events in one stream: the audit's peak under tracemalloc."""
    import tracemalloc

    runtime, keys = Runtime.dev(db_url=f"sqlite:///{tmp_path}/store.sqlite", submitters=1)
    try:
        key, domain = keys.submitters[0], runtime.intake.domain
        for b in range(4):
            events = make_events(key.address, 1000, stream="held.custody", prefix=f"h{b}")
            runtime.intake.submit(sign_submission(events, private_key=key.key, domain=domain))
        anchorer = runtime.anchorer(keys.oracle, max_batch=1000)
        while runtime.store.backlog():
            anchorer.run_once(force=True)
        auditor = Auditor(runtime.chain, runtime.deployment, source=runtime.store, bytecode=False)
        assert auditor.run().ok  # once before measuring: imports and caches settle
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            report = auditor.run()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.ok and report.counts.signatures == 4000
        assert (peak - start) / 4000 < 3_000  # bytes an event; 6,078 when they were held
    finally:
        runtime.close()


# --- what the audit reads again ----------------------------------------------------------------


def _one_stream(tmp_path: Path, n: int = 3) -> tuple[Runtime, Any, Path]:
    db = tmp_path / "store.sqlite"
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{db}", submitters=1)
    key = keys.submitters[0]
    events = make_events(key.address, n, stream="again.one", prefix="r")
    runtime.intake.submit(
        sign_submission(events, private_key=key.key, domain=runtime.intake.domain)
    )
    return runtime, keys, db


def _sql(db: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as con, con:
        return con.execute(statement, args).fetchall()


def test_an_event_id_repeated_in_a_doctored_store_is_read_again_by_its_own_row(
    tmp_path: Path,
) -> None:
    """A forged, unanchored event reuses a genuine event's id in a table rebuilt without
    UNIQUE(event_id), with the genuine submission's signature copied onto its own
    one-event submission: read again by position, it is its own envelope that fails."""
    from ledger.merkle import build_tree
    from ledger.models import event_time_ms

    runtime, _, db = _one_stream(tmp_path, n=1)
    try:
        ((ddl,),) = _sql(db, "SELECT sql FROM sqlite_master WHERE name = 'events'")
        indexes = [
            sql
            for (sql,) in _sql(
                db,
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type = 'index' "
                "AND sql IS NOT NULL",
            )
        ]
        loose = ddl.replace("CREATE TABLE events", "CREATE TABLE loose")
        loose = loose.replace(", \n\tUNIQUE (event_id)", "").replace(",\n\tUNIQUE (event_id)", "")
        assert "UNIQUE" not in loose
        with closing(sqlite3.connect(db)) as con, con:
            con.executescript(
                f"{loose}; INSERT INTO loose SELECT * FROM events; DROP TABLE events; "
                "ALTER TABLE loose RENAME TO events;"
            )
            for sql in indexes:
                con.execute(sql)
        ((text,),) = _sql(db, "SELECT envelope FROM events")
        genuine = loads_canonical(text)
        body = {**genuine["event"], "stream": "again.forged", "payload": {"n": 999}}
        ref = {
            "root": "0x" + build_tree([event_digest(body)]).root.hex(),
            "count": 1,
            "index": 0,
            "proof": [],
            "signature": genuine["submission"]["signature"],
        }
        forged = {"event": body, "submission": ref, "domain": genuine["domain"]}
        _sql(
            db,
            "INSERT INTO events (position, event_id, stream, kind, submitter, event_time_ms, "
            "digest, leaf, envelope, received_at_ms) VALUES (0, ?, 'again.forged', ?, ?, ?, ?, "
            "?, ?, 0)",
            body["event_id"], body["kind"], body["submitter"], event_time_ms(body["event_time"]),
            event_digest(body).hex(), leaf_hash(forged).hex(), canonical_json(forged).decode(),
        )  # fmt: skip
        report = Auditor(runtime.chain, runtime.deployment, source=runtime.store, bytecode=False)
        findings = report.run().findings
        assert [(f.code, "again.forged" in f.message) for f in findings] == [
            ("signature_invalid", True)
        ]
    finally:
        runtime.close()


@pytest.mark.parametrize("change", ["deleted", "edited"])
def test_a_store_changed_under_the_audit_stops_it(tmp_path: Path, change: str) -> None:
    """The signature checks read an envelope again (here: none is shown included); a row
    gone or changed since the stream was read is a StoreError, never a verdict."""
    from ledger.errors import StoreError

    runtime, _, db = _one_stream(tmp_path)
    original = Auditor._check_stream_events

    def racing(self: Auditor, *args: Any) -> None:
        if change == "deleted":
            _sql(db, "DELETE FROM events WHERE event_id = 'r-0'")
        else:
            ((text,),) = _sql(db, "SELECT envelope FROM events WHERE event_id = 'r-0'")
            edited = loads_canonical(text)
            edited["event"]["payload"]["seq"] = 1000
            _sql(db, "UPDATE events SET envelope = ? WHERE event_id = 'r-0'",
                 canonical_json(edited).decode())  # fmt: skip
        original(self, *args)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Auditor, "_check_stream_events", racing)
            patch.setattr(Auditor, "_included", lambda self, events: set())
            auditor = Auditor(
                runtime.chain, runtime.deployment, source=runtime.store, bytecode=False
            )
            with pytest.raises(StoreError, match="the store changed while it was audited"):
                auditor.run()
    finally:
        runtime.close()


def test_a_database_error_while_streaming_rows_is_a_store_error(tmp_path: Path) -> None:
    from ledger.errors import StoreError

    runtime, _, db = _one_stream(tmp_path)
    try:
        _sql(db, "UPDATE events SET envelope = CAST(x'7b22ff22' AS TEXT) WHERE event_id = 'r-1'")
        auditor = Auditor(runtime.chain, runtime.deployment, source=runtime.store, bytecode=False)
        with pytest.raises(StoreError, match="database error: OperationalError"):
            auditor.run()
    finally:
        runtime.close()


def test_a_forged_submission_signature_is_recovered_once_and_named_for_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, keys, db = _one_stream(tmp_path, n=4)
    try:
        runtime.anchorer(keys.oracle, max_batch=10, max_age_s=0).run_once(force=True)
        for event_id, text in _sql(db, "SELECT event_id, envelope FROM events"):
            envelope = loads_canonical(text)
            envelope["submission"]["signature"] = "0x" + "11" * 65  # recovers no one
            _sql(db, "UPDATE events SET envelope = ? WHERE event_id = ?",
                 canonical_json(envelope).decode(), event_id)  # fmt: skip
        recoveries: list[str] = []
        real = audit.recover_envelope_signer

        def counted(envelope: Any) -> str:
            recoveries.append(envelope.event.event_id)
            return real(envelope)

        monkeypatch.setattr(audit, "recover_envelope_signer", counted)
        report = Auditor(runtime.chain, runtime.deployment, source=runtime.store, bytecode=False)
        unsigned = [f for f in report.run().findings if f.code == "signature_invalid"]
        assert sorted(f.details["event_id"] for f in unsigned) == [f"r-{i}" for i in range(4)]
        assert len({f.message.split(": ", 1)[1] for f in unsigned}) == 1  # the same reason
        assert len(recoveries) == 1
    finally:
        runtime.close()
