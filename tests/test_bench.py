"""`make bench` cannot rot: every benchmark runs at its tiny size inside `make test`.
These tests check what the figures say and how they are written, never how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import ROOT


def _run(tmp_path: Path, *only: str) -> dict[str, object]:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--only", ",".join(only), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, object] = json.loads(out.read_text())
    return results


def test_the_merkle_benchmark_compares_with_the_floor_and_both_peers(tmp_path: Path) -> None:
    results = _run(tmp_path, "merkle")
    assert results["format"] == "fourflow/bench-results" and results["size"] == "tiny"
    machine = results["machine"]
    assert isinstance(machine, dict) and machine["cores"] and machine["commit"]
    assert machine["reference_rounds_s"] > 0 and machine["reference_rounds_s_at_end"] > 0
    assert list(machine["reference_rounds_s_by_benchmark"]) == ["merkle"]
    versions = results["versions"]
    assert isinstance(versions, dict) and versions["fourflow"] and versions["pymerkle"]
    assert versions["@openzeppelin/merkle-tree"] == "1.0.8"  # pinned in bench/peers
    figures = {f["name"]: f for f in results["figures"]}  # type: ignore[attr-defined]
    build = figures["build @ 1,000"]
    assert build["unit"] == "ms" and build["value"] > 0 and build["peer_value"] > 0
    assert build["ratio"] == pytest.approx(build["value"] / build["peer_value"])
    assert build["goal_met"] in (True, False)
    for peer in ("pymerkle", "OpenZeppelin"):
        compared = figures[f"build @ 1,000 vs {peer}"]
        assert compared["peer_value"] > 0 and compared["ratio"] > 0
    proof = figures["proof from a sealed batch of 1,000 (p50)"]
    assert proof["value"] > 0 and proof["peer_value"] > 0  # every proof checked in the run
    assert proof["details"]["p99_ms"] >= proof["value"] and "goal_met" not in proof
    assert figures["seal a batch of 1,000"]["value"] > 0
    assert results["errors"] == {}


def test_an_unknown_benchmark_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nosuch", "--out", str(tmp_path / "r.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "unknown benchmark 'nosuch'" in done.stderr
    assert not (tmp_path / "r.json").exists()
