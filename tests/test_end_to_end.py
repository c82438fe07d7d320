"""Submit → anchor → bundle → verify, on the in-process chain and on anvil, through the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.siwe_client import sign_in
from ledger.chain import Chain
from ledger.runtime import Runtime
from ledger.signing import sign_submission
from tests.conftest import AnvilNode, fourflow_bin, make_events


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fourflow_bin(), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Any]:
    """One demo run, read twice: its story (stdout) and its report (--report)."""
    report = tmp_path_factory.mktemp("demo") / "report.json"
    result = run("demo", "--report", str(report))
    assert result.returncode == 0, result.stderr
    return result, json.loads(report.read_text())


def test_demo_verifies_its_bundles_and_catches_the_tampered_one(
    demo: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    _, report = demo
    assert report["all_verified"] is True
    assert report["verification"]["ok"] is True
    assert [s["step"] for s in report["verification"]["steps"]] == list(range(1, 9))
    assert report["tampered"]["verification"]["ok"] is False
    assert report["tampered"]["verification"]["failed_step"] == 3
    assert len(report["bundles"]) == 5
    pledge = report["pledge"]
    assert pledge["refusals"] == {
        "double_issuance": "ReceiptRegistryIdentifierAlreadyBacked",
        "wrong_payee": "PledgeRegistryWrongPayee",
        "replayed_evidence": "PledgeRegistryEvidenceReplayed",
        "release_beyond_allowance": "PledgeRegistryReleaseBeyondAllowance",
        "transfer_while_pledged": "ReceiptRegistryPledged",
    }
    # 450,000 CNY lent, 150,000 repaid; two 24.6 t coils of eight released
    assert pledge["outstanding"] == 300_000_00
    assert (pledge["released_kg"], pledge["remaining_kg"]) == (49_200, 6 * 24_600)
    # the last act: the bank reads the frozen herd's history and checks it; the audit
    lender = report["lender"]
    assert lender["package"]["ok"] and lender["package"]["bundles_verified"] > 1_000
    assert lender["audit"]["ok"] and lender["audit"]["findings"] == []
    assert lender["outsider_status"] == 403
    assert set(lender["flows"]) >= {"information", "commercial", "capital"}
    assert lender["summary"]["quantity"]["below_minimum"] is True
    # the second industry: a small plant, a machine trucked away freezes its pledge
    plant = report["plant"]
    assert plant["days_recorded"] == 2 and plant["incidents_detected"] == {"moved": True}
    assert plant["alarms"] == {"machine_moved": 1}
    assert plant["frozen"] == ["UNAUTHORIZED_MOVEMENT"]
    assert plant["facts"] == {"unauthorized_movement reported": 1}


def test_demo_human_output_tells_the_story(
    demo: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    result, _ = demo
    for line in (
        "deployed AnchorRegistry",
        "→ 202",
        "not_anchored",
        "gas/event",
        "VERIFIED in 8 steps",
        "FAILED at step 3 (signature)",
        "in the lien index",
        "margin call",
        "checked the Merkle proof against the anchor registry",
        "stay pledged",
        "the bank signed in with Ethereum and read pledge #2's history",
        "BELOW THE MINIMUM",
        "an outsider asking for the same history → 403 not_found_or_forbidden",
        "summary consistent → VERIFIED",
        "→ no discrepancy",
        "recorded 2 closed days (manufacturing.daily): 1 alarm (1 machine_moved)",
        "✓ moved",
        "utilization % per day (minimum 60)",
        "is FROZEN: UNAUTHORIZED_MOVEMENT",
    ):
        assert line in result.stdout


def _anchor_on(runtime: Runtime, oracle: Any, firm: Any, n: int) -> list[dict[str, Any]]:
    events = make_events(firm.address, n)
    body = sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
    with TestClient(create_app(runtime)) as client:
        assert client.post("/v1/events", json=body.model_dump(mode="json")).status_code == 202
        runtime.anchorer(oracle, max_batch=4).run_once(force=True)
        client.headers["Authorization"] = f"Bearer {sign_in(client, firm)}"
        return [client.get(f"/v1/events/{e.event_id}/proof").json() for e in events]


@pytest.mark.anvil
def test_bundles_from_anvil_verify_with_the_cli(anvil: AnvilNode, tmp_path: Path) -> None:
    runtime, keys = Runtime.dev(
        db_url=f"sqlite:///{tmp_path}/s.sqlite", chain=Chain.connect(anvil.url)
    )
    bundles = _anchor_on(runtime, keys.oracle, keys.submitters[0], 9)
    assert sorted({b["batch"]["seq"] for b in bundles}) == [0, 1, 2]  # 4 + 4 + 1
    for i, bundle in enumerate(bundles):
        path = tmp_path / f"b{i}.json"
        path.write_text(json.dumps(bundle))
        result = run("verify", str(path), "--rpc", anvil.url, "--json")
        assert result.returncode == 0, result.stdout
        assert json.loads(result.stdout)["ok"] is True

    forged = json.loads(json.dumps(bundles[5]))
    forged["batch"]["proof"][0] = {k: "00" * 32 for k in forged["batch"]["proof"][0]}
    result = run("verify", "-", "--rpc", anvil.url, stdin=json.dumps(forged))
    assert result.returncode == 1
    assert "FAILED at step 7 (root)" in result.stdout

    head = Chain.connect(anvil.url).head
    too_deep = run(
        "verify",
        str(tmp_path / "b0.json"),
        "--rpc",
        anvil.url,
        "--json",
        "--confirmations",
        str(head + 1),
    )
    assert too_deep.returncode == 1
    assert json.loads(too_deep.stdout)["failed_step"] == 5
    runtime.close()


def test_verify_cli_refuses_bad_input_clearly(tmp_path: Path) -> None:
    missing = run("verify", str(tmp_path / "nope.json"), "--rpc", "http://127.0.0.1:9")
    assert missing.returncode == 2
    assert "cannot read bundle" in missing.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    not_object = run("verify", str(tmp_path / "list.json"), "--rpc", "http://127.0.0.1:9")
    assert not_object.returncode == 2
    (tmp_path / "b.json").write_text("{}")
    unreachable = run("verify", str(tmp_path / "b.json"), "--rpc", "http://127.0.0.1:9")
    assert unreachable.returncode == 2
    assert "cannot reach the node" in unreachable.stderr


def test_a_malformed_bundle_fails_step_one(dev: Any) -> None:
    from ledger.errors import VerificationFailed
    from ledger.verify import verify_bundle

    runtime, _ = dev
    with pytest.raises(VerificationFailed) as failed:
        verify_bundle({"format": "fourflow/proof-bundle", "version": 2}, chain=runtime.chain)
    assert failed.value.step == 1
