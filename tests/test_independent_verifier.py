"""The bundles `fourflow demo` writes, checked by a verifier written from docs/proof-format.md
alone (tests/independent_verifier.py), and cross-checked against `fourflow verify`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AnvilNode, fourflow_bin
from tests.independent_verifier import BundleInvalid, proof_sides, verify

pytestmark = pytest.mark.anvil

VERIFIER = Path(__file__).resolve().parent / "independent_verifier.py"

Bundle = dict[str, Any]


def _flip_hex(text: str, at: int) -> str:
    """``text`` with the hex digit at ``at`` changed to another lowercase hex digit."""
    digit = "0123456789abcdef"[(int(text[at], 16) + 1) % 16]
    return text[:at] + digit + text[at + 1 :]


def _cli_verify(path: Path, rpc: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fourflow_bin(), "verify", str(path), "--rpc", rpc, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    """Run the real `fourflow demo` against anvil once; its bundles by file name."""
    out = tmp_path_factory.mktemp("demo-out")
    result = subprocess.run(
        [fourflow_bin(), "demo", "--rpc", anvil.url, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "deployment.json").is_file()
    files = sorted(p for p in out.glob("*.json") if p.name != "deployment.json")
    assert files, f"the demo wrote no bundles to {out}"
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in files}


@pytest.fixture(scope="module")
def victim(demo: dict[str, Bundle]) -> Bundle:
    """One bundle to tamper with: in a batch of several leaves, with a non-empty proof."""
    candidates = [
        b for b in demo.values() if b["batch"]["leaf_count"] >= 3 and len(b["batch"]["proof"]) >= 2
    ]
    assert candidates
    return candidates[0]


def test_every_demo_bundle_passes_the_independent_verifier(
    demo: dict[str, Bundle], anvil: AnvilNode
) -> None:
    for name, bundle in demo.items():
        try:
            verify(bundle, anvil.url)
        except BundleInvalid as exc:
            pytest.fail(f"{name}: {exc}")


def test_every_demo_bundle_passes_fourflow_verify(
    demo: dict[str, Bundle], anvil: AnvilNode, tmp_path: Path
) -> None:
    for name, bundle in demo.items():
        path = tmp_path / name
        path.write_text(json.dumps(bundle), encoding="utf-8")
        result = _cli_verify(path, anvil.url)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert json.loads(result.stdout)["ok"] is True, name


def _block_number(rpc: str) -> int:
    request = urllib.request.Request(
        rpc,
        data=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read())["result"], 16)


def test_too_many_confirmations_hides_the_anchor(demo: dict[str, Bundle], anvil: AnvilNode) -> None:
    """Read below the block that anchored the batch, it is not anchored yet: step 5."""
    bundle = next(iter(demo.values()))
    confirmations = _block_number(anvil.url) - bundle["anchor"]["block_number"] + 1
    with pytest.raises(BundleInvalid) as caught:
        verify(bundle, anvil.url, confirmations=confirmations)
    assert caught.value.step == 5, str(caught.value)


# Each tamper, and the step of docs/proof-format.md §6 that must catch it.


def _payload_char(b: Bundle) -> None:
    # The event digest changes, so the submission proof no longer leads to the signed root.
    payload = b["envelope"]["event"]["payload"]
    key = next(k for k, v in sorted(payload.items()) if isinstance(v, str) and v)
    value = payload[key]
    payload[key] = value[:-1] + ("X" if value[-1] != "X" else "Y")


def _batch_sibling_digit(b: Bundle) -> None:
    # Still 64 lowercase hex digits (so the format and shape hold); the root differs.
    step = b["batch"]["proof"][0]
    (side,) = step
    step[side] = _flip_hex(step[side], 10)


def _leaf_index(b: Bundle) -> None:
    # Another index fixes another proof shape (index 3 of 5 needs [left, left, right]).
    batch = b["batch"]
    old, count = batch["leaf_index"], batch["leaf_count"]
    new = (old + 1) % count
    assert proof_sides(new, count) != proof_sides(old, count)
    batch["leaf_index"] = new


def _drop_proof_step(b: Bundle) -> None:
    # One sibling short of the shape fixed by (leaf_index, on-chain leafCount).
    b["batch"]["proof"].pop()


def _domain_chain_id(b: Bundle) -> None:
    # Checked against anchor.chain_id before the signature is even looked at.
    b["envelope"]["domain"]["chainId"] += 1


def _batch_leaf_count(b: Bundle) -> None:
    # The on-chain leafCount is read and compared at step 5.
    b["batch"]["leaf_count"] += 1


def _signature(b: Bundle) -> None:
    # A digit of r: the signature recovers someone else, or no one.
    submission = b["envelope"]["submission"]
    submission["signature"] = _flip_hex(submission["signature"], 2 + 20)


TAMPERS: dict[str, tuple[Callable[[Bundle], None], int]] = {
    "payload character": (_payload_char, 3),
    "batch proof sibling hex digit": (_batch_sibling_digit, 7),
    "leaf_index": (_leaf_index, 6),
    "dropped batch proof step": (_drop_proof_step, 6),
    "domain chainId": (_domain_chain_id, 2),
    "batch.leaf_count": (_batch_leaf_count, 5),
    "signature": (_signature, 3),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_bundle_fails_at_the_documented_step(
    name: str, victim: Bundle, anvil: AnvilNode, tmp_path: Path
) -> None:
    tamper, expected_step = TAMPERS[name]
    verify(victim, anvil.url)  # the untouched bundle holds
    forged = copy.deepcopy(victim)
    tamper(forged)
    assert forged != victim

    with pytest.raises(BundleInvalid) as caught:
        verify(forged, anvil.url)
    assert caught.value.step == expected_step, str(caught.value)

    # fourflow's own verifier stops at the same step.
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged), encoding="utf-8")
    result = _cli_verify(path, anvil.url)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["failed_step"] == caught.value.step


def test_independent_verifier_command_line(
    victim: Bundle, anvil: AnvilNode, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(victim), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(VERIFIER), str(good), anvil.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    forged = copy.deepcopy(victim)
    _payload_char(forged)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(forged), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(VERIFIER), str(bad), anvil.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "step 3" in result.stdout


def _lowercase_submitter(b: Bundle) -> None:
    # §1: `submitter` is an EIP-55 address; all-lowercase is not checksummed.
    event = b["envelope"]["event"]
    event["submitter"] = event["submitter"].lower()


def test_format_violations_fail_step_1(victim: Bundle, anvil: AnvilNode) -> None:
    def broken(change: Callable[[Bundle], None]) -> Bundle:
        b = copy.deepcopy(victim)
        change(b)
        return b

    cases: list[Callable[[Bundle], None]] = [
        lambda b: b.update(format="fourflow/other"),
        lambda b: b.update(version=2),
        lambda b: b["batch"].update(extra=1),
        lambda b: b["anchor"].pop("tx_hash"),
        lambda b: b.update(leaf="0x" + "AB" * 32),
        lambda b: b["batch"]["proof"][0].update(up="00" * 32),
        lambda b: b["batch"]["proof"].__setitem__(0, {"left": "00" * 31}),
        lambda b: b["envelope"]["event"].update(event_time="2026-11-21T13:00:00"),
        _lowercase_submitter,
    ]
    for change in cases:
        with pytest.raises(BundleInvalid) as caught:
            verify(broken(change), anvil.url)
        assert caught.value.step == 1, str(caught.value)
