"""Reading an asset's four-flow history, and the oracle worker's memory.

    history   an asset's history page (limit 50, every entry with its proof bundle) from a
              store where the asset has 10,000 events among many others, on SQLite and
              PostgreSQL; against the floor: the bare indexed SELECT of that page's rows
    memory    peak RSS of a process that seals and anchors one batch of N pending events,
              against the same process's RSS after its imports

The stores are built in-process (Runtime.dev, signed submissions of 5,000 events through
Intake.submit, the anchorer), not through HTTP. The reads call what the API's
``/v1/assets/{id}/history`` route calls (Histories.asset_subject, page, summary on the
first page, Entry.to_json) without the HTTP layer and token check in front of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from bench.core import Context, Figure, benchmark, percentile, timed
from ledger.chain import Chain
from ledger.history import Histories
from ledger.indexer import ChainIndex
from ledger.models import EventBody, utc_text
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from tests.conftest import ANVIL, AnvilNode, fresh_pg_database

CHUNK = 5_000  # events per signed submission
PAGE = 50
GOAL_P50_MS = 100.0
TARGET = "urn:epc:id:sgtin:0614141.107346.bench"
START_MS = 1_790_000_000_000


@dataclass(frozen=True)
class _Shape:
    events: int  # in the whole store
    target: int  # of them about TARGET
    others: int  # other assets the rest is spread over


def _bodies(shape: _Shape, submitter: str, start: int, stop: int) -> list[EventBody]:
    """Events ``start``..``stop`` of the store: every (events/target)-th is about TARGET,
    the rest about one of ``others`` assets; one second apart, so time order is
    arrival order."""
    every = shape.events // shape.target
    out = []
    for i in range(start, stop):
        asset = TARGET if i % every == 0 else f"urn:epc:id:sgtin:0614141.107346.{i % shape.others}"
        out.append(
            EventBody(
                kind="epcis.ObjectEvent",
                schema_version=1,
                stream="bench.custody",
                event_id=f"bench-{i:08d}",
                asset_ids=[asset],
                event_time=utc_text(START_MS + i * 1000),
                payload={"bizStep": "urn:epcglobal:cbv:bizstep:shipping", "seq": i},
                submitter=submitter,
            )
        )
    return out


def _fill(ctx: Context, runtime: Runtime, keys: DevKeys, shape: _Shape) -> float:
    """Sign and submit the store's events in chunks; returns the seconds it took."""
    submitter = keys.submitters[0]
    with timed() as elapsed:
        for start in range(0, shape.events, CHUNK):
            stop = min(shape.events, start + CHUNK)
            events = _bodies(shape, submitter.address, start, stop)
            submission = sign_submission(
                events, private_key=submitter.key, domain=runtime.intake.domain
            )
            runtime.intake.submit(submission)
            if stop % (10 * CHUNK) == 0:
                ctx.say(f"    {stop:,} events stored ({elapsed():.0f} s)")
    return elapsed()


def _anchor_all(runtime: Runtime, keys: DevKeys, *, max_batch: int) -> int:
    anchorer = runtime.anchorer(keys.oracle, max_batch=max_batch)
    batches = 0
    while True:
        summary = anchorer.run_once(force=True)
        if not summary.sealed and not summary.anchored:
            return batches
        batches += len(summary.sealed)


def _api_body(histories: Histories, cursor: str | None) -> tuple[dict[str, Any], str | None]:
    """What the asset history route answers (api/routes/history.py, _timeline)."""
    subject = histories.asset_subject(TARGET)
    page = histories.page(subject, cursor=cursor, limit=PAGE)
    body: dict[str, Any] = {"subject": subject.to_json()}
    if cursor is None:
        body["summary"] = histories.summary(subject)
    body["entries"] = [entry.to_json() for entry in page.entries]
    body["next_cursor"] = page.next_cursor
    return body, page.next_cursor


_FLOOR_SQL = text(
    "SELECT id, event_id, asset_id, flow, kind, time_ms, summary FROM flow_entries "
    "WHERE asset_id = :asset AND (time_ms, event_id) > (:time_ms, :event_id) "
    "ORDER BY time_ms, event_id LIMIT :limit"
)


def _floor_reads(runtime: Runtime, reads: int) -> list[float]:
    """The bare indexed SELECT of the asset's pages, walking with the same keyset."""
    times: list[float] = []
    after: tuple[int, str] = (-1, "")
    with runtime.store.engine.connect() as conn:
        while len(times) < reads:
            with timed() as elapsed:
                rows = conn.execute(
                    _FLOOR_SQL,
                    {"asset": TARGET, "time_ms": after[0], "event_id": after[1], "limit": PAGE},
                ).all()
            times.append(elapsed())
            after = (rows[-1].time_ms, rows[-1].event_id) if len(rows) == PAGE else (-1, "")
    return times


def _history_on(ctx: Context, database: str, db_url: str, shape: _Shape) -> list[Figure]:
    ctx.say(f"{database}: a store of {shape.events:,} events, {shape.target:,} about one asset")
    runtime, keys = Runtime.dev(db_url=db_url, submitters=1)
    try:
        return _measure_history(ctx, database, runtime, keys, shape)
    finally:  # before a PostgreSQL database is dropped
        runtime.close()


def _measure_history(
    ctx: Context, database: str, runtime: Runtime, keys: DevKeys, shape: _Shape
) -> list[Figure]:
    fill_s = _fill(ctx, runtime, keys, shape)
    with timed() as anchor_s:
        batches = _anchor_all(runtime, keys, max_batch=10_000)
    histories = Histories(
        runtime.store,
        ChainIndex(runtime.store, runtime.deployment),
        runtime.bundles,
        runtime.deployment,
    )
    with timed() as catalog_s:
        histories.catalog.catch_up()
    if runtime.store.engine.dialect.name == "postgresql":
        # what autovacuum does within a minute of a bulk load (inserts alone start it
        # since PostgreSQL 13): ANALYZE, without which the planner guesses at tables it
        # has no statistics for, and VACUUM, which marks the pages all-visible, so the
        # custody walk reads its covering index alone instead of every row it passes
        # (the first page: 104.8 -> 82.4 ms at 10^6 events)
        with runtime.store.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"  # VACUUM runs outside a transaction
        ) as connection:
            connection.execute(text("VACUUM ANALYZE"))
    ctx.say(
        f"  stored in {fill_s:.0f} s, {batches} batches anchored in {anchor_s():.0f} s, "
        f"catalogued in {catalog_s():.0f} s"
    )
    first, _ = _api_body(histories, None)  # warm-up, and a check of what is read
    proofs = {e["proof"]["status"] for e in first["entries"]}
    if len(first["entries"]) != PAGE or proofs != {"anchored"}:
        raise RuntimeError(f"first page: {len(first['entries'])} entries, proofs {proofs}")
    walks: int = ctx.pick(tiny=3, quick=1, full=1)
    firsts: int = ctx.pick(tiny=10, quick=50, full=50)
    walk_ms: list[float] = []
    first_ms: list[float] = []
    for _ in range(walks):
        cursor: str | None = None
        while True:
            with timed() as elapsed:
                _, after = _api_body(histories, cursor)
            (walk_ms if cursor else first_ms).append(elapsed() * 1000)
            if after is None:
                break
            cursor = after
    for _ in range(firsts):
        with timed() as elapsed:
            _api_body(histories, None)
        first_ms.append(elapsed() * 1000)
    reads = walk_ms + first_ms
    floor_ms = [t * 1000 for t in _floor_reads(runtime, len(walk_ms))]
    later_p50, first_p50 = percentile(walk_ms, 50), percentile(first_ms, 50)
    floor_p50 = percentile(floor_ms, 50)
    details = {
        "store_events": shape.events,
        "asset_events": shape.target,
        "other_assets": shape.others,
        "page_limit": PAGE,
        "later_page_reads": len(walk_ms),
        "first_page_reads": len(first_ms),
        "floor_p99_ms": round(percentile(floor_ms, 99), 3),
        "batches": batches,
        "build_s": round(fill_s + anchor_s() + catalog_s(), 1),
        "path": "in-process: Histories.asset_subject + page(limit=50, proofs) + summary on "
        "first pages + Entry.to_json, as the route; no HTTP, no token check",
    }
    if shape.events < 1_000_000:
        details["note"] = f"a store of {shape.events:,} events at this size; 10^6 with --full"
    at_scale = shape.events >= 1_000_000
    goal = f"p50 under {GOAL_P50_MS:.0f} ms (an asset with 10,000 events in 10^6)"
    name = f"asset history ({database}, {shape.events:,} events)"
    return [
        Figure(
            "history",
            f"{name}: page with proofs, p50",
            later_p50,
            "ms",
            peer="floor (bare indexed SELECT of the page's rows)",
            peer_value=floor_p50,
            ratio=later_p50 / floor_p50,
            ratio_of="fourflow / floor",
            goal=goal,
            goal_met=later_p50 < GOAL_P50_MS if at_scale else None,
            details=details,
        ),
        Figure(
            "history",
            f"{name}: first page with proofs and the summary, p50",
            first_p50,
            "ms",
            goal=goal,
            goal_met=first_p50 < GOAL_P50_MS if at_scale else None,
            details={
                "reads": len(first_ms),
                "summary": "custody, quantity against the covenant, ownership, money, alarms",
            },
        ),
        Figure("history", f"{name}: p99, all pages", percentile(reads, 99), "ms",
               details={"reads": len(reads)}),
    ]  # fmt: skip


@benchmark("history", "an asset's four-flow history page with proofs, SQLite and PostgreSQL")
def run_history(ctx: Context) -> list[Figure]:
    shape: _Shape = ctx.pick(
        tiny=_Shape(2_000, 200, 50),
        quick=_Shape(20_000, 10_000, 1_000),  # the store's build is the slow part
        full=_Shape(1_000_000, 10_000, 10_000),
    )
    figures = _history_on(ctx, "SQLite", f"sqlite:///{ctx.tmp}/history.sqlite", shape)
    with fresh_pg_database() as pg_url:  # no server: the benchmark fails, and says why
        figures += _history_on(ctx, "PostgreSQL", pg_url, shape)
    return figures


# --- memory ------------------------------------------------------------------------------

_SEAL_SCRIPT = """
import json, os, sys
from pathlib import Path
from eth_account import Account
from bench.core import status_kib
from ledger.runtime import Runtime
def rss():
    return status_kib(os.getpid(), "VmHWM") * 1024
after_imports = rss()
runtime = Runtime.open(db_url=sys.argv[1], rpc_url=sys.argv[2], manifest=Path(sys.argv[3]))
oracle = Account.from_key(os.environ["BENCH_ORACLE_KEY"])
summary = runtime.anchorer(oracle, max_batch=int(sys.argv[4])).run_once(force=True)
runtime.close()
print(json.dumps({"after_imports": after_imports, "peak": rss(),
                  "sealed": summary.sealed, "anchored": len(summary.anchored)}))
"""


@benchmark("memory", "peak RSS of sealing and anchoring one batch of N events")
def run_memory(ctx: Context) -> list[Figure]:
    n: int = ctx.pick(tiny=2_000, quick=20_000, full=1_000_000)
    if not ANVIL.exists():
        raise RuntimeError(f"{ANVIL} missing: run `make contracts-deps`")
    node = AnvilNode(ctx.tmp)
    ctx.on_exit(node.stop)
    node.start()
    db_url = f"sqlite:///{ctx.tmp}/memory.sqlite"
    ctx.say(f"a store of {n:,} pending events")
    runtime, keys = Runtime.dev(db_url=db_url, chain=Chain.connect(node.url), submitters=1)
    manifest = ctx.tmp / "deployment.json"
    try:
        runtime.deployment.write(manifest)
        _fill(ctx, runtime, keys, _Shape(n, max(1, n // 10), 1_000))
    finally:
        runtime.close()
    env = os.environ | {"BENCH_ORACLE_KEY": keys.oracle.key.hex()}
    with timed() as elapsed:
        out = subprocess.run(
            [sys.executable, "-c", _SEAL_SCRIPT, db_url, node.url, str(manifest), str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=3_600,
        )
    if out.returncode != 0:
        raise RuntimeError(f"the sealing process failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if [s[2] for s in result["sealed"]] != [n] or result["anchored"] != 1:
        raise RuntimeError(f"expected one batch of {n} sealed and anchored, got {result}")
    mib = 1024 * 1024
    peak, floor = result["peak"], result["after_imports"]
    return [
        Figure(
            "memory",
            f"oracle worker: peak RSS sealing and anchoring a batch of {n:,}",
            peak / mib,
            "MiB",
            peer="floor (the same process after its imports)",
            peer_value=floor / mib,
            ratio=peak / floor,
            ratio_of="peak / floor",
            details={
                "events": n,
                "bytes_per_event_above_floor": round((peak - floor) / n, 1),
                "seal_and_anchor_s": round(elapsed(), 2),
                "process": "python -c: Runtime.open + Anchorer.run_once(force=True, "
                "max_batch=N) on SQLite and anvil; VmHWM from /proc/self/status",
            },
        )
    ]
