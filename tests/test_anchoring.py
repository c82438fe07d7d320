"""The anchoring worker: sealing by size and age, conflicts, and the long-running service."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.anchoring import AnchorConflict
from ledger.chain import Chain
from ledger.runtime import Runtime
from ledger.signing import sign_submission
from ledger.store import Store
from tests.conftest import AnvilNode, fourflow_bin, make_events


def submit(runtime: Runtime, firm: Any, n: int, **kw: Any) -> list[str]:
    events = make_events(firm.address, n, **kw)
    runtime.intake.submit(
        sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
    )
    return [e.event_id for e in events]


def test_seals_by_size_and_leaves_a_young_remainder(dev: Any) -> None:
    runtime, keys = dev
    submit(runtime, keys.submitters[0], 7)
    anchorer = runtime.anchorer(keys.oracle, max_batch=3, max_age_s=3600)
    summary = anchorer.run_once()
    assert summary.sealed == [("acme.custody", 0, 3), ("acme.custody", 1, 3)]
    assert [(s, q) for s, q, _ in summary.anchored] == [("acme.custody", 0), ("acme.custody", 1)]
    assert runtime.store.backlog()["acme.custody"][0] == 1  # one event waits for size or age
    assert anchorer.run_once().sealed == []


def test_seals_by_age(dev: Any) -> None:
    runtime, keys = dev
    submit(runtime, keys.submitters[0], 2)
    anchorer = runtime.anchorer(keys.oracle, max_batch=1000, max_age_s=0.2)
    assert anchorer.run_once().sealed == []
    time.sleep(0.25)
    assert anchorer.run_once().sealed == [("acme.custody", 0, 2)]
    assert runtime.registry.head_of("acme.custody").next_seq == 1


def test_streams_get_their_own_sequences(dev: Any) -> None:
    runtime, keys = dev
    submit(runtime, keys.submitters[0], 2, stream="mill.custody")
    submit(runtime, keys.submitters[1], 3, stream="warehouse.custody")
    runtime.anchorer(keys.oracle).run_once(force=True)
    assert runtime.registry.head_of("mill.custody").total_leaves == 2
    assert runtime.registry.head_of("warehouse.custody").total_leaves == 3
    assert runtime.store.batch("warehouse.custody", 0).state == "anchored"


def test_a_different_root_on_chain_is_a_conflict_never_overwritten(
    dev: Any, tmp_path: Path
) -> None:
    runtime, keys = dev
    submit(runtime, keys.submitters[0], 2)
    runtime.anchorer(keys.oracle).run_once(force=True)

    other = Runtime.attach(
        store=Store.open(f"sqlite:///{tmp_path}/other.sqlite"),
        chain=runtime.chain,
        deployment=runtime.deployment,
    )
    submit(other, keys.submitters[0], 3)
    submit(other, keys.submitters[0], 2, stream="other.custody")
    summary = other.anchorer(keys.oracle).run_once(force=True)
    # the conflict stops its own stream only: the other stream of the store is anchored
    [(stream, why)] = summary.deferred
    assert stream == "acme.custody"
    assert why.startswith(f"{AnchorConflict.code}: acme.custody/0: chain holds root")
    assert [(s, q) for s, q, _ in summary.anchored] == [("other.custody", 0)]
    assert other.store.batch("acme.custody", 0).state == "sealed"
    assert runtime.registry.head_of("acme.custody").next_seq == 1
    assert runtime.registry.head_of("other.custody").total_leaves == 2
    other.close()


def test_run_forever_anchors_until_stopped(dev: Any) -> None:
    runtime, keys = dev
    ids = submit(runtime, keys.submitters[0], 3)
    stop = threading.Event()
    worker = threading.Thread(
        target=runtime.anchorer(keys.oracle, max_age_s=0).run_forever,
        args=(stop,),
        kwargs={"poll_s": 0.05},
    )
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while runtime.store.counts()["batches_anchored"] < 1:
            assert time.monotonic() < deadline, "nothing anchored"
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert runtime.bundles.bundle(ids[0]).batch.seq == 0


@pytest.mark.anvil
def test_the_oracle_service_anchors_and_stops_on_sigterm(anvil: AnvilNode, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/store.sqlite"
    runtime, keys = Runtime.dev(db_url=db_url, chain=Chain.connect(anvil.url))
    manifest = tmp_path / "deployment.json"
    runtime.deployment.write(manifest)
    env = {"FOURFLOW_ORACLE_KEY": keys.oracle.key.hex(), "PATH": "/usr/bin:/bin"}
    worker = subprocess.Popen(
        [
            fourflow_bin(),
            "oracle",
            "run",
            "--db",
            db_url,
            "--rpc",
            anvil.url,
            "--manifest",
            str(manifest),
            "--max-age",
            "0.1",
            "--poll",
            "0.1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        submit(runtime, keys.submitters[0], 4)
        deadline = time.monotonic() + 60
        while runtime.store.counts()["batches_anchored"] < 1:
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
            assert time.monotonic() < deadline, "the service anchored nothing"
            time.sleep(0.1)
        submit(runtime, keys.submitters[0], 2)
        while runtime.store.counts()["batches_anchored"] < 2:
            assert time.monotonic() < deadline, "the service anchored nothing more"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert "anchored acme.custody/1" in output
    assert runtime.registry.head_of("acme.custody").total_leaves == 6
    runtime.close()


def test_oracle_run_without_a_key_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            fourflow_bin(),
            "oracle",
            "run",
            "--db",
            f"sqlite:///{tmp_path}/s.sqlite",
            "--rpc",
            "http://127.0.0.1:9",
            "--manifest",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr


def test_bundles_of_a_large_batch_come_from_stored_nodes_and_survive_a_damaged_one(
    dev: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlmodel import select

    from ledger.store import BatchNodeRow
    from ledger.verify import verify_bundle

    runtime, keys = dev
    ids = submit(runtime, keys.submitters[0], 130)  # three 64-leaf chunks
    runtime.anchorer(keys.oracle).run_once(force=True)
    for event_id in (ids[0], ids[64], ids[129]):
        verify_bundle(runtime.bundles.bundle(event_id).to_json_dict(), chain=runtime.chain)
    with runtime.store._session() as session:
        node = session.exec(
            select(BatchNodeRow).where(BatchNodeRow.height == 6, BatchNodeRow.idx == 1)
        ).one()
        node.hash = "00" * 32  # the sibling of chunk 0 at height 6
        session.add(node)
        session.commit()
    with caplog.at_level("ERROR", logger="fourflow.bundle"):
        bundle = runtime.bundles.bundle(ids[5])
    assert "disagree with its root" in caplog.text
    verify_bundle(bundle.to_json_dict(), chain=runtime.chain)  # proved from the full tree instead


def test_bundles_in_bulk_are_the_single_bundles_and_skip_what_is_not_anchored(dev: Any) -> None:
    runtime, keys = dev
    anchored = submit(runtime, keys.submitters[0], 150)  # three chunks of batch 0
    runtime.anchorer(keys.oracle).run_once(force=True)
    pending = submit(runtime, keys.submitters[0], 2)
    wanted = [anchored[0], anchored[70], anchored[149], anchored[71], *pending, "no-such-event"]
    bulk = runtime.bundles.bundles(wanted)
    assert set(bulk) == {anchored[0], anchored[70], anchored[71], anchored[149]}
    for event_id, bundle in bulk.items():
        assert bundle == runtime.bundles.bundle(event_id)


def test_a_bundle_keeps_large_whole_floats_as_floats(dev: Any) -> None:
    from ledger.verify import verify_bundle

    runtime, keys = dev
    firm = keys.submitters[0]
    events = make_events(firm.address, 2, prefix="floats")
    events[0] = events[0].model_copy(update={"payload": {"big": 1e20, "tiny": 1e-7}})
    runtime.intake.submit(
        sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
    )
    runtime.anchorer(keys.oracle).run_once(force=True)
    for bundle in (
        runtime.bundles.bundle(events[0].event_id),
        runtime.bundles.bundles([events[0].event_id])[events[0].event_id],
    ):
        assert bundle.envelope.event.payload["big"] == 1e20
        assert isinstance(bundle.envelope.event.payload["big"], float)
        verify_bundle(bundle.to_json_dict(), chain=runtime.chain)


def _anchor_three(runtime: Runtime, keys: Any) -> None:
    for n, stream in ((3, "reads.a"), (2, "reads.a"), (4, "reads.b")):
        submit(runtime, keys.submitters[0], n, stream=stream)
        runtime.anchorer(keys.oracle, max_batch=10).run_once(force=True)


def _reads_in_bulk_equal_reads_one_at_a_time(runtime: Runtime) -> None:
    registry, head = runtime.registry, runtime.chain.head
    for stream, anchored in (("reads.a", 2), ("reads.b", 1), ("reads.none", 0)):
        seqs = range(anchored + 2)
        alone = [registry.batch_of(stream=stream, seq=s, block=head) for s in seqs]
        assert registry.batches_of(stream=stream, seqs=seqs, block=head) == alone
        assert [b is not None for b in alone] == [True] * anchored + [False, False]
    assert registry.batches_of(stream="reads.a", seqs=[]) == []


def test_batches_read_in_bulk_on_the_in_process_chain(dev: Any) -> None:
    runtime, keys = dev
    assert runtime.chain.batch("reading", [("eth_blockNumber", [])]) is None  # one at a time
    _anchor_three(runtime, keys)
    _reads_in_bulk_equal_reads_one_at_a_time(runtime)


@pytest.mark.anvil
def test_batches_and_block_times_read_in_batch_requests_on_a_node(
    anvil: AnvilNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.chainlog import LogReader
    from ledger.errors import ChainError

    runtime, keys = Runtime.dev(
        db_url=f"sqlite:///{tmp_path}/store.sqlite", chain=Chain.connect(anvil.url)
    )
    try:
        _anchor_three(runtime, keys)
        _reads_in_bulk_equal_reads_one_at_a_time(runtime)
        # three batch requests of one, in order, and the node's errors are ChainErrors
        answers = runtime.chain.batch(
            "reading", [("eth_chainId", []), ("eth_blockNumber", []), ("eth_chainId", [])], size=1
        )
        assert answers is not None and int(answers[0], 16) == runtime.chain.chain_id
        assert int(answers[1], 16) == runtime.chain.head and answers[2] == answers[0]
        with pytest.raises(ChainError, match="reading"):
            runtime.chain.batch("reading", [("eth_chainId", []), ("no_such_method", [])])
        # block times come from one batch request, and agree with the blocks one by one
        reader = LogReader.for_deployment(runtime.chain, runtime.deployment)
        one_at_a_time = runtime.chain.call

        def no_single_block_reads(action: str, fn: Any) -> Any:
            assert action != "reading a block", "a block was read alone"
            return one_at_a_time(action, fn)

        monkeypatch.setattr(runtime.chain, "call", no_single_block_reads)
        logs = list(reader.read(0, runtime.chain.head))
        monkeypatch.undo()
        assert len({log.block_hash for log in logs}) >= 3
        for log in logs:
            block = runtime.chain.w3.eth.get_block(log.block_number)
            assert log.block_time_ms == int(block["timestamp"]) * 1000
    finally:
        runtime.close()


class _NoBatchesProxy:
    """A JSON-RPC front for a node that does not take batch requests, as some hosted
    providers do: it answers one with a single error (``refusal="error"``), with HTTP 400
    (``"status"``), or with answers that carry no ids (``"no-ids"``); single requests go
    through to the node."""

    def __init__(self, node_url: str, refusal: str = "error") -> None:
        import http.server
        import json as json_module

        import httpx

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, request = 200, json_module.loads(body)
                forward = {"content-type": "application/json"}
                error = {"code": -32600, "message": "batch requests are not supported"}
                if not isinstance(request, list):
                    answer = httpx.post(node_url, content=body, headers=forward).content
                elif refusal == "no-ids":
                    answers = httpx.post(node_url, content=body, headers=forward).json()
                    answer = json_module.dumps([a | {"id": None} for a in answers]).encode()
                else:
                    status = 400 if refusal == "status" else 200
                    refused = {"jsonrpc": "2.0", "id": None, "error": error}
                    answer = json_module.dumps(refused).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.anvil
@pytest.mark.parametrize("refusal", ["error", "status", "no-ids"])
def test_a_node_without_batch_requests_is_read_one_call_at_a_time(
    anvil: AnvilNode, tmp_path: Path, refusal: str
) -> None:
    from ledger.audit import Auditor
    from ledger.chain import AnchorRegistry
    from ledger.chainlog import LogReader

    runtime, keys = Runtime.dev(
        db_url=f"sqlite:///{tmp_path}/store.sqlite", chain=Chain.connect(anvil.url)
    )
    proxy = _NoBatchesProxy(anvil.url, refusal)
    try:
        _anchor_three(runtime, keys)
        direct = LogReader.for_deployment(runtime.chain, runtime.deployment)
        head = runtime.chain.head
        chain = Chain.connect(proxy.url)
        registry = AnchorRegistry.from_deployment(chain, runtime.deployment)
        alone = [runtime.registry.batch_of(stream="reads.a", seq=s, block=head) for s in range(3)]
        assert registry.batches_of(stream="reads.a", seqs=range(3), block=head) == alone
        assert chain.batch("reading", [("eth_chainId", [])]) is None  # not asked again
        reader = LogReader.for_deployment(chain, runtime.deployment)
        assert list(reader.read(0, head)) == list(direct.read(0, head))
        report = Auditor(chain, runtime.deployment, source=runtime.store, bytecode=False).run()
        assert report.ok, report.codes
        assert report.counts.batches == 3 and report.counts.events == 9
    finally:
        proxy.close()
        runtime.close()


@pytest.mark.anvil
def test_a_batch_answer_that_is_no_batch_is_a_chain_error(anvil: AnvilNode, tmp_path: Path) -> None:
    from ledger.chain import AnchorRegistry
    from ledger.errors import ChainError

    runtime, keys = Runtime.dev(
        db_url=f"sqlite:///{tmp_path}/store.sqlite", chain=Chain.connect(anvil.url)
    )
    try:
        _anchor_three(runtime, keys)
        # an address that holds no registry answers "0x", which is no batch
        nobody = AnchorRegistry(runtime.chain, keys.submitters[0].address)
        with pytest.raises(ChainError, match="does not decode as a batch"):
            nobody.batches_of(stream="reads.a", seqs=[0])
    finally:
        runtime.close()
