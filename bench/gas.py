"""Gas per anchored event, against an attestation per event and a storage slot per event.

All three run on one in-process eth-tester chain in the same run:

- fourflow: one ``AnchorRegistry.anchor`` transaction per batch, whatever its size; gas
  per event is that transaction's gas over the batch size. Each size is a real anchor
  of a real Merkle root, as a later batch of a stream that already has one (the first
  batch of a stream also creates its head; its gas is in the details).
- the Ethereum Attestation Service (npm ``@ethereum-attestation-service/eas-contracts``,
  installed in bench/peers with the solc-js version its sources pin): ``SchemaRegistry``
  and ``EAS`` compiled from those sources, one schema ``bytes32 eventHash``, then
  ``attest`` (a transaction per event) and ``multiAttest`` (one per batch, at batch
  sizes that fit in a block).
- naive storage: bench/NaiveStore.sol, one SSTORE and one event per record, compiled
  with the repository's compiler (solc-js through contracts/solc-shim.js).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from bench.core import PEERS, ROOT, Context, Figure, benchmark
from ledger.chain import ORACLE_ROLE, AnchorRegistry, Chain
from ledger.contracts import CONTRACTS_DIR, SOLC_VERSION
from ledger.merkle import build_tree

EAS_PACKAGE = PEERS / "node_modules" / "@ethereum-attestation-service" / "eas-contracts"
EAS_SOLC = PEERS / "node_modules" / "solc-eas"  # npm:solc at the version EAS pins
EAS_SCHEMA = "bytes32 eventHash"
# EAS's own deployments are built with the optimizer at a million runs
EAS_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 1_000_000},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
NAIVE_SOURCE = ROOT / "bench" / "NaiveStore.sol"
NAIVE_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
STREAM = "bench.gas"
GOAL_SIZE = 10_000
GOAL_GAS = 10.0
GOAL_RATIO = 10_000.0
CHEAPER = "peer / fourflow: times cheaper"
_IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*\s+from\s+)?["\']([^"\']+)["\']\s*;', re.M)
_NODE_COMPILE = """
const solc = require(process.argv[1]);
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify({version: solc.version(),
    output: JSON.parse(solc.compile(Buffer.concat(chunks).toString("utf8")))}));
});
"""

Compiled = dict[str, tuple[list[dict[str, Any]], bytes]]  # name -> (abi, creation code)


def _event_hash(i: int) -> bytes:
    return hashlib.sha256(f"bench.gas event {i}".encode()).digest()


# --- compiling ---------------------------------------------------------------------------


def _resolve_relative(unit: str, imported: str) -> str:
    parts: list[str] = unit.split("/")[:-1]
    for part in imported.split("/"):
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _sources(units: list[str], roots: list[Path]) -> dict[str, dict[str, str]]:
    sources: dict[str, dict[str, str]] = {}
    pending = list(units)
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        path = next((r / unit for r in roots if (r / unit).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"Solidity source {unit!r} not under {[str(r) for r in roots]}")
        text = path.read_text(encoding="utf-8")
        sources[unit] = {"content": text}
        pending += [
            _resolve_relative(unit, imp) if imp.startswith(".") else imp
            for imp in _IMPORT.findall(text)
        ]
    return dict(sorted(sources.items()))


def _contracts(output: dict[str, Any], wanted: dict[str, str]) -> Compiled:
    """``wanted``: contract name -> source unit."""
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("; ".join(e["formattedMessage"] for e in errors))
    found: Compiled = {}
    for name, unit in wanted.items():
        out = output["contracts"][unit][name]
        found[name] = (out["abi"], bytes.fromhex(out["evm"]["bytecode"]["object"]))
    return found


def compile_eas(ctx: Context) -> tuple[Compiled, str]:
    """SchemaRegistry and EAS from the npm package's sources, with its pinned solc-js.

    The output is cached under ``ctx.tmp`` only."""
    if not (EAS_PACKAGE / "contracts" / "EAS.sol").is_file() or not EAS_SOLC.is_dir():
        raise RuntimeError(
            "EAS peer not installed: run `npm install --no-audit --no-fund` in bench/peers"
        )
    cache = ctx.tmp / "eas-compiled.json"
    if not cache.is_file():
        units = ["contracts/SchemaRegistry.sol", "contracts/EAS.sol"]
        request = {
            "language": "Solidity",
            "sources": _sources(units, [EAS_PACKAGE, PEERS / "node_modules"]),
            "settings": EAS_SETTINGS,
        }
        done = subprocess.run(
            ["node", "-e", _NODE_COMPILE, str(EAS_SOLC)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        cache.write_text(done.stdout, encoding="utf-8")
    body = json.loads(cache.read_text(encoding="utf-8"))
    wanted = {"SchemaRegistry": "contracts/SchemaRegistry.sol", "EAS": "contracts/EAS.sol"}
    return _contracts(body["output"], wanted), str(body["version"])


def compile_naive() -> Compiled:
    """bench/NaiveStore.sol with the repository's compiler (solc-js via solc-shim.js)."""
    import solcx

    request = {
        "language": "Solidity",
        "sources": {"NaiveStore.sol": {"content": NAIVE_SOURCE.read_text(encoding="utf-8")}},
        "settings": NAIVE_SETTINGS,
    }
    output = solcx.compile_standard(request, solc_binary=CONTRACTS_DIR / "solc-shim.js")
    return _contracts(output, {"NaiveStore": "NaiveStore.sol"})


# --- on the chain ------------------------------------------------------------------------


def _deploy(chain: Chain, compiled: Compiled, name: str, *args: Any, by: LocalAccount) -> Any:
    abi, code = compiled[name]
    factory = chain.w3.eth.contract(abi=abi, bytecode=code)
    tx_hash = chain.send(lambda p: factory.constructor(*args).build_transaction(p), by)
    chain.wait(tx_hash)
    raw = chain.call(
        "reading a deployment", lambda: chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
    )
    return chain.w3.eth.contract(address=raw["contractAddress"], abi=abi)


def _gas(chain: Chain, fn: Any, by: LocalAccount) -> int:
    """Send a bound contract call and return its receipt's gas."""
    return chain.wait(chain.send(fn.build_transaction, by)).gas_used


def measure_fourflow(chain: Chain, sizes: list[int], say: Callable[[str], None]) -> dict[str, Any]:
    admin, oracle = Account.create(), Account.create()
    chain.fund(admin.address)
    chain.fund(oracle.address)
    registry, _ = AnchorRegistry.deploy(chain, admin=admin)
    registry.grant(ORACLE_ROLE, oracle.address, admin=admin)
    seq = 0

    def anchor(size: int) -> int:
        nonlocal seq
        root = build_tree([_event_hash(seq * 1_000_000 + i) for i in range(size)]).root
        tx = registry.send_anchor(
            stream=STREAM,
            seq=seq,
            root=root,
            leaf_count=size,
            first_event_time=1_700_000_000_000 + seq,
            last_event_time=1_700_000_000_000 + seq + size,
            oracle=oracle,
        )
        seq += 1
        return chain.wait(tx).gas_used

    first = anchor(1)
    by_size = {}
    for size in sizes:
        by_size[size] = anchor(size)
        say(f"fourflow anchor of {size:,}: {by_size[size]:,} gas")
    return {"first_batch_gas": first, "anchor_gas": by_size}


def measure_naive(chain: Chain, records: int) -> dict[str, Any]:
    owner = Account.create()
    chain.fund(owner.address)
    store = _deploy(chain, compile_naive(), "NaiveStore", by=owner)
    gas = [_gas(chain, store.functions.store(_event_hash(i)), owner) for i in range(records)]
    return {"gas_per_record": statistics.mean(gas), "records": records, "solc": SOLC_VERSION}


def measure_eas(ctx: Context, chain: Chain, attests: int, multi_sizes: list[int]) -> dict[str, Any]:
    compiled, version = compile_eas(ctx)
    owner = Account.create()
    chain.fund(owner.address)
    schemas = _deploy(chain, compiled, "SchemaRegistry", by=owner)
    eas = _deploy(chain, compiled, "EAS", schemas.address, by=owner)
    zero = "0x" + "00" * 20
    tx_hash = chain.send(
        schemas.functions.register(EAS_SCHEMA, zero, True).build_transaction, owner
    )
    chain.wait(tx_hash)
    raw = chain.call(
        "reading a receipt", lambda: chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
    )
    schema_uid = bytes(HexBytes(raw["logs"][0]["topics"][1]))
    counter = iter(range(10**9))

    def request() -> tuple[Any, ...]:
        data = abi_encode(["bytes32"], [_event_hash(next(counter))])
        return (owner.address, 0, True, b"\x00" * 32, data, 0)

    attest = [
        _gas(chain, eas.functions.attest((schema_uid, request())), owner) for _ in range(attests)
    ]
    multi: dict[int, float] = {}
    for size in multi_sizes:
        batch = [(schema_uid, [request() for _ in range(size)])]
        multi[size] = _gas(chain, eas.functions.multiAttest(batch), owner) / size
        ctx.say(f"EAS multiAttest of {size:,}: {multi[size]:,.0f} gas/event")
    return {
        "attest_gas_per_event": statistics.mean(attest),
        "attests": attests,
        "multi_attest_gas_per_event": multi,
        "solc": version,
    }


# --- the benchmark -----------------------------------------------------------------------


@benchmark("gas", "gas per anchored event vs EAS attestations and naive storage")
def run(ctx: Context) -> list[Figure]:
    sizes: list[int] = ctx.pick(
        tiny=[1, 100], quick=[1, 100, 1_000, 10_000], full=[1, 100, 1_000, 10_000]
    )
    multi_sizes: list[int] = ctx.pick(tiny=[1, 10], quick=[1, 10, 100], full=[1, 10, 100])
    records: int = ctx.pick(tiny=3, quick=10, full=50)
    chain = Chain.in_process()
    ctx.say("compiling and deploying EAS (solc-js)…")
    eas = measure_eas(ctx, chain, records, multi_sizes)
    naive = measure_naive(chain, records)
    ours = measure_fourflow(chain, sizes, ctx.say)

    attest = float(eas["attest_gas_per_event"])
    multi: dict[int, float] = eas["multi_attest_gas_per_event"]
    multi_size = max(multi)
    naive_gas = float(naive["gas_per_record"])
    peers = [
        (f"EAS attest (a tx per event, mean of {records})", attest),
        (f"EAS multiAttest ({multi_size:,} per tx)", multi[multi_size]),
        (f"naive storage (SSTORE + event, a tx per record, mean of {records})", naive_gas),
    ]
    figures: list[Figure] = []
    for size in sizes:
        per_event = ours["anchor_gas"][size] / size
        details = {"batch_size": size, "anchor_tx_gas": ours["anchor_gas"][size]}
        for peer, peer_value in peers:
            figures.append(
                Figure(
                    benchmark="gas",
                    name=f"gas per event @ {size:,} per batch",
                    value=per_event,
                    unit="gas/event",
                    peer=peer,
                    peer_value=peer_value,
                    ratio=peer_value / per_event,
                    ratio_of=CHEAPER,
                    details=details,
                )
            )
    for size, per_event in sorted(multi.items()):
        figures.append(
            Figure(
                benchmark="gas",
                name=f"peer: EAS multiAttest gas per event @ {size:,} per tx",
                value=per_event,
                unit="gas/event",
                details={"batch_size": size, "solc": eas["solc"]},
            )
        )
    figures.append(
        Figure(
            benchmark="gas",
            name="fourflow: first batch of a stream (creates its head)",
            value=float(ours["first_batch_gas"]),
            unit="gas/tx",
        )
    )
    if GOAL_SIZE in ours["anchor_gas"]:
        per_event = ours["anchor_gas"][GOAL_SIZE] / GOAL_SIZE
        ratio = attest / per_event
        figures.append(
            Figure(
                benchmark="gas",
                name=f"goal: gas per event @ {GOAL_SIZE:,} per batch",
                value=per_event,
                unit="gas/event",
                peer="EAS attest (a tx per event)",
                peer_value=attest,
                ratio=ratio,
                ratio_of=CHEAPER,
                goal=f"≤ {GOAL_GAS:g} gas/event and > {GOAL_RATIO:,.0f}× cheaper than EAS attest",
                goal_met=per_event <= GOAL_GAS and ratio > GOAL_RATIO,
                details={
                    "eas_solc": eas["solc"],
                    "naive_solc": naive["solc"],
                    "eas_settings": EAS_SETTINGS["optimizer"],
                    "chain": "eth-tester (in-process), cancun",
                },
            )
        )
    return figures
