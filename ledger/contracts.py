"""Compiling the Solidity sources and loading the committed artifacts.

Artifacts live in ``contracts/artifacts/<Name>.json`` and are committed, so running
fourflow needs no compiler. ``compile_contracts`` rebuilds them with py-solc-x: a
native ``solc`` of the pinned version if one is on PATH, otherwise solc-js from
``contracts/node_modules`` through ``contracts/solc-shim.js``. Sources are gathered by
following their imports (relative, or from ``contracts/node_modules``) and passed
inline, so both compilers see exactly the same input; its sha256 is stored in each
artifact so staleness is a hash comparison.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ledger.errors import ArtifactError

__all__ = [
    "CONTRACTS",
    "CONTRACTS_DIR",
    "SOLC_VERSION",
    "Artifact",
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
_IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*\s+from\s+)?["\']([^"\']+)["\']\s*;', re.M)


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    input_sha256: str
    compiler: str

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


def compile_contracts() -> dict[str, Artifact]:
    """Compile every contract from source; raises ArtifactError on compiler errors."""
    import solcx  # only the compile path needs it

    data = compiler_input()
    binary = _solc_binary()
    try:
        output = solcx.compile_standard(data, solc_binary=binary)
    except solcx.exceptions.SolcError as exc:
        raise ArtifactError(f"solc failed: {exc.message}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ArtifactError("; ".join(e["formattedMessage"] for e in errors))
    compiler = solcx.wrapper.get_version_str_from_solc_binary(binary)
    digest = _input_sha256(data)
    artifacts = {}
    for name in CONTRACTS:
        out = output["contracts"][f"{name}.sol"][name]
        artifacts[name] = Artifact(
            name=name,
            abi=out["abi"],
            bytecode=bytes.fromhex(out["evm"]["bytecode"]["object"]),
            deployed_bytecode=bytes.fromhex(out["evm"]["deployedBytecode"]["object"]),
            input_sha256=digest,
            compiler=compiler,
        )
    return artifacts


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
