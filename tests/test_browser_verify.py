"""api/static/verify.js in a real chromium, against real bundles anchored on a real anvil.

The page is served over loopback HTTP; the verifier in it asks anvil directly (JSON-RPC
over fetch, anvil allows any origin) and hashes with WebCrypto.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from playwright.sync_api import Page

from ledger.canonical import canonical_json, leaf_hash
from ledger.chain import Chain
from ledger.errors import InvalidInput
from ledger.merkle import build_tree, proof_shape
from ledger.runtime import Runtime
from ledger.signing import sign_submission
from ledger.verify import STEPS
from tests.browser import StaticSite, save_screenshot
from tests.conftest import AnvilNode, free_port, make_events

STATIC = Path(__file__).resolve().parent.parent / "api" / "static"
NOT_IN_BROWSER = "not checked in the browser: run fourflow verify"

TEST_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>verify.js in the browser</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 24px; color: #1d2330; }
  section { border: 1px solid #d5dae3; border-radius: 6px; padding: 8px 14px; margin: 10px 0; }
  h2 { font-size: 15px; margin: 4px 0; }
  .ok { color: #137333; } .failed { color: #b3261e; }
  ol { margin: 4px 0; padding-left: 22px; } li { font-family: monospace; font-size: 12px; }
</style>
<h1>fourflow &middot; verify.js</h1>
<div id="results"></div>
<script type="module">
  import * as verifier from "/verify.js";

  function element(tag, text, className) {
    const node = document.createElement(tag);
    node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  window.show = (label, result) => {
    const section = document.createElement("section");
    const verdict = result.ok
      ? "VERIFIED"
      : `FAILED at step ${result.step} (${result.name}): ${result.message}`;
    section.append(element("h2", `${label}: ${verdict}`, result.ok ? "ok" : "failed"));
    const steps = document.createElement("ol");
    for (const step of result.steps) steps.append(element("li", `${step.name}: ${step.detail}`));
    section.append(steps);
    document.getElementById("results").append(section);
  };
  window.bytes = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
  window.hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  window.verifier = verifier;
</script>
</html>
"""

VERIFY = """async ([bundle, url, label]) => {
    const seen = [];
    const result = await window.verifier.verifyBundle(bundle, url, (step) => seen.push(step));
    window.show(label, result);
    return { ...result, seen };
}"""


@pytest.fixture(scope="module")
def anchored(
    anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[dict[str, Any]]]:
    """Six events anchored on anvil as batch 0 (five leaves) and batch 1 (one leaf)."""
    db = tmp_path_factory.mktemp("browser-verify") / "store.sqlite"
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{db}", chain=Chain.connect(anvil.url))
    firm = keys.submitters[0]
    events = make_events(firm.address, 6)
    runtime.intake.submit(
        sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
    )
    runtime.anchorer(keys.oracle, max_batch=5).run_once(force=True)
    yield [runtime.bundles.bundle(e.event_id).to_json_dict() for e in events]
    runtime.close()


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    with StaticSite(STATIC, pages={"/verify-test.html": TEST_PAGE}) as served:
        yield served


@pytest.fixture
def verifier(page: Page, site: StaticSite) -> Page:
    """The test page, with verify.js imported as ``window.verifier``."""
    page.goto(f"{site.url}/verify-test.html")
    page.wait_for_function("() => window.verifier !== undefined")
    return page


def verify_in(verifier: Page, bundle: dict[str, Any], rpc_url: str, label: str) -> dict[str, Any]:
    result: dict[str, Any] = verifier.evaluate(VERIFY, [bundle, rpc_url, label])
    return result


@pytest.mark.anvil
def test_real_bundles_verify_in_the_browser(
    verifier: Page,
    anchored: list[dict[str, Any]],
    anvil: AnvilNode,
    request: pytest.FixtureRequest,
) -> None:
    # the shapes this test needs: both sibling sides, a promoted last leaf, a one-leaf batch
    shapes = [(b["batch"]["seq"], b["batch"]["leaf_count"]) for b in anchored]
    assert shapes == [(0, 5)] * 5 + [(1, 1)]
    sides = {next(iter(step)) for b in anchored for step in b["batch"]["proof"]}
    assert sides == {"left", "right"}
    assert [len(b["batch"]["proof"]) for b in anchored] == [3, 3, 3, 3, 1, 0]

    for bundle in anchored:
        batch = bundle["batch"]
        label = f"batch {batch['seq']}, leaf {batch['leaf_index']} of {batch['leaf_count']}"
        result = verify_in(verifier, bundle, anvil.url, label)
        assert result["ok"] is True, result
        assert [(s["n"], s["name"]) for s in result["steps"]] == list(enumerate(STEPS, 1))
        assert result["seen"] == result["steps"]
        assert result["steps"][2]["detail"] == NOT_IN_BROWSER
        assert result["steps"][7]["detail"] == NOT_IN_BROWSER
        assert result["steps"][3]["detail"] == f"leaf {bundle['leaf']}"
        assert result["steps"][6]["detail"] == f"root {batch['root']}"
    save_screenshot(verifier, request)
    assert verifier.locator("section .ok").count() == len(anchored)


def _flip_hex(text: str) -> str:
    """The same hex string with its last digit changed."""
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set the field at dotted ``path`` to ``value``, or to ``value(old)`` if callable."""

    def mutate(bundle: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        target: Any = bundle
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        where = int(key) if key.isdigit() else key
        target[where] = value(target[where]) if callable(value) else value

    return mutate


def _payload_byte(bundle: dict[str, Any]) -> None:
    payload = bundle["envelope"]["event"]["payload"]
    payload["bizStep"] = payload["bizStep"][:-1] + "X"


def _flip_sibling(bundle: dict[str, Any]) -> None:
    step = bundle["batch"]["proof"][1]
    side = next(iter(step))
    step[side] = _flip_hex(step[side])


def _swap_side(bundle: dict[str, Any]) -> None:
    proof = bundle["batch"]["proof"]
    proof[0] = {"right" if "left" in proof[0] else "left": next(iter(proof[0].values()))}


def _other_chain(bundle: dict[str, Any]) -> None:
    bundle["anchor"]["chain_id"] = bundle["envelope"]["domain"]["chainId"] = 1


def _uppercase_sibling(bundle: dict[str, Any]) -> None:
    step = bundle["batch"]["proof"][0]
    side = next(iter(step))
    step[side] = step[side].upper()


# (id, which bundle, tamper, failing step); bundle 3 is leaf 3 of 5 (sides left, left,
# right), bundle 4 the promoted last leaf, bundle 5 the one-leaf batch 1
TAMPERED: list[tuple[str, int, Callable[[dict[str, Any]], None], int]] = [
    ("version 2", 3, _set("version", 2), 1),
    ("extra key", 3, _set("batch.note", "x"), 1),
    ("signature in upper case", 3, _set("envelope.submission.signature", str.upper), 1),
    ("sibling in upper case", 3, _uppercase_sibling, 1),
    ("leaf count zero", 3, _set("batch.leaf_count", 0), 1),
    ("wrong chain id", 3, _set("anchor.chain_id", 1), 2),
    ("a bundle of another chain", 3, _other_chain, 2),  # domain agrees; the node does not
    ("domain on another chain", 3, _set("envelope.domain.chainId", 1), 2),
    ("another registry", 3, _set("anchor.contract", "0x" + "11" * 20), 2),
    ("one payload byte", 3, _payload_byte, 4),
    ("claimed leaf", 3, _set("leaf", _flip_hex), 4),
    ("wrong seq", 3, _set("batch.seq", 1), 5),
    ("seq not anchored", 5, _set("batch.seq", 2), 5),
    ("claimed leaf count", 3, _set("batch.leaf_count", 6), 5),
    ("claimed root", 3, _set("batch.root", _flip_hex), 5),
    ("stream id", 3, _set("batch.stream_id", _flip_hex), 5),
    ("first event time", 3, _set("batch.first_event_time", lambda t: t - 1), 5),
    ("proof one short", 3, _set("batch.proof", lambda p: p[:-1]), 6),
    ("proof one long", 4, _set("batch.proof", lambda p: [*p, {"right": "00" * 32}]), 6),
    ("sibling on the wrong side", 3, _swap_side, 6),
    ("leaf index moved", 3, _set("batch.leaf_index", 2), 6),
    ("leaf index past the end", 4, _set("batch.leaf_index", 5), 6),
    ("a sibling for the one-leaf batch", 5, _set("batch.proof", [{"left": "00" * 32}]), 6),
    ("flipped sibling", 3, _flip_sibling, 7),
    ("promoted leaf's sibling", 4, _set("batch.proof.0.left", _flip_hex), 7),
]


@pytest.mark.anvil
def test_tampered_bundles_fail_at_the_right_step(
    verifier: Page,
    anchored: list[dict[str, Any]],
    anvil: AnvilNode,
    request: pytest.FixtureRequest,
) -> None:
    expected, got = {}, {}
    for name, which, tamper, step in TAMPERED:
        bundle = copy.deepcopy(anchored[which])
        tamper(bundle)
        assert bundle != anchored[which], name
        result = verify_in(verifier, bundle, anvil.url, name)
        expected[name] = (False, step, STEPS[step - 1])
        got[name] = (result["ok"], result.get("step"), result.get("name"))
        assert not result.get("message", "").startswith("internal error"), (name, result)
        if not result["ok"]:
            assert [s["n"] for s in result["steps"]] == list(range(1, result["step"])), name
    save_screenshot(verifier, request)
    assert got == expected


@pytest.mark.anvil
def test_an_unreachable_node_fails_step_two(verifier: Page, anchored: list[dict[str, Any]]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    result = verify_in(verifier, anchored[0], nobody, "no node")
    assert (result["ok"], result["step"], result["name"]) == (False, 2, "chain and domain")
    assert result["message"].startswith(f"cannot reach the node at {nobody}")


JCS_VALUES: list[Any] = [
    # UTF-16 order differs from code-point order for astral characters
    {"😀": 1, "\ue000": 2, "a": 3, "€": 4, "\u0080": 5, "": 6, "A": 7, "𝄞": 8},
    {
        "numbers": [
            *(1e21, 1e20, 0.1, -0.0, 0.0, 1e-7, 1e-6, 5e-324, 1.7976931348623157e308),
            *(123456789012345680000.0, -1.5, 0, 9007199254740991, -9007199254740991, 3.0),
            *(333333333.3333333, 1e30, 4.5, 0.002, 1e-27, 2.0**-1074, 0.000001, 1 / 3),
        ]
    },
    {"escapes": '"\\/\b\f\n\r\t\u0000\u0001\u001f\u007f\u2028\u2029é€😀'},
    {"nested": [[], {}, [[1, [2, {"b": None, "a": True}]]], False, {"": {"": []}}]},
    # RFC 8785 §3.2.2's example
    json.loads(
        '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
        '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        '"literals":[null,true,false]}'
    ),
]


def test_canonicalize_matches_python_byte_for_byte(verifier: Page) -> None:
    texts = [json.dumps(value) for value in JCS_VALUES]  # ASCII: astral chars as \ud83d\ude00
    got = verifier.evaluate(
        """(texts) => texts.map((text) => window.hex(
            new TextEncoder().encode(window.verifier.canonicalize(JSON.parse(text)))))""",
        texts,
    )
    for value, hex_bytes in zip(JCS_VALUES, got, strict=True):
        assert bytes.fromhex(hex_bytes) == canonical_json(value), value


def test_canonicalize_refuses_what_python_refuses(verifier: Page) -> None:
    refused = verifier.evaluate(
        """() => [NaN, Infinity, -Infinity, "\\ud800", "x\\udc00"].map((v) => {
            try { window.verifier.canonicalize({ v }); return false; } catch { return true; }
        })"""
    )
    assert refused == [True] * 5
    for value in (float("nan"), float("inf"), float("-inf"), "\ud800", "x\udc00"):
        with pytest.raises(InvalidInput):
            canonical_json({"v": value})


@pytest.mark.anvil
def test_merkle_pieces_match_the_python_ledger(
    verifier: Page, anchored: list[dict[str, Any]]
) -> None:
    pairs = [(i, n) for n in range(1, 12) for i in range(n)]
    sides = verifier.evaluate(
        "(pairs) => pairs.map(([i, n]) => window.verifier.expectedSides(i, n))", pairs
    )
    assert sides == [proof_shape(i, n) for i, n in pairs]

    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(7)]
    tree = build_tree(leaves)
    roots = verifier.evaluate(
        """async (cases) => Promise.all(cases.map(async ([leaf, proof]) =>
            window.hex(await window.verifier.rootFromProof(window.bytes(leaf), proof))))""",
        [[leaf.hex(), tree.proof(i)] for i, leaf in enumerate(leaves)],
    )
    assert roots == [tree.root.hex()] * len(leaves)

    envelope = anchored[2]["envelope"]
    digests = verifier.evaluate(
        """async ([envelope, text]) => [
            window.hex(await window.verifier.leafOf(envelope)),
            window.hex(await window.verifier.sha256(new TextEncoder().encode(text))),
        ]""",
        [envelope, "fourflow ☃"],
    )
    assert digests == [leaf_hash(envelope).hex(), hashlib.sha256("fourflow ☃".encode()).hexdigest()]


def test_batch_of_selector_is_keccak_of_its_signature(verifier: Page) -> None:
    selector = verifier.evaluate("() => window.verifier.BATCH_OF_SELECTOR")
    assert selector == "0x" + keccak(text="batchOf(bytes32,uint64)")[:4].hex()
    assert verifier.evaluate("() => window.verifier.STEPS") == list(STEPS)
