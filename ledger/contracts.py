"""Compiling the Solidity sources and loading the committed artifacts.

Artifacts live in ``contracts/artifacts/<Name>.json`` and are committed, so running
fourflow needs no compiler. ``compile_contracts`` rebuilds them with py-solc-x: a
native ``solc`` of the pinned version if one is on PATH, otherwise solc-js from
``contracts/node_modules`` through ``contracts/solc-shim.js``. Sources are gathered by
following their imports (relative, or from ``contracts/node_modules``) and passed
inline, so both compilers see exactly the same input; its sha256 is stored in each
artifact so staleness is a hash comparison.

A fresh compile also says where each ``immutable`` sits in the runtime code
(``Artifact.immutables``): the constructor writes those values into the deployed code,
so ``fourflow audit`` masks them to compare it with the compiled code, then checks the
values themselves. Committed artifacts do not carry them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ledger.errors import ArtifactError

__all__ = [
    "CONTRACTS",
    "CONTRACTS_DIR",
    "SOLC_VERSION",
    "Artifact",
    "compile_cache_dir",
    "compile_contracts",
    "compiler_input",
    "load_artifact",
    "stale_artifacts",
    "write_artifacts",
]

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
SOLC_VERSION = "0.8.28"
CONTRACTS = ("AnchorRegistry", "ReceiptRegistry", "PriceFeed", "PledgeRegistry")
_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
# asked of the compiler on top of _SETTINGS; output selection changes no code, so the
# artifacts' input hash stays that of _SETTINGS
_IMMUTABLE_OUTPUTS = ["evm.deployedBytecode.immutableReferences"]
_WORD = 32
_IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*\s+from\s+)?["\']([^"\']+)["\']\s*;', re.M)


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    input_sha256: str
    compiler: str
    # qualified name ("EIP712._cachedThis") -> offsets of its 32-byte value in the runtime
    # code; from compile_contracts only (committed artifacts leave it empty)
    immutables: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """sha256 of the creation bytecode; what deployment manifests record."""
        return hashlib.sha256(self.bytecode).hexdigest()


def _resolve(unit: str, imported: str) -> str:
    if imported.startswith("."):
        return posixpath.normpath(posixpath.join(posixpath.dirname(unit), imported))
    return imported


def _read_unit(unit: str) -> str:
    for root in (CONTRACTS_DIR, CONTRACTS_DIR / "node_modules"):
        path = root / unit
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ArtifactError(
        f"cannot find Solidity source {unit!r}; run `make contracts-deps` (npm ci in contracts/)"
    )


def compiler_input() -> dict[str, Any]:
    """The standard-JSON input for every contract, imports included inline."""
    sources: dict[str, dict[str, str]] = {}
    pending = [f"{name}.sol" for name in CONTRACTS]
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        text = _read_unit(unit)
        sources[unit] = {"content": text}
        pending.extend(_resolve(unit, imp) for imp in _IMPORT.findall(text))
    return {
        "language": "Solidity",
        "sources": dict(sorted(sources.items())),
        "settings": _SETTINGS,
    }


def _input_sha256(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _solc_binary() -> Path:
    native = shutil.which("solc")
    if native:
        out = subprocess.run([native, "--version"], capture_output=True, text=True, check=False)
        if f"Version: {SOLC_VERSION}+" in out.stdout:
            return Path(native)
    shim = CONTRACTS_DIR / "solc-shim.js"
    if not (CONTRACTS_DIR / "node_modules" / "solc").is_dir():
        raise ArtifactError(
            f"no native solc {SOLC_VERSION} on PATH and no solc-js in contracts/node_modules; "
            "run `make contracts-deps`"
        )
    return shim


def compile_cache_dir() -> Path | None:
    """Where compiler outputs are kept: ``$FOURFLOW_SOLC_CACHE``, "off" for nowhere, else
    ``$XDG_CACHE_HOME/fourflow/solc`` (``~/.cache/fourflow/solc``)."""
    setting = os.environ.get("FOURFLOW_SOLC_CACHE", "")
    if setting == "off":
        return None
    if setting:
        return Path(setting)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fourflow" / "solc"


def _private(where: Path | None) -> Path | None:
    """``where``, made if missing (mode 0700), if only this user can write to it: an
    entry anyone else could plant would decide what the audit compares deployed code
    with. Otherwise no cache: every compile is solc's."""
    if where is None:
        return None
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = where.stat()
    except OSError:
        return None
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        return None
    return where


def _compiler_files(binary: Path) -> list[Path]:
    """The files that decide what ``binary`` compiles to: a native solc itself; for the
    shim, the shim and the solc-js it loads."""
    if binary.name != "solc-shim.js":
        return [binary]
    package = CONTRACTS_DIR / "node_modules" / "solc"
    return [binary, package / "package.json", package / "soljson.js"]


def _standard_json(request: dict[str, Any], binary: Path) -> tuple[dict[str, Any], str]:
    """solc's standard-JSON output for ``request`` and the compiler's version, from the
    cache when this very input went through this very compiler before. The key is the
    SHA-256 of the input and of the compiler's files, so a different source, setting or
    compiler build is a miss; an unreadable entry is compiled again and replaced."""
    import solcx  # only the compile path needs it

    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    for path in _compiler_files(binary):
        key.update(hashlib.sha256(path.read_bytes()).digest())
    where = _private(compile_cache_dir())
    entry = where / f"{key.hexdigest()}.json" if where is not None else None
    if entry is not None and entry.is_file():
        try:
            kept = json.loads(entry.read_text(encoding="utf-8"))
            return dict(kept["output"]), str(kept["compiler"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # compiled again below
    try:
        output = solcx.compile_standard(request, solc_binary=binary)
    except solcx.exceptions.SolcError as exc:
        raise ArtifactError(f"solc failed: {exc.message}") from exc
    compiler = str(solcx.wrapper.get_version_str_from_solc_binary(binary))
    failed = any(e.get("severity") == "error" for e in output.get("errors", []))
    if entry is not None and not failed:
        try:  # written whole or not at all: processes compiling at once may race
            part = entry.with_name(f"{entry.name}.{os.getpid()}.part")
            part.write_text(json.dumps({"compiler": compiler, "output": output}), "utf-8")
            part.replace(entry)
        except OSError:
            pass  # no cache, same result
    return output, compiler


def compile_contracts() -> dict[str, Artifact]:
    """Compile every contract from source; raises ArtifactError on compiler errors."""
    data = compiler_input()
    binary = _solc_binary()
    request = copy.deepcopy(data)
    selection = request["settings"]["outputSelection"]
    selection["*"]["*"] = [*selection["*"]["*"], *_IMMUTABLE_OUTPUTS]
    selection["*"][""] = ["ast"]  # to name the immutables
    output, compiler = _standard_json(request, binary)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ArtifactError("; ".join(e["formattedMessage"] for e in errors))
    digest = _input_sha256(data)
    names = {
        node_id: name
        for source in output["sources"].values()
        for node_id, name in _immutable_declarations(source["ast"], None)
    }
    artifacts = {}
    for name in CONTRACTS:
        out = output["contracts"][f"{name}.sol"][name]
        deployed = out["evm"]["deployedBytecode"]
        artifacts[name] = Artifact(
            name=name,
            abi=out["abi"],
            bytecode=bytes.fromhex(out["evm"]["bytecode"]["object"]),
            deployed_bytecode=bytes.fromhex(deployed["object"]),
            input_sha256=digest,
            compiler=compiler,
            immutables=_immutables(deployed.get("immutableReferences", {}), names),
        )
    return artifacts


def _immutable_declarations(node: Any, contract: str | None) -> Iterator[tuple[int, str]]:
    """(AST id, "Contract.variable") of every immutable state variable under ``node``."""
    if isinstance(node, dict):
        if node.get("nodeType") == "ContractDefinition":
            contract = node.get("name")
        if node.get("nodeType") == "VariableDeclaration" and node.get("mutability") == "immutable":
            yield int(node["id"]), f"{contract}.{node['name']}"
        for value in node.values():
            yield from _immutable_declarations(value, contract)
    elif isinstance(node, list):
        for value in node:
            yield from _immutable_declarations(value, contract)


def _immutables(
    references: dict[str, list[dict[str, int]]], names: dict[int, str]
) -> dict[str, tuple[int, ...]]:
    found: dict[str, tuple[int, ...]] = {}
    for node_id, places in references.items():
        if any(place["length"] != _WORD for place in places):
            raise ArtifactError(f"immutable {node_id} is not a {_WORD}-byte word: {places}")
        name = names.get(int(node_id), f"#{node_id}")
        found[name] = tuple(sorted(place["start"] for place in places))
    return found


def write_artifacts(artifacts: dict[str, Artifact], directory: Path = ARTIFACTS_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts.values():
        body = {
            "contractName": artifact.name,
            "compiler": artifact.compiler,
            "settings": _SETTINGS,
            "inputSha256": artifact.input_sha256,
            "abi": artifact.abi,
            "bytecode": "0x" + artifact.bytecode.hex(),
            "deployedBytecode": "0x" + artifact.deployed_bytecode.hex(),
        }
        path = directory / f"{artifact.name}.json"
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    load_artifact.cache_clear()


@cache
def load_artifact(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc
    return Artifact(
        name=body["contractName"],
        abi=body["abi"],
        bytecode=bytes.fromhex(body["bytecode"][2:]),
        deployed_bytecode=bytes.fromhex(body["deployedBytecode"][2:]),
        input_sha256=body["inputSha256"],
        compiler=body["compiler"],
    )


def stale_artifacts() -> list[str]:
    """Names of contracts whose committed artifact was not built from today's sources."""
    digest = _input_sha256(compiler_input())
    return [name for name in CONTRACTS if load_artifact(name).input_sha256 != digest]
