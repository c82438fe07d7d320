"""An independent verifier of fourflow proof bundles, written from docs/proof-format.md alone.

It imports nothing from fourflow (ledger, api, oracles): only the standard library, ``rfc8785``
for JCS, and the low-level primitives ``eth_hash`` (keccak-256) and ``eth_keys`` (secp256k1
public-key recovery) for the EIP-712 step. EIP-712 hashing, the Merkle walk, the proof shape and
the ABI encoding of the registry calls are done here by hand.

Usage::

    python tests/independent_verifier.py BUNDLE.json RPC_URL [CONFIRMATIONS]

exits 0 if the bundle holds, 1 (with a message naming the failing step) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import urllib.error
import urllib.request
from typing import Any

import rfc8785
from eth_hash.auto import keccak
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature

__all__ = ["STEP_NAMES", "BundleInvalid", "RpcError", "verify"]

STEP_NAMES = {
    1: "bundle format",
    2: "chain and domain",
    3: "signature",
    4: "leaf",
    5: "on-chain anchor",
    6: "proof shape",
    7: "root",
    8: "submitter role",
}

# §5: selectors and the role, as given (so no keccak is needed for them).
SEL_BATCH_OF = "6f74911f"
SEL_HAS_ROLE = "91d14854"
SEL_HEAD_OF = "65c7d79d"  # documented; no step of §6 uses it
SUBMITTER_ROLE = "e1a65d1a914580ff6931bc952f0fb26573e9282358a4458bceb9ccc6d923d041"

# §4: the EIP-712 types.
DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
SUBMISSION_TYPE = b"Submission(address submitter,bytes32 eventsRoot,uint256 eventCount)"

# §2: domain-separation tags.
EVENT_TAG = b"fourflow/event/v1"
LEAF_TAG = b"fourflow/leaf/v1"

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1

_HEX32 = re.compile(r"0x[0-9a-f]{64}")
_SIBLING = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
# RFC 3339 date-time; the offset is "Z" or ±hh:mm (both are RFC 3339 time-offsets).
_RFC3339 = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)


class BundleInvalid(Exception):
    """The bundle failed verification at ``step`` (1..8 of §6)."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"step {step} ({STEP_NAMES.get(step, '?')}): {message}")
        self.step = step
        self.message = message


class RpcError(Exception):
    """The node could not be asked (transport or JSON-RPC error) while running ``step``."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"step {step} ({STEP_NAMES.get(step, '?')}): JSON-RPC error: {message}")
        self.step = step
        self.message = message


# ---------------------------------------------------------------------------------------------
# primitives


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def keccak256(data: bytes) -> bytes:
    return bytes(keccak(data))


def jcs(value: Any) -> bytes:
    return bytes(rfc8785.dumps(value))


def to_checksum_address(address: str) -> str:
    """EIP-55 form of a 0x-prefixed 20-byte hex address."""
    lower = address[2:].lower()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)
    )


def word_uint(n: int) -> bytes:
    return n.to_bytes(32, "big")


def word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def hex32_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


# ---------------------------------------------------------------------------------------------
# §3: Merkle proofs


def proof_sides(index: int, count: int) -> list[str]:
    """The sides of the siblings of leaf ``index`` in a merkletools tree of ``count`` leaves."""
    sides: list[str] = []
    width = count
    while width > 1:
        if index % 2 == 1:
            sides.append("left")
        elif index + 1 < width:
            sides.append("right")
        index //= 2
        width = (width + 1) // 2
    return sides


def check_proof_shape(proof: list[dict[str, str]], index: int, count: int, what: str) -> str | None:
    """None if ``proof`` has exactly the shape fixed by (index, count), else the reason."""
    if not 0 <= index < count:
        return f"{what} index {index} is not below its count {count}"
    sides = proof_sides(index, count)
    if len(proof) != len(sides):
        return f"{what} proof has {len(proof)} steps; index {index} of {count} needs {len(sides)}"
    for i, (step, side) in enumerate(zip(proof, sides, strict=True)):
        if list(step) != [side]:
            return (
                f"{what} proof step {i} is {sorted(step)}; index {index} of {count} needs {side!r}"
            )
        # §3: every sibling is exactly 32 bytes (step 1 already holds it to §1's hex form).
        sibling = step[side]
        if not isinstance(sibling, str) or len(bytes.fromhex(sibling)) != 32:
            return f"{what} proof step {i}: sibling is not exactly 32 bytes"
    return None


def walk(node: bytes, proof: list[dict[str, str]]) -> bytes:
    for step in proof:
        if "left" in step:
            node = sha256(bytes.fromhex(step["left"]) + node)
        else:
            node = sha256(node + bytes.fromhex(step["right"]))
    return node


# ---------------------------------------------------------------------------------------------
# §2 and §4: digests and EIP-712


def event_digest(event: dict[str, Any]) -> bytes:
    return sha256(sha256(EVENT_TAG + jcs(event)))


def leaf_hash(envelope: dict[str, Any]) -> bytes:
    return sha256(sha256(LEAF_TAG + jcs(envelope)))


def domain_separator(domain: dict[str, Any]) -> bytes:
    return keccak256(
        keccak256(DOMAIN_TYPE)
        + keccak256(domain["name"].encode("utf-8"))
        + keccak256(domain["version"].encode("utf-8"))
        + word_uint(domain["chainId"])
        + word_address(domain["verifyingContract"])
    )


def submission_struct_hash(submitter: str, events_root: bytes, event_count: int) -> bytes:
    return keccak256(
        keccak256(SUBMISSION_TYPE) + word_address(submitter) + events_root + word_uint(event_count)
    )


def eip712_digest(
    domain: dict[str, Any], submitter: str, events_root: bytes, event_count: int
) -> bytes:
    return keccak256(
        b"\x19\x01"
        + domain_separator(domain)
        + submission_struct_hash(submitter, events_root, event_count)
    )


def recover_signer(digest: bytes, signature_hex: str) -> str:
    """The EIP-55 address that signed ``digest``; raises ValueError if it cannot be recovered."""
    raw = bytes.fromhex(signature_hex[2:])
    r = int.from_bytes(raw[0:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v not in (27, 28):
        raise ValueError(f"v is {v}, not 27 or 28")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise ValueError("r or s is outside [1, n)")
    try:
        public_key = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except BadSignature as exc:
        raise ValueError(f"no public key recovers from it ({exc})") from None
    return str(public_key.to_checksum_address())


# ---------------------------------------------------------------------------------------------
# step 1: the shape of §1


def _keys(obj: Any, where: str, expected: list[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BundleInvalid(1, f"{where} is not a JSON object")
    if set(obj) != set(expected):
        missing = sorted(set(expected) - set(obj))
        extra = sorted(set(obj) - set(expected))
        raise BundleInvalid(1, f"{where} keys differ from §1: missing {missing}, extra {extra}")
    return obj


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise BundleInvalid(1, f"{where}.{key} is not a string")
    return value


def _integer(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleInvalid(1, f"{where}.{key} is not an integer")
    return value


def _uint(obj: dict[str, Any], key: str, where: str, maximum: int) -> int:
    value = _integer(obj, key, where)
    if not 0 <= value <= maximum:
        raise BundleInvalid(1, f"{where}.{key} = {value} is out of range")
    return value


def _hex32(obj: dict[str, Any], key: str, where: str) -> str:
    value = _string(obj, key, where)
    if not _HEX32.fullmatch(value):
        raise BundleInvalid(1, f"{where}.{key} is not 0x + 64 lowercase hex digits")
    return value


def _address(obj: dict[str, Any], key: str, where: str, *, eip55: bool) -> str:
    value = _string(obj, key, where)
    if not _ADDRESS.fullmatch(value):
        raise BundleInvalid(1, f"{where}.{key} is not a 20-byte hex address")
    if eip55 and value != to_checksum_address(value):
        raise BundleInvalid(1, f"{where}.{key} is not an EIP-55 (checksummed) address")
    return value


def _proof(obj: dict[str, Any], key: str, where: str) -> None:
    value = obj[key]
    if not isinstance(value, list):
        raise BundleInvalid(1, f"{where}.{key} is not a list")
    for i, step in enumerate(value):
        if (
            not isinstance(step, dict)
            or len(step) != 1
            or next(iter(step)) not in ("left", "right")
        ):
            raise BundleInvalid(1, f'{where}.{key}[{i}] is not {{"left": hex}} or {{"right": hex}}')
        # §1: "hex" in Merkle proofs is 64 lowercase hex digits without 0x.
        sibling = next(iter(step.values()))
        if not isinstance(sibling, str) or not _SIBLING.fullmatch(sibling):
            raise BundleInvalid(1, f"{where}.{key}[{i}]: sibling is not 64 lowercase hex digits")


def check_format(bundle: Any) -> None:
    """Step 1: the bundle has exactly the shape of §1."""
    top = _keys(bundle, "bundle", ["format", "version", "envelope", "leaf", "batch", "anchor"])
    if top["format"] != "fourflow/proof-bundle":
        raise BundleInvalid(1, f"format is {top['format']!r}, not 'fourflow/proof-bundle'")
    if type(top["version"]) is not int or top["version"] != 1:
        raise BundleInvalid(1, f"version is {top['version']!r}, not 1")

    envelope = _keys(top["envelope"], "envelope", ["event", "submission", "domain"])
    event = _keys(
        envelope["event"],
        "envelope.event",
        [
            "kind",
            "schema_version",
            "stream",
            "event_id",
            "asset_ids",
            "event_time",
            "payload",
            "submitter",
        ],
    )
    w = "envelope.event"
    _string(event, "kind", w)
    _uint(event, "schema_version", w, UINT256_MAX)
    _string(event, "stream", w)
    _string(event, "event_id", w)
    if not isinstance(event["asset_ids"], list) or not all(
        isinstance(a, str) for a in event["asset_ids"]
    ):
        raise BundleInvalid(1, f"{w}.asset_ids is not a list of strings")
    if not _RFC3339.fullmatch(_string(event, "event_time", w)):
        raise BundleInvalid(1, f"{w}.event_time is not an RFC 3339 date-time with an offset")
    if not isinstance(event["payload"], dict):
        raise BundleInvalid(1, f"{w}.payload is not a JSON object")
    _address(event, "submitter", w, eip55=True)

    w = "envelope.submission"
    submission = _keys(envelope["submission"], w, ["root", "count", "index", "proof", "signature"])
    _hex32(submission, "root", w)
    _uint(submission, "count", w, UINT256_MAX)
    _uint(submission, "index", w, UINT256_MAX)
    _proof(submission, "proof", w)
    if not _SIGNATURE.fullmatch(_string(submission, "signature", w)):
        raise BundleInvalid(1, f"{w}.signature is not 0x + 65 bytes (130 hex digits)")

    w = "envelope.domain"
    domain = _keys(envelope["domain"], w, ["name", "version", "chainId", "verifyingContract"])
    _string(domain, "name", w)
    _string(domain, "version", w)
    _uint(domain, "chainId", w, UINT256_MAX)
    _address(domain, "verifyingContract", w, eip55=False)

    _hex32(top, "leaf", "bundle")

    w = "batch"
    batch = _keys(
        top["batch"],
        w,
        [
            "stream",
            "stream_id",
            "seq",
            "leaf_index",
            "leaf_count",
            "root",
            "proof",
            "first_event_time",
            "last_event_time",
        ],
    )
    _string(batch, "stream", w)
    _hex32(batch, "stream_id", w)
    _uint(batch, "seq", w, UINT64_MAX)
    _uint(batch, "leaf_index", w, UINT64_MAX)
    _uint(batch, "leaf_count", w, UINT64_MAX)
    _hex32(batch, "root", w)
    _proof(batch, "proof", w)
    # Informative (no step checks them); §1 only says "unix milliseconds", so any integer.
    _integer(batch, "first_event_time", w)
    _integer(batch, "last_event_time", w)

    w = "anchor"
    anchor = _keys(top["anchor"], w, ["chain_id", "contract", "tx_hash", "block_number"])
    _uint(anchor, "chain_id", w, UINT256_MAX)
    _address(anchor, "contract", w, eip55=False)
    _hex32(anchor, "tx_hash", w)
    _uint(anchor, "block_number", w, UINT64_MAX)


# ---------------------------------------------------------------------------------------------
# JSON-RPC


class _Node:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.step = 0
        self._id = 0

    def request(self, method: str, params: list[Any]) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        req = urllib.request.Request(
            self.url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RpcError(self.step, f"{method}: {exc}") from None
        if not isinstance(reply, dict):
            raise RpcError(self.step, f"{method}: malformed reply {reply!r}")
        if reply.get("error") is not None:
            raise RpcError(self.step, f"{method}: {reply['error']}")
        if "result" not in reply:
            raise RpcError(self.step, f"{method}: no result in {reply!r}")
        return reply["result"]

    def quantity(self, method: str) -> int:
        result = self.request(method, [])
        if not isinstance(result, str) or not re.fullmatch(r"0x[0-9a-fA-F]+", result):
            raise RpcError(self.step, f"{method}: not a hex quantity: {result!r}")
        return int(result, 16)

    def call(self, to: str, data: bytes, block: int) -> bytes:
        result = self.request("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)])
        if not isinstance(result, str) or not re.fullmatch(r"0x([0-9a-fA-F]{2})*", result):
            raise RpcError(self.step, f"eth_call: not hex data: {result!r}")
        return bytes.fromhex(result[2:])


# ---------------------------------------------------------------------------------------------
# §6


def verify(
    bundle: dict[str, Any], rpc_url: str, confirmations: int = 0, *, timeout: float = 30.0
) -> None:
    """Run the 8 steps of docs/proof-format.md §6; raise BundleInvalid at the first failure.

    Returns None if the bundle holds. Raises RpcError if the node cannot be asked.
    """
    if confirmations < 0:
        raise ValueError("confirmations must be >= 0")
    node = _Node(rpc_url, timeout)

    # 1. bundle format
    node.step = 1
    check_format(bundle)
    envelope = bundle["envelope"]
    event, submission, domain = envelope["event"], envelope["submission"], envelope["domain"]
    batch, anchor = bundle["batch"], bundle["anchor"]

    # 2. chain and domain
    node.step = 2
    node_chain = node.quantity("eth_chainId")
    if node_chain != anchor["chain_id"]:
        raise BundleInvalid(
            2, f"the node's chain id is {node_chain}, anchor.chain_id {anchor['chain_id']}"
        )
    if domain["chainId"] != anchor["chain_id"]:
        raise BundleInvalid(
            2,
            f"envelope.domain.chainId is {domain['chainId']}, anchor.chain_id {anchor['chain_id']}",
        )
    # Addresses compare as 20-byte values (the spec does not ask for equal spelling).
    if domain["verifyingContract"].lower() != anchor["contract"].lower():
        raise BundleInvalid(
            2,
            f"envelope.domain.verifyingContract is {domain['verifyingContract']}, "
            f"anchor.contract {anchor['contract']}",
        )

    # 3. signature
    node.step = 3
    reason = check_proof_shape(
        submission["proof"], submission["index"], submission["count"], "submission"
    )
    if reason:
        raise BundleInvalid(3, reason)
    try:
        digest = event_digest(event)
    except rfc8785.CanonicalizationError as exc:
        raise BundleInvalid(3, f"envelope.event has no JCS form: {exc}") from None
    events_root = walk(digest, submission["proof"])
    if events_root != hex32_bytes(submission["root"]):
        raise BundleInvalid(
            3,
            f"the event digest walked up the submission proof gives 0x{events_root.hex()}, "
            f"not submission.root {submission['root']}",
        )
    typed_digest = eip712_digest(domain, event["submitter"], events_root, submission["count"])
    try:
        signer = recover_signer(typed_digest, submission["signature"])
    except ValueError as exc:
        raise BundleInvalid(3, f"bad signature: {exc}") from None
    if signer.lower() != event["submitter"].lower():
        raise BundleInvalid(
            3, f"the signature recovers {signer}, not the submitter {event['submitter']}"
        )

    # 4. leaf
    node.step = 4
    try:
        leaf = leaf_hash(envelope)
    except rfc8785.CanonicalizationError as exc:
        raise BundleInvalid(4, f"envelope has no JCS form: {exc}") from None
    if leaf != hex32_bytes(bundle["leaf"]):
        raise BundleInvalid(4, f"the envelope's leaf is 0x{leaf.hex()}, not {bundle['leaf']}")

    # 5. on-chain anchor
    node.step = 5
    stream_id = sha256(batch["stream"].encode("utf-8"))
    if stream_id != hex32_bytes(batch["stream_id"]):
        raise BundleInvalid(
            5, f"batch.stream_id is not sha256 of {batch['stream']!r} (0x{stream_id.hex()})"
        )
    head = node.quantity("eth_blockNumber")
    if head < confirmations:
        raise BundleInvalid(5, f"the head is block {head}, below {confirmations} confirmations")
    at = head - confirmations
    out = node.call(
        anchor["contract"], bytes.fromhex(SEL_BATCH_OF) + stream_id + word_uint(batch["seq"]), at
    )
    if len(out) != 5 * 32:
        raise BundleInvalid(
            5,
            f"batchOf returned {len(out)} bytes, not five words "
            f"(is {anchor['contract']} the anchor registry?)",
        )
    words = [out[i : i + 32] for i in range(0, 5 * 32, 32)]
    onchain_root = words[0]
    leaf_count, _first, _last, anchored_block = (int.from_bytes(w, "big") for w in words[1:])
    if leaf_count == 0:
        raise BundleInvalid(
            5, f"batch {batch['stream']}/{batch['seq']} is not anchored as of block {at}"
        )
    if leaf_count != batch["leaf_count"]:
        raise BundleInvalid(
            5, f"the on-chain leafCount is {leaf_count}, batch.leaf_count {batch['leaf_count']}"
        )

    # 6. proof shape, against the on-chain leafCount
    node.step = 6
    reason = check_proof_shape(batch["proof"], batch["leaf_index"], leaf_count, "batch")
    if reason:
        raise BundleInvalid(6, reason)

    # 7. root
    node.step = 7
    root = walk(leaf, batch["proof"])
    if root != onchain_root:
        raise BundleInvalid(
            7,
            f"the leaf walked up batch.proof gives 0x{root.hex()}, "
            f"not the on-chain root 0x{onchain_root.hex()}",
        )

    # 8. submitter role, at the anchoring block
    node.step = 8
    out = node.call(
        anchor["contract"],
        bytes.fromhex(SEL_HAS_ROLE) + bytes.fromhex(SUBMITTER_ROLE) + word_address(signer),
        anchored_block,
    )
    if len(out) != 32 or int.from_bytes(out, "big") > 1:
        raise BundleInvalid(8, f"hasRole returned {out.hex() or 'nothing'}, not a bool")
    if out[-1] != 1:
        raise BundleInvalid(8, f"{signer} does not hold SUBMITTER_ROLE at block {anchored_block}")


# ---------------------------------------------------------------------------------------------
# command line


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_bundle(text: str) -> Any:
    """Parse bundle JSON strictly (no duplicate keys, no NaN/Infinity); ValueError if not."""
    return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_reject_constant)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: independent_verifier.py BUNDLE.json RPC_URL [CONFIRMATIONS]", file=sys.stderr)
        return 2
    path, url = argv[0], argv[1]
    confirmations = int(argv[2]) if len(argv) == 3 else 0
    try:
        with open(path, encoding="utf-8") as f:
            bundle = load_bundle(f.read())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"FAILED at step 1 ({STEP_NAMES[1]}): cannot read the bundle: {exc}")
        return 1
    try:
        verify(bundle, url, confirmations)
    except (BundleInvalid, RpcError) as exc:
        print(f"FAILED at {exc}")
        return 1
    print("VERIFIED in 8 steps")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
