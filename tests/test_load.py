"""`fourflow load` against a real `fourflow serve` on anvil, the server anchoring
in-process: on SQLite, eight submitters post signed batches while four auditor readers
ask for proofs and asset and pledge histories (the command, as a process); on
PostgreSQL, a smaller run through the same functions in-process. The tool must stop by
itself within its bounds, see no error, and lose no event: every acknowledged event is
stored exactly once, anchored, and its proof verifies against the chain. Timing figures
are printed to the test log, never asserted on."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlmodel import col, select

from api.loadtest import (
    LoadFailed,
    LoadPlan,
    print_report,
    read_keys,
    report_of,
    run_check,
    run_load,
)
from ledger.chain import Chain, new_account
from ledger.runtime import Runtime
from ledger.store import ANCHORED, BatchRow, EventRow, Store
from ledger.verify import AnchorReads, verify_bundle
from tests.conftest import AnvilNode, ServeProcess, fourflow_bin
from tests.load_world import ASSETS, Deployed, deploy_load_world, wait_indexed

pytestmark = pytest.mark.anvil


@dataclass(frozen=True)
class Size:
    """One run's size and bounds. Requests may take long under load (reads wait behind
    the writes on a 2-core machine), so the request timeout is generous."""

    submitters: int
    readers: int
    batch: int
    duration_s: float
    max_events: int
    verify_sample: int  # proofs verified over HTTP by the tool (0: all); the test checks all
    timeout_s: float = 60.0
    check_timeout_s: float = 180.0
    as_process: bool = True  # `fourflow load` as a process; else its functions, in-process

    @property
    def bound_s(self) -> float:
        """The tool's own hard bound: the load ends by duration + one request timeout +
        5 s, the check by its timeout; the rest is start-up and the report."""
        return self.duration_s + self.timeout_s + 5 + self.check_timeout_s + 30


# enough to have every submitter and reader overlap for seconds; the figures that matter
# are the benchmark's (make bench), this run checks that nothing is lost or doubled
SQLITE_RUN = Size(
    submitters=8, readers=4, batch=50, duration_s=4.0, max_events=2_000, verify_sample=300
)
# small and in-process: the same path on the other store, without a second start-up
POSTGRES_RUN = Size(
    submitters=4,
    readers=3,
    batch=25,
    duration_s=2.0,
    max_events=400,
    verify_sample=100,
    as_process=False,
)


def _run_load(
    tmp_path: Path, deployed: Deployed, api: str, rpc: str, db_url: str, size: Size
) -> tuple[dict[str, Any], str, float]:
    """`fourflow load` as a process: its report (JSON), its printed table, its time."""
    keys = tmp_path / "submitters.keys"
    keys.write_text("".join(f"0x{a.key.hex()}\n" for a in deployed.submitters))
    keys.chmod(0o600)
    report_file = tmp_path / "load.json"
    args = [
        fourflow_bin(), "load", "--api", api, "--rpc", rpc, "--keys", str(keys),
        "--readers", str(size.readers), "--batch", str(size.batch),
        "--duration", str(size.duration_s), "--events", str(size.max_events),
        "--timeout", str(size.timeout_s), "--check-timeout", str(size.check_timeout_s),
        "--verify-sample", str(size.verify_sample), "--pledge", str(deployed.pledge_id),
        "--db", db_url, "--json", str(report_file),
        *(arg for asset in ASSETS for arg in ("--asset", asset)),
    ]  # fmt: skip
    env = os.environ | {"FOURFLOW_READER_KEY": deployed.auditor.key.hex()}
    started = time.monotonic()
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=size.bound_s, check=False
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(report_file.read_text()), done.stdout, took


def _run_load_in_process(
    tmp_path: Path, deployed: Deployed, api: str, rpc: str, db_url: str, size: Size
) -> tuple[dict[str, Any], str, float]:
    """The same run through api.loadtest's functions, in this process."""
    plan = LoadPlan(
        api=api,
        submitters=deployed.submitters,
        batch=size.batch,
        duration_s=size.duration_s,
        max_events=size.max_events,
        readers=size.readers,
        reader=deployed.auditor,
        assets=ASSETS,
        pledges=[deployed.pledge_id],
        timeout_s=size.timeout_s,
    )
    started = time.monotonic()
    store = Store.open(db_url)
    try:
        load = run_load(plan)
        check = run_check(
            plan,
            load.accepted,
            chain=Chain.connect(rpc),
            db=store,
            sample=size.verify_sample,
            timeout_s=size.check_timeout_s,
        )
    finally:
        store.close()
    took = time.monotonic() - started
    report = report_of(plan, load, check, config={"in_process": True}, machine={})
    (tmp_path / "load.json").write_text(json.dumps(report, indent=2))
    text = io.StringIO()
    print_report(report, Console(file=text, width=160, highlight=False))
    return report, text.getvalue(), took


def _assert_report(report: dict[str, Any], size: Size, took_s: float) -> None:
    """No error, nothing lost, stopped by itself within bounds, and every figure there
    (figures are never compared with a number: this machine is shared)."""
    load, check = report["load"], report["check"]
    assert report["ok"] is True
    assert load["errors"] == 0 and load["workers_stopped"] is True
    assert load["stopped_by"] in ("duration", "events")
    assert took_s < size.bound_s
    submit = load["operations"]["submit"]
    assert 0 < submit["events"] == check["accepted"] <= size.max_events
    assert sum(load["streams"].values()) == check["accepted"]
    assert submit["events_per_s"] > 0
    for kind in ("submit", "proof", "asset_history", "pledge_history"):
        op = load["operations"][kind]
        assert op["count"] > 0 and op["errors"] == {}, (kind, op)
        assert op["requests_per_s"] > 0
        assert all(op["latency_ms"][q] > 0 for q in ("p50", "p95", "p99", "max")), (kind, op)
    assert check["lost"] == 0 and check["unchecked"] == 0
    assert check["store_checked"] == check["accepted"]
    expected = size.verify_sample or check["accepted"]
    assert check["proofs_checked"] == check["proofs_verified"] == min(expected, check["accepted"])


def _assert_stored_once_and_anchored(
    db_url: str, report: dict[str, Any], rpc: str, manifest: Path
) -> None:
    """Read the store directly: the run's streams hold exactly the acknowledged events,
    each once, each in an anchored batch, and every one's proof, built here from the
    store, verifies against the chain."""
    streams: dict[str, int] = report["load"]["streams"]
    store = Store.open(db_url)
    try:
        with store.session() as session:
            rows = session.exec(
                select(EventRow.event_id, EventRow.stream, EventRow.batch_seq).where(
                    col(EventRow.stream).in_(list(streams))
                )
            ).all()
            states = dict(
                ((b.stream, b.seq), b.state)
                for b in session.exec(
                    select(BatchRow).where(col(BatchRow.stream).in_(list(streams)))
                )
            )
        assert Counter(stream for _, stream, _ in rows) == Counter(
            {s: n for s, n in streams.items() if n}
        )
        assert len({event_id for event_id, _, _ in rows}) == len(rows)  # none twice
        unanchored = [
            event_id
            for event_id, stream, seq in rows
            if seq is None or states[(stream, seq)] != ANCHORED
        ]
        assert not unanchored, unanchored[:10]
        runtime = Runtime.open(db_url=db_url, rpc_url=rpc, manifest=manifest)
        try:
            reads = AnchorReads(runtime.chain)
            for event_id, _, _ in rows:
                bundle = runtime.bundles.bundle(event_id).to_json_dict()
                verify_bundle(bundle, chain=runtime.chain, reads=reads)
        finally:
            runtime.close()
    finally:
        store.close()


def _load_against_serve(
    anvil: AnvilNode, tmp_path: Path, db_url: str, size: Size, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed = deploy_load_world(anvil.url, tmp_path, db_url, size.submitters)
    env = os.environ | {
        "FOURFLOW_DB_URL": db_url,
        "FOURFLOW_RPC_URL": anvil.url,
        "FOURFLOW_MANIFEST": str(deployed.manifest),
        "FOURFLOW_ORACLE_KEY": deployed.oracle_key,  # the server anchors in-process
    }
    log = tmp_path / "serve.log"
    with ServeProcess.start(env, log=log) as server:
        wait_indexed(server.url, deployed.auditor, deployed.pledge_id)
        run = _run_load if size.as_process else _run_load_in_process
        report, table, took_s = run(tmp_path, deployed, server.url, anvil.url, db_url, size)
    with capsys.disabled():  # the figures belong in the test log, -s or not
        print(f"\n{table}report: {tmp_path / 'load.json'}")
    _assert_report(report, size, took_s)
    _assert_stored_once_and_anchored(db_url, report, anvil.url, deployed.manifest)
    served = log.read_text()
    assert "Traceback" not in served and not re.search(r'" 5\d\d ', served), served[-3000:]


@pytest.mark.slow
def test_load_on_sqlite_loses_nothing_and_stops_by_itself(
    anvil: AnvilNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _load_against_serve(anvil, tmp_path, f"sqlite:///{tmp_path}/store.sqlite", SQLITE_RUN, capsys)


@pytest.mark.postgres
def test_load_on_postgres_loses_nothing_and_stops_by_itself(
    anvil: AnvilNode, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _load_against_serve(anvil, tmp_path, pg_url, POSTGRES_RUN, capsys)


# --- the key file -----------------------------------------------------------------------------


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"0x{new_account().key.hex()}\n")
    keys.chmod(0o644)
    with pytest.raises(LoadFailed, match=r"readable by others .*chmod 600"):
        read_keys(keys)


def test_a_bad_key_line_is_named_without_echoing_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    good = new_account()
    keys.write_text(f"# submitters\n0x{good.key.hex()}\n\n0xnot-a-key-deadbeef\n")
    keys.chmod(0o600)
    with pytest.raises(LoadFailed, match="line 4: not a 32-byte hex private key") as info:
        read_keys(keys)
    assert "deadbeef" not in info.value.message
    keys.write_text(f"# submitters\n0x{good.key.hex()}\n")
    assert [a.address for a in read_keys(keys)] == [good.address]
