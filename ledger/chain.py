"""The chain client: one place where fourflow talks to an EVM node through web3.

``Chain.in_process()`` runs eth-tester + py-evm inside this process (the default for
the demo and tests); ``Chain.connect(url)`` talks JSON-RPC to any node (anvil, Besu,
geth). Transactions are signed locally with eth-account and sent raw, so the node never
holds fourflow's keys. web3's exceptions are translated here into ledger.errors; a
revert becomes ``ContractReverted`` carrying the custom error's name and values.

``AnchorRegistry`` is the typed wrapper over the anchor registry contract.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)
from web3.logs import DISCARD
from web3.middleware import ExtraDataToPOAMiddleware
from web3.types import BlockIdentifier, Wei

from ledger.canonical import stream_id as stream_id_of
from ledger.contracts import CONTRACTS, Artifact, load_artifact
from ledger.errors import ChainError, ContractReverted, LedgerError

__all__ = [
    "ORACLE_ROLE",
    "SUBMITTER_ROLE",
    "AnchorRegistry",
    "Chain",
    "ContractClient",
    "Deployment",
    "OnChainBatch",
    "StreamHead",
    "TxReceipt",
    "abi_type",
]

ORACLE_ROLE = keccak(text="ORACLE_ROLE")
SUBMITTER_ROLE = keccak(text="SUBMITTER_ROLE")
_ADMIN_ROLE = b"\x00" * 32
_FUND_WEI = 10**20  # 100 ether on a dev chain
T = TypeVar("T")


def tester_failures() -> tuple[type[BaseException], ...]:
    """eth-tester's revert exception, if eth-tester is in use. Importing eth-tester pulls
    in py-evm (about 2 s); a process talking to a real node never raises its exception,
    so it is looked up only where the in-process chain has already imported it."""
    module = sys.modules.get("eth_tester.exceptions")
    return (module.TransactionFailed,) if module is not None else ()


def abi_type(param: Mapping[str, Any]) -> str:
    """The ABI type string of an ABI parameter, tuples spelled out: "(bytes32,uint64)"."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Re-raise web3 / transport failures as ChainError, keeping ours untouched."""
    try:
        yield
    except LedgerError:
        raise
    except Exception as exc:
        failures = (Web3Exception, requests.RequestException, OSError, ValueError)
        if isinstance(exc, (*failures, *tester_failures())):
            raise ChainError(f"{action}: {exc}") from exc
        raise


@dataclass(frozen=True)
class TxReceipt:
    tx_hash: bytes
    block_number: int
    gas_used: int


@dataclass(frozen=True)
class Deployment:
    """What a deployment leaves behind: enough to find and trust the contracts again."""

    chain_id: int
    anchor_registry: str
    block_number: int
    artifact_sha256: str
    deployer: str
    rpc_url: str | None = None
    receipt_registry: str | None = None
    price_feed: str | None = None
    pledge_registry: str | None = None

    def check_chain(self, chain: Chain) -> None:
        if self.chain_id != chain.chain_id:
            raise ChainError(
                f"manifest is for chain {self.chain_id}, the node is chain {chain.chain_id}"
            )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Deployment:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            return cls(**body)
        except (OSError, ValueError, TypeError) as exc:
            raise ChainError(f"cannot read deployment manifest {path}: {exc}") from exc


NonceRecorder = Callable[[int, bytes], None]
NonceGuard = Callable[[str], AbstractContextManager[NonceRecorder]]


@contextmanager
def _no_guard(_address: str) -> Iterator[NonceRecorder]:
    yield lambda _nonce, _tx_hash: None


class Chain:
    """A connection to one EVM chain, with local signing and nonce management."""

    def __init__(self, w3: Web3, *, rpc_url: str | None) -> None:
        self.w3 = w3
        self.rpc_url = rpc_url
        # eth-tester is not thread-safe: calls into the in-process chain take turns; an
        # HTTP node takes concurrent calls (web3 keeps a session per thread)
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if rpc_url is None else nullcontext()
        )
        self._send_lock = threading.RLock()  # "pending nonce, send" once at a time here
        # held around "read the pending nonce, send" for one key: a process-local no-op
        # until Runtime.attach shares it between processes through the store
        self.nonce_guard: NonceGuard = _no_guard
        self._no_batches = False  # the node refused a JSON-RPC batch request (Chain.batch)
        with _translated("connecting to the chain"):
            self.chain_id: int = w3.eth.chain_id

    @classmethod
    def in_process(cls) -> Chain:
        return cls(Web3(Web3.EthereumTesterProvider()), rpc_url=None)

    @classmethod
    def connect(cls, url: str, *, timeout: float = 10.0) -> Chain:
        # no retries inside web3 (by default 5 per read on a timeout: a node that stops
        # answering would hold each call for minutes); callers retry on their own terms
        provider = Web3.HTTPProvider(
            url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        w3 = Web3(provider)
        # proof-of-authority chains (Clique, Besu QBFT/IBFT) carry seals in a header's
        # extraData, longer than the 32 bytes web3.py accepts by default; harmless elsewhere
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        return cls(w3, rpc_url=url)

    def call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one read against the node, translating its failures."""
        with self._lock, _translated(action):
            return fn()

    def batch(
        self, action: str, calls: Sequence[tuple[str, list[Any]]], *, size: int = 500
    ) -> list[Any] | None:
        """The raw JSON-RPC results of ``calls`` ((method, params) each), in order,
        sent as batch requests of ``size``: for the reads an audit makes by the
        thousand, which one at a time through web3.py cost ~3 ms each.

        None where batches are not to be had: on the in-process chain, which answers in
        its own formats, and from a node that does not take batch requests (it answers
        one with a single error or an HTTP error status, or not with one answer a
        request, each with its id; from then on this chain does not ask again). The
        caller then reads one at a time. An error answering one of the requests is a
        ChainError; so is a failed connection."""
        if not self.takes_batches:
            return None
        results: list[Any] = []
        for start in range(0, len(calls), size):
            chunk = list(calls[start : start + size])
            with self._lock, _translated(action):
                try:
                    answers = self.w3.provider.make_batch_request(chunk)  # type: ignore[attr-defined]
                except requests.HTTPError:  # a 4xx/5xx for the batch: read one at a time
                    answers = None
                except (requests.RequestException, OSError):
                    raise  # the node is not there: _translated says so
                except Exception:  # web3.py could not take the answer as a batch's
                    answers = None
            # web3.py orders the answers by id, but leaves them as they came (with a
            # warning) if an id is missing or null: then no order is known either
            if (
                not isinstance(answers, list)
                or len(answers) != len(chunk)
                or any(not isinstance(a, dict) or type(a.get("id")) is not int for a in answers)
            ):
                self._no_batches = True
                return None
            for answer in sorted(answers, key=lambda a: int(a["id"])):
                if "error" in answer or "result" not in answer:
                    raise ChainError(f"{action}: {answer.get('error', answer)!r:.300}")
                results.append(answer["result"])
        return results

    @property
    def takes_batches(self) -> bool:
        """Whether ``batch`` sends batch requests here (else it answers None)."""
        return self.rpc_url is not None and not self._no_batches

    @property
    def head(self) -> int:
        return self.call("reading the head block", lambda: int(self.w3.eth.block_number))

    def now_ms(self) -> int:
        """The ledger's clock: the later of the wall clock and the head block's time."""
        block_s = self.call(
            "reading the head block", lambda: int(self.w3.eth.get_block("latest")["timestamp"])
        )
        return max(int(time.time() * 1000), block_s * 1000)

    def fund(self, address: str, wei: int = _FUND_WEI) -> None:
        """Send dev-chain ether from the node's first unlocked account (eth-tester, anvil)."""

        def send() -> None:
            accounts = self.w3.eth.accounts
            if not accounts:
                raise ChainError(
                    "the node has no unlocked account to fund from; fund keys yourself"
                )
            tx = self.w3.eth.send_transaction(
                {"from": accounts[0], "to": address, "value": Wei(wei)}
            )
            self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)

        self.call("funding a dev account", send)

    def send(self, build: Callable[[Any], Any], account: LocalAccount) -> bytes:
        """Sign and send a transaction; returns its hash without waiting for it.

        The nonce is the node's pending count for the key, read and used under the
        ``nonce_guard`` (set by the Runtime: a lock shared through the store by every
        process using the key), so two workers never sign the same nonce.
        """
        with self.nonce_guard(account.address) as record:
            with self._send_lock, self._lock, _translated("sending a transaction"):
                nonce = self.w3.eth.get_transaction_count(account.address, "pending")
                params: dict[str, Any] = {
                    "from": account.address,
                    "nonce": nonce,
                    "chainId": self.chain_id,
                }
                tx = build(params)
                signed = account.sign_transaction(tx)
                tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
            record(int(nonce), tx_hash)
        return tx_hash

    def wait(self, tx_hash: bytes, *, timeout: float = 60.0) -> TxReceipt:
        """Wait for a transaction's receipt; raises ContractReverted if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                receipt = self.receipt(tx_hash)
            except ContractReverted:
                raise
            except ChainError:
                if time.monotonic() > deadline:
                    raise
                receipt = None  # a node's hiccup while it stores the block: ask again
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise ChainError(f"transaction 0x{tx_hash.hex()} not mined after {timeout:.0f}s")
            time.sleep(0.05)

    def receipt(self, tx_hash: bytes) -> TxReceipt | None:
        """The receipt of a mined transaction, None if it is pending or unknown."""
        with self._lock, _translated("reading a receipt"):
            try:
                raw = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except (TransactionNotFound, TimeExhausted):
                return None
        if raw["status"] != 1:
            raise ContractReverted(
                f"transaction 0x{tx_hash.hex()} reverted in block {raw['blockNumber']}",
                error="Reverted",
            )
        return TxReceipt(
            tx_hash=tx_hash, block_number=int(raw["blockNumber"]), gas_used=int(raw["gasUsed"])
        )

    def code_at(self, address: str) -> bytes:
        return self.call(
            "reading contract code",
            lambda: bytes(self.w3.eth.get_code(to_checksum_address(address))),
        )


def _error_selectors(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    selectors = {}
    for item in abi:
        if item.get("type") == "error":
            types = [i["type"] for i in item["inputs"]]
            selectors[keccak(text=f"{item['name']}({','.join(types)})")[:4]] = (item["name"], types)
    return selectors


@cache
def _fourflow_errors() -> list[dict[str, Any]]:
    """The error entries of every fourflow contract's ABI."""
    return [
        item for name in CONTRACTS for item in load_artifact(name).abi if item["type"] == "error"
    ]


_STANDARD_ERRORS = {
    keccak(text="Error(string)")[:4]: ("Error", ["string"]),
    keccak(text="Panic(uint256)")[:4]: ("Panic", ["uint256"]),
}


def decode_revert(abi: list[dict[str, Any]], data: str | bytes) -> tuple[str, tuple[Any, ...]]:
    """Name and values of a custom error from its revert data."""
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else data
    known = _error_selectors(abi) | _STANDARD_ERRORS
    if raw[:4] in known:
        name, types = known[raw[:4]]
        return name, tuple(abi_decode(types, raw[4:]))
    return "Unknown", (raw.hex(),)


_BYTES_REPR = re.compile(r"(?:execution reverted: )?(b'.*'|b\".*\")", re.S)


def _revert_data(cause: BaseException | None) -> bytes | None:
    """Revert data from web3 (anvil, geth: ContractCustomError) or eth-tester: bytes for a
    transaction, the repr of those bytes for a call (eth-tester formats them)."""
    seen = 0
    while cause is not None and seen < 8:
        if isinstance(cause, ContractCustomError) and isinstance(cause.data, str):
            return bytes.fromhex(cause.data.removeprefix("0x"))
        if cause.args and isinstance(cause.args[0], bytes):
            return cause.args[0]
        failed = isinstance(cause, tester_failures())
        if failed and cause.args and isinstance(cause.args[0], str):
            shown = _BYTES_REPR.fullmatch(cause.args[0])
            if shown:
                value = ast.literal_eval(shown.group(1))
                return value if isinstance(value, bytes) else None
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


@dataclass(frozen=True)
class OnChainBatch:
    root: bytes
    leaf_count: int
    first_event_time: int
    last_event_time: int
    anchored_block: int


@dataclass(frozen=True)
class StreamHead:
    next_seq: int
    total_leaves: int
    accumulator: bytes


class ContractClient:
    """Typed calls into one deployed contract: reverts decoded, roles, logs."""

    NAME: ClassVar[str]

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self.artifact: Artifact = load_artifact(self.NAME)
        self._contract: Contract = chain.w3.eth.contract(
            address=self.address, abi=self.artifact.abi
        )

    @classmethod
    def _deploy(cls, chain: Chain, *args: Any, deployer: LocalAccount) -> tuple[str, TxReceipt]:
        artifact = load_artifact(cls.NAME)
        factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx_hash = chain.send(lambda p: factory.constructor(*args).build_transaction(p), deployer)
        receipt = chain.wait(tx_hash)
        raw = chain.call(
            "reading a deployment", lambda: chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        )
        if raw["contractAddress"] is None:
            raise ChainError(f"deployment of {cls.NAME} 0x{tx_hash.hex()} created no contract")
        return to_checksum_address(raw["contractAddress"]), receipt

    def _transact(self, action: str, build: Callable[[Any], Any], account: LocalAccount) -> bytes:
        try:
            return self.chain.send(build, account)
        except ChainError as exc:
            raise self._revert(action, exc.__cause__) or exc from exc.__cause__

    def _execute(self, action: str, fn: Any, account: LocalAccount) -> TxReceipt:
        """Send ``fn`` (a bound contract function) from ``account`` and wait for it."""
        return self.chain.wait(self._transact(action, fn.build_transaction, account))

    def _read(self, action: str, fn: Any, block: BlockIdentifier = "latest") -> Any:
        try:
            return self.chain.call(action, lambda: fn.call(block_identifier=block))
        except ChainError as exc:
            raise self._revert(action, exc.__cause__) or exc from exc.__cause__

    def _revert(self, action: str, cause: BaseException | None) -> ContractReverted | None:
        data = _revert_data(cause)
        if data is not None and len(data) >= 4:
            # errors bubble up from the contracts this one calls: know all of fourflow's
            name, values = decode_revert(self.artifact.abi + _fourflow_errors(), data)
            return ContractReverted(
                f"{action} reverted with {name}{values}", error=name, args=values
            )
        if isinstance(cause, (ContractLogicError, *tester_failures())):
            return ContractReverted(f"{action} reverted: {cause}", error="Reverted")
        return None

    def events(self, tx_hash: bytes, name: str) -> list[dict[str, Any]]:
        """The ``name`` events this contract emitted in transaction ``tx_hash``, decoded."""
        event = getattr(self._contract.events, name)

        def read() -> list[dict[str, Any]]:
            raw = self.chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            decoded = event().process_receipt(raw, errors=DISCARD)
            # .items(): an argument named "keys" would shadow AttributeDict.keys()
            return [dict(log["args"].items()) for log in decoded if log["address"] == self.address]

        return self.chain.call(f"reading {name} logs", read)

    # --- roles -----------------------------------------------------------------------

    def grant(self, role: bytes, account: str, *, admin: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.grantRole(role, to_checksum_address(account))
        return self._execute("grantRole", fn, admin)

    def revoke(self, role: bytes, account: str, *, admin: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.revokeRole(role, to_checksum_address(account))
        return self._execute("revokeRole", fn, admin)

    def has_role(self, role: bytes, account: str, *, block: BlockIdentifier = "latest") -> bool:
        fn = self._contract.functions.hasRole(role, to_checksum_address(account))
        return bool(self._read("hasRole", fn, block))


class AnchorRegistry(ContractClient):
    """Typed calls into the anchor registry contract."""

    NAME = "AnchorRegistry"

    @classmethod
    def deploy(cls, chain: Chain, *, admin: LocalAccount) -> tuple[AnchorRegistry, Deployment]:
        address, receipt = cls._deploy(chain, admin.address, deployer=admin)
        deployment = Deployment(
            chain_id=chain.chain_id,
            anchor_registry=address,
            block_number=receipt.block_number,
            artifact_sha256=load_artifact(cls.NAME).sha256,
            deployer=admin.address,
            rpc_url=chain.rpc_url,
        )
        return cls(chain, address), deployment

    @classmethod
    def from_deployment(cls, chain: Chain, deployment: Deployment) -> AnchorRegistry:
        deployment.check_chain(chain)
        return cls(chain, deployment.anchor_registry)

    # --- anchoring ---------------------------------------------------------------------

    def send_anchor(
        self,
        *,
        stream: str,
        seq: int,
        root: bytes,
        leaf_count: int,
        first_event_time: int,
        last_event_time: int,
        oracle: LocalAccount,
    ) -> bytes:
        """Send an anchor transaction; returns its hash. Reverts surface as ContractReverted."""
        fn = self._contract.functions.anchor(
            stream, seq, root, leaf_count, first_event_time, last_event_time
        )
        return self._transact("anchor", fn.build_transaction, oracle)

    def batch_of(
        self, *, stream: str, seq: int, block: BlockIdentifier = "latest"
    ) -> OnChainBatch | None:
        """The anchored batch, read from contract storage; None if it is not anchored."""
        fn = self._contract.functions.batchOf(stream_id_of(stream), seq)
        raw = self._read("batchOf", fn, block)
        root, leaf_count, first, last, anchored_block = raw
        if leaf_count == 0:
            return None
        return OnChainBatch(bytes(root), leaf_count, first, last, anchored_block)

    def batches_of(
        self, *, stream: str, seqs: Sequence[int], block: BlockIdentifier = "latest"
    ) -> list[OnChainBatch | None]:
        """``batch_of`` for each of ``seqs``, in as few round trips as the node takes."""
        if not self.chain.takes_batches:  # not worth writing the calls out
            return [self.batch_of(stream=stream, seq=seq, block=block) for seq in seqs]
        fn, sid = self._contract.functions.batchOf, stream_id_of(stream)
        tag = hex(block) if isinstance(block, int) else block
        answers = self.chain.batch(
            "reading anchored batches",
            [
                (
                    "eth_call",
                    [{"to": self.address, "data": fn(sid, seq)._encode_transaction_data()}, tag],
                )
                for seq in seqs
            ],
        )
        if answers is None:  # the node refused the batch: one at a time from now on
            return [self.batch_of(stream=stream, seq=seq, block=block) for seq in seqs]
        (abi,) = [e for e in self.artifact.abi if e.get("name") == "batchOf"]
        types = [abi_type(output) for output in abi["outputs"]]
        out: list[OnChainBatch | None] = []
        for answer in answers:
            try:  # "0x" where the address holds no registry; anything else undecodable
                (root, leaf_count, first, last, anchored_block), *_ = abi_decode(
                    types, bytes(HexBytes(answer))
                )
            except Exception as exc:
                raise ChainError(
                    f"reading anchored batches: batchOf answered {answer!r:.80}, which does "
                    f"not decode as a batch: {exc}"
                ) from exc
            out.append(
                None
                if leaf_count == 0
                else OnChainBatch(bytes(root), leaf_count, first, last, anchored_block)
            )
        return out

    def head_of(self, stream: str, *, block: BlockIdentifier = "latest") -> StreamHead:
        fn = self._contract.functions.headOf(stream_id_of(stream))
        next_seq, total, accumulator = self._read("headOf", fn, block)
        return StreamHead(next_seq, total, bytes(accumulator))

    def includes(
        self, *, stream: str, seq: int, leaf: bytes, index: int, siblings: list[bytes]
    ) -> bool:
        fn = self._contract.functions.includes(stream_id_of(stream), seq, leaf, index, siblings)
        return bool(self._read("includes", fn))

    def anchored_events(
        self, *, from_block: int = 0, to_block: BlockIdentifier = "latest"
    ) -> list[dict[str, Any]]:
        """Decoded BatchAnchored logs, oldest first."""
        event = self._contract.events.BatchAnchored

        def read() -> list[dict[str, Any]]:
            logs = event.get_logs(from_block=from_block, to_block=to_block)
            return [
                dict(log["args"])
                | {"tx_hash": bytes(log["transactionHash"]), "block_number": log["blockNumber"]}
                for log in logs
            ]

        return self.chain.call("reading BatchAnchored logs", read)


def new_account() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account
