"""A deployment on a real anvil node that the fault tests stop, restart and roll back,
with the real `fourflow oracle run` and `fourflow serve` processes around one store.

Everything a fault test ends with is here too: ``Rig.assert_exactly_once`` checks every
stream's events against the chain (each event in exactly one batch, every batch on the
chain once, seqs gap-free, roots equal) and runs the full audit, which must find nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.audit import Auditor
from ledger.chain import Chain
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import Store
from ledger.verify import verify_bundle
from tests.conftest import AnvilNode, ServeProcess, fourflow_bin, make_events


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=30)


@dataclass
class Rig:
    tmp: Path
    node: AnvilNode
    db_url: str
    runtime: Runtime
    keys: DevKeys
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path, *, db_url: str | None = None, submitters: int = 2) -> Rig:
        node = AnvilNode(tmp)
        node.start("--state", str(tmp / "anvil-state.json"))
        db_url = db_url or f"sqlite:///{tmp}/store.sqlite"
        try:
            runtime, keys = Runtime.dev(
                db_url=db_url, chain=Chain.connect(node.url), submitters=submitters
            )
        except BaseException:
            node.stop()
            raise
        manifest = tmp / "deployment.json"
        runtime.deployment.write(manifest)
        env = os.environ | {
            "FOURFLOW_DB_URL": db_url,
            "FOURFLOW_RPC_URL": node.url,
            "FOURFLOW_MANIFEST": str(manifest),
            "FOURFLOW_ORACLE_KEY": keys.oracle.key.hex(),
        }
        env.pop("FOURFLOW_CRASH_AT", None)
        return cls(tmp, node, db_url, runtime, keys, env)

    # --- input ------------------------------------------------------------------------

    def signed(self, n: int, *, stream: str = "acme.custody", submitter: int = 0) -> dict[str, Any]:
        firm = self.keys.submitters[submitter]
        events = make_events(firm.address, n, stream=stream, prefix=uuid.uuid4().hex[:10])
        body = sign_submission(events, private_key=firm.key, domain=self.runtime.intake.domain)
        return body.model_dump(mode="json")

    def submit(self, n: int, *, stream: str = "acme.custody", submitter: int = 0) -> None:
        """Submit in this process (the same Intake the API uses)."""
        firm = self.keys.submitters[submitter]
        events = make_events(firm.address, n, stream=stream, prefix=uuid.uuid4().hex[:10])
        self.runtime.intake.submit(
            sign_submission(events, private_key=firm.key, domain=self.runtime.intake.domain)
        )

    # --- processes --------------------------------------------------------------------

    def worker_once(
        self, *args: str, crash_at: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if crash_at:
            env["FOURFLOW_CRASH_AT"] = crash_at
        return subprocess.run(
            [fourflow_bin(), "oracle", "run", "--once", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        log = self.tmp / f"{name}.log"
        handle = log.open("ab")
        proc = subprocess.Popen(
            [fourflow_bin(), *args],
            env=env or self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    def worker(self, name: str = "worker", *args: str) -> Process:
        """`fourflow oracle run` (anchoring only), sealing at once, polling fast."""
        return self.spawn(
            name, "oracle", "run", "--max-age", "0", "--poll", "0.05", "--max-batch", "5", *args
        )

    def api(self, name: str = "api") -> tuple[Process, str]:
        """`fourflow serve` without an oracle key (it only takes submissions in); up once
        /v1/health answers, degraded (503) or not."""
        env = dict(self.env)
        env.pop("FOURFLOW_ORACLE_KEY")
        server = ServeProcess.start(env, log=self.tmp / f"{name}.log", ready=(200, 503))
        process = Process(name, server.proc, server.log)
        self.processes.append(process)
        return process, server.url

    def restart_node(self, *, state: Path | None = None) -> None:
        """Stop anvil (it writes its state file) and start it again on the same port,
        from that state or from ``state`` (an older copy: the blocks after it are lost)."""
        self.node.stop()
        current = self.tmp / "anvil-state.json"
        if state is not None:
            shutil.copyfile(state, current)
        self.node.start("--state", str(current))

    def save_node_state(self, name: str) -> Path:
        """A copy of the node's state as of now (anvil writes it when it stops)."""
        self.restart_node()
        saved = self.tmp / name
        shutil.copyfile(self.tmp / "anvil-state.json", saved)
        return saved

    def close(self) -> None:
        """Stop everything, each part even if another fails to stop."""
        try:
            for process in self.processes:
                try:
                    process.kill()
                except Exception:  # the node and the others must stop too
                    continue
        finally:
            try:
                self.runtime.close()
            finally:
                self.node.stop()

    # --- what every fault test ends with ---------------------------------------------

    def wait_anchored(self, events: int, *, timeout: float = 90) -> Store:
        store = Store.open(self.db_url)
        deadline = time.monotonic() + timeout
        while True:
            counts = store.counts()
            done = counts["events"] == events and counts["pending"] == 0
            if done and counts["batches_sealed"] == counts["batches_sent"] == 0:
                return store
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.processes)
                raise AssertionError(f"not all anchored after {timeout}s: {counts}\n{logs}")
            time.sleep(0.2)

    def assert_exactly_once(self, events: int) -> None:
        """Every stored event in exactly one batch, every batch anchored once and in
        order, the chain's counts equal to the store's, and a full audit finds nothing."""
        store = Store.open(self.db_url)
        registry = self.runtime.registry
        assert store.counts()["events"] == events
        logs = registry.anchored_events()
        total = 0
        for stream in store.streams():
            batches = [store.batch(stream, seq) for seq in range(registry.head_of(stream).next_seq)]
            head = registry.head_of(stream)
            seqs = [e["seq"] for e in logs if e["stream"] == stream]
            assert sorted(seqs) == list(range(head.next_seq)), f"{stream}: anchored {seqs}"
            assert Counter(seqs).most_common(1)[0][1] == 1  # no batch anchored twice
            ids: list[str] = []
            for batch in batches:
                assert batch.state == "anchored"
                on_chain = registry.batch_of(stream=stream, seq=batch.seq)
                assert on_chain is not None and on_chain.root.hex() == batch.root
                assert on_chain.leaf_count == batch.leaf_count
                ids += store.batch_event_ids(stream, batch.seq, limit=1_000_000)
            assert len(ids) == len(set(ids)) == head.total_leaves  # none doubled, none skipped
            total += head.total_leaves
            bundle = self.runtime.bundles.bundle(ids[-1]).to_json_dict()
            verify_bundle(bundle, chain=self.runtime.chain)
        assert total == events
        report = Auditor(
            self.runtime.chain, self.runtime.deployment, source=store, bytecode=False
        ).run()
        assert report.ok, [f.to_json() for f in report.findings]
        assert report.counts.leaves == events and report.counts.events_pending == 0
        store.close()
