"""`fourflow audit` on a realistic ledger: the watched warehouse of tests/history_scene.py
(signed readings, alarms and counts, anchored batches, covenant facts on-chain, a pledge)
plus one stream of two batches, on the in-process chain.

Each tamper edits a copy of the scene's SQLite store the way someone with the database
would, and the audit must name it by its code and name the event, stream and batch.
Changes to the chain itself run inside an eth-tester snapshot and are reverted.
"""

from __future__ import annotations

# ruff: noqa: F811 - the `scene` fixture, imported from tests.history_scene, is a parameter
import copy
import json
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner, Result

from api.cli import app as cli_app
from ledger.anchoring import Anchorer
from ledger.audit import FINDING_CODES, Auditor, AuditReport, Finding
from ledger.bundle import BundleBuilder
from ledger.canonical import canonical_json, event_digest, leaf_hash, loads_canonical
from ledger.chain import AnchorRegistry, Chain, Deployment
from ledger.collateral import Fact, FactKind, deploy_collateral, evidence_from_bundle
from ledger.contracts import Artifact
from ledger.errors import InvalidInput
from ledger.intake import Intake
from ledger.models import EventBody, SignedEnvelope, utc_text
from ledger.runtime import Runtime
from ledger.signing import SUBMISSION_TYPES, envelopes_for, sign_submission
from ledger.store import Store
from tests.conftest import AnvilNode, fourflow_bin, make_events
from tests.history_scene import Scene, scene  # noqa: F401 - the module-scoped fixture

pytestmark = pytest.mark.filterwarnings("error")

STREAM = "audit.custody"  # two batches: 5 events, then 4
FINDINGS = "warehouse.findings"  # the oracle's alarms and counts: what facts cite
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Ledger:
    scene: Scene
    store_path: Path
    submitter: LocalAccount  # registered on the anchor registry
    gateway: LocalAccount  # the oracle's signing key
    compiled: Mapping[str, Artifact] | None = None  # set by the clean audit, which compiles

    @property
    def runtime(self) -> Runtime:
        return self.scene.runtime

    @property
    def chain(self) -> Chain:
        return self.scene.runtime.chain

    @property
    def deployment(self) -> Deployment:
        return self.scene.runtime.deployment


@pytest.fixture(scope="module")
def ledger(scene: Scene) -> Ledger:
    runtime, keys = scene.runtime, scene.keys
    submitter = keys.submitters[0]
    for n in (5, 4):
        events = make_events(submitter.address, n, stream=STREAM)
        runtime.intake.submit(
            sign_submission(events, private_key=submitter.key, domain=runtime.intake.domain)
        )
        runtime.anchorer(keys.oracle, max_batch=100, max_age_s=0).run_once(force=True)
    database = runtime.store.engine.url.database
    assert database is not None
    return Ledger(
        scene=scene,
        store_path=Path(database),
        submitter=submitter,
        gateway=scene.result.parties["gateway"],
    )


@pytest.fixture(scope="module")
def clean(ledger: Ledger) -> AuditReport:
    """The clean audit: it compiles the sources itself; later audits reuse them."""
    auditor = Auditor(ledger.chain, ledger.deployment, source=ledger.runtime.store)
    report = auditor.run()
    ledger.compiled = auditor.compiled
    return report


def audit(
    ledger: Ledger, source: Store | dict[str, Any], deployment: Deployment | None = None
) -> AuditReport:
    """Audit with the sources the clean audit compiled (without them: no bytecode step)."""
    auditor = Auditor(
        ledger.chain,
        deployment or ledger.deployment,
        source=source,
        compiled=ledger.compiled,
        bytecode=ledger.compiled is not None,
    )
    return auditor.run()


def found(report: AuditReport, code: str) -> list[Finding]:
    assert code in FINDING_CODES
    return [f for f in report.findings if f.code == code]


# --- a copy of the store, and edits to it ---------------------------------------------------


@dataclass
class Copy:
    path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path)) as db, db:
            return db.execute(statement, args).fetchall()

    def row(self, stream: str, seq: int, index: int) -> dict[str, Any]:
        ((event_id, envelope),) = self.sql(
            "SELECT event_id, envelope FROM events "
            "WHERE stream = ? AND batch_seq = ? AND leaf_index = ?",
            stream,
            seq,
            index,
        )
        return {"event_id": event_id, "envelope": loads_canonical(envelope)}

    @classmethod
    def of(cls, source: Path, target: Path) -> Copy:
        """A consistent copy of the store at ``source`` (SQLite's backup API: WAL included)."""
        with closing(sqlite3.connect(source)) as db, closing(sqlite3.connect(target)) as dest:
            db.backup(dest)
        return cls(target)

    def put_envelope(self, event_id: str, envelope: dict[str, Any], *, leaf: bool) -> None:
        """Replace an event's envelope; with ``leaf``, its leaf and digest columns too."""
        self.sql("UPDATE events SET envelope = ? WHERE event_id = ?", _text(envelope), event_id)
        if leaf:
            self.sql(
                "UPDATE events SET leaf = ?, digest = ?, submitter = ? WHERE event_id = ?",
                leaf_hash(envelope).hex(),
                event_digest(envelope["event"]).hex(),
                envelope["event"]["submitter"],
                event_id,
            )

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = Store.open(self.url)
        try:
            yield store
        finally:
            store.close()


def _text(envelope: dict[str, Any]) -> str:
    return canonical_json(envelope).decode()


@pytest.fixture
def tampered(ledger: Ledger, tmp_path: Path) -> Copy:
    """A copy of the scene's store, to be tampered with."""
    return Copy.of(ledger.store_path, tmp_path / "store.sqlite")


def audit_copy(ledger: Ledger, copy_: Copy) -> AuditReport:
    with copy_.store() as store:
        return audit(ledger, store)


def resigned(ledger: Ledger, body: dict[str, Any], key: LocalAccount) -> dict[str, Any]:
    """``body`` signed afresh by ``key`` as a one-event submission: a valid envelope."""
    event = EventBody.model_validate(body)
    domain = ledger.runtime.intake.domain
    sealed = envelopes_for(
        sign_submission([event], private_key=key.key, domain=domain), domain=domain
    )
    return sealed.envelopes[0].model_dump(mode="json")


@contextmanager
def chain_snapshot(ledger: Ledger) -> Iterator[None]:
    tester = ledger.chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    try:
        yield
    finally:
        tester.revert_to_snapshot(snapshot)


# --- the clean ledger ------------------------------------------------------------------------


def test_a_clean_ledger_audits_clean(ledger: Ledger, clean: AuditReport) -> None:
    assert clean.findings == [], [f.message for f in clean.findings]
    assert clean.ok and clean.skipped == []
    counts = clean.counts
    stored = ledger.runtime.store.counts()
    assert counts.events == stored["events"] > 1_400
    assert counts.signatures == counts.events  # every one recovered its submitter
    assert counts.events_pending == stored["pending"] == 0
    assert counts.streams == 4 and counts.batches == 5 == counts.batches_recomputed
    assert counts.leaves == counts.events
    assert counts.facts == 7  # 2 stock levels, a tag removal, 4 unauthorized movements
    assert counts.pledges == 1 and counts.receipts == 1
    assert counts.contracts == 4  # every runtime code compared with the compiled sources
    assert counts.logs > 30
    assert clean.to_json()["ok"] is True


def test_worker_processes_audit_the_ledger_as_the_auditor_alone_does(
    ledger: Ledger, clean: AuditReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Envelopes read and decoded in two worker processes: the same clean report, and
    the events that facts cite sent whole, for the auditor to keep (what the fact
    checks compare), never as a worker's decoding."""
    import ledger.audit as audit_module

    monkeypatch.setattr(audit_module, "_PARALLEL_FROM", 0)
    monkeypatch.setattr(audit_module, "_CHUNK", 97)
    quick_leaves: list[bytes] = []
    whole_leaves: list[bytes] = []
    original = Auditor._from_row

    def spy(self: Auditor, row: Any, envelope: Any, **kwargs: Any) -> Any:
        event = original(self, row, envelope, **kwargs)
        (whole_leaves if isinstance(envelope, str) else quick_leaves).append(event.leaf)
        return event

    monkeypatch.setattr(Auditor, "_from_row", spy)
    report = Auditor(
        ledger.chain, ledger.deployment, source=ledger.runtime.store, bytecode=False, jobs=2
    ).run()
    assert report.ok and report.findings == []
    expected = clean.to_json()
    expected["counts"]["contracts"] = 0  # bytecode not compared here
    assert report.to_json() | {"skipped": expected["skipped"]} == expected
    cited = {bytes.fromhex(f["leaf"][2:]) for f in _fact_logs(ledger)}
    assert len(cited) > 1 and cited <= set(whole_leaves)  # each cited event, whole
    assert not cited & set(quick_leaves)
    assert quick_leaves  # and the workers decoded the simple rest (many here hold floats)


def test_the_public_names_are_pinned() -> None:
    import ledger.audit

    assert ledger.audit.__all__ == [
        "FINDING_CODES",
        "WARNING_CODES",
        "AuditCounts",
        "AuditReport",
        "Auditor",
        "Finding",
        "Progress",
    ]
    assert set(ledger.audit.WARNING_CODES) <= set(FINDING_CODES)


def test_every_finding_code_is_documented() -> None:
    text = (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    missing = [code for code in FINDING_CODES if f"`{code}`" not in text]
    assert missing == []


# --- tampered stores -----------------------------------------------------------------------


def test_signed_envelopes_round_trip_through_the_store_text(ledger: Ledger, tampered: Copy) -> None:
    # the tamper helpers rewrite envelopes as the store writes them: an untouched
    # rewrite changes nothing the audit sees
    target = tampered.row(STREAM, 0, 0)
    SignedEnvelope.model_validate(target["envelope"])
    tampered.put_envelope(target["event_id"], target["envelope"], leaf=True)
    assert audit_copy(ledger, tampered).findings == []


def test_an_edited_payload_is_named(ledger: Ledger, tampered: Copy) -> None:
    target = tampered.row(STREAM, 0, 1)
    envelope = target["envelope"]
    envelope["event"]["payload"]["seq"] = 99
    tampered.put_envelope(target["event_id"], envelope, leaf=False)

    report = audit_copy(ledger, tampered)
    (edited,) = found(report, "payload_tampered")
    assert target["event_id"] in edited.message and f"batch 0 of {STREAM}, leaf 1" in edited.message
    assert edited.details["anchored_leaf"] != edited.details["leaf"]
    # the payload is no longer what the submitter signed either
    (unsigned,) = found(report, "signature_invalid")
    assert target["event_id"] in unsigned.message
    assert report.codes == {"payload_tampered", "signature_invalid"}
    assert not report.ok


def test_a_deleted_event_is_named(ledger: Ledger, tampered: Copy) -> None:
    gone = tampered.row(STREAM, 0, 2)
    tampered.sql("DELETE FROM events WHERE event_id = ?", gone["event_id"])

    report = audit_copy(ledger, tampered)
    (missing,) = found(report, "event_missing")
    assert f"batch 0 of {STREAM}" in missing.message
    assert "4 of the 5" in missing.message and "missing leaf indices [2]" in missing.message
    assert missing.details["missing_indices"] == [2]
    assert report.codes == {"event_missing"}


def test_an_inserted_event_is_named(ledger: Ledger, tampered: Copy) -> None:
    # validly signed by a registered submitter, stored, but never anchored: then slipped
    # into batch 1 at leaf 1, the later events moved up one
    (body,) = make_events(ledger.submitter.address, 1, stream=STREAM, prefix="slipped-in")
    domain = ledger.runtime.intake.domain
    submission = sign_submission([body], private_key=ledger.submitter.key, domain=domain)
    with tampered.store() as store:
        store.accept(envelopes_for(submission, domain=domain).envelopes)
    tampered.sql(
        "UPDATE events SET leaf_index = leaf_index + 1 "
        "WHERE stream = ? AND batch_seq = 1 AND leaf_index >= 1",
        STREAM,
    )
    tampered.sql(
        "UPDATE events SET batch_seq = 1, leaf_index = 1 WHERE event_id = ?", body.event_id
    )

    report = audit_copy(ledger, tampered)
    (extra,) = found(report, "event_unanchored_extra")
    assert body.event_id in extra.message and f"batch 1 of {STREAM}" in extra.message
    assert extra.details["leaf_index"] == 1
    # the events after it now sit one leaf off their anchored place
    (shifted,) = found(report, "leaf_order")
    assert len(shifted.details["events"]) == 3
    assert report.codes == {"event_unanchored_extra", "leaf_order"}


def test_two_reordered_events_are_named(ledger: Ledger, tampered: Copy) -> None:
    first, last = tampered.row(STREAM, 0, 0), tampered.row(STREAM, 0, 3)
    tampered.sql("UPDATE events SET leaf_index = 3 WHERE event_id = ?", first["event_id"])
    tampered.sql("UPDATE events SET leaf_index = 0 WHERE event_id = ?", last["event_id"])

    report = audit_copy(ledger, tampered)
    (order,) = found(report, "leaf_order")
    assert f"batch 0 of {STREAM}" in order.message
    assert f"{first['event_id']} (stored at 3, anchored at 0)" in order.message
    assert f"{last['event_id']} (stored at 0, anchored at 3)" in order.message
    assert report.codes == {"leaf_order"}


def test_an_event_resigned_with_another_key_is_named(ledger: Ledger, tampered: Copy) -> None:
    # someone without a registered key re-signs the event as theirs
    target = tampered.row(STREAM, 0, 3)
    intruder = Account.create()
    body = dict(target["envelope"]["event"], submitter=intruder.address)
    tampered.put_envelope(target["event_id"], resigned(ledger, body, intruder), leaf=True)

    report = audit_copy(ledger, tampered)
    (signer,) = found(report, "signer_not_registered")
    assert target["event_id"] in signer.message and intruder.address in signer.message
    assert signer.details["block"] > 0
    (root,) = found(report, "root_mismatch")
    assert f"batch 0 of {STREAM}" in root.message
    assert report.codes == {"signer_not_registered", "root_mismatch"}


def test_a_signature_by_another_key_is_named(ledger: Ledger, tampered: Copy) -> None:
    # the submitter stays, the signature is another key's over the same submission
    target = tampered.row(STREAM, 1, 2)
    envelope = target["envelope"]
    ref = envelope["submission"]
    typed = {
        "types": SUBMISSION_TYPES,
        "primaryType": "Submission",
        "domain": envelope["domain"],
        "message": {
            "submitter": envelope["event"]["submitter"],
            "eventsRoot": bytes.fromhex(ref["root"][2:]),
            "eventCount": ref["count"],
        },
    }
    forger = Account.create()
    signed = forger.sign_message(encode_typed_data(full_message=typed))
    ref["signature"] = "0x" + bytes(signed.signature).hex()
    tampered.put_envelope(target["event_id"], envelope, leaf=True)

    report = audit_copy(ledger, tampered)
    (bad,) = found(report, "signature_invalid")
    assert target["event_id"] in bad.message and forger.address in bad.message
    assert report.codes == {"signature_invalid", "root_mismatch"}


def test_events_swapped_between_batches_are_named(ledger: Ledger, tampered: Copy) -> None:
    a, b = tampered.row(STREAM, 0, 1), tampered.row(STREAM, 1, 2)
    tampered.sql(
        "UPDATE events SET batch_seq = 1, leaf_index = 2 WHERE event_id = ?", a["event_id"]
    )
    tampered.sql(
        "UPDATE events SET batch_seq = 0, leaf_index = 1 WHERE event_id = ?", b["event_id"]
    )

    report = audit_copy(ledger, tampered)
    moved = {f.details["event_id"]: f for f in found(report, "event_in_wrong_batch")}
    assert set(moved) == {a["event_id"], b["event_id"]}
    assert f"batch 1 of {STREAM}, leaf 2) was anchored in batch 0" in moved[a["event_id"]].message
    assert moved[b["event_id"]].details["anchored"] == {"stream": STREAM, "seq": 1, "leaf_index": 2}
    assert report.codes == {"event_in_wrong_batch"}


def test_an_edited_fact_evidence_is_named(ledger: Ledger, tampered: Copy) -> None:
    # the count a fact cites says another quantity, re-signed validly by the same gateway
    facts = [f for f in _fact_logs(ledger) if f["kind"] == FactKind.QUANTITY]
    cited = facts[0]
    ((event_id, text),) = tampered.sql(
        "SELECT event_id, envelope FROM events WHERE leaf = ?", cited["leaf"][2:]
    )
    body = loads_canonical(text)["event"]
    assert body["kind"] == "warehouse.stock_level"
    body["payload"]["quantity"] += 5
    tampered.put_envelope(event_id, resigned(ledger, body, ledger.gateway), leaf=True)

    report = audit_copy(ledger, tampered)
    (missing,) = found(report, "fact_evidence_missing")
    assert cited["leaf"] in missing.message and f"batch 0 of {FINDINGS}" in missing.message
    assert event_id in missing.message
    assert f"quantity: fact {cited['quantity']}, event {cited['quantity'] + 5}" in missing.message
    (root,) = found(report, "root_mismatch")
    assert f"batch 0 of {FINDINGS}" in root.message
    # validly signed by a registered key: only the anchor and the fact show it
    assert report.codes == {"fact_evidence_missing", "root_mismatch"}


def test_a_fact_that_says_otherwise_than_its_evidence_is_named(
    ledger: Ledger, tampered: Copy
) -> None:
    # a lying oracle: the count event says 30 coils, signed and anchored; the fact it
    # reports citing that event says 35. Every signature and root holds.
    scene = ledger.scene
    with chain_snapshot(ledger), tampered.store() as store:
        registry = ledger.runtime.registry
        now_ms = int(ledger.chain.w3.eth.get_block("latest")["timestamp"]) * 1000 - 5_000
        event = EventBody(
            kind="warehouse.stock_level",
            schema_version=1,
            stream=FINDINGS,
            event_id="urn:fourflow:stock:audit-lie",
            asset_ids=["urn:fourflow:lot:audit"],
            event_time=utc_text(now_ms),
            payload={"lot": "audit", "quantity": 30, "method": "cycle_count"},
            submitter=ledger.gateway.address,
        )
        intake = Intake(store, registry)
        intake.submit(
            sign_submission([event], private_key=ledger.gateway.key, domain=intake.domain)
        )
        Anchorer(store, registry, scene.keys.oracle, max_batch=100, max_age_s=0).run_once(
            force=True
        )
        bundle = BundleBuilder(store, ledger.deployment).bundle(event.event_id)
        scene.contracts.pledges.report_fact(
            Fact(scene.result.receipt_id, FactKind.QUANTITY, 35, now_ms // 1000),
            evidence_from_bundle(bundle),
            oracle=scene.keys.oracle,
        )
        report = audit(ledger, store)
    (lie,) = found(report, "fact_content_mismatch")
    assert event.event_id in lie.message and "quantity: fact 35, event 30" in lie.message
    assert lie.details["pledge_id"] == scene.pledge_id
    assert report.codes == {"fact_content_mismatch"}
    assert report.counts.batches == 6 and report.counts.facts == 8


def _fact_logs(ledger: Ledger) -> list[dict[str, Any]]:
    from ledger.chainlog import LogReader

    reader = LogReader.for_deployment(ledger.chain, ledger.deployment)
    logs = reader.read(ledger.deployment.block_number, ledger.chain.head)
    return [g.args for g in logs if g.event == "FactReported"]


# --- evidence packages -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package(ledger: Ledger) -> dict[str, Any]:
    scene = ledger.scene
    answer = scene.get(f"/v1/pledges/{scene.pledge_id}/evidence", "lender")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_an_evidence_package_audits_clean_without_the_store(
    ledger: Ledger, package: dict[str, Any]
) -> None:
    report = audit(ledger, package)
    assert report.findings == [], [f.message for f in report.findings]
    assert report.source == "package"
    assert report.counts.events > 50 and report.counts.signatures == report.counts.events
    assert report.counts.facts == 7  # every fact about the pledge found its evidence
    assert report.counts.batches_recomputed >= 1  # the findings batch is wholly in it
    assert any("not wholly in the package" in note for note in report.skipped)


def test_a_tampered_package_is_named(ledger: Ledger, package: dict[str, Any]) -> None:
    forged = copy.deepcopy(package)
    entry = next(
        e
        for e in forged["entries"]
        if e["proof"]["type"] == "merkle"
        and e["proof"]["bundle"]["envelope"]["event"]["kind"] == "warehouse.stock_level"
    )
    entry["proof"]["bundle"]["envelope"]["event"]["payload"]["quantity"] -= 1
    event_id = entry["event_id"]

    report = audit(ledger, forged)
    (edited,) = found(report, "payload_tampered")
    assert event_id in edited.message
    assert event_id in found(report, "signature_invalid")[0].message
    (fact,) = found(report, "fact_evidence_missing")  # the fact citing it lost its evidence
    assert event_id in fact.message


def test_a_document_that_is_not_a_package_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput, match="not an evidence package"):
        Auditor(ledger.chain, ledger.deployment, source={"format": "fourflow/proof-bundle"})


# --- bytecode ----------------------------------------------------------------------------------


def test_a_manifest_naming_another_contract_is_a_bytecode_mismatch(
    ledger: Ledger, clean: AuditReport
) -> None:
    assert clean.counts.contracts == 4 and ledger.compiled is not None  # the clean one matched
    with chain_snapshot(ledger):
        impostor, _ = AnchorRegistry.deploy(ledger.chain, admin=ledger.scene.keys.admin)
        manifest = replace(ledger.deployment, price_feed=impostor.address)
        report = audit(ledger, ledger.runtime.store, manifest)
    (code,) = found(report, "bytecode_mismatch")
    assert "PriceFeed" in code.message and impostor.address in code.message
    assert code.details["deployed_sha256"] != code.details["compiled_sha256"]
    # and the pledge registry was built against another price feed than the manifest says
    (immutable,) = found(report, "immutable_mismatch")
    assert "PledgeRegistry.prices" in immutable.message
    assert report.counts.contracts == 4
    assert report.codes == {"bytecode_mismatch", "immutable_mismatch"}


def test_a_manifest_naming_another_pledge_registry_is_named(
    ledger: Ledger, clean: AuditReport
) -> None:
    with chain_snapshot(ledger):
        impostor, _ = AnchorRegistry.deploy(ledger.chain, admin=ledger.scene.keys.admin)
        manifest = replace(ledger.deployment, pledge_registry=impostor.address)
        report = audit(ledger, ledger.runtime.store, manifest)
    (state,) = found(report, "pledge_state_mismatch")
    assert impostor.address in state.message and "does not answer" in state.message
    (code,) = found(report, "bytecode_mismatch")
    assert code.details["contract"] == "PledgeRegistry"
    assert report.counts.facts == 0  # the impostor reported none


# --- the command, against anvil ------------------------------------------------------------------


def fourflow(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [fourflow_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def invoke(*args: str) -> Result:
    """`fourflow` in this process (the same command, without the interpreter's start)."""
    return CliRunner().invoke(cli_app, list(args))


@pytest.mark.anvil
def test_the_audit_command_on_anvil(anvil: AnvilNode, tmp_path: Path) -> None:
    db, dirty_db = tmp_path / "store.sqlite", tmp_path / "dirty.sqlite"
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{db}", chain=Chain.connect(anvil.url))
    _, deployment = deploy_collateral(runtime.registry, runtime.deployment, admin=keys.admin)
    submitter = keys.submitters[0]
    events = make_events(submitter.address, 6, stream=STREAM)
    runtime.intake.submit(
        sign_submission(events, private_key=submitter.key, domain=runtime.intake.domain)
    )
    runtime.anchorer(keys.oracle, max_batch=4, max_age_s=0).run_once(force=True)
    runtime.close()
    manifest, bad_manifest = tmp_path / "deployment.json", tmp_path / "bad.json"
    deployment.write(manifest)
    bad_manifest.write_text("{not json")
    dirty = Copy.of(db, dirty_db)
    edited = dirty.row(STREAM, 0, 2)
    edited["envelope"]["event"]["payload"]["seq"] = 1_000
    dirty.put_envelope(edited["event_id"], edited["envelope"], leaf=False)

    # three real processes at once (each spends seconds starting); the bytecode step is
    # covered in-process above, where the sources are compiled once
    rpc = ("--rpc", anvil.url, "--skip-bytecode")
    runs = [
        fourflow("audit", *rpc, "--manifest", str(manifest), "--db", f"sqlite:///{db}", "--json"),
        fourflow("audit", *rpc, "--manifest", str(manifest), "--db", dirty.url, "--json"),
        fourflow("audit", *rpc, "--manifest", str(bad_manifest), "--db", dirty.url, "--json"),
    ]
    (clean_out, clean_err), (dirty_out, dirty_err), (_, bad_err) = (
        run.communicate(timeout=180) for run in runs
    )
    assert runs[0].returncode == 0, clean_out + clean_err
    report = json.loads(clean_out)
    assert report["ok"] is True and report["findings"] == []
    assert report["counts"]["batches"] == 2 and report["counts"]["events"] == 6
    assert report["counts"]["signatures"] == 6 and report["counts"]["streams"] == 1
    assert any("bytecode" in note for note in report["skipped"])

    assert runs[1].returncode == 1, dirty_out + dirty_err
    report = json.loads(dirty_out)
    assert report["ok"] is False
    codes = {f["code"]: f for f in report["findings"]}
    assert set(codes) == {"payload_tampered", "signature_invalid"}
    assert edited["event_id"] in codes["payload_tampered"]["message"]
    assert codes["payload_tampered"]["severity"] == "error"

    assert runs[2].returncode == 2
    assert "cannot read deployment manifest" in bad_err

    # the human summary, and the other refusals, in this process
    human = invoke("audit", *rpc, "--manifest", str(manifest), "--db", dirty.url)
    assert human.exit_code == 1
    assert "payload_tampered" in human.stdout and "2 DISCREPANCIES" in human.stdout
    assert "not checked: bytecode" in human.stdout
    neither = invoke("audit", *rpc, "--manifest", str(manifest))
    assert neither.exit_code == 2 and "--db URL" in neither.stderr
    missing = invoke("audit", *rpc, "--manifest", str(manifest), "--db", "sqlite:///nope.sqlite")
    assert missing.exit_code == 2 and "no SQLite store" in missing.stderr
    for jobs in ("0", "two"):
        refused = invoke(
            "audit", *rpc, "--manifest", str(manifest), "--db", dirty.url, "--jobs", jobs
        )
        assert refused.exit_code == 2 and "--jobs" in refused.stderr
    one = invoke("audit", *rpc, "--manifest", str(manifest), "--db", dirty.url, "--jobs", "1")
    assert one.exit_code == 1 and "2 DISCREPANCIES" in one.stdout
    away = invoke(
        "audit", "--rpc", "http://127.0.0.1:9", "--manifest", str(manifest), "--db", dirty.url
    )
    assert away.exit_code == 2 and "could not run" in away.stderr
