"""Reading fourflow's contract logs from a chain: fetched in block ranges, decoded
against the compiled ABIs, and normalized into plain records.

A ``ChainLog`` is one log as an auditor sees it: where it sits (block number and hash,
transaction, log index), when (the block's timestamp), which contract emitted it, the
event's name, its decoded arguments as JSON-ready values (addresses in EIP-55 case,
bytes as ``0x`` hex, structs as objects, integers as integers), and the raw topics and
data, so anyone can compare the record with ``eth_getTransactionReceipt``.

Both the indexer (which keeps these in the store) and ``fourflow audit`` (which trusts
no store and reads them afresh) use this module; ``ledger.replay`` turns them into
receipt, pledge and role state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.types import FilterParams

from ledger.chain import Chain, Deployment, abi_type
from ledger.contracts import load_artifact

__all__ = ["ChainLog", "LogReader", "watched_contracts"]

# the contracts a deployment manifest names, by artifact name
_MANIFEST_FIELDS = {
    "AnchorRegistry": "anchor_registry",
    "ReceiptRegistry": "receipt_registry",
    "PriceFeed": "price_feed",
    "PledgeRegistry": "pledge_registry",
}


@dataclass(frozen=True)
class ChainLog:
    """One decoded contract log."""

    block_number: int
    block_hash: str  # 0x hex
    block_time_ms: int
    tx_hash: str  # 0x hex
    log_index: int
    contract: str  # artifact name: AnchorRegistry, ReceiptRegistry, PriceFeed, PledgeRegistry
    address: str  # EIP-55
    event: str  # e.g. "PledgeOpened"
    args: dict[str, Any]
    topics: tuple[str, ...]  # 0x hex, as the node returned them
    data: str  # 0x hex

    @property
    def position(self) -> tuple[int, int]:
        """Chain order: (block, log index)."""
        return (self.block_number, self.log_index)

    def args_json(self) -> str:
        return json.dumps(self.args, sort_keys=True, separators=(",", ":"))


def watched_contracts(deployment: Deployment) -> dict[str, str]:
    """Artifact name -> address of every fourflow contract the manifest names."""
    named = {
        name: getattr(deployment, field)
        for name, field in _MANIFEST_FIELDS.items()
        if getattr(deployment, field)
    }
    return {name: to_checksum_address(address) for name, address in named.items()}


@dataclass(frozen=True)
class _EventAbi:
    contract: str
    name: str
    abi: dict[str, Any]


def _signature(abi: Mapping[str, Any]) -> str:
    return f"{abi['name']}({','.join(abi_type(i) for i in abi['inputs'])})"


def _hex(value: Any) -> str:
    """A hash as the node returned it (hex text or bytes) as 0x-prefixed lowercase hex."""
    return "0x" + bytes(HexBytes(value)).hex()


def _json_value(param: Mapping[str, Any], value: Any) -> Any:
    """ABI-decoded ``value`` of ``param`` as a JSON-ready value."""
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = dict(param) | {"type": kind[: kind.rindex("[")]}
        return [_json_value(inner, v) for v in value]
    if kind == "tuple":
        components = param["components"]
        items = value.values() if isinstance(value, Mapping) else value
        return {c["name"]: _json_value(c, v) for c, v in zip(components, items, strict=True)}
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith("bytes"):
        return "0x" + bytes(value).hex()
    if kind == "bool":
        return bool(value)
    if kind.startswith(("uint", "int")):
        return int(value)
    return value


class LogReader:
    """Fetches and decodes the logs of a set of contracts."""

    def __init__(self, chain: Chain, contracts: Mapping[str, str], *, span: int = 2_000) -> None:
        self.chain = chain
        self.contracts = {name: to_checksum_address(a) for name, a in contracts.items()}
        self._by_address = {address: name for name, address in self.contracts.items()}
        self.span = span
        self._events: dict[tuple[str, bytes], _EventAbi] = {}
        for name in self.contracts:
            for item in load_artifact(name).abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    topic = keccak(text=_signature(item))
                    self._events[(name, topic)] = _EventAbi(name, item["name"], item)
        self._block_times: dict[str, int] = {}

    @classmethod
    def for_deployment(cls, chain: Chain, deployment: Deployment) -> LogReader:
        return cls(chain, watched_contracts(deployment))

    def read(self, from_block: int, to_block: int) -> Iterator[ChainLog]:
        """Every log of the watched contracts in [from_block, to_block], in chain order."""
        start = from_block
        while start <= to_block:
            end = min(to_block, start + self.span - 1)
            query: FilterParams = {
                "fromBlock": start,
                "toBlock": end,
                "address": list(self.contracts.values()),
            }

            def fetch(q: FilterParams = query) -> list[Any]:
                return list(self.chain.w3.eth.get_logs(q))

            raw = self.chain.call("reading contract logs", fetch)
            self._prefetch_block_times({_hex(log["blockHash"]) for log in raw})
            ordered = sorted(raw, key=lambda log: (log["blockNumber"], log["logIndex"]))
            for log in ordered:
                decoded = self.decode(log)
                if decoded is not None:
                    yield decoded
            start = end + 1

    def decode(self, log: Mapping[str, Any]) -> ChainLog | None:
        """``log`` (as eth_getLogs returns it) decoded; None for an event we do not know."""
        address = to_checksum_address(log["address"])
        contract = self._by_address.get(address)
        topics = [bytes(HexBytes(t)) for t in log["topics"]]
        if contract is None or not topics:
            return None
        event = self._events.get((contract, topics[0]))
        if event is None:
            return None
        data = bytes(HexBytes(log["data"]))
        args = self._decode_args(event.abi, topics[1:], data)
        block_hash = _hex(log["blockHash"])
        return ChainLog(
            block_number=int(log["blockNumber"]),
            block_hash=block_hash,
            block_time_ms=self._block_time_ms(block_hash),
            tx_hash=_hex(log["transactionHash"]),
            log_index=int(log["logIndex"]),
            contract=contract,
            address=address,
            event=event.name,
            args=args,
            topics=tuple("0x" + t.hex() for t in topics),
            data="0x" + data.hex(),
        )

    @staticmethod
    def _decode_args(
        abi: Mapping[str, Any], topics: Sequence[bytes], data: bytes
    ) -> dict[str, Any]:
        indexed = [p for p in abi["inputs"] if p.get("indexed")]
        plain = [p for p in abi["inputs"] if not p.get("indexed")]
        values: dict[str, Any] = {}
        for param, topic in zip(indexed, topics, strict=True):
            # indexed dynamic values are stored as their hash; ours are all static
            (value,) = abi_decode([abi_type(param)], topic)
            values[param["name"]] = _json_value(param, value)
        decoded = abi_decode([abi_type(p) for p in plain], data) if plain else ()
        for param, value in zip(plain, decoded, strict=True):
            values[param["name"]] = _json_value(param, value)
        return {p["name"]: values[p["name"]] for p in abi["inputs"]}

    def _prefetch_block_times(self, block_hashes: set[str]) -> None:
        """Read the times of the blocks not yet known in one batch request, where the
        node takes them (an audit reads a block for each of a thousand anchors)."""
        missing = sorted(h for h in block_hashes if h not in self._block_times)
        if not missing or not self.chain.takes_batches:
            return
        answers = self.chain.batch(
            "reading blocks", [("eth_getBlockByHash", [h, False]) for h in missing]
        )
        if answers is None:
            return  # read one at a time by _block_time_ms
        if len(self._block_times) + len(missing) > 10_000:
            self._block_times.clear()
        for block_hash, block in zip(missing, answers, strict=True):
            if isinstance(block, dict) and "timestamp" in block:  # else: read again, alone
                self._block_times[block_hash] = int(block["timestamp"], 16) * 1000

    def _block_time_ms(self, block_hash: str) -> int:
        cached = self._block_times.get(block_hash)
        if cached is None:
            block = self.chain.call(
                "reading a block", lambda: self.chain.w3.eth.get_block(HexBytes(block_hash))
            )
            cached = int(block["timestamp"]) * 1000
            if len(self._block_times) > 10_000:
                self._block_times.clear()
            self._block_times[block_hash] = cached
        return cached

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number`` as the node sees it now; None past its head."""
        if number > self.chain.head:
            return None
        block = self.chain.call("reading a block", lambda: self.chain.w3.eth.get_block(number))
        return _hex(block["hash"])
