"""`fourflow load`: a bounded load test of a running fourflow API over HTTP.

    load     N submitter threads, one key each (SUBMITTER_ROLE), POST signed batches of
             --batch events to /v1/events until --duration seconds have passed or
             --events events were sent, whichever comes first. At the same time M reader
             threads, signed in (EIP-4361) with one auditor key, GET the proofs of
             accepted events and the histories of the run's assets and of pledges.
    check    wait until the API's backlog holds none of the run's streams, then fetch
             the proof of every accepted event (or --verify-sample of them) as its
             submitter and verify it against the node (--rpc) with ledger.verify; with
             --db, also look every accepted event up in the store: stored, with the
             leaf the API answered, in an anchored batch. The whole check ends by
             --check-timeout.
    report   per operation: count, errors by status, throughput, latency p50/p95/p99/
             max; the check's counts. Exit 1 on any error or any lost event.

"Lost" means an event that got a 2xx and is then not stored, not anchored by the end of
the check, or whose proof does not verify. Every bound is hard: the load phase ends at
--duration (plus one request timeout), the check at --check-timeout.

Each run names its own streams (``load-<run>.<submitter>``) and event ids
(``load-<run>-<submitter>-<n>``), so runs never collide, on a devnet shared with other
traffic too. See docs/performance.md.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote

import httpx
import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from ledger.chain import Chain
from ledger.errors import LedgerError, NotFound, VerificationFailed
from ledger.models import Eip712Domain, EventBody, utc_text
from ledger.runtime import load_key
from ledger.signing import domain_for, sign_submission
from ledger.store import ANCHORED, Store
from ledger.verify import AnchorReads, verify_bundle

__all__ = [
    "Accepted",
    "CheckResult",
    "LoadFailed",
    "LoadPlan",
    "LoadResult",
    "SignedIn",
    "load_command",
    "print_report",
    "read_keys",
    "report_of",
    "run_check",
    "run_load",
]

MAX_DURATION_S: Final = 3600.0
MAX_EVENTS: Final = 10_000_000
MAX_PLEDGES: Final = 100
HISTORY_PAGE: Final = 50
CHECK_CHUNK: Final = 500  # proofs fetched, then verified, at a time
RENEW_AT: Final = 0.75  # sign in again when this much of a token's lifetime has passed
OPERATIONS: Final = ("submit", "proof", "asset_history", "pledge_history")
READS: Final = OPERATIONS[1:]  # reader i asks only for READS[i % 3], in a closed loop

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class LoadFailed(LedgerError):
    """The load test cannot start: a bad key file, an API or node it cannot use."""

    code = "load_failed"


# --- inputs ---------------------------------------------------------------------------------


def read_keys(path: Path) -> list[LocalAccount]:
    """One 0x-hex private key a line (blank lines and ``#`` comments skipped), from a
    file that only its owner may read (chmod 600): it holds live submitter keys."""
    try:
        mode = path.stat().st_mode
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LoadFailed(f"--keys {path}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LoadFailed(
            f"--keys {path} is readable by others (mode {stat.S_IMODE(mode):03o}); "
            f"it holds private keys: chmod 600 {path}"
        )
    accounts: list[LocalAccount] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            account: LocalAccount = Account.from_key(text)
        except (ValueError, TypeError):
            raise LoadFailed(
                f"--keys {path}, line {number}: not a 32-byte hex private key"
            ) from None  # never echo what might be a key
        accounts.append(account)
    if not accounts:
        raise LoadFailed(f"--keys {path} holds no keys")
    if len({a.address for a in accounts}) != len(accounts):
        raise LoadFailed(f"--keys {path} names one key twice; give each submitter its own")
    return accounts


@dataclass(frozen=True)
class LoadPlan:
    """What one run does; built from the command's flags."""

    api: str
    submitters: list[LocalAccount]
    batch: int
    duration_s: float
    max_events: int
    readers: int = 0
    reader: LocalAccount | None = None
    assets: list[str] = field(default_factory=list)
    pledges: list[int] | None = None  # None: every pledge the reader may see
    timeout_s: float = 30.0
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    def stream(self, index: int) -> str:
        return f"load-{self.run_id}.{index}"

    @property
    def streams(self) -> list[str]:
        return [self.stream(i) for i in range(len(self.submitters))]

    def asset_ids(self) -> list[str]:
        if self.assets:
            return self.assets
        return [f"urn:epc:id:sgtin:0614141.107346.load-{self.run_id}-{k}" for k in range(16)]


# --- bookkeeping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """An event the API acknowledged (202), with the leaf it answered."""

    event_id: str
    stream: str
    leaf: str  # hex, no 0x
    submitter: str


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class _Operation:
    latencies_ms: list[float] = field(default_factory=list)  # answered without error
    ok: int = 0
    not_anchored: int = 0
    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return self.ok + self.not_anchored + sum(self.errors.values())

    def to_json(self, wall_s: float, *, kind: str) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        latency = (
            {
                "p50": round(_percentile(ordered, 0.50), 2),
                "p95": round(_percentile(ordered, 0.95), 2),
                "p99": round(_percentile(ordered, 0.99), 2),
                "max": round(ordered[-1], 2),
                "mean": round(sum(ordered) / len(ordered), 2),
            }
            if ordered
            else None
        )
        body: dict[str, Any] = {
            "count": self.count,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "requests_per_s": round(self.count / wall_s, 1) if wall_s > 0 else 0.0,
            "latency_ms": latency,
        }
        if kind == "submit":
            body["events"] = self.events
            body["events_per_s"] = round(self.events / wall_s, 1) if wall_s > 0 else 0.0
        if kind == "proof":
            body["not_anchored"] = self.not_anchored
        return body


class _Tally:
    """Outcomes and latencies by operation, shared by every worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops = {kind: _Operation() for kind in OPERATIONS}

    def record(self, kind: str, outcome: str, *, ms: float | None, events: int = 0) -> None:
        with self._lock:
            op = self.ops[kind]
            if outcome == "ok":
                op.ok += 1
                op.events += events
            elif outcome == "not_anchored":
                op.not_anchored += 1
            else:
                op.errors[outcome] += 1
            if ms is not None and outcome in ("ok", "not_anchored"):
                op.latencies_ms.append(ms)

    def totals(self) -> tuple[int, int, int]:
        """(events accepted, reads answered, errors) so far."""
        with self._lock:
            reads = sum(self.ops[k].count for k in OPERATIONS[1:])
            errors = sum(sum(op.errors.values()) for op in self.ops.values())
            return self.ops["submit"].events, reads, errors


class _Ledger:
    """The events the API acknowledged, per stream in the order they were sent, the
    assets they name, and which of them the server has sealed into batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: list[Accepted] = []
        self._by_stream: dict[str, list[Accepted]] = {}
        self._sealed_upto: dict[str, int] = {}
        self._sealed: list[Accepted] = []
        self._assets: list[str] = []
        self._seen: set[str] = set()

    def add(self, accepted: list[Accepted], assets: Sequence[str]) -> None:
        with self._lock:
            self.accepted.extend(accepted)
            for event in accepted:
                self._by_stream.setdefault(event.stream, []).append(event)
            for asset in assets:
                if asset not in self._seen:
                    self._seen.add(asset)
                    self._assets.append(asset)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {stream: len(events) for stream, events in self._by_stream.items()}

    def sealed(self, stream: str, upto: int) -> None:
        """The first ``upto`` acknowledged events of ``stream`` are in batches."""
        with self._lock:
            done = self._sealed_upto.get(stream, 0)
            if upto > done:
                self._sealed.extend(self._by_stream[stream][done:upto])
                self._sealed_upto[stream] = upto

    def pick_for_proof(self, rng: random.Random) -> Accepted | None:
        """A sealed event; any acknowledged one while none is sealed (its proof request
        is answered 404 not_anchored: a read all the same)."""
        with self._lock:
            events = self._sealed or self.accepted
            return rng.choice(events) if events else None

    def pick_asset(self, rng: random.Random) -> str | None:
        with self._lock:
            return rng.choice(self._assets) if self._assets else None


def _watch_sealing(api: str, ledger: _Ledger, stop: threading.Event, timeout_s: float) -> None:
    """Once a second, learn from /v1/health which acknowledged events are sealed: a
    stream's events are sealed in the order they arrived, and each run stream has one
    submitter, so all but the stream's pending count are. The counts are taken before
    the health request, so the mark errs low, never high."""
    with httpx.Client(base_url=api, timeout=timeout_s) as client:
        while not stop.wait(1.0):
            counts = ledger.counts()
            try:
                backlog = client.get("/v1/health").json().get("backlog") or {}
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            for stream, n in counts.items():
                pending = int((backlog.get(stream) or {}).get("pending", 0))
                ledger.sealed(stream, n - pending)


class _Budget:
    """The events still to send; none once the deadline has passed."""

    def __init__(self, events: int, deadline: float) -> None:
        self._lock = threading.Lock()
        self._left = events
        self.deadline = deadline
        self.exhausted = False

    def take(self, n: int) -> int:
        with self._lock:
            if time.monotonic() >= self.deadline or self._left <= 0:
                self.exhausted = self.exhausted or self._left <= 0
                return 0
            taken = min(n, self._left)
            self._left -= taken
            self.exhausted = self._left <= 0
            return taken


class SignedIn:
    """A bearer token for one key, signed in again shortly before it expires."""

    def __init__(self, api: str, account: LocalAccount, *, timeout_s: float) -> None:
        self.api = api
        self.account = account
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self.roles: list[str] = []

    def headers(self) -> dict[str, str]:
        with self._lock:
            if time.time() >= self._renew_at:
                self._sign_in()
            return {"Authorization": f"Bearer {self._token}"}

    def _sign_in(self) -> None:
        from api.siwe_client import request_token  # siwe's grammar: slow to import

        signed_at = time.time()
        with httpx.Client(base_url=self.api, timeout=self.timeout_s) as client:
            answer = request_token(client, self.account)  # SignInFailed, a LedgerError
        self._token = answer["token"]
        self.roles = list(answer.get("roles") or [])
        try:
            expires = datetime.fromisoformat(str(answer["expires_at"]).replace("Z", "+00:00"))
            lifetime = expires.timestamp() - signed_at
        except (KeyError, ValueError):
            lifetime = 60.0  # the shortest the API issues
        self._renew_at = signed_at + RENEW_AT * lifetime


def _outcome(answer: httpx.Response) -> str:
    """``"<status> <error code>"`` of a refusal, from the API's error body if it has one."""
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "http_error"
    return f"{answer.status_code} {code}"


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _receipts(answer: httpx.Response) -> list[dict[str, Any]]:
    try:
        receipts = answer.json()["receipts"]
    except (ValueError, KeyError, TypeError):
        return []
    return [r for r in receipts if isinstance(r, dict)] if isinstance(receipts, list) else []


def _guarded(kind: str, tally: _Tally, work: Callable[[], None]) -> None:
    """Run a worker's loop; a crash is an error of its kind, in the report, not a thread
    that silently stopped."""
    try:
        work()
    except Exception as exc:  # anything at all must reach the report
        tally.record(kind, f"crash {type(exc).__name__}: {exc}"[:200], ms=None)


# --- the load phase ---------------------------------------------------------------------------


@dataclass
class LoadResult:
    run_id: str
    wall_s: float
    stopped_by: str  # "events" or "duration"
    operations: dict[str, dict[str, Any]]
    accepted: list[Accepted]
    streams: dict[str, int]
    pledges: list[int]
    workers_stopped: bool

    @property
    def errors(self) -> int:
        return sum(sum(op["errors"].values()) for op in self.operations.values())


def _events(plan: LoadPlan, index: int, start: int, size: int, submitter: str) -> list[EventBody]:
    assets = plan.asset_ids()
    now_ms = int(time.time() * 1000)
    return [
        EventBody(
            kind="epcis.ObjectEvent",
            schema_version=1,
            stream=plan.stream(index),
            event_id=f"load-{plan.run_id}-{index}-{n}",
            asset_ids=[assets[(index + n) % len(assets)]],
            event_time=utc_text(now_ms),
            payload={
                "action": "OBSERVE",
                "bizStep": "urn:epcglobal:cbv:bizstep:storing",
                "readPoint": "urn:epc:id:sgln:0614141.00777.0",
                "load": {"run": plan.run_id, "n": n},
            },
            submitter=submitter,
        )
        for n in range(start, start + size)
    ]


def _submitter(
    plan: LoadPlan,
    index: int,
    domain: Eip712Domain,
    budget: _Budget,
    tally: _Tally,
    ledger: _Ledger,
) -> None:
    account = plan.submitters[index]
    sent = 0
    with httpx.Client(base_url=plan.api, timeout=plan.timeout_s) as client:
        while size := budget.take(plan.batch):
            events = _events(plan, index, sent, size, account.address)
            sent += size
            body = sign_submission(events, private_key=account.key, domain=domain)
            start = time.perf_counter()
            try:
                answer = client.post("/v1/events", json=body.model_dump(mode="json"))
            except httpx.HTTPError as exc:
                tally.record("submit", f"transport {type(exc).__name__}", ms=None)
                continue
            ms = _ms_since(start)
            if answer.status_code != 202:
                tally.record("submit", _outcome(answer), ms=ms)
                continue
            receipts = _receipts(answer)
            ids = [e.event_id for e in events]
            if [r.get("event_id") for r in receipts] != ids or any(
                r.get("status") != "accepted" for r in receipts
            ):
                tally.record("submit", "202 receipts_mismatch", ms=ms)
                continue
            ledger.add(
                [
                    Accepted(
                        event_id=r["event_id"],
                        stream=r["stream"],
                        leaf=str(r["leaf"]).removeprefix("0x").lower(),
                        submitter=account.address,
                    )
                    for r in receipts
                ],
                [a for e in events for a in e.asset_ids],
            )
            tally.record("submit", "ok", ms=ms, events=size)


def _reader(
    plan: LoadPlan,
    kind: str,
    rng: random.Random,
    token: SignedIn,
    pledges: list[int],
    stop: threading.Event,
    deadline: float,
    tally: _Tally,
    ledger: _Ledger,
) -> None:
    with httpx.Client(base_url=plan.api, timeout=plan.timeout_s) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            if kind == "proof":
                event = ledger.pick_for_proof(rng)
                url = None if event is None else f"/v1/events/{quote(event.event_id)}/proof"
            elif kind == "asset_history":
                asset = ledger.pick_asset(rng)
                url = None if asset is None else f"/v1/assets/{quote(asset, safe=':')}/history"
            else:
                url = f"/v1/pledges/{rng.choice(pledges)}/history"
            if url is None:  # nothing acknowledged yet
                stop.wait(0.1)
                continue
            params = None if kind == "proof" else {"limit": HISTORY_PAGE}
            try:
                headers = token.headers()
                start = time.perf_counter()
                answer = client.get(url, params=params, headers=headers)
            except LedgerError as exc:  # signing in again failed (SignInFailed)
                tally.record(kind, f"sign-in {exc.code}", ms=None)
                continue
            except httpx.HTTPError as exc:
                tally.record(kind, f"transport {type(exc).__name__}", ms=None)
                stop.wait(0.1)  # a server that is gone: count, do not spin
                continue
            ms = _ms_since(start)
            if answer.status_code == 200:
                tally.record(kind, "ok", ms=ms)
            elif kind == "proof" and _outcome(answer) == "404 not_anchored":
                tally.record(kind, "not_anchored", ms=ms)
            else:
                tally.record(kind, _outcome(answer), ms=ms)


def _health(api: str, timeout_s: float) -> dict[str, Any]:
    try:
        answer = httpx.get(f"{api.rstrip('/')}/v1/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise LoadFailed(f"cannot reach the API at {api}: {exc}") from exc
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200 or body.get("status") != "ok":
        raise LoadFailed(
            f"the API at {api} is not healthy: {answer.status_code} {answer.text[:300]}"
        )
    return body


def _readable_pledges(plan: LoadPlan, token: SignedIn) -> list[int]:
    """The pledges the readers ask for: --pledge, checked readable; else every pledge the
    reader may see (at most MAX_PLEDGES)."""
    try:
        return _pledges_of(plan, token)
    except httpx.HTTPError as exc:
        raise LoadFailed(f"asking for pledges: {exc}") from exc


def _pledges_of(plan: LoadPlan, token: SignedIn) -> list[int]:
    with httpx.Client(base_url=plan.api, timeout=plan.timeout_s) as client:
        if plan.pledges is None:
            answer = client.get("/v1/pledges", headers=token.headers())
            if answer.status_code != 200:
                raise LoadFailed(f"listing pledges: {_outcome(answer)}")
            try:
                listed = [int(p["pledge_id"]) for p in answer.json()["pledges"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise LoadFailed(f"listing pledges: an answer without pledges: {exc}") from exc
            return listed[:MAX_PLEDGES]
        for pledge_id in plan.pledges:
            answer = client.get(f"/v1/pledges/{pledge_id}", headers=token.headers())
            if answer.status_code != 200:
                raise LoadFailed(f"--pledge {pledge_id}: {_outcome(answer)}")
        return list(plan.pledges)


OnProgress = Callable[[float, tuple[int, int, int]], None]


def run_load(plan: LoadPlan, *, progress: OnProgress | None = None) -> LoadResult:
    """Drive the API with ``plan``; returns when every worker has stopped, at the latest
    one request timeout (plus a few seconds) after ``plan.duration_s``."""
    health = _health(plan.api, plan.timeout_s)
    domain = domain_for(
        chain_id=int(health["chain"]["chain_id"]), contract=health["chain"]["registry"]
    )
    token: SignedIn | None = None
    pledges: list[int] = []
    if plan.readers:
        if plan.reader is None:
            raise LoadFailed("readers need a reader key (an auditor's)")
        token = SignedIn(plan.api, plan.reader, timeout_s=plan.timeout_s)
        try:
            token.headers()
        except LedgerError as exc:  # SignInFailed
            raise LoadFailed(f"the reader cannot sign in: {exc.message}") from exc
        if "auditor" not in token.roles:
            raise LoadFailed(
                f"the reader {plan.reader.address} holds roles {sorted(token.roles)}; readers "
                "ask for every submitter's proofs and need AUDITOR_ROLE on the PledgeRegistry"
            )
        pledges = _readable_pledges(plan, token)

    tally, ledger, stop = _Tally(), _Ledger(), threading.Event()
    started = time.monotonic()
    deadline = started + plan.duration_s
    budget = _Budget(plan.max_events, deadline)
    submitters = [
        threading.Thread(
            target=_guarded,
            args=("submit", tally, partial(_submitter, plan, i, domain, budget, tally, ledger)),
            name=f"load-submitter-{i}",
            daemon=True,
        )
        for i in range(len(plan.submitters))
    ]
    readers: list[threading.Thread] = []
    if token is not None:
        # one kind of read each, in turn: a slow kind never starves the others
        kinds = [k for k in READS if k != "pledge_history" or pledges]
        for i in range(plan.readers):
            kind = kinds[i % len(kinds)]
            rng = random.Random(f"{plan.run_id}/{i}")
            work = partial(_reader, plan, kind, rng, token, pledges, stop, deadline, tally, ledger)
            readers.append(
                threading.Thread(
                    target=_guarded,
                    args=(kind, tally, work),
                    name=f"load-reader-{i}",
                    daemon=True,
                )
            )
        readers.append(
            threading.Thread(
                target=_watch_sealing,
                args=(plan.api, ledger, stop, plan.timeout_s),
                name="load-watcher",
                daemon=True,
            )
        )
    for worker in submitters + readers:
        worker.start()
    hard_stop = deadline + plan.timeout_s + 5
    try:
        while any(w.is_alive() for w in submitters) and time.monotonic() < hard_stop:
            if progress is not None:
                progress(time.monotonic() - started, tally.totals())
            for worker in submitters:
                worker.join(timeout=0.25)
                if worker.is_alive():
                    break
    finally:
        stop.set()  # readers stop with the submitters
        budget.deadline = 0.0
    wall_s = time.monotonic() - started
    for worker in readers + submitters:
        worker.join(timeout=max(0.0, hard_stop - time.monotonic()))
    if progress is not None:
        progress(wall_s, tally.totals())
    accepted = list(ledger.accepted)
    streams = dict.fromkeys(plan.streams, 0)
    for event in accepted:
        streams[event.stream] += 1
    return LoadResult(
        run_id=plan.run_id,
        wall_s=wall_s,
        stopped_by="events" if budget.exhausted else "duration",
        operations={k: tally.ops[k].to_json(wall_s, kind=k) for k in OPERATIONS},
        accepted=accepted,
        streams=streams,
        pledges=pledges,
        workers_stopped=not any(w.is_alive() for w in submitters + readers),
    )


# --- the check phase --------------------------------------------------------------------------


@dataclass
class CheckResult:
    accepted: int
    anchored_wait_s: float | None  # None: the run's streams still had a backlog at the end
    store_checked: int | None  # None: no --db
    proofs_checked: int
    proofs_verified: int
    lost: dict[str, str]  # event id -> why
    unchecked: int  # proofs and store look-ups the check had no time left for
    wall_s: float

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unchecked and self.anchored_wait_s is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "anchored_wait_s": self.anchored_wait_s,
            "store_checked": self.store_checked,
            "proofs_checked": self.proofs_checked,
            "proofs_verified": self.proofs_verified,
            "lost": len(self.lost),
            "lost_examples": dict(list(self.lost.items())[:20]),
            "unchecked": self.unchecked,
            "wall_s": round(self.wall_s, 2),
            "ok": self.ok,
        }


def _wait_anchored(api: str, streams: set[str], deadline: float, timeout_s: float) -> float | None:
    """Seconds until /v1/health shows no pending event in ``streams``; None at the deadline.
    Sealed but unsent batches are not in the backlog: the proof pass waits for those."""
    started = time.monotonic()
    with httpx.Client(base_url=api, timeout=timeout_s) as client:
        while time.monotonic() < deadline:
            try:
                answer = client.get("/v1/health")
                backlog = answer.json().get("backlog") or {}
                if answer.status_code == 200 and not streams & set(backlog):
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    return None


def _check_store(
    db: Store, accepted: Sequence[Accepted], lost: dict[str, str], deadline: float
) -> int:
    """Every accepted event stored, with the leaf the API answered, in a batch that is
    anchored (waiting for that until ``deadline``: the backlog empties when the last
    batch is sealed, a moment before it is anchored). Returns how many were looked up."""
    batches: dict[tuple[str, int], list[str]] = {}
    checked = 0
    for event in accepted:
        if time.monotonic() >= deadline:
            break
        checked += 1
        try:
            row = db.event(event.event_id)
        except NotFound:
            lost[event.event_id] = "not in the store"
            continue
        if row.leaf != event.leaf:
            lost[event.event_id] = f"stored leaf {row.leaf}, the API answered {event.leaf}"
        elif row.batch_seq is None:
            lost[event.event_id] = "stored but never sealed into a batch"
        else:
            batches.setdefault((row.stream, row.batch_seq), []).append(event.event_id)
    waiting = dict(batches)
    while waiting:
        for (stream, seq), _ in list(waiting.items()):
            if db.batch(stream, seq).state == ANCHORED:
                del waiting[(stream, seq)]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for (stream, seq), event_ids in waiting.items():
        state = db.batch(stream, seq).state
        for event_id in event_ids:
            lost[event_id] = f"in batch {stream}/{seq}, still {state} at the end of the check"
    return checked


def _fetch_proof(
    client: httpx.Client, event: Accepted, token: SignedIn, deadline: float
) -> tuple[Accepted, dict[str, Any] | None, str]:
    """(event, bundle, "") or (event, None, why); why is "not_anchored" to try again,
    "deadline" once the check's time is up."""
    if time.monotonic() >= deadline:
        return event, None, "deadline"
    try:
        answer = client.get(f"/v1/events/{quote(event.event_id)}/proof", headers=token.headers())
    except LedgerError as exc:  # SignInFailed
        return event, None, f"sign-in {exc.code}"
    except httpx.HTTPError as exc:
        return event, None, f"transport {type(exc).__name__}"
    if answer.status_code == 200:
        try:
            return event, answer.json(), ""
        except ValueError:
            return event, None, "200 not_json"
    outcome = _outcome(answer)
    return event, None, "not_anchored" if outcome == "404 not_anchored" else outcome


def _judge(
    event: Accepted, bundle: dict[str, Any], chain: Chain, reads: AnchorReads, confirmations: int
) -> str:
    """Why the bundle does not prove ``event``, or ""."""
    try:
        verify_bundle(bundle, chain=chain, confirmations=confirmations, reads=reads)
    except VerificationFailed as exc:
        return f"proof fails step {exc.step} ({exc.name}): {exc.reason}"
    except LedgerError as exc:
        return f"proof not checked: {exc.message}"
    found = bundle["envelope"]["event"]["event_id"]
    leaf = str(bundle["leaf"]).removeprefix("0x").lower()
    if found != event.event_id or leaf != event.leaf:
        return f"the proof is of {found} with leaf {leaf}, not the acknowledged one"
    return ""


def run_check(
    plan: LoadPlan,
    accepted: Sequence[Accepted],
    *,
    chain: Chain,
    db: Store | None = None,
    sample: int = 0,
    workers: int = 4,
    timeout_s: float = 300.0,
    confirmations: int = 0,
    show_progress: bool = False,
) -> CheckResult:
    """Every accepted event (or ``sample`` of them, at random) provable: its proof from
    the API, as its submitter, verified against ``chain``; with ``db``, every accepted
    event looked up in the store as well. Ends by ``timeout_s``."""
    started = time.monotonic()
    deadline = started + timeout_s
    lost: dict[str, str] = {}
    waited = _wait_anchored(plan.api, {e.stream for e in accepted}, deadline, plan.timeout_s)
    store_checked = None if db is None else _check_store(db, accepted, lost, deadline)
    chosen = list(accepted)
    if 0 < sample < len(chosen):
        chosen = random.Random(plan.run_id).sample(chosen, sample)
    tokens = {a.address: SignedIn(plan.api, a, timeout_s=plan.timeout_s) for a in plan.submitters}
    verified = 0
    pending = chosen
    with (
        Progress(
            TextColumn("checking proofs"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=not show_progress,
        ) as bar,
        httpx.Client(
            base_url=plan.api,
            timeout=plan.timeout_s,
            limits=httpx.Limits(max_connections=workers),
        ) as client,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load-check") as pool,
    ):
        task = bar.add_task("proofs", total=len(chosen))
        judged = 0
        while pending and time.monotonic() < deadline:
            reads = AnchorReads(chain)  # a fresh head each pass: later batches count
            later: list[Accepted] = []
            for first in range(0, len(pending), CHECK_CHUNK):
                # fetch a chunk, then verify it: verifying while the fetching threads run
                # costs several times more, the threads fighting over the GIL
                fetched = list(
                    pool.map(
                        lambda e: _fetch_proof(client, e, tokens[e.submitter], deadline),
                        pending[first : first + CHECK_CHUNK],
                    )
                )
                for event, bundle, why in fetched:
                    if why == "not_anchored":
                        later.append(event)
                        continue
                    if why == "deadline":
                        continue  # left unchecked
                    if bundle is not None:
                        why = _judge(event, bundle, chain, reads, confirmations)
                    if why:
                        lost.setdefault(event.event_id, why)
                    else:
                        verified += 1
                    judged += 1
                    bar.advance(task)
            pending = later
            if pending:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    unchecked = len(chosen) - judged + (0 if db is None else len(accepted) - (store_checked or 0))
    return CheckResult(
        accepted=len(accepted),
        anchored_wait_s=None if waited is None else round(waited, 2),
        store_checked=store_checked,
        proofs_checked=len(chosen),
        proofs_verified=verified,
        lost=lost,
        unchecked=unchecked,
        wall_s=time.monotonic() - started,
    )


# --- the report ------------------------------------------------------------------------------


def report_of(
    plan: LoadPlan,
    load: LoadResult,
    check: CheckResult | None,
    *,
    config: dict[str, Any],
    machine: dict[str, Any],
) -> dict[str, Any]:
    ok = load.errors == 0 and load.workers_stopped and check is not None and check.ok
    return {
        "run_id": plan.run_id,
        "api": plan.api,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "machine": machine,
        "load": {
            "wall_s": round(load.wall_s, 2),
            "stopped_by": load.stopped_by,
            "workers_stopped": load.workers_stopped,
            "pledges_read": load.pledges,
            "streams": load.streams,
            "operations": load.operations,
            "errors": load.errors,
        },
        "check": None if check is None else check.to_json(),
        "ok": ok,
    }


def _ms(latency: dict[str, float] | None, key: str) -> str:
    return "—" if latency is None else f"{latency[key]:,.1f}"


def print_report(report: dict[str, Any], console: Console) -> None:
    load = report["load"]
    table = Table(
        title=f"fourflow load {report['run_id']}: {load['wall_s']} s, stopped by "
        f"{load['stopped_by']}; latency of the answered requests in ms",
        title_justify="left",
    )
    for name in ("operation", "requests", "ok", "errors", "rate", "p50", "p95", "p99", "max"):
        table.add_column(name, justify="left" if name in ("operation", "errors") else "right")
    for kind, op in load["operations"].items():
        if not op["count"]:
            continue
        errors = ", ".join(f"{n}× {status}" for status, n in op["errors"].items()) or "0"
        if kind == "submit":
            rate = f"{op['events_per_s']:,.0f} events/s, {op['requests_per_s']:,.1f} req/s"
            ok = f"{op['ok']:,} ({op['events']:,} events)"
        else:
            rate = f"{op['requests_per_s']:,.1f} req/s"
            ok = f"{op['ok']:,}" + (
                f" (+{op['not_anchored']:,} not anchored yet)" if op.get("not_anchored") else ""
            )
        latency = op["latency_ms"]
        table.add_row(
            kind, f"{op['count']:,}", ok, errors, rate,
            _ms(latency, "p50"), _ms(latency, "p95"), _ms(latency, "p99"), _ms(latency, "max"),
        )  # fmt: skip
    console.print(table)
    check = report["check"]
    if check is not None:
        waited = (
            "the backlog never emptied"
            if check["anchored_wait_s"] is None
            else f"anchoring caught up {check['anchored_wait_s']} s after the load"
        )
        stored = (
            ""
            if check["store_checked"] is None
            else f"{check['store_checked']:,} looked up in the store; "
        )
        console.print(
            f"check: {check['accepted']:,} events acknowledged; {waited}; {stored}"
            f"{check['proofs_verified']:,}/{check['proofs_checked']:,} proofs verified against "
            f"the chain; {check['lost']:,} lost, {check['unchecked']:,} unchecked "
            f"({check['wall_s']} s)"
        )
        for event_id, why in check["lost_examples"].items():
            console.print(f"  [red]lost[/red] {event_id}: {why}", markup=True)
    verdict = "[bold green]PASS[/bold green]" if report["ok"] else "[bold red]FAIL[/bold red]"
    console.print(verdict)


# --- the command ------------------------------------------------------------------------------


def _die(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@dataclass
class _ProgressLine:
    """A live line on a terminal; otherwise a plain line every few seconds (CI logs)."""

    plan: LoadPlan
    live: Live | None = None
    _last: float = -math.inf

    def __call__(self, elapsed: float, totals: tuple[int, int, int]) -> None:
        events, reads, errors = totals
        line = (
            f"{elapsed:5.1f}/{self.plan.duration_s:g} s  {events:,}/{self.plan.max_events:,} "
            f"events acknowledged ({events / max(elapsed, 1e-9):,.0f}/s)  {reads:,} reads  "
            f"{errors:,} errors"
        )
        if self.live is not None:
            self.live.update(Text(line, style="red" if errors else ""))
        elif elapsed - self._last >= 5.0:
            self._last = elapsed
            err.print(line)


KeysOpt = Annotated[
    Path,
    typer.Option(
        "--keys",
        help="Submitter keys: one 0x-hex private key a line, each holding SUBMITTER_ROLE; "
        "the file must be chmod 600.",
    ),
]


def load_command(
    keys: KeysOpt,
    rpc: Annotated[
        str,
        typer.Option(
            "--rpc", envvar="FOURFLOW_RPC_URL", help="JSON-RPC URL of the node to verify proofs on."
        ),
    ],
    api: Annotated[str, typer.Option(help="The fourflow API under test.")] = (
        "http://127.0.0.1:8000"
    ),
    submitters: Annotated[
        int, typer.Option(min=0, help="Concurrent submitters, one key each (0: one per key).")
    ] = 0,
    readers: Annotated[
        int, typer.Option(min=0, max=256, help="Concurrent readers (proofs and histories).")
    ] = 4,
    reader_key_env: Annotated[
        str,
        typer.Option(
            "--reader-key-env",
            help="Environment variable with the readers' key (hex), or NAME_FILE (+ "
            "NAME_PASSWORD) naming a keyfile; it must hold AUDITOR_ROLE.",
        ),
    ] = "FOURFLOW_READER_KEY",
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per submission.")] = 50,
    duration: Annotated[
        float, typer.Option(min=0.1, max=MAX_DURATION_S, help="Stop submitting after this (s).")
    ] = 30.0,
    events: Annotated[
        int, typer.Option(min=1, max=MAX_EVENTS, help="Stop after this many events in all.")
    ] = 100_000,
    asset: Annotated[
        list[str] | None,
        typer.Option(help="An asset id the events name (repeat; default: 16 new ones)."),
    ] = None,
    pledge: Annotated[
        list[int] | None,
        typer.Option(help="A pledge whose history readers ask for (repeat; default: all)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=600.0, help="Seconds one request may take.")
    ] = 30.0,
    check_timeout: Annotated[
        float,
        typer.Option(min=1.0, max=7200.0, help="Seconds the check (anchoring, proofs) may take."),
    ] = 300.0,
    verify_sample: Annotated[
        int,
        typer.Option(
            min=0, help="Verify the proofs of this many accepted events, at random (0: all)."
        ),
    ] = 0,
    check_workers: Annotated[
        int, typer.Option(min=1, max=64, help="Concurrent proof fetches in the check.")
    ] = 4,
    confirmations: Annotated[
        int, typer.Option(min=0, help="Verify anchors this many blocks deep.")
    ] = 0,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="The server's store (SQLAlchemy URL): look every accepted event up in it."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report to this file as JSON.")
    ] = None,
) -> None:
    """A bounded load test of a running API: concurrent submitters post signed batches
    while readers ask for proofs and histories, until --duration or --events; then a
    check that every acknowledged event is stored once, anchored, and its proof verifies
    against the node. Prints throughput and latency percentiles; exits 1 on any error or
    lost event."""
    try:
        accounts = read_keys(keys)
        if submitters > len(accounts):
            raise LoadFailed(f"--submitters {submitters}: --keys {keys} holds {len(accounts)} keys")
        reader = load_key(env=reader_key_env) if readers else None
        if readers and reader is None:
            raise LoadFailed(
                f"readers sign in with an auditor's key: set {reader_key_env} (hex) or "
                f"{reader_key_env}_FILE, or pass --readers 0"
            )
        chain = Chain.connect(rpc, timeout=timeout)
        chain_id = chain.chain_id
    except LedgerError as exc:
        raise _die(exc.message) from exc
    plan = LoadPlan(
        api=api.rstrip("/"),
        submitters=accounts[: submitters or len(accounts)],
        batch=batch,
        duration_s=duration,
        max_events=events,
        readers=readers,
        reader=reader,
        assets=list(asset or []),
        pledges=list(pledge) if pledge else None,
        timeout_s=timeout,
    )
    config = {
        "submitters": len(plan.submitters),
        "readers": readers,
        "batch": batch,
        "duration_s": duration,
        "max_events": events,
        "assets": len(plan.asset_ids()),
        "timeout_s": timeout,
        "check_timeout_s": check_timeout,
        "verify_sample": verify_sample,
        "confirmations": confirmations,
        "store": db is not None,
    }
    # other work on the machine skews every figure: say how busy it was
    machine = {"cpus": os.cpu_count(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    err.print(
        f"load {plan.run_id}: {len(plan.submitters)} submitters × {batch} events a batch, "
        f"{readers} readers, against {plan.api}, for {duration:g} s or {events:,} events"
    )
    store = None
    try:
        health = _health(plan.api, timeout)
        if int(health["chain"]["chain_id"]) != chain_id:
            raise LoadFailed(
                f"the API serves chain {health['chain']['chain_id']}, --rpc is chain {chain_id}"
            )
        store = Store.open(db) if db else None
        line = _ProgressLine(plan)
        with Live(console=err, transient=True) if err.is_terminal else nullcontext() as live:
            line.live = live
            load = run_load(plan, progress=line)
        err.print(
            f"load done: {len(load.accepted):,} events acknowledged in {load.wall_s:.1f} s "
            f"(stopped by {load.stopped_by}); checking"
        )
        check = run_check(
            plan,
            load.accepted,
            chain=chain,
            db=store,
            sample=verify_sample,
            workers=check_workers,
            timeout_s=check_timeout,
            confirmations=confirmations,
            show_progress=err.is_terminal,
        )
    except LedgerError as exc:
        raise _die(exc.message) from exc
    finally:
        if store is not None:
            store.close()
    report = report_of(plan, load, check, config=config, machine=machine)
    print_report(report, out if out.is_terminal else Console(highlight=False, width=160))
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not report["ok"]:
        raise typer.Exit(1)
