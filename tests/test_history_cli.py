"""The history tools as a lender or auditor runs them, as real processes on anvil:
`fourflow index` follows the chain into a store, and `fourflow verify` checks a pledge's
evidence package with nothing but the file and the node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from api.oracle_scene import run_oracle_scene
from ledger.chain import Chain
from ledger.collateral import deploy_collateral
from ledger.evidence import build_package
from ledger.history import Histories
from ledger.indexer import ChainIndex
from ledger.runtime import Runtime
from tests.conftest import AnvilNode, fourflow_bin

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fourflow_bin(), *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_index_then_verify_a_package_as_real_processes(anvil: AnvilNode, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/store.sqlite"
    runtime, keys = Runtime.dev(db_url=db, chain=Chain.connect(anvil.url))
    contracts, deployment = deploy_collateral(
        runtime.registry, runtime.deployment, admin=keys.admin
    )
    runtime.deployment = deployment
    manifest = tmp_path / "deployment.json"
    deployment.write(manifest)
    scene = run_oracle_scene(
        runtime, keys, contracts, kind="dairy", days=1, seed=3, size=20, say=lambda *a, **k: None
    )

    chain = ["--db", db, "--rpc", anvil.url, "--manifest", str(manifest)]
    indexed = run("index", *chain)
    assert indexed.returncode == 0, indexed.stderr
    assert "indexed to block" in indexed.stdout
    index = ChainIndex(runtime.store, deployment)
    assert index.state().pledge(scene.pledge_id) == contracts.pledges.pledge_of(scene.pledge_id)
    assert index.describe()["logs"] > 0  # (--rebuild: tests/test_indexer.py, in-process)

    histories = Histories(runtime.store, index, runtime.bundles, deployment)
    package = build_package(histories, histories.pledge_subject(scene.pledge_id))
    good = tmp_path / "evidence.json"
    good.write_text(json.dumps(package))
    answer = run("verify", str(good), "--rpc", anvil.url, "--json")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    report: dict[str, Any] = json.loads(answer.stdout)
    assert report["ok"] and report["bundles_verified"] > 0 and report["logs_verified"] > 0
    human = run("verify", str(good), "--rpc", anvil.url, "--manifest", str(manifest))
    assert human.returncode == 0 and "VERIFIED" in human.stdout

    package["summary"]["money"][0]["disbursed"] -= 1
    bad = tmp_path / "doctored.json"
    bad.write_text(json.dumps(package))
    refused = run("verify", str(bad), "--rpc", anvil.url, "--json")
    assert refused.returncode == 1
    assert [f["check"] for f in json.loads(refused.stdout)["findings"]] == ["summary"]

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert run("verify", str(garbage), "--rpc", anvil.url).returncode == 2
    runtime.close()
