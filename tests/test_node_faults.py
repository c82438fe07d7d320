"""The chain node goes away, and comes back older.

A stopped node: submissions keep being accepted and stored (the API knows its signers'
roles), anchoring backs off and retries, and catches up when the node returns. A node
restarted from an older state (its later blocks lost, as after a restore from backup or
a deep reorganization): the worker sees that anchors it recorded are no longer on the
chain and anchors those batches again, same roots, same proofs. Each test ends with
every event anchored exactly once and a full audit that finds nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.worker_rig import Rig

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def _post(api: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{api}/v1/events", json=body, timeout=30)


def test_submissions_are_kept_while_the_node_is_down_and_anchored_after(rig: Rig) -> None:
    _, api = rig.api()
    worker = rig.worker()
    assert _post(api, rig.signed(20)).status_code == 202
    rig.wait_anchored(20).close()

    rig.node.stop()
    for _ in range(6):
        answer = _post(api, rig.signed(5))
        assert answer.status_code == 202, answer.text  # stored, though nothing can anchor
    health = httpx.get(f"{api}/v1/health", timeout=30)
    assert health.status_code == 503 and health.json()["chain"]["ok"] is False
    assert health.headers["Retry-After"] and f"127.0.0.1:{rig.node.port}" not in health.text
    assert health.json()["backlog"]["acme.custody"]["pending"] == 30
    time.sleep(4)  # the worker keeps failing meanwhile, backing off
    assert worker.proc.poll() is None, worker.output()
    [anchor] = httpx.get(f"{api}/v1/health", timeout=30).json()["workers"]
    # its failure shows by code: the node's URL stays in the worker's log
    assert anchor["kind"] == "anchor" and anchor["errors"] >= 1
    assert anchor["last_error"] == "acme.custody: chain_unavailable"
    deferred = worker.output().count("deferred")
    assert deferred >= 1
    # retries back off (doubling to 30 s) instead of hammering a dead node every 50 ms
    assert deferred < 25, deferred

    rig.restart_node()
    rig.wait_anchored(50).close()
    assert httpx.get(f"{api}/v1/health", timeout=30).status_code == 200
    rig.assert_exactly_once(50)


def test_an_unknown_signer_is_refused_while_the_node_is_down(rig: Rig) -> None:
    _, api = rig.api()
    rig.node.stop()
    answer = _post(api, rig.signed(3, submitter=1))  # its role was never confirmed
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"]
    assert answer.json()["error"]["code"] == "chain_unavailable"
    assert (
        f"127.0.0.1:{rig.node.port}" not in answer.text
    )  # the node's URL stays in the server's log
    rig.restart_node()
    assert _post(api, rig.signed(3, submitter=1)).status_code == 202


def test_anchors_lost_with_an_older_node_state_are_anchored_again(rig: Rig) -> None:
    worker = rig.worker("worker", "--recheck", "0.5")
    rig.submit(12)
    rig.wait_anchored(12).close()
    older = rig.save_node_state("older.json")  # batches 0-2 on chain
    rig.submit(13)
    rig.wait_anchored(25).close()
    assert rig.runtime.registry.head_of("acme.custody").next_seq == 6

    rig.restart_node(state=older)  # batches 3-5 gone from the chain, not from the store
    deadline = time.monotonic() + 60
    # the worker saw it (it may already be anchoring again: no race on the head here)
    while "3 anchored batch(es) from seq 3 are no longer on the chain" not in worker.output():
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.2)
    while rig.runtime.registry.head_of("acme.custody").next_seq < 6:
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.2)
    rig.wait_anchored(25).close()
    rig.assert_exactly_once(25)


def test_a_drain_that_could_not_anchor_exits_non_zero(rig: Rig, tmp_path: Path) -> None:
    """`oracle run --once` is for scripts: a stream the chain refused is a failure."""
    import json

    rig.submit(3)
    manifest = json.loads((tmp_path / "deployment.json").read_text())
    manifest["anchor_registry"] = "0x" + "42" * 20  # no contract there
    broken = tmp_path / "elsewhere.json"
    broken.write_text(json.dumps(manifest))
    rig.env["FOURFLOW_MANIFEST"] = str(broken)
    drained = rig.worker_once()
    assert drained.returncode == 1, (drained.stdout, drained.stderr)
    assert "anchoring did not finish: acme.custody" in drained.stderr
