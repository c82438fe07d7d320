"""The AnchorRegistry contract on eth-tester, through ledger.chain's wrapper.

In the manner of web3.py's own contract tests: a fixture chain (eth-tester + py-evm, in
process) with the contract deployed once per module, each test running on an eth-tester
snapshot of the fresh deployment, and assertions on return values, custom errors with
their arguments, storage and logs. Everything is compared with values computed
independently in Python (hashlib, blockcerts-merkletools).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from ledger.canonical import stream_id
from ledger.chain import (
    ORACLE_ROLE,
    SUBMITTER_ROLE,
    AnchorRegistry,
    Chain,
    Deployment,
    OnChainBatch,
    StreamHead,
    TxReceipt,
    new_account,
)
from ledger.contracts import compile_contracts, load_artifact, stale_artifacts
from ledger.errors import ContractReverted, InvalidInput
from ledger.merkle import ProofStep, build_tree, proof_shape, verify_inclusion

REPO = Path(__file__).resolve().parent.parent
GAS_FILE = REPO / "test-artifacts" / "gas.json"

ADMIN_ROLE = b"\x00" * 32
ZERO32 = b"\x00" * 32
STREAM = "acme.custody"
OTHER = "mill.custody"
T0 = 1_795_000_000_000  # unix milliseconds
ROOT_A = hashlib.sha256(b"batch a").digest()
ROOT_B = hashlib.sha256(b"batch b").digest()
U64_MAX = 2**64 - 1


# --- fixtures: chain → accounts → deployed contract ------------------------------------


def funded(chain: Chain) -> LocalAccount:
    account = new_account()
    chain.fund(account.address)
    return account


@dataclass(frozen=True)
class Deployed:
    chain: Chain
    admin: LocalAccount
    oracle: LocalAccount
    outsider: LocalAccount
    registry: AnchorRegistry
    deployment: Deployment


@pytest.fixture(scope="module")
def deployed() -> Deployed:
    """One in-process chain with the registry deployed and an oracle granted."""
    chain = Chain.in_process()
    admin, oracle, outsider = funded(chain), funded(chain), funded(chain)
    registry, deployment = AnchorRegistry.deploy(chain, admin=admin)
    registry.grant(ORACLE_ROLE, oracle.address, admin=admin)
    return Deployed(chain, admin, oracle, outsider, registry, deployment)


@pytest.fixture
def chain(deployed: Deployed) -> Iterator[Chain]:
    """The module's chain, reverted to the fresh deployment after each test."""
    tester = deployed.chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    yield deployed.chain
    tester.revert_to_snapshot(snapshot)


@pytest.fixture
def registry(chain: Chain, deployed: Deployed) -> AnchorRegistry:
    return deployed.registry


@pytest.fixture
def admin(chain: Chain, deployed: Deployed) -> LocalAccount:
    return deployed.admin


@pytest.fixture
def oracle(chain: Chain, deployed: Deployed) -> LocalAccount:
    return deployed.oracle


@pytest.fixture
def outsider(chain: Chain, deployed: Deployed) -> LocalAccount:
    return deployed.outsider


# --- helpers ----------------------------------------------------------------------------


def send(
    registry: AnchorRegistry,
    oracle: LocalAccount,
    *,
    stream: str = STREAM,
    seq: int = 0,
    root: bytes = ROOT_A,
    leaf_count: int = 3,
    first: int = T0,
    last: int = T0 + 1_000,
) -> bytes:
    return registry.send_anchor(
        stream=stream,
        seq=seq,
        root=root,
        leaf_count=leaf_count,
        first_event_time=first,
        last_event_time=last,
        oracle=oracle,
    )


def anchor(registry: AnchorRegistry, oracle: LocalAccount, **kw: Any) -> TxReceipt:
    return registry.chain.wait(send(registry, oracle, **kw))


def send_with_fixed_gas(registry: AnchorRegistry, sender: LocalAccount, *args: Any) -> bytes:
    """anchor(*args) with a fixed gas limit: no eth_estimateGas (a dozen executions on
    py-evm), so nothing rejects a failing call before it is mined."""
    contract = registry.chain.w3.eth.contract(address=registry.address, abi=registry.artifact.abi)
    fn = contract.functions.anchor(*args)
    return registry.chain.send(lambda p: fn.build_transaction(p | {"gas": 500_000}), sender)


def reverts(call: Callable[[], object], error: str, *args: object) -> None:
    """``call`` reverts with the custom error ``error(*args)``."""
    with pytest.raises(ContractReverted) as info:
        call()
    assert (info.value.error, info.value.error_args) == (error, args)


def snapshot(registry: AnchorRegistry, *streams: str) -> dict[str, Any]:
    """Everything a rejected anchor must leave untouched."""
    state: dict[str, Any] = {
        name: (registry.head_of(name), [registry.batch_of(stream=name, seq=s) for s in range(4)])
        for name in streams
    }
    state["events"] = registry.anchored_events()
    return state


def accumulate(prev: bytes, root: bytes, leaf_count: int) -> bytes:
    return hashlib.sha256(prev + root + leaf_count.to_bytes(8, "big")).digest()


def lower(account: LocalAccount) -> str:
    return account.address.lower()  # eth-abi decodes addresses as lowercase hex


# --- the artifact -----------------------------------------------------------------------


def test_committed_artifact_is_what_the_sources_compile_to() -> None:
    assert stale_artifacts() == []
    compiled = compile_contracts()["AnchorRegistry"]
    committed = load_artifact("AnchorRegistry")
    assert compiled.input_sha256 == committed.input_sha256
    assert compiled.compiler == committed.compiler
    assert compiled.abi == committed.abi
    assert compiled.bytecode == committed.bytecode
    assert compiled.deployed_bytecode == committed.deployed_bytecode


def test_deployed_code_is_the_artifacts_runtime_bytecode(
    chain: Chain, deployed: Deployed, admin: LocalAccount
) -> None:
    registry, deployment = deployed.registry, deployed.deployment
    artifact = load_artifact("AnchorRegistry")
    code = chain.code_at(registry.address)
    assert len(code) > 1_000
    assert code == artifact.deployed_bytecode  # the contract has no immutables
    assert deployment.artifact_sha256 == hashlib.sha256(artifact.bytecode).hexdigest()
    assert deployment.anchor_registry == registry.address
    assert deployment.deployer == admin.address
    assert deployment.chain_id == chain.chain_id
    assert chain.code_at(admin.address) == b""


# --- roles ------------------------------------------------------------------------------


def test_role_constants_and_initial_holders(
    chain: Chain, registry: AnchorRegistry, admin: LocalAccount, oracle: LocalAccount
) -> None:
    contract = chain.w3.eth.contract(address=registry.address, abi=registry.artifact.abi)
    assert (
        bytes(contract.functions.ORACLE_ROLE().call()) == ORACLE_ROLE == keccak(text="ORACLE_ROLE")
    )
    assert bytes(contract.functions.SUBMITTER_ROLE().call()) == SUBMITTER_ROLE
    assert bytes(contract.functions.DEFAULT_ADMIN_ROLE().call()) == ADMIN_ROLE
    assert registry.has_role(ADMIN_ROLE, admin.address)
    assert not registry.has_role(ORACLE_ROLE, admin.address)
    assert registry.has_role(ORACLE_ROLE, oracle.address)
    assert not registry.has_role(ADMIN_ROLE, oracle.address)


def test_only_oracles_anchor(
    chain: Chain,
    registry: AnchorRegistry,
    admin: LocalAccount,
    oracle: LocalAccount,
    outsider: LocalAccount,
) -> None:
    submitter = funded(chain)
    registry.grant(SUBMITTER_ROLE, submitter.address, admin=admin)
    before = snapshot(registry, STREAM)
    for account in (admin, outsider, submitter):
        reverts(
            lambda a=account: send(registry, a),
            "AccessControlUnauthorizedAccount",
            lower(account),
            ORACLE_ROLE,
        )
    assert snapshot(registry, STREAM) == before
    anchor(registry, oracle)  # the same call from the oracle goes through
    assert registry.head_of(STREAM).next_seq == 1


def test_only_the_admin_grants_and_revokes(
    registry: AnchorRegistry, oracle: LocalAccount, outsider: LocalAccount
) -> None:
    reverts(
        lambda: registry.grant(ORACLE_ROLE, outsider.address, admin=outsider),
        "AccessControlUnauthorizedAccount",
        lower(outsider),
        ADMIN_ROLE,
    )
    reverts(  # an oracle is not an admin either
        lambda: registry.grant(ORACLE_ROLE, outsider.address, admin=oracle),
        "AccessControlUnauthorizedAccount",
        lower(oracle),
        ADMIN_ROLE,
    )
    reverts(
        lambda: registry.grant(ADMIN_ROLE, outsider.address, admin=outsider),
        "AccessControlUnauthorizedAccount",
        lower(outsider),
        ADMIN_ROLE,
    )
    reverts(
        lambda: registry.revoke(ORACLE_ROLE, oracle.address, admin=outsider),
        "AccessControlUnauthorizedAccount",
        lower(outsider),
        ADMIN_ROLE,
    )
    assert not registry.has_role(ORACLE_ROLE, outsider.address)
    assert not registry.has_role(ADMIN_ROLE, outsider.address)
    assert registry.has_role(ORACLE_ROLE, oracle.address)


def test_a_revoked_oracle_can_no_longer_anchor(
    registry: AnchorRegistry, admin: LocalAccount, oracle: LocalAccount
) -> None:
    anchor(registry, oracle, seq=0)
    registry.revoke(ORACLE_ROLE, oracle.address, admin=admin)
    assert not registry.has_role(ORACLE_ROLE, oracle.address)
    before = snapshot(registry, STREAM)
    reverts(
        lambda: send(registry, oracle, seq=1),
        "AccessControlUnauthorizedAccount",
        lower(oracle),
        ORACLE_ROLE,
    )
    assert snapshot(registry, STREAM) == before
    registry.grant(ORACLE_ROLE, oracle.address, admin=admin)  # and a re-grant restores it
    anchor(registry, oracle, seq=1)
    assert registry.head_of(STREAM).next_seq == 2


# --- anchor's validation ----------------------------------------------------------------


def test_a_resent_sequence_number_is_rejected_not_doubled(
    registry: AnchorRegistry, oracle: LocalAccount
) -> None:
    anchor(registry, oracle, seq=0, root=ROOT_A, leaf_count=3)
    before = snapshot(registry, STREAM)
    sid = stream_id(STREAM)
    reverts(
        lambda: send(registry, oracle, seq=0, root=ROOT_A, leaf_count=3),
        "AnchorRegistrySequenceMismatch",
        sid,
        1,
        0,
    )
    reverts(  # nor can a resend replace the batch
        lambda: send(registry, oracle, seq=0, root=ROOT_B, leaf_count=5),
        "AnchorRegistrySequenceMismatch",
        sid,
        1,
        0,
    )
    assert snapshot(registry, STREAM) == before
    head = registry.head_of(STREAM)
    assert (head.next_seq, head.total_leaves) == (1, 3)
    assert registry.batch_of(stream=STREAM, seq=0).root == ROOT_A  # type: ignore[union-attr]
    assert len(registry.anchored_events()) == 1


def test_a_gap_in_the_sequence_is_rejected(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    anchor(registry, oracle, seq=0)
    before = snapshot(registry, STREAM)
    reverts(
        lambda: send(registry, oracle, seq=2),
        "AnchorRegistrySequenceMismatch",
        stream_id(STREAM),
        1,
        2,
    )
    assert snapshot(registry, STREAM) == before
    anchor(registry, oracle, seq=1)


def test_a_new_stream_starts_at_zero(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    before = snapshot(registry, STREAM)
    reverts(
        lambda: send(registry, oracle, seq=1),
        "AnchorRegistrySequenceMismatch",
        stream_id(STREAM),
        0,
        1,
    )
    assert snapshot(registry, STREAM) == before
    assert registry.head_of(STREAM) == StreamHead(0, 0, ZERO32)


def test_an_empty_batch_is_rejected(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    sid = stream_id(STREAM)
    before = snapshot(registry, STREAM)
    reverts(lambda: send(registry, oracle, seq=0, leaf_count=0), "AnchorRegistryEmptyBatch", sid, 0)
    assert snapshot(registry, STREAM) == before
    anchor(registry, oracle, seq=0, leaf_count=1)  # one leaf is enough
    before = snapshot(registry, STREAM)
    reverts(lambda: send(registry, oracle, seq=1, leaf_count=0), "AnchorRegistryEmptyBatch", sid, 1)
    assert snapshot(registry, STREAM) == before


def test_a_zero_root_is_rejected(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    sid = stream_id(STREAM)
    before = snapshot(registry, STREAM)
    reverts(lambda: send(registry, oracle, seq=0, root=ZERO32), "AnchorRegistryZeroRoot", sid, 0)
    assert snapshot(registry, STREAM) == before
    anchor(registry, oracle, seq=0)
    before = snapshot(registry, STREAM)
    reverts(lambda: send(registry, oracle, seq=1, root=ZERO32), "AnchorRegistryZeroRoot", sid, 1)
    assert snapshot(registry, STREAM) == before


def test_an_inverted_time_range_is_rejected(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    before = snapshot(registry, STREAM)
    reverts(
        lambda: send(registry, oracle, first=T0 + 1, last=T0),
        "AnchorRegistryTimeRangeInverted",
        T0 + 1,
        T0,
    )
    reverts(
        lambda: send(registry, oracle, first=U64_MAX, last=0),
        "AnchorRegistryTimeRangeInverted",
        U64_MAX,
        0,
    )
    assert snapshot(registry, STREAM) == before
    anchor(registry, oracle, first=T0, last=T0)  # a one-instant batch is fine
    assert registry.batch_of(stream=STREAM, seq=0).first_event_time == T0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "length"),
    [("", 0), ("s" * 65, 65), ("€" * 22, 66), ("x" * 1000, 1000)],
    ids=["empty", "65-bytes", "66-bytes-22-chars", "1000-bytes"],
)
def test_stream_names_outside_1_to_64_bytes_are_rejected(
    registry: AnchorRegistry, oracle: LocalAccount, name: str, length: int
) -> None:
    before = snapshot(registry, name)
    reverts(lambda: send(registry, oracle, stream=name), "AnchorRegistryInvalidStreamName", length)
    # the name is checked before anything else, even a sequence mismatch
    reverts(
        lambda: send(registry, oracle, stream=name, seq=7, leaf_count=0),
        "AnchorRegistryInvalidStreamName",
        length,
    )
    assert snapshot(registry, name) == before


@pytest.mark.parametrize(
    "name", ["s", "s" * 64, "€" * 21 + "s"], ids=["1-byte", "64-bytes", "64-bytes-22-chars"]
)
def test_stream_names_of_1_to_64_bytes_are_accepted(
    registry: AnchorRegistry, oracle: LocalAccount, name: str
) -> None:
    anchor(registry, oracle, stream=name, leaf_count=2)
    assert registry.head_of(name).next_seq == 1
    (event,) = registry.anchored_events()
    assert event["stream"] == name
    assert bytes(event["streamId"]) == hashlib.sha256(name.encode()).digest()


@pytest.mark.parametrize(
    "bad",
    [{"seq": 5}, {"root": ZERO32}, {"leaf_count": 0}, {"first": T0 + 1, "last": T0}, "sender"],
    ids=["sequence", "zero-root", "empty", "time-range", "not-an-oracle"],
)
def test_a_mined_revert_leaves_no_trace(
    chain: Chain,
    registry: AnchorRegistry,
    oracle: LocalAccount,
    outsider: LocalAccount,
    bad: dict[str, int] | str,
) -> None:
    """Sent with a fixed gas limit (no estimate, so no early rejection), the transaction is
    mined, fails, and changes nothing."""
    anchor(registry, oracle, seq=0)
    before = snapshot(registry, STREAM)
    args: dict[str, Any] = {"seq": 1, "root": ROOT_B, "leaf_count": 2, "first": T0, "last": T0}
    sender = oracle
    if bad == "sender":
        sender = outsider
    else:
        assert isinstance(bad, dict)
        args |= bad
    tx_hash = send_with_fixed_gas(
        registry,
        sender,
        STREAM,
        args["seq"],
        args["root"],
        args["leaf_count"],
        args["first"],
        args["last"],
    )
    with pytest.raises(ContractReverted) as info:
        chain.wait(tx_hash)
    assert info.value.error == "Reverted"
    assert chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))["status"] == 0
    assert snapshot(registry, STREAM) == before


def test_total_leaves_cannot_overflow(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    """Checked arithmetic: totalLeaves (uint64) never wraps; the anchor reverts instead."""
    anchor(registry, oracle, seq=0, leaf_count=U64_MAX)
    assert registry.head_of(STREAM).total_leaves == U64_MAX
    before = snapshot(registry, STREAM)
    with pytest.raises(ContractReverted) as info:
        send(registry, oracle, seq=1, leaf_count=1)
    # Solidity's built-in Panic(uint256), 0x11 = arithmetic overflow
    assert (info.value.error, info.value.error_args) == ("Panic", (0x11,))
    assert snapshot(registry, STREAM) == before


# --- storage ----------------------------------------------------------------------------


def test_batch_of_reads_back_what_was_anchored(
    registry: AnchorRegistry, oracle: LocalAccount
) -> None:
    receipt = anchor(
        registry, oracle, seq=0, root=ROOT_A, leaf_count=2**40 + 7, first=T0, last=U64_MAX
    )
    assert registry.batch_of(stream=STREAM, seq=0) == OnChainBatch(
        root=ROOT_A,
        leaf_count=2**40 + 7,
        first_event_time=T0,
        last_event_time=U64_MAX,
        anchored_block=receipt.block_number,
    )
    registry.chain.w3.provider.ethereum_tester.mine_blocks(3)  # type: ignore[attr-defined]
    receipt = anchor(registry, oracle, seq=1, root=ROOT_B, leaf_count=1, first=0, last=0)
    batch = registry.batch_of(stream=STREAM, seq=1)
    assert batch == OnChainBatch(ROOT_B, 1, 0, 0, receipt.block_number)
    assert receipt.block_number == registry.chain.head
    assert registry.batch_of(stream=STREAM, seq=2) is None
    assert registry.batch_of(stream=STREAM, seq=U64_MAX) is None
    assert registry.batch_of(stream=OTHER, seq=0) is None


def test_head_and_accumulator_over_several_batches(
    registry: AnchorRegistry, oracle: LocalAccount
) -> None:
    assert registry.head_of(STREAM) == StreamHead(next_seq=0, total_leaves=0, accumulator=ZERO32)
    rng = random.Random(7)
    accumulator, total = ZERO32, 0
    for seq, leaf_count in enumerate([1, 2, 33, 2**32 + 1, 1000]):
        root = rng.randbytes(32)
        anchor(registry, oracle, seq=seq, root=root, leaf_count=leaf_count)
        accumulator = accumulate(accumulator, root, leaf_count)
        total += leaf_count
        assert registry.head_of(STREAM) == StreamHead(seq + 1, total, accumulator)


def test_streams_are_independent(registry: AnchorRegistry, oracle: LocalAccount) -> None:
    anchor(registry, oracle, stream=STREAM, seq=0, root=ROOT_A, leaf_count=3)
    anchor(registry, oracle, stream=OTHER, seq=0, root=ROOT_B, leaf_count=5)
    anchor(registry, oracle, stream=STREAM, seq=1, root=ROOT_B, leaf_count=2)
    reverts(  # OTHER's sequence did not move with STREAM's
        lambda: send(registry, oracle, stream=OTHER, seq=2),
        "AnchorRegistrySequenceMismatch",
        stream_id(OTHER),
        1,
        2,
    )
    assert registry.head_of(STREAM) == StreamHead(
        2, 5, accumulate(accumulate(ZERO32, ROOT_A, 3), ROOT_B, 2)
    )
    assert registry.head_of(OTHER) == StreamHead(1, 5, accumulate(ZERO32, ROOT_B, 5))
    assert registry.batch_of(stream=STREAM, seq=0).root == ROOT_A  # type: ignore[union-attr]
    assert registry.batch_of(stream=OTHER, seq=0).root == ROOT_B  # type: ignore[union-attr]
    assert registry.batch_of(stream=OTHER, seq=1) is None


# --- the BatchAnchored event --------------------------------------------------------------


def test_batch_anchored_events_carry_the_batch(
    registry: AnchorRegistry, oracle: LocalAccount
) -> None:
    batches = [
        (STREAM, 0, ROOT_A, 3, T0, T0 + 10),
        (OTHER, 0, ROOT_B, 1, T0 + 5, T0 + 5),
        (STREAM, 1, ROOT_B, 2**33, T0 + 20, T0 + 30),
    ]
    receipts, expected, accumulators = [], [], {STREAM: ZERO32, OTHER: ZERO32}
    for stream, seq, root, leaf_count, first, last in batches:
        receipts.append(
            anchor(
                registry,
                oracle,
                stream=stream,
                seq=seq,
                root=root,
                leaf_count=leaf_count,
                first=first,
                last=last,
            )
        )
        accumulators[stream] = accumulate(accumulators[stream], root, leaf_count)
        expected.append(
            {
                "streamId": hashlib.sha256(stream.encode()).digest(),
                "seq": seq,
                "root": root,
                "leafCount": leaf_count,
                "firstEventTime": first,
                "lastEventTime": last,
                "accumulator": accumulators[stream],
                "stream": stream,
            }
        )
    with pytest.raises(ContractReverted):  # a rejected anchor logs nothing
        send(registry, oracle, stream=STREAM, seq=1)
    events = registry.anchored_events()
    assert [{k: v for k, v in e.items() if k in expected[0]} for e in events] == expected
    assert [(e["tx_hash"], e["block_number"]) for e in events] == [
        (r.tx_hash, r.block_number) for r in receipts
    ]
    assert events[-1]["accumulator"] == registry.head_of(STREAM).accumulator
    last_block = receipts[-1].block_number
    assert len(registry.anchored_events(from_block=last_block, to_block=last_block)) == 1


# --- includes against merkletools ---------------------------------------------------------

MAX_LEAVES = 33
MERKLE_STREAM = "merkle.test"


def siblings_of(proof: list[ProofStep]) -> list[bytes]:
    """merkletools' [{"left"|"right": hex}, ...] → the bytes32[] the contract takes."""
    return [bytes.fromhex(value) for step in proof for value in step.values()]


def python_includes(
    *, leaf: bytes, index: int, leaf_count: int, siblings: list[bytes], root: bytes
) -> bool:
    """ledger.merkle's verdict on the same question the contract answers."""
    if not 0 <= index < leaf_count:
        return False
    sides = proof_shape(index, leaf_count)
    if len(sides) != len(siblings):
        return False
    proof = [{side: s.hex()} for side, s in zip(sides, siblings, strict=True)]
    try:
        verify_inclusion(leaf=leaf, index=index, leaf_count=leaf_count, proof=proof, root=root)
    except InvalidInput:
        return False
    return True


def flip(value: bytes, bit: int = 0) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.fixture(scope="module")
def merkle_registry() -> tuple[AnchorRegistry, dict[int, tuple[list[bytes], Any]]]:
    """One registry with a batch of n random leaves at seq n - 1, for n in 1..33."""
    chain = Chain.in_process()
    admin, oracle = funded(chain), funded(chain)
    registry, _ = AnchorRegistry.deploy(chain, admin=admin)
    registry.grant(ORACLE_ROLE, oracle.address, admin=admin)
    rng = random.Random(20261126)
    trees = {}
    for n in range(1, MAX_LEAVES + 1):
        leaves = [rng.randbytes(32) for _ in range(n)]
        tree = build_tree(leaves)
        chain.wait(
            send_with_fixed_gas(registry, oracle, MERKLE_STREAM, n - 1, tree.root, n, T0, T0)
        )
        trees[n] = (leaves, tree)
    return registry, trees


Case = tuple[str, bytes, int, list[bytes], int, str]  # (what, leaf, index, siblings, seq, stream)


def wrong_proofs(
    leaves: list[bytes], root: bytes, index: int, siblings: list[bytes], rng: random.Random
) -> list[Case | None]:
    """Every way of getting leaf ``index``'s proof wrong; None where one does not apply."""
    n, seq, leaf = len(leaves), len(leaves) - 1, leaves[index]
    shape = proof_shape(index, n)
    others = [j for j in range(n) if proof_shape(j, n) != shape]
    same_length = [j for j in others if len(proof_shape(j, n)) == len(shape)]
    parent = None
    if siblings and (index % 2 == 1 or index + 1 < n):  # the first sibling is leaf level's
        pair = siblings[0] + leaf if shape[0] == "left" else leaf + siblings[0]
        parent = hashlib.sha256(pair).digest()

    def with_sibling_flipped() -> list[bytes]:
        flipped = [*siblings]
        position = rng.randrange(len(flipped))
        flipped[position] = flip(flipped[position], rng.randrange(256))
        return flipped

    here = (seq, MERKLE_STREAM)
    return [
        ("a wrong leaf", flip(leaf, rng.randrange(256)), index, siblings, *here),
        ("a neighbour's leaf", leaves[(index + 1) % n], index, siblings, *here) if n > 1 else None,
        ("a sibling flipped", leaf, index, with_sibling_flipped(), *here) if siblings else None,
        ("one sibling too many", leaf, index, [*siblings, rng.randbytes(32)], *here),
        ("the root as an extra sibling", leaf, index, [*siblings, root], *here),
        ("one sibling too few", leaf, index, siblings[:-1], *here) if siblings else None,
        ("the first sibling missing", leaf, index, siblings[1:], *here) if siblings else None,
        ("an inner node as the leaf", parent, index, siblings[1:], *here) if parent else None,
        ("an inner node at its index", parent, index // 2, siblings[1:], *here) if parent else None,
        ("an index of another shape", leaf, (same_length or others)[0], siblings, *here)
        if others
        else None,
        ("an unanchored seq", leaf, index, siblings, MAX_LEAVES, MERKLE_STREAM),
        ("another stream", leaf, index, siblings, seq, STREAM),
    ]


@pytest.mark.parametrize("n", range(1, MAX_LEAVES + 1))
def test_includes_agrees_with_merkletools(
    merkle_registry: tuple[AnchorRegistry, dict[int, tuple[list[bytes], Any]]], n: int
) -> None:
    """Every leaf's merkletools proof is accepted. Every leaf also gets one wrong proof,
    its kind rotating with (n, index) so that each kind meets many shapes; the last leaf
    (the promoted one when n is odd) gets every kind."""
    registry, trees = merkle_registry
    leaves, tree = trees[n]
    seq = n - 1
    assert tree.leaf_count == n
    assert registry.batch_of(stream=MERKLE_STREAM, seq=seq).root == tree.root  # type: ignore[union-attr]
    rng = random.Random(n)
    good: list[Case] = []
    bad: list[Case] = []
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert [next(iter(step)) for step in proof] == proof_shape(index, n)
        siblings = siblings_of(proof)
        good.append(("the correct proof", leaf, index, siblings, seq, MERKLE_STREAM))
        wrong = [c for c in wrong_proofs(leaves, tree.root, index, siblings, rng) if c]
        bad.extend(wrong if index == n - 1 else [wrong[(n + index) % len(wrong)]])
    last = siblings_of(tree.proof(n - 1))
    bad.append(("index = leaf count", leaves[-1], n, last, seq, MERKLE_STREAM))
    bad.append(("index 2**256 - 1", leaves[-1], 2**256 - 1, last, seq, MERKLE_STREAM))

    disagreements = []
    for expected, cases in ((True, good), (False, bad)):
        for what, leaf, index, siblings, at_seq, stream in cases:
            on_chain = registry.includes(
                stream=stream, seq=at_seq, leaf=leaf, index=index, siblings=siblings
            )
            in_python = (stream, at_seq) == (MERKLE_STREAM, seq) and python_includes(
                leaf=leaf, index=index, leaf_count=n, siblings=siblings, root=tree.root
            )
            if on_chain is not expected or in_python is not expected:
                disagreements.append((what, index, on_chain, in_python))
    assert disagreements == []
    assert len(good) == n


# --- gas ----------------------------------------------------------------------------------


def test_gas_of_deploy_grant_and_anchors(chain: Chain, admin: LocalAccount) -> None:
    registry, deployment = AnchorRegistry.deploy(chain, admin=admin)
    (deploy_tx,) = chain.w3.eth.get_block(deployment.block_number)["transactions"]
    deploy_receipt = chain.w3.eth.get_transaction_receipt(deploy_tx)
    assert deploy_receipt["contractAddress"] == registry.address
    oracle = funded(chain)
    grant = registry.grant(ORACLE_ROLE, oracle.address, admin=admin)
    first = anchor(registry, oracle, stream=STREAM, seq=0, leaf_count=500)
    following = [
        anchor(registry, oracle, stream=STREAM, seq=seq, root=ROOT_B, leaf_count=500)
        for seq in (1, 2)
    ]
    figures = {
        "deploy": int(deploy_receipt["gasUsed"]),
        "grantRole": grant.gas_used,
        "anchor_first_in_stream": first.gas_used,
        "anchor_next": following[0].gas_used,
    }
    GAS_FILE.parent.mkdir(parents=True, exist_ok=True)
    recorded: Any = {}
    if GAS_FILE.exists():  # keep figures other tests may have written
        try:
            recorded = json.loads(GAS_FILE.read_text(encoding="utf-8"))
        except ValueError:
            recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    GAS_FILE.write_text(
        json.dumps(recorded | figures, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )

    assert following[0].gas_used == following[1].gas_used  # steady state
    assert figures["anchor_first_in_stream"] > figures["anchor_next"]  # the head's slots are new
    assert 21_000 < figures["anchor_next"] < 100_000  # regression bound, not a timing
    assert figures["anchor_first_in_stream"] < 150_000
    assert figures["grantRole"] < 60_000
    assert figures["deploy"] < 1_500_000
