"""Four-flow histories, evidence packages and alarms through the real API, on a watched
warehouse under a live pledge (tests/history_scene.py): what a lender sees, page by
page, with proofs that check against the chain."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from hexbytes import HexBytes
from sqlmodel import select

from ledger.alarms import AlarmBook
from ledger.evidence import check_package
from ledger.flows import FlowEntryRow
from ledger.indexer import ChainIndex
from ledger.signing import sign_submission
from ledger.verify import verify_bundle
from tests.conftest import make_events
from tests.history_scene import Scene, pg_scene, scene  # noqa: F401 - the module fixtures

# ruff: noqa: F811 - `scene`, imported above, is each test's fixture parameter


def all_entries(s: Scene, url: str, role: str = "lender", **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = s.get(url, role, **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        entries += body["entries"]
        cursor = body["next_cursor"]
        if cursor is None:
            return entries


def history_url(s: Scene) -> str:
    return f"/v1/pledges/{s.pledge_id}/history"


def test_a_pledge_history_merges_the_four_flows_each_entry_with_its_proof(scene: Scene) -> None:
    entries = all_entries(scene, history_url(scene), limit=200)
    flows = Counter(e["flow"] for e in entries)
    assert set(flows) == {"information", "logistics", "commercial", "capital"}
    kinds = {e["kind"] for e in entries}
    assert {"receipt.issued", "pledge.opened", "disbursement", "fact.reported",
            "pledge.frozen", "epcis.receiving", "epcis.shipping", "warehouse.stock_level",
            "alarm", "reading.cycle_count"} <= kinds  # fmt: skip

    keys = [(e["time_ms"], e["id"]) for e in entries]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)  # by time
    assert len({e["id"] for e in entries}) == len(entries)  # no entry twice

    chain = scene.runtime.chain
    onchain = [e for e in entries if e["proof"]["type"] == "chain_log"]
    evidence = [e for e in entries if e["proof"]["type"] == "merkle"]
    assert onchain and evidence
    assert all(e["proof"]["status"] == "anchored" for e in evidence)
    for entry in onchain:
        proof = entry["proof"]
        receipt = chain.w3.eth.get_transaction_receipt(HexBytes(proof["tx_hash"]))
        (log,) = [g for g in receipt["logs"] if g["logIndex"] == proof["log_index"]]
        assert ["0x" + bytes(t).hex() for t in log["topics"]] == proof["topics"]
        assert "0x" + bytes(log["data"]).hex() == proof["data"]
        assert log["blockNumber"] == proof["block_number"]
    for entry in evidence[:: max(1, len(evidence) // 12)]:
        bundle = entry["proof"]["bundle"]
        verify_bundle(bundle, chain=chain)
        assert bundle["envelope"]["event"]["event_id"] == entry["event_id"]


def test_the_summary_answers_the_lenders_questions(scene: Scene) -> None:
    body = scene.get(history_url(scene), "lender", limit=1).json()
    summary = body["summary"]
    pledge = scene.contracts.pledges.pledge_of(scene.pledge_id)
    receipt = scene.contracts.receipts.receipt_of(pledge.terms.receipt_id)

    # where are the goods, who holds them
    custody = summary["custody"]
    assert sum(group["assets"] for group in custody["now"]) == custody["assets_tracked"] > 0
    assert {g["status"] for g in custody["now"]} >= {"held"}
    assert [step["kind"] for step in custody["chain"]][:2] == [
        "epcis.commissioning",
        "epcis.packing",
    ]
    # how many, against the covenant minimum
    quantity = summary["quantity"]
    assert quantity["minimum"] == pledge.terms.min_quantity
    assert quantity["booked"] == receipt.quantity and quantity["unit"] == "coil"
    assert quantity["latest"]["quantity"] == quantity["trend"][-1]["quantity"]
    assert quantity["below_minimum"] == (quantity["latest"]["quantity"] < pledge.terms.min_quantity)
    observed = scene.contracts.pledges.observation_of(pledge.terms.receipt_id)
    assert quantity["latest_on_chain"]["quantity"] == observed.quantity
    # who owns them, who has a lien
    (owned,) = summary["ownership"]["receipts"]
    assert owned["owner"] == scene.accounts["borrower"].address
    assert owned["custodian"] == scene.accounts["custodian"].address
    (lien,) = summary["ownership"]["pledges"]
    assert lien["lender"] == scene.accounts["lender"].address and lien["lien_active"]
    assert "unauthorized_movement" in lien["frozen"]
    # where the money went
    (money,) = summary["money"]
    assert money["disbursed"] == pledge.disbursed == pledge.terms.principal // 2
    assert money["outstanding"] == pledge.outstanding
    assert money["all_to_designated_payee"] is True
    assert [d["payee"] for d in money["disbursements"]] == [pledge.terms.payee]
    assert summary["alarms"]["open"] > 0


def test_pages_are_stable_and_complete(scene: Scene) -> None:
    whole = [e["id"] for e in all_entries(scene, history_url(scene), limit=500)]
    paged = [e["id"] for e in all_entries(scene, history_url(scene), limit=37)]
    assert paged == whole

    first = scene.get(history_url(scene), "lender", limit=50).json()
    scene.repay(1_000_00, "a repayment while someone pages")  # a new entry, at the end
    rest: list[str] = []
    cursor = first["next_cursor"]
    while cursor:
        page = scene.get(history_url(scene), "lender", limit=200, cursor=cursor).json()
        assert "summary" not in page  # only the first page carries it
        rest += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
    continued = [e["id"] for e in first["entries"]] + rest
    assert continued[: len(whole)] == whole
    assert len(continued) == len(whole) + 1
    assert len(set(continued)) == len(continued)


def test_filters_by_flow_kind_and_time(scene: Scene) -> None:
    capital = all_entries(scene, history_url(scene), flow="capital")
    assert capital and {e["flow"] for e in capital} == {"capital"}
    assert {"disbursement"} <= {e["kind"] for e in capital}

    both = all_entries(scene, history_url(scene), flow="logistics,capital")
    assert {e["flow"] for e in both} == {"logistics", "capital"}
    shipping = all_entries(scene, history_url(scene), kind="epcis.shipping")
    assert shipping and {e["kind"] for e in shipping} == {"epcis.shipping"}

    everything = all_entries(scene, history_url(scene), limit=500)
    middle = everything[len(everything) // 2]["time_ms"]
    later = all_entries(scene, history_url(scene), limit=500, since=str(middle))
    earlier = all_entries(scene, history_url(scene), limit=500, until=str(middle))
    assert all(e["time_ms"] >= middle for e in later)
    assert all(e["time_ms"] < middle for e in earlier)
    assert len(later) + len(earlier) == len(everything)


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"flow": "money"}, "invalid_filter", "flow"),
        ({"since": "yesterday"}, "invalid_filter", "since"),
        (
            {"since": "2026-11-24T00:00:00Z", "until": "2026-11-23T00:00:00Z"},
            "invalid_filter",
            "until",
        ),
        ({"cursor": "not-a-cursor"}, "invalid_cursor", "cursor"),
        ({"cursor": "WzEsMiwzXQ"}, "invalid_cursor", "cursor"),  # [1,2,3]: wrong shape
    ],
)
def test_bad_queries_are_422_with_the_field(
    scene: Scene, params: dict[str, str], code: str, field: str
) -> None:
    answer = scene.get(history_url(scene), "lender", **params)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["field"] == field
    assert scene.get(history_url(scene), "lender", limit="0").status_code == 422


def test_an_assets_history_has_its_events_and_its_receipts_records(scene: Scene) -> None:
    summary = scene.get(history_url(scene), "lender", limit=1).json()["summary"]
    coil = summary["custody"]["now"][0]["examples"][0]
    answer = scene.get(f"/v1/assets/{coil}/history", "lender", limit=500)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["subject"] == {
        "type": "asset",
        "id": coil,
        "assets": [coil],
        "receipts": [summary["ownership"]["receipts"][0]["receipt_id"]],
        "pledges": [scene.pledge_id],
    }
    entries = body["entries"]
    assert all(coil in e["assets"] for e in entries if e["proof"]["type"] == "merkle")
    assert {"epcis.commissioning", "receipt.issued", "pledge.opened"} <= {
        e["kind"] for e in entries
    }


def test_the_evidence_package_verifies_against_the_chain_and_catches_tampering(
    scene: Scene,
) -> None:
    answer = scene.get(f"/v1/pledges/{scene.pledge_id}/evidence", "lender")
    assert answer.status_code == 200
    package = answer.json()
    assert package["format"] == "fourflow/evidence-package" and package["version"] == 1
    chain = scene.runtime.chain
    result = check_package(package, chain=chain)
    assert result.ok, result.findings
    merkle = [e for e in package["entries"] if e["proof"]["type"] == "merkle"]
    assert result.bundles_verified == len(merkle) > 0
    assert result.logs_verified == len(package["entries"]) - len(merkle) > 0

    def findings(tampered: dict[str, Any]) -> set[str]:
        return {f.check for f in check_package(tampered, chain=chain).findings}

    doctored = json.loads(json.dumps(package))
    doctored["summary"]["money"][0]["repaid"] += 1
    assert findings(doctored) == {"summary"}

    hidden = json.loads(json.dumps(package))
    hidden["entries"] = [e for e in hidden["entries"] if e["kind"] != "disbursement"]
    assert "completeness" in findings(hidden)

    edited = json.loads(json.dumps(package))
    target = next(e for e in edited["entries"] if e["kind"] == "warehouse.stock_level")
    target["proof"]["bundle"]["envelope"]["event"]["payload"]["quantity"] += 5
    assert "bundles" in findings(edited)

    elsewhere = json.loads(json.dumps(package))
    elsewhere["chain"]["chain_id"] += 1
    assert findings(elsewhere) == {"chain"}

    twice = json.loads(json.dumps(package))
    twice["entries"].append(next(e for e in twice["entries"] if e["kind"] == "disbursement"))
    assert "format" in findings(twice)

    lender = json.loads(json.dumps(package))
    lender["summary"]["ownership"]["pledges"][0]["lender"] = scene.accounts["lender2"].address
    assert findings(lender) == {"summary"}

    widened = json.loads(json.dumps(package))
    widened["subject"]["receipts"] = [1, 2]
    assert "format" in findings(widened)

    # a real, anchored event about other goods, slipped into the pledge's package
    gateway = scene.accounts["gateway"]
    (stray,) = make_events(gateway.address, 1, stream="elsewhere", asset="urn:test:elsewhere")
    runtime = scene.runtime
    runtime.intake.submit(
        sign_submission([stray], private_key=gateway.key, domain=runtime.intake.domain)
    )
    runtime.anchorer(scene.keys.oracle).run_once(force=True)
    foreign = json.loads(json.dumps(package))
    foreign["entries"].append(
        {
            "id": f"event:{stray.event_id}#information",
            "event_id": stray.event_id,
            "time_ms": stray.event_time_ms,
            "assets": [],
            "kind": "reading.heartbeat",
            "flow": "information",
            "summary": {},
            "proof": {
                "type": "merkle",
                "status": "anchored",
                "bundle": runtime.bundles.bundle(stray.event_id).to_json_dict(),
            },
        }
    )
    assert findings(foreign) == {"bundles"}

    trusted = scene.runtime.deployment
    lookalike = replace(trusted, pledge_registry=trusted.receipt_registry)
    assert check_package(package, chain=chain, deployment=trusted).ok
    assert {
        f.check for f in check_package(package, chain=chain, deployment=lookalike).findings
    } == {"chain"}

    archive = scene.get(f"/v1/pledges/{scene.pledge_id}/evidence", "lender", format="zip")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == ["evidence.json", "report.html"]
        report = z.read("report.html").decode()
        assert json.loads(z.read("evidence.json"))["subject"] == package["subject"]
    assert "Where the money went" in report and "<svg" in report


def test_alarms_list_with_states_links_and_acknowledgement(scene: Scene) -> None:
    body = scene.get("/v1/alarms", "lender").json()
    alarms = body["alarms"]
    categories = Counter(a["category"] for a in alarms)
    assert categories["unauthorized_movement"] > 0
    sources = {a["source"] for a in alarms}
    assert sources == {"oracle", "chain"}  # rule findings and the contract's freezes
    frozen = [a for a in alarms if a["rule"] == "frozen_unauthorized_movement"]
    assert frozen and frozen[0]["proof"]["type"] == "chain_log"
    oracle = next(a for a in alarms if a["source"] == "oracle" and a["state"] == "open")
    assert oracle["links"]["history"].startswith(f"/v1/pledges/{scene.pledge_id}/history")
    assert scene.get(oracle["links"]["record"], "lender").status_code == 200

    # a write is signed, not only authenticated: by the signed-in caller, and fresh
    forged = scene.change_alarm(
        oracle["id"], "acknowledged", "lender", signer=scene.accounts["borrower"]
    )
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
    stale = scene.change_alarm(oracle["id"], "acknowledged", "lender", at="2026-01-01T00:00:00Z")
    assert stale.status_code == 422 and stale.json()["error"]["code"] == "stale_statement"
    unsigned = scene.post(f"/v1/alarms/{oracle['id']}/acknowledge", "lender")
    assert unsigned.status_code == 422
    assert scene.get(f"/v1/alarms/{oracle['id']}", "lender").json()["state"] == "open"

    done = scene.change_alarm(oracle["id"], "acknowledged", "lender")
    assert done.status_code == 200 and done.json()["state"] == "acknowledged"
    assert done.json()["acknowledged_by"] == scene.accounts["lender"].address
    listed = scene.get("/v1/alarms", "lender", state="acknowledged").json()["alarms"]
    assert oracle["id"] in {a["id"] for a in listed}

    refused = scene.change_alarm(oracle["id"], "cleared", "borrower")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "role_required"
    cleared = scene.change_alarm(oracle["id"], "cleared", "lender")
    assert cleared.json()["state"] == "cleared"
    by_hand = scene.change_alarm(frozen[0]["id"], "cleared", "lender")
    assert by_hand.status_code == 422 and by_hand.json()["error"]["code"] == "chain_alarm"
    again = scene.change_alarm(oracle["id"], "acknowledged", "lender")
    assert again.status_code == 422 and again.json()["error"]["code"] == "alarm_cleared"
    assert scene.get("/v1/alarms", "lender", category="weather").status_code == 422

    # a summary reads only its subject's alarms: the same ones, with the same states
    runtime = scene.runtime
    book = AlarmBook(
        runtime.store,
        ChainIndex(runtime.store, runtime.deployment),
        chain_id=runtime.deployment.chain_id,
    )
    every = book.all()
    subjects = {a.subject for a in every if a.pledge_id is None} | {"urn:nobody"}
    for pledges, about in [((scene.pledge_id,), ()), ((), tuple(subjects)), ((999,), ())]:
        expected = [
            a
            for a in every
            if (a.pledge_id in pledges if a.pledge_id is not None else a.subject in about)
        ]
        assert book.about(pledges=pledges, subjects=about) == expected
    assert any(a.source == "chain" for a in book.about(pledges=(scene.pledge_id,), subjects=()))


def test_alarms_are_pushed_as_server_sent_events(scene: Scene) -> None:
    open_ids = {
        a["id"]
        for a in scene.get("/v1/alarms", "lender").json()["alarms"]
        if a["state"] != "cleared"
    }
    headers = {"Authorization": f"Bearer {scene.token('lender')}"}
    events: list[dict[str, Any]] = []
    with scene.client.stream(
        "GET", "/v1/alarms/stream", params={"timeout": "1.5"}, headers=headers
    ) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "alarm":
                events.append(json.loads(line[6:]))
            elif line.startswith("data: ") and kind == "end":
                break
    assert {e["id"] for e in events} == open_ids
    outsider = scene.client.stream(
        "GET",
        "/v1/alarms/stream",
        params={"timeout": "0.5"},
        headers={"Authorization": f"Bearer {scene.token('outsider')}"},
    )
    with outsider as answer:
        text = "".join(answer.iter_text())
    assert "event: alarm" not in text and "event: end" in text


@pytest.mark.postgres
def test_the_same_reads_on_postgresql(pg_scene: Scene) -> None:
    """Keyset pages, the summary, the evidence package, alarms and permissions on the
    PostgreSQL server: the same answers as on SQLite."""
    url = history_url(pg_scene)
    whole = [e["id"] for e in all_entries(pg_scene, url, limit=500)]
    assert [e["id"] for e in all_entries(pg_scene, url, limit=61)] == whole
    assert {e["flow"] for e in all_entries(pg_scene, url, flow="capital")} == {"capital"}
    summary = pg_scene.get(url, "lender", limit=1).json()["summary"]
    assert summary["money"][0]["all_to_designated_payee"] is True
    coil = summary["custody"]["now"][0]["examples"][0]
    assert pg_scene.get(f"/v1/assets/{coil}/history", "custodian").status_code == 200
    assert pg_scene.get(url, "outsider").status_code == 403
    package = pg_scene.get(f"/v1/pledges/{pg_scene.pledge_id}/evidence", "auditor").json()
    assert check_package(package, chain=pg_scene.runtime.chain).ok
    alarms = pg_scene.get("/v1/alarms", "lender").json()["alarms"]
    oracle = next(a for a in alarms if a["source"] == "oracle")
    answer = pg_scene.change_alarm(oracle["id"], "acknowledged", "lender")
    assert answer.status_code == 200 and answer.json()["state"] == "acknowledged"


def test_concurrent_reads_catalog_new_events_once(scene: Scene) -> None:
    """Histories catalog new events on read; readers racing after new events neither
    fail nor write an entry twice."""
    gateway = scene.accounts["gateway"]
    fresh = make_events(gateway.address, 20, stream="warehouse.extra", asset="urn:test:racer")
    runtime = scene.runtime
    runtime.intake.submit(
        sign_submission(fresh, private_key=gateway.key, domain=runtime.intake.domain)
    )
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(
                lambda _: scene.get("/v1/assets/urn:test:racer/history", "auditor").status_code,
                range(12),
            )
        )
    assert answers == [200] * 12
    with runtime.store.session() as session:
        rows = session.exec(
            select(FlowEntryRow.event_id).where(FlowEntryRow.asset_id == "urn:test:racer")
        ).all()
    assert sorted(rows) == sorted(e.event_id for e in fresh)  # each once
