"""Kill the anchoring worker (SIGKILL) between the steps of its state machine, restart it,
and check that every event ends up anchored exactly once. Runs the real `fourflow oracle
run` process against anvil and a SQLite file; the kill comes from the worker's own crash
points (ledger/faults.py), the only way to hit an exact step."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.chain import Chain
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import Store
from ledger.verify import verify_bundle
from tests.conftest import AnvilNode, fourflow_bin, free_port, make_events

pytestmark = pytest.mark.anvil


def _setup(
    anvil: AnvilNode, tmp_path: Path, events: int
) -> tuple[Runtime, DevKeys, dict[str, str]]:
    db_url = f"sqlite:///{tmp_path}/store.sqlite"
    runtime, keys = Runtime.dev(db_url=db_url, chain=Chain.connect(anvil.url))
    manifest = tmp_path / "deployment.json"
    runtime.deployment.write(manifest)
    firm = keys.submitters[0]
    body = sign_submission(
        make_events(firm.address, events), private_key=firm.key, domain=runtime.intake.domain
    )
    runtime.intake.submit(body)
    env = os.environ | {
        "FOURFLOW_DB_URL": db_url,
        "FOURFLOW_RPC_URL": anvil.url,
        "FOURFLOW_MANIFEST": str(manifest),
        "FOURFLOW_ORACLE_KEY": keys.oracle.key.hex(),
    }
    return runtime, keys, env


def _worker(
    env: dict[str, str], *, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(env)
    env.pop("FOURFLOW_CRASH_AT", None)
    if crash_at:
        env["FOURFLOW_CRASH_AT"] = crash_at
    return subprocess.run(
        [fourflow_bin(), "oracle", "run", "--once", "--max-batch", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_anchored_exactly_once(runtime: Runtime, events: int) -> None:
    store = Store.open(str(runtime.store.engine.url))
    counts = store.counts()
    assert counts["events"] == events
    assert counts["pending"] == 0
    assert counts["batches_sealed"] == counts["batches_sent"] == 0
    batches = counts["batches_anchored"]
    assert batches == -(-events // 4)
    head = runtime.registry.head_of("acme.custody")
    assert head.next_seq == batches
    assert head.total_leaves == events
    logs = [e for e in runtime.registry.anchored_events() if e["stream"] == "acme.custody"]
    assert [e["seq"] for e in logs] == list(range(batches))  # none doubled, none missing
    for seq in range(batches):
        row = store.batch("acme.custody", seq)
        on_chain = runtime.registry.batch_of(stream="acme.custody", seq=seq)
        assert on_chain is not None and on_chain.root.hex() == row.root
        assert logs[seq]["tx_hash"].hex() == row.tx_hash
    for event_id in store.batch_event_ids("acme.custody", 0):
        verify_bundle(runtime.bundles.bundle(event_id).to_json_dict(), chain=runtime.chain)
    store.close()


@pytest.mark.parametrize("crash_at", ["after_seal", "after_send", "after_record_send"])
def test_a_killed_worker_restarts_and_nothing_is_lost_or_doubled(
    anvil: AnvilNode, tmp_path: Path, crash_at: str
) -> None:
    runtime, _, env = _setup(anvil, tmp_path, events=10)
    crashed = _worker(env, crash_at=crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    partial = runtime.store.counts()
    assert partial["events"] == 10
    assert partial["batches_anchored"] == 0  # it died before finishing the first batch
    if crash_at == "after_seal":
        assert partial["batches_sealed"] == 1
        assert runtime.registry.head_of("acme.custody").next_seq == 0
    elif crash_at == "after_send":
        assert partial["batches_sealed"] >= 1  # the tx went out but was never recorded
        assert runtime.registry.head_of("acme.custody").next_seq == 1
    else:
        assert partial["batches_sent"] == 1

    finished = _worker(env)
    assert finished.returncode == 0, finished.stderr
    _assert_anchored_exactly_once(runtime, 10)
    runtime.close()


def test_repeated_crashes_at_every_point_still_converge(anvil: AnvilNode, tmp_path: Path) -> None:
    runtime, _, env = _setup(anvil, tmp_path, events=13)
    for crash_at in ("after_seal", "after_send", "after_record_send", "after_send"):
        assert _worker(env, crash_at=crash_at).returncode == -signal.SIGKILL
    assert _worker(env).returncode == 0
    _assert_anchored_exactly_once(runtime, 13)
    runtime.close()


def test_an_acknowledged_submission_survives_a_killed_server(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    """Invariant 1: a 2xx means durable, even if the API process is SIGKILLed right after."""
    runtime, keys, env = _setup(anvil, tmp_path, events=1)
    port = free_port()
    server = subprocess.Popen(
        [fourflow_bin(), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        firm = keys.submitters[0]
        events = make_events(firm.address, 50, prefix="durable")
        body = sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
        answer = httpx.post(f"{base}/v1/events", json=body.model_dump(mode="json"), timeout=30)
        assert answer.status_code == 202
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    reopened = Store.open(str(runtime.store.engine.url))
    assert reopened.counts()["events"] == 51
    receipts: list[dict[str, Any]] = answer.json()["receipts"]
    assert {r["event_id"] for r in receipts} == {e.event_id for e in events}
    assert all(reopened.event(r["event_id"]).leaf == r["leaf"] for r in receipts)
    reopened.close()
    runtime.close()
