"""``fourflow audit``: a deployment replayed from the chain and the evidence, trusting nobody.

The auditor takes a chain connection, the deployment manifest and the evidence: the
operator's store (``ledger.store.Store``), or an evidence package (``ledger.evidence``)
so that nothing comes from the operator's database. It reads every fourflow log from the
deployment block to the head, pins that head (every storage read is made at it), and
checks, in order:

1. anchors     every ``BatchAnchored`` log against contract storage (``batchOf``,
               ``headOf``): root, leaf count, time range, block; per stream, sequence
               numbers 0..n-1 with no gap and no double; the sha256 accumulator
               recomputed over (root, leaf count) equals each log's and ``headOf``'s,
               and so does the total of leaves.
2. events      every event's leaf recomputed from its envelope, never read; from the
               store, every anchored batch's Merkle root recomputed from its events,
               and what went wrong named (an edited payload, a deleted, inserted,
               reordered or moved event); from a package, every bundle's path walked to
               the anchored root, and the whole root of every batch it holds entirely.
3. signatures  every event's EIP-712 signature recovers its submitter in this
               deployment's domain, and the signer held SUBMITTER_ROLE on the anchor
               registry in the block its batch was anchored (roles replayed from logs).
4. facts       every ``FactReported`` cites an event the auditor holds, and the event
               says what the fact says: a count's quantity, an alarm's kind, the time.
5. state       pledges and receipts replayed from the logs (``ledger.replay``) equal
               ``pledgeOf`` / ``receiptOf`` field by field; replayed submitters equal
               ``hasRole``.
6. bytecode    each contract's runtime code equals the code compiled from the
               repository's sources with immutables masked, and each immutable holds the
               value the deployment implies (addresses, chain id, EIP-712 domain).

Every discrepancy is a ``Finding`` with a stable ``code`` (see ``FINDING_CODES``), a
message naming the stream, batch, event, fact, pledge or contract, and details. The
report's ``ok`` is false if any finding is an error; warnings (``WARNING_CODES``) are
things that could not be checked.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import sqlite3
from collections import defaultdict, deque, namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum
from itertools import islice
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from pydantic import ValidationError
from sqlalchemy import select as select_columns
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select
from web3.exceptions import BadFunctionCallOutput, ContractLogicError

from ledger.audit_decode import Domain, Quick, decode, decode_stored, start_worker
from ledger.canonical import (
    canonical_json,
    event_digest,
    leaf_hash,
    simple_jcs,
    stream_id,
)
from ledger.chain import (
    SUBMITTER_ROLE,
    AnchorRegistry,
    Chain,
    Deployment,
    OnChainBatch,
    tester_failures,
)
from ledger.chainlog import ChainLog, LogReader, watched_contracts
from ledger.collateral import (
    CONSENT_DOMAIN_NAME,
    CONSENT_DOMAIN_VERSION,
    PRICE_SCALE,
    FactKind,
    Pledge,
    Receipt,
)
from ledger.contracts import Artifact, compile_contracts, load_artifact
from ledger.errors import ArtifactError, ChainError, InvalidInput, StoreError
from ledger.merkle import ProofStep, build_tree, root_from_proof, verify_inclusion
from ledger.models import (
    ProofBundle,
    SignedEnvelope,
    event_time_ms,
)
from ledger.replay import ChainState
from ledger.schema import sqlite_path
from ledger.signing import domain_for, recover_envelope_signer, submission_refs_jcs
from ledger.store import ANCHORED, BatchRow, EventRow, Store

__all__ = [
    "FINDING_CODES",
    "WARNING_CODES",
    "AuditCounts",
    "AuditReport",
    "Auditor",
    "Finding",
    "Progress",
]

FINDING_CODES: dict[str, str] = {
    # 1. anchors
    "anchor_storage_mismatch": "a BatchAnchored log disagrees with the batch in contract storage",
    "anchor_log_missing": "a batch in contract storage has no BatchAnchored log",
    "sequence_gap": "a stream's batches are not numbered 0..n-1 without a gap",
    "sequence_duplicate": "two BatchAnchored logs for one batch",
    "accumulator_mismatch": "the accumulator recomputed over the stream's (root, leaf count) "
    "differs from headOf's or from a log's",
    "total_leaves_mismatch": "headOf's total leaves is not the sum of the batches' leaf counts",
    # 2. events and batches
    "anchor_missing": "the evidence places an event in a batch the chain has not anchored",
    "store_batch_mismatch": "the store's batch row disagrees with the anchored batch",
    "envelope_invalid": "an event's envelope is not a well-formed signed envelope",
    "event_row_mismatch": "an event row's columns disagree with its envelope",
    "payload_tampered": "the event no longer hashes to the leaf that was anchored",
    "leaf_mismatch": "the stored leaf is not the hash of the stored envelope",
    "root_mismatch": "the batch's events do not give the anchored root",
    "leaf_count_mismatch": "the evidence holds another number of events than the batch anchored",
    "event_missing": "an anchored leaf has no event",
    "event_unanchored_extra": "an event claims a place in a batch whose anchored root "
    "does not include it",
    "leaf_order": "an event sits at another leaf index than the one it was anchored at",
    "event_in_wrong_batch": "an event stored in one batch was anchored in another",
    "time_range_mismatch": "a batch's anchored time range is not the range of its events",
    "proof_invalid": "a bundle's Merkle path has the wrong shape for its index and the "
    "anchored leaf count",
    "event_unanchored": "(warning) a package entry is not anchored yet: it cannot be proven",
    "package_invalid": "a package entry or bundle is malformed",
    "package_deployment_mismatch": "the package names another chain or other contracts "
    "than the manifest",
    # 3. signatures and roles
    "signature_invalid": "the signature does not recover the event's submitter, or the event "
    "is not in the submission it claims",
    "signature_wrong_domain": "the event was signed for another chain, registry or domain",
    "signer_not_registered": "the signer did not hold SUBMITTER_ROLE when the batch was anchored",
    "role_state_mismatch": "the submitters replayed from role logs differ from hasRole",
    # 4. facts
    "fact_evidence_missing": "no event the auditor holds hashes to the leaf a fact cites",
    "fact_content_mismatch": "the event a fact cites does not say what the fact says",
    # 5. state
    "pledge_state_mismatch": "a pledge replayed from the logs differs from pledgeOf",
    "receipt_state_mismatch": "a receipt replayed from the logs differs from receiptOf",
    # 6. bytecode
    "manifest_invalid": "the manifest names one address for two contracts",
    "contract_missing": "no code at an address the manifest names",
    "bytecode_mismatch": "deployed runtime code differs from the code compiled from the sources",
    "immutable_mismatch": "an immutable in the deployed code holds an unexpected value",
    "bytecode_unchecked": "(warning) the sources could not be compiled: bytecode not checked",
}
WARNING_CODES = frozenset({"event_unanchored", "bytecode_unchecked"})

Progress = Callable[[str, int, int], None]  # (stage, done, total)

_ZERO32 = b"\x00" * 32
# what a call to code that is not the contract raises (web3 on a node; eth-tester in process)
_NOT_ANSWERING = (BadFunctionCallOutput, ContractLogicError)
_SUBMITTER = "submitter"  # ledger.replay's name for SUBMITTER_ROLE on the anchor registry
_SEARCH_LIMIT = 1024  # largest batch searched for one inserted event (n tree builds)
_LISTED = 10  # events named in one message
_COUNT_FIELDS = {"livestock.daily_count": "head_count", "warehouse.stock_level": "quantity"}
_ALARM_FACTS = {
    FactKind.UNAUTHORIZED_MOVEMENT: "unauthorized_movement",
    FactKind.TAG_REMOVAL: "tag_removal",
    FactKind.COVENANT_BREACH: "covenant_breach",
}
_EIP712_TYPE_HASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


# --- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One discrepancy (or, for ``WARNING_CODES``, one thing that could not be checked)."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return "warning" if self.code in WARNING_CODES else "error"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "details": _jsonable(self.details),
        }


@dataclass
class AuditCounts:
    logs: int = 0  # fourflow contract logs read
    streams: int = 0
    batches: int = 0  # anchored batches, from contract storage
    leaves: int = 0  # anchored leaves, from contract storage
    events: int = 0  # events whose envelope was checked
    batches_recomputed: int = 0  # batches whose whole root was recomputed from events
    events_pending: int = 0  # stored events not anchored yet (signatures checked)
    signatures: int = 0  # signatures that recovered their submitter
    facts: int = 0  # FactReported logs checked against their evidence
    pledges: int = 0
    receipts: int = 0
    contracts: int = 0  # runtime code compared with the compiled sources


@dataclass
class AuditReport:
    source: str  # "store" | "package"
    chain_id: int
    head: int  # the block every read was pinned to
    counts: AuditCounts = field(default_factory=AuditCounts)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what this audit could not check

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "chain_id": self.chain_id,
            "head": self.head,
            "counts": asdict(self.counts),
            "findings": [f.to_json() for f in self.findings],
            "skipped": list(self.skipped),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Enum):
        return value.name if not isinstance(value, int) else int(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


# --- events as the auditor holds them --------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Event:
    """One event from the store (a row) or a package (a bundle)."""

    event_id: str
    stream: str  # where the evidence puts it
    seq: int | None
    index: int | None
    position: int | None  # the store's arrival order; None in a package
    stored_leaf: bytes | None  # the leaf column, or the bundle's leaf
    # The parsed envelope. A valid store event signed for this deployment lets it go
    # once decoded (Auditor._from_row), keeping only what the signature checks read
    # below; Auditor._raw_of reads it again from the store where a check needs more.
    raw: Any
    valid: bool  # the envelope is a well-formed SignedEnvelope
    leaf: bytes | None  # recomputed from the envelope
    digest: bytes | None = None  # the event body's digest, recomputed; None if not valid
    time_ms: int | None = None  # the event's time; None if not valid
    proof: list[ProofStep] | None = None  # a bundle's path
    anchored: tuple[str, int, int] | None = None  # (stream, seq, index) once proven
    # of a valid envelope: (submitter, root, count, signature), one tuple a submission;
    # its index in the submission; the sha256 of its submission reference's canonical
    # JSON (which holds its proof); whether it is signed for this deployment's domain
    signing: tuple[str, str, int, str] | None = None
    sub_index: int = -1
    ref_digest: bytes = b""
    domain_ours: bool = True

    @property
    def where(self) -> str:
        if self.seq is None:
            return f"event {self.event_id} (stream {self.stream}, not in a batch)"
        return f"event {self.event_id} (batch {self.seq} of {self.stream}, leaf {self.index})"


_EVENT_FIELDS = (
    "event_id",
    "stream",
    "kind",
    "submitter",
    "event_time_ms",
    "leaf",
    "envelope",
    "batch_seq",
    "leaf_index",
    "position",
)
_EVENT_COLUMNS = tuple(col(getattr(EventRow, name)) for name in _EVENT_FIELDS)
_ROW_FIELDS = tuple(name for name in _EVENT_FIELDS if name != "envelope")  # workers read it
_ROW_COLUMNS = tuple(col(getattr(EventRow, name)) for name in _ROW_FIELDS)
_StoredRow = namedtuple("_StoredRow", _EVENT_FIELDS)  # type: ignore[misc]
_BareRow = namedtuple("_BareRow", _ROW_FIELDS)  # type: ignore[misc]


def _stream_rows(session: Session, stream: str, *, envelopes: bool) -> Iterator[Any]:
    """The stream's events as rows of ``_EVENT_COLUMNS`` (``_ROW_COLUMNS`` without
    ``envelopes``), in the order of the (stream, batch_seq, position) index, 2,000 at a
    time. On SQLite straight from the driver: SQLAlchemy's rows cost 10 µs each where
    the driver's take 6 (a million of them)."""
    columns, fields, make = (
        (_EVENT_COLUMNS, _EVENT_FIELDS, _StoredRow._make)
        if envelopes
        else (_ROW_COLUMNS, _ROW_FIELDS, _BareRow._make)
    )
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield from connection.execution_options(yield_per=2_000).execute(
            select_columns(*columns)
            .where(col(EventRow.stream) == stream)
            .order_by(col(EventRow.batch_seq), col(EventRow.position))
        )
        return
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection the session holds
    cursor = driver.cursor()
    try:
        cursor.execute(
            f"SELECT {', '.join(fields)} FROM events WHERE stream = ? ORDER BY batch_seq, position",
            (stream,),
        )
        while chunk := cursor.fetchmany(2_000):
            yield from map(make, chunk)
    except sqlite3.Error as exc:  # what Store's sessions say of SQLAlchemy's errors
        raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc
    finally:
        cursor.close()


def _envelopes_at(session: Session, positions: Sequence[int]) -> dict[int, str]:
    """The stored envelopes of the events at ``positions`` (the events' key)."""
    found = session.exec(
        select(EventRow.position, EventRow.envelope).where(col(EventRow.position).in_(positions))
    )
    return {position: text for position, text in found if position is not None}


_PARALLEL_FROM = 20_000  # events: below, starting worker processes costs more than it saves
_CHUNK = 2_000  # events a worker reads and decodes at once
_AHEAD = 2  # chunks a worker has queued, so that none waits for the auditor


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _DecodePool:
    """Worker processes that read and decode the stored envelopes (``decode_stored``)
    while the auditor reads the rest of each row and checks what they send back. None
    for ``jobs`` of 1, or a store in memory (a worker could not open it).

    Forked where the platform can (they need nothing from the auditor but the domain,
    the store's URL and the ``whole`` leaves, whose envelopes they send as text: the
    auditor keeps those). A worker that fails costs nothing but time: the auditor reads
    and decodes its chunk itself, and every later one if the worker died."""

    def __init__(self, jobs: int, domain: Domain, store: Store, *, whole: Set[bytes]) -> None:
        self.jobs = jobs
        self.domain = domain
        self.whole = frozenset(whole)
        self.database: str | None = None
        if store.engine.dialect.name != "sqlite" or sqlite_path(store.engine) is not None:
            self.database = store.engine.url.render_as_string(hide_password=False)
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> _DecodePool:
        if self.jobs > 1 and self.database is not None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self.executor = ProcessPoolExecutor(
                self.jobs,
                mp_context=context,
                initializer=start_worker,
                initargs=(self.domain, self.database, self.whole),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop(wait=True)

    def broke(self) -> None:
        """A worker died: the rest of the audit reads and decodes in this process."""
        self._stop(wait=False)

    def _stop(self, *, wait: bool) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=wait, cancel_futures=True)
            self.executor = None


_Sent = Quick | str  # a worker's decoding, or an envelope for the auditor to decode
_Chunk = tuple[list[Any], "Future[list[_Sent | None]] | None"]


def _decoded(session: Session, stream: str, pool: _DecodePool) -> Iterator[tuple[Any, _Sent]]:
    """The stream's rows in order (``_stream_rows``), each with what a worker sent of
    its envelope; without workers, with the envelope itself."""
    if pool.executor is None:
        for row in _stream_rows(session, stream, envelopes=True):
            yield row, row.envelope
        return
    rows = _stream_rows(session, stream, envelopes=False)
    pending: deque[_Chunk] = deque()
    while chunk := list(islice(rows, _CHUNK)):
        executor = pool.executor
        positions = [row.position for row in chunk]
        future = None if executor is None else executor.submit(decode_stored, positions)
        pending.append((chunk, future))
        if len(pending) > _AHEAD * pool.jobs:
            yield from _answered(session, *pending.popleft(), pool)
    while pending:
        yield from _answered(session, *pending.popleft(), pool)


def _answered(
    session: Session,
    chunk: list[Any],
    future: Future[list[_Sent | None]] | None,
    pool: _DecodePool,
) -> Iterator[tuple[Any, _Sent]]:
    sent: list[_Sent | None] | None = None
    if future is not None:
        try:
            sent = future.result()
        except BrokenProcessPool:
            pool.broke()
        except (sqlite3.Error, SQLAlchemyError, OSError):
            pass  # the worker could not read the store: the auditor's own session tries
    if sent is None:
        texts = _envelopes_at(session, [row.position for row in chunk])
        sent = [texts.get(row.position) for row in chunk]
    for row, what in zip(chunk, sent, strict=True):
        if what is None:
            raise StoreError(
                f"the store changed while it was audited: event {row.event_id} (stream "
                f"{row.stream}) is gone; audit again"
            )
        yield row, what


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """The audit makes millions of small objects and no reference cycles among them;
    Python's cycle collector would walk them all again and again as they pile up (a
    third of the audit's time at 2×10^5 events, more above). It is paused while the
    store's events are checked (the audit runs in a command's own process)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _row_event(row: Any, **decoded: Any) -> _Event:
    """The ``_Event`` of a stored row: its place from the row's columns, the rest from
    its decoded envelope."""
    return _Event(
        event_id=row.event_id,
        stream=row.stream,
        seq=row.batch_seq,
        index=row.leaf_index,
        position=row.position,
        stored_leaf=_stored_hex(row.leaf),
        **decoded,
    )


def _by_index(event: _Event) -> tuple[bool, int, int]:
    return (event.index is None, event.index or 0, event.position or 0)


def _by_arrival(event: _Event) -> tuple[bool, int]:
    return (event.position is None, event.position or 0)


def _leaf(event: _Event, source: str) -> bytes | None:
    return event.stored_leaf if source == "stored" else event.leaf


def _root(leaves: Sequence[bytes | None]) -> bytes | None:
    if not leaves or any(leaf is None or len(leaf) != 32 for leaf in leaves):
        return None
    return build_tree([leaf for leaf in leaves if leaf is not None]).root


def _accumulate(accumulator: bytes, batch: OnChainBatch) -> bytes:
    packed = accumulator + batch.root + batch.leaf_count.to_bytes(8, "big")
    return hashlib.sha256(packed).digest()


def _hex(raw: str) -> bytes:
    return bytes.fromhex(raw.removeprefix("0x"))


def _stored_hex(text: str) -> bytes | None:
    """A hash column of the store; None if it is not hex."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _word(value: int | str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\x00")
    if isinstance(value, str):
        return _hex(value).rjust(32, b"\x00")
    return value.to_bytes(32, "big")


def _short_string(text: str) -> bytes:
    """OpenZeppelin's ShortString of ``text`` (under 32 bytes): the bytes, then the length."""
    raw = text.encode("utf-8")
    return raw.ljust(31, b"\x00") + bytes([len(raw)])


def _differences(on_chain: Any, replayed: Any, prefix: str = "") -> dict[str, Any]:
    """Field -> {"chain": …, "replayed": …} for every field that differs."""
    out: dict[str, Any] = {}
    for item in fields(on_chain):
        a, b = getattr(on_chain, item.name), getattr(replayed, item.name)
        if is_dataclass(a) and is_dataclass(b):
            out |= _differences(a, b, f"{prefix}{item.name}.")
        elif a != b:
            out[prefix + item.name] = {"chain": _jsonable(a), "replayed": _jsonable(b)}
    return out


# --- the auditor -----------------------------------------------------------------------------


class Auditor:
    """Audits one deployment against the chain, from the store or from a package.

    ``compiled`` lets a caller that already compiled the sources (``compile_contracts``)
    pass them; otherwise the first run compiles them (solc-js: some seconds) and keeps
    them there. ``bytecode=False`` skips step 6 (the report says so). ``jobs``: processes
    that decode a store's envelopes, one per core by default; they start only for a
    store of ``_PARALLEL_FROM`` events or more, and 1 starts none.
    """

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        *,
        source: Store | Mapping[str, Any],
        compiled: Mapping[str, Artifact] | None = None,
        bytecode: bool = True,
        jobs: int | None = None,
    ) -> None:
        deployment.check_chain(chain)
        if jobs is not None and jobs < 1:
            raise InvalidInput(f"jobs must be 1 or more, got {jobs}", code="invalid_jobs")
        if not isinstance(source, Store):
            from ledger.evidence import PACKAGE_FORMAT, PACKAGE_VERSION

            if source.get("format") != PACKAGE_FORMAT or source.get("version") != PACKAGE_VERSION:
                raise InvalidInput(
                    f"not an evidence package: expected format {PACKAGE_FORMAT!r} version "
                    f"{PACKAGE_VERSION}",
                    code="invalid_package",
                )
        self.chain = chain
        self.deployment = deployment
        self.source = source
        self.compiled = compiled
        self.bytecode = bytecode
        self.jobs = jobs or _cores()
        try:
            self.contracts = watched_contracts(deployment)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"the manifest names something that is not an address: {exc}",
                code="invalid_manifest",
            ) from exc
        self.registry = AnchorRegistry(chain, deployment.anchor_registry)
        self.domain = domain_for(chain_id=chain.chain_id, contract=deployment.anchor_registry)
        self._domain_json = self.domain.model_dump(mode="json")
        self._domain: Domain = (self._domain_json, canonical_json(self._domain_json))

    # --- running -------------------------------------------------------------------------

    def run(self, *, progress: Progress | None = None) -> AuditReport:
        """Run every check; raises ChainError / StoreError only if the node or the
        database fails (a discrepancy is a finding, never an exception)."""
        self._progress = progress or (lambda stage, done, total: None)
        self._head = self.chain.head
        self._report = AuditReport(
            source="store" if isinstance(self.source, Store) else "package",
            chain_id=self.chain.chain_id,
            head=self._head,
        )
        self._on_chain: dict[tuple[str, int], OnChainBatch] = {}
        self._stream_names: dict[str, str] = {}  # 0x stream id -> name
        self._submitters_at: dict[int, frozenset[str]] = {}
        self._recovered: dict[tuple[str, str, int, str], str] = {}  # in this domain
        self._unrecovered: dict[tuple[str, str, int, str], str] = {}  # why not
        self._signings: dict[tuple[str, str, int, str], tuple[str, str, int, str]] = {}
        self._cited: dict[bytes, _Event] = {}  # leaves facts cite -> the event hashing to it
        self._signers: set[str] = set()
        self._package_events: list[_Event] = []

        self._progress("reading logs", 0, 1)
        logs = list(
            LogReader(self.chain, self.contracts).read(self.deployment.block_number, self._head)
        )
        self._report.counts.logs = len(logs)
        self._progress("reading logs", 1, 1)
        facts = [g for g in logs if g.contract == "PledgeRegistry" and g.event == "FactReported"]
        self._cited_leaves = {_hex(g.args["leaf"]) for g in facts}

        self._check_anchors(logs)
        state = self._replay(logs)
        if isinstance(self.source, Store):
            self._check_store(self.source)
        else:
            self._check_package(self.source)
        self._check_roles(state)
        self._check_facts(facts)
        self._check_state(state)
        self._check_bytecode()
        return self._report

    def _find(self, code: str, message: str, **details: Any) -> None:
        self._report.findings.append(Finding(code, message, details))

    # --- 1. anchors ------------------------------------------------------------------------

    def _streams(self, logs: Sequence[ChainLog]) -> list[str]:
        names = {g.args["stream"] for g in logs if g.event == "BatchAnchored"}
        if isinstance(self.source, Store):
            with self.source.session() as session:
                names |= set(session.exec(select(BatchRow.stream).distinct()))
        else:
            for entry in self._entries():
                bundle = (entry.get("proof") or {}).get("bundle")
                if isinstance(bundle, dict) and isinstance(bundle.get("batch"), dict):
                    name = bundle["batch"].get("stream")
                    if isinstance(name, str) and 1 <= len(name.encode()) <= 64:
                        names.add(name)
        return sorted(names)

    def _check_anchors(self, logs: Sequence[ChainLog]) -> None:
        anchored = [
            g for g in logs if g.contract == "AnchorRegistry" and g.event == "BatchAnchored"
        ]
        by_stream: dict[str, list[ChainLog]] = defaultdict(list)
        for log in anchored:
            if _hex(log.args["streamId"]) != stream_id(log.args["stream"]):
                self._find(
                    "anchor_storage_mismatch",
                    f"BatchAnchored in block {log.block_number} names stream "
                    f"{log.args['stream']!r}, whose id is not its streamId {log.args['streamId']}",
                    block=log.block_number,
                    tx=log.tx_hash,
                )
                continue
            by_stream[log.args["stream"]].append(log)
        streams = self._streams(logs)
        for done, stream in enumerate(streams, 1):
            self._check_stream_anchors(stream, by_stream.get(stream, []))
            self._progress("anchors", done, len(streams))

    def _check_stream_anchors(self, stream: str, logs: Sequence[ChainLog]) -> None:
        head = self.registry.head_of(stream, block=self._head)
        self._stream_names["0x" + stream_id(stream).hex()] = stream
        if head.next_seq == 0 and not logs:
            return
        counts = self._report.counts
        counts.streams += 1
        logged: dict[int, list[ChainLog]] = defaultdict(list)
        for log in logs:
            logged[log.args["seq"]].append(log)
        for seq in sorted(s for s in logged if s >= head.next_seq):
            self._find(
                "sequence_gap",
                f"stream {stream}: a BatchAnchored log for batch {seq}, but headOf says the "
                f"next batch is {head.next_seq}",
                stream=stream,
                seq=seq,
                next_seq=head.next_seq,
            )
        accumulator, total = _ZERO32, 0
        stored = self.registry.batches_of(
            stream=stream, seqs=range(head.next_seq), block=self._head
        )
        for seq, batch in enumerate(stored):
            if batch is None:
                self._find(
                    "sequence_gap",
                    f"stream {stream}: batch {seq} is missing from contract storage, though "
                    f"headOf says {head.next_seq} batches were anchored",
                    stream=stream,
                    seq=seq,
                )
                continue
            self._on_chain[(stream, seq)] = batch
            counts.batches += 1
            total += batch.leaf_count
            accumulator = _accumulate(accumulator, batch)
            entries = logged.get(seq, [])
            if not entries:
                self._find(
                    "anchor_log_missing",
                    f"batch {seq} of {stream} is in contract storage (anchored in block "
                    f"{batch.anchored_block}) but the node has no BatchAnchored log for it",
                    stream=stream,
                    seq=seq,
                )
            if len(entries) > 1:
                self._find(
                    "sequence_duplicate",
                    f"batch {seq} of {stream} has {len(entries)} BatchAnchored logs "
                    f"(blocks {', '.join(str(g.block_number) for g in entries)})",
                    stream=stream,
                    seq=seq,
                )
            for log in entries:
                self._compare_anchor_log(stream, seq, batch, log, accumulator)
        counts.leaves += head.total_leaves
        if accumulator != head.accumulator:
            self._find(
                "accumulator_mismatch",
                f"stream {stream}: the accumulator recomputed over its {head.next_seq} "
                f"batches is 0x{accumulator.hex()}, headOf holds 0x{head.accumulator.hex()}",
                stream=stream,
                recomputed=accumulator,
                head=head.accumulator,
            )
        if total != head.total_leaves:
            self._find(
                "total_leaves_mismatch",
                f"stream {stream}: its batches hold {total} leaves, headOf says "
                f"{head.total_leaves}",
                stream=stream,
                batches=total,
                head=head.total_leaves,
            )

    def _compare_anchor_log(
        self, stream: str, seq: int, batch: OnChainBatch, log: ChainLog, accumulator: bytes
    ) -> None:
        a = log.args
        logged = {
            "root": _hex(a["root"]),
            "leaf_count": a["leafCount"],
            "first_event_time": a["firstEventTime"],
            "last_event_time": a["lastEventTime"],
            "anchored_block": log.block_number,
        }
        differ = {
            name: {"log": value, "storage": getattr(batch, name)}
            for name, value in logged.items()
            if value != getattr(batch, name)
        }
        if differ:
            self._find(
                "anchor_storage_mismatch",
                f"batch {seq} of {stream}: its BatchAnchored log (block {log.block_number}) "
                f"differs from contract storage in {', '.join(differ)}",
                stream=stream,
                seq=seq,
                fields=differ,
            )
        if _hex(a["accumulator"]) != accumulator:
            self._find(
                "accumulator_mismatch",
                f"batch {seq} of {stream}: its log carries accumulator {a['accumulator']}, "
                f"recomputed from storage 0x{accumulator.hex()}",
                stream=stream,
                seq=seq,
            )

    # --- roles replayed from the logs ------------------------------------------------------

    def _replay(self, logs: Sequence[ChainLog]) -> ChainState:
        """Replays every log; notes the submitters at the end of each anchoring block."""
        blocks = sorted({b.anchored_block for b in self._on_chain.values()})
        state = ChainState()
        pending = iter(blocks)
        target = next(pending, None)
        for log in logs:
            while target is not None and log.block_number > target:
                self._submitters_at[target] = frozenset(state.roles.get(_SUBMITTER, set()))
                target = next(pending, None)
            state.apply(log)
        while target is not None:
            self._submitters_at[target] = frozenset(state.roles.get(_SUBMITTER, set()))
            target = next(pending, None)
        return state

    # --- 2. events from the store ----------------------------------------------------------

    def _check_store(self, store: Store) -> None:
        with store.session() as session:
            streams = sorted(set(session.exec(select(EventRow.stream).distinct())))
            total = int(session.exec(select(func.count()).select_from(EventRow)).one())
            batch_rows = {(b.stream, b.seq): b for b in session.exec(select(BatchRow))}
        self._check_batch_rows(batch_rows)
        with _cycle_collection_paused():
            self._check_store_events(store, streams, total, batch_rows)
        # batches anchored on chain that the store holds no event of
        for (stream, seq), batch in sorted(self._on_chain.items()):
            if stream not in streams:
                self._find(
                    "event_missing",
                    f"batch {seq} of {stream}: the chain anchored {batch.leaf_count} events, "
                    f"the store holds none of the stream",
                    stream=stream,
                    seq=seq,
                    missing=batch.leaf_count,
                )

    def _check_store_events(
        self,
        store: Store,
        streams: Sequence[str],
        total: int,
        batch_rows: Mapping[tuple[str, int], BatchRow],
    ) -> None:
        done = 0
        jobs = self.jobs if total >= _PARALLEL_FROM else 1
        with _DecodePool(jobs, self._domain, store, whole=self._cited_leaves) as pool:
            for stream in streams:
                done = self._check_stream_of_store(store, stream, done, total, pool, batch_rows)
        self._progress("events", total, total)

    def _check_stream_of_store(
        self,
        store: Store,
        stream: str,
        done: int,
        total: int,
        pool: _DecodePool,
        batch_rows: Mapping[tuple[str, int], BatchRow],
    ) -> int:
        """Check one stream's events in the store; returns ``done`` plus their number."""
        events: list[_Event] = []
        found = self._report.findings
        later: list[tuple[int, list[Finding]]] = []  # the decoding's, by event position
        with store.session() as session:
            # streamed in the order of the (stream, batch_seq, position) index, each
            # row's text let go once decoded (a stream's texts at once were 750 MB at
            # 10^6 events, and allocating them most of the fetch); then arrival order
            # here, a merge of runs that are already in order, findings included
            for row, sent in _decoded(session, stream, pool):
                before = len(found)
                event = self._from_row(row, sent)
                events.append(event)
                if len(found) > before:
                    later.append((event.position or 0, found[before:]))
                    del found[before:]
                done += 1
                if done % 500 == 0 or done == total:
                    self._progress("events", done, total)
        events.sort(key=_by_arrival)
        for _, findings in sorted(later, key=lambda pair: pair[0]):
            found.extend(findings)
        self._check_stream_events(stream, events, batch_rows)
        self._check_signatures(events)
        self._remember_cited(events)
        return done

    def _check_batch_rows(self, batch_rows: Mapping[tuple[str, int], BatchRow]) -> None:
        for (stream, seq), row in sorted(batch_rows.items()):
            batch = self._on_chain.get((stream, seq))
            if batch is None:
                if row.state == ANCHORED:
                    self._find(
                        "anchor_missing",
                        f"the store says batch {seq} of {stream} was anchored (tx "
                        f"{row.tx_hash}), but the chain has no such batch",
                        stream=stream,
                        seq=seq,
                    )
                continue
            stored = {
                "root": _stored_hex(row.root),
                "leaf_count": row.leaf_count,
                "first_event_time": row.first_event_time_ms,
                "last_event_time": row.last_event_time_ms,
            }
            differ = {
                name: {"store": value, "chain": getattr(batch, name)}
                for name, value in stored.items()
                if value != getattr(batch, name)
            }
            if differ:
                self._find(
                    "store_batch_mismatch",
                    f"the store's row for batch {seq} of {stream} differs from the chain in "
                    f"{', '.join(differ)}",
                    stream=stream,
                    seq=seq,
                    fields=differ,
                )
        for stream, seq in sorted(set(self._on_chain) - set(batch_rows)):
            self._find(
                "store_batch_mismatch",
                f"the chain anchored batch {seq} of {stream}; the store has no row for it",
                stream=stream,
                seq=seq,
            )

    def _signed_parts(self, event: _Event, raw: dict[str, Any], ref_digest: bytes) -> None:
        """Fill ``event``'s signing, sub_index, ref_digest and domain_ours from its
        valid envelope ``raw``."""
        ref, submitter = raw["submission"], raw["event"]["submitter"]
        key = (submitter, ref["root"], ref["count"], ref["signature"])
        event.signing = self._signings.setdefault(key, key)  # one tuple a submission
        event.sub_index = ref["index"]
        event.ref_digest = ref_digest
        domain = raw["domain"]
        event.domain_ours = domain is self._domain_json or domain == self._domain_json

    def _raw_of(self, event: _Event) -> Any:
        """``event``'s parsed envelope, read again from the store if it was let go."""
        if event.raw is None:
            self._read_again([event])
        return event.raw

    def _read_again(self, events: Sequence[_Event]) -> None:
        """Parse again the stored envelopes of those of ``events`` that let theirs go,
        a query for 500 of them, by position (the row's key: an event id need not be
        unique in a doctored store). Each must hash to the leaf it gave the first time;
        a row changed or gone since means the store changed under the audit, which then
        cannot vouch for anything (StoreError: audit again)."""
        if not isinstance(self.source, Store):
            return  # a package's events keep theirs
        by_position = {e.position: e for e in events if e.raw is None}
        positions = [position for position in by_position if position is not None]
        for start in range(0, len(positions), 500):
            with self.source.session() as session:
                found = _envelopes_at(session, positions[start : start + 500])
            for position, text in found.items():
                event = by_position.pop(position)
                raw, _, leaf, *_ = decode(text, self._domain)
                if leaf != event.leaf:
                    raise StoreError(
                        f"the store changed while it was audited: {event.where} no longer "
                        f"holds the envelope first read; audit again"
                    )
                event.raw = raw
        if by_position:
            gone = next(iter(by_position.values()))
            raise StoreError(
                f"the store changed while it was audited: {gone.where} is gone; audit again"
            )

    def _from_row(self, row: Any, envelope: _Sent, *, quiet: bool = False) -> _Event:
        """``row``: an EventRow, or a result row of ``_EVENT_COLUMNS`` or ``_ROW_COLUMNS``;
        ``envelope``: its stored envelope, or a worker's decoding of it (``Quick``).
        ``quiet``: no findings, no counts, and the envelope is kept (a look at one cited
        place)."""
        if not isinstance(envelope, str):  # never of a cited leaf (_DecodePool)
            return self._from_quick(row, envelope)
        raw, digest, leaf, time_ms, problem, ref_digest = decode(envelope, self._domain)
        if problem is not None and not quiet:
            self._find(
                "envelope_invalid",
                f"event {row.event_id} (stream {row.stream}): its stored envelope is not "
                f"a valid signed envelope: {problem}",
                event_id=row.event_id,
                stream=row.stream,
            )
        event = _row_event(
            row, raw=raw, valid=digest is not None, leaf=leaf, digest=digest, time_ms=time_ms
        )
        if event.valid:
            self._signed_parts(event, raw, ref_digest or b"")
            if not quiet and event.domain_ours and leaf not in self._cited_leaves:
                event.raw = None  # what a million of them hold adds up: see _Event.raw
        if quiet:
            return event
        self._report.counts.events += 1
        if event.valid:
            body = raw["event"]
            self._compare_row(
                row, event, (body["event_id"], body["stream"], body["kind"], body["submitter"])
            )
        return event

    def _from_quick(self, row: Any, quick: Quick) -> _Event:
        """``_from_row`` of a row whose envelope a worker found valid and signed for this
        deployment (``decode_stored``): the same event, from the values it sent."""
        digest, leaf, time_ms, ref_digest, event_id, stream, kind, signing, sub_index = quick
        event = _row_event(
            row,
            raw=None,  # let go, as _from_row lets it go: _raw_of reads it again
            valid=True,
            leaf=leaf,
            digest=digest,
            time_ms=time_ms,
            signing=self._signings.setdefault(signing, signing),
            sub_index=sub_index,
            ref_digest=ref_digest,
        )
        self._report.counts.events += 1
        self._compare_row(row, event, (event_id, stream, kind, signing[0]))
        return event

    def _compare_row(self, row: Any, event: _Event, said: tuple[str, str, str, str]) -> None:
        """A finding if the row's columns disagree with what its valid envelope ``said``:
        (event id, stream, kind, submitter), and the event time."""
        if (  # the common case, without building the comparison
            row.event_id == said[0]
            and row.stream == said[1]
            and row.kind == said[2]
            and row.submitter == said[3]
            and row.event_time_ms == event.time_ms
        ):
            return
        columns = {
            "event_id": (row.event_id, said[0]),
            "stream": (row.stream, said[1]),
            "kind": (row.kind, said[2]),
            "submitter": (row.submitter, said[3]),
            "event_time_ms": (row.event_time_ms, event.time_ms),
        }
        differ = {k: {"row": a, "envelope": b} for k, (a, b) in columns.items() if a != b}
        self._find(
            "event_row_mismatch",
            f"{event.where}: the row's {', '.join(differ)} disagree with its envelope",
            event_id=row.event_id,
            fields=differ,
        )

    def _check_stream_events(
        self,
        stream: str,
        events: Sequence[_Event],
        batch_rows: Mapping[tuple[str, int], BatchRow],
    ) -> None:
        stored: dict[int, list[_Event]] = defaultdict(list)
        for event in events:
            if event.seq is None:
                self._report.counts.events_pending += 1
            else:
                stored[event.seq].append(event)
        seqs = sorted(seq for s, seq in self._on_chain if s == stream)
        resolved: set[int] = set()
        for seq in seqs:
            rows = sorted(stored.get(seq, []), key=_by_index)
            if self._resolve_batch(stream, seq, rows):
                resolved.add(seq)
        if len(resolved) < len(seqs):
            resolved |= self._resolve_by_arrival(stream, seqs, resolved, stored)
        for seq in seqs:
            rows = stored.get(seq, [])
            if seq in resolved:
                extra = [e for e in rows if e.anchored is None]
                for event in extra:
                    self._find(
                        "event_unanchored_extra",
                        f"{event.where} is not among the {self._on_chain[(stream, seq)].leaf_count}"
                        f" events anchored in that batch: its root does not include it",
                        event_id=event.event_id,
                        stream=stream,
                        seq=seq,
                        leaf_index=event.index,
                    )
            else:
                self._unresolved(stream, seq, rows)
        for seq, rows in sorted(stored.items()):
            if (stream, seq) in self._on_chain:
                continue
            row = batch_rows.get((stream, seq))
            if row is None:
                self._find(
                    "store_batch_mismatch",
                    f"{len(rows)} event(s) of {stream} claim batch {seq}, which neither the "
                    f"store's batch rows nor the chain hold: {rows[0].event_id}"
                    + (f" and {len(rows) - 1} more" if len(rows) > 1 else ""),
                    stream=stream,
                    seq=seq,
                    events=[e.event_id for e in rows[:100]],
                )
            elif row.state != ANCHORED:
                self._report.counts.events_pending += len(rows)  # sealed, not anchored yet
            # a row marked anchored without an anchor is reported by _check_batch_rows

    def _resolve_batch(self, stream: str, seq: int, rows: Sequence[_Event]) -> bool:
        """Find the reading of the store's rows that gives the anchored root, if any: in
        leaf-index or in arrival order, from the envelopes or from the stored leaves (an
        envelope edited after anchoring), without the rows a batch cannot hold, or
        without any one row (an inserted event)."""
        batch = self._on_chain[(stream, seq)]
        n = batch.leaf_count
        orders: list[list[_Event]] = []
        if [e.index for e in rows] == list(range(n)):
            orders.append(list(rows))
        by_arrival = sorted(rows, key=_by_arrival)
        if len(rows) == n and by_arrival != list(rows):
            orders.append(by_arrival)
        in_range = [e for e in rows if e.index is not None and 0 <= e.index < n]
        if len(rows) > n and [e.index for e in in_range] == list(range(n)):
            orders.append(in_range)
        for order in orders:
            for leaves in ("envelope", "stored"):
                if _root([_leaf(e, leaves) for e in order]) == batch.root:
                    self._settle(stream, seq, order, leaves=leaves)
                    return True
        if len(rows) == n + 1 and n <= _SEARCH_LIMIT:
            for order in (list(rows), by_arrival):
                for skip in range(len(order)):
                    kept = order[:skip] + order[skip + 1 :]
                    if _root([e.leaf for e in kept]) == batch.root:
                        self._settle(stream, seq, kept, leaves="envelope")
                        return True
        return False

    def _resolve_by_arrival(
        self,
        stream: str,
        seqs: Sequence[int],
        resolved: set[int],
        stored: Mapping[int, list[_Event]],
    ) -> set[int]:
        """The store seals a stream's events into batches in arrival order: cut the stream's
        batched events, in that order, by the anchored leaf counts, and try each cut."""
        ordered = sorted((e for rows in stored.values() for e in rows), key=_by_arrival)
        found: set[int] = set()
        offset = 0
        for seq in seqs:
            n = self._on_chain[(stream, seq)].leaf_count
            cut = ordered[offset : offset + n]
            offset += n
            if seq in resolved or len(cut) != n:
                continue
            if _root([e.leaf for e in cut]) == self._on_chain[(stream, seq)].root:
                self._settle(stream, seq, cut, leaves="envelope")
                found.add(seq)
        return found

    def _settle(self, stream: str, seq: int, layout: Sequence[_Event], *, leaves: str) -> None:
        """``layout`` is batch ``seq``'s events in anchored order, whose ``leaves``
        ("envelope": recomputed, "stored": the leaf column, "bundle": each bundle's path
        checked) gave the anchored root: name every way the evidence differs from it."""
        batch = self._on_chain[(stream, seq)]
        self._report.counts.batches_recomputed += 1
        moved: list[tuple[_Event, int]] = []  # (event, the index it was anchored at)
        for index, event in enumerate(layout):
            event.anchored = (stream, seq, index)
            if event.leaf != event.stored_leaf and leaves != "bundle":
                anchored_leaf = event.stored_leaf if leaves == "stored" else event.leaf
                if leaves == "stored":
                    self._find(
                        "payload_tampered",
                        f"{event.where}: its envelope no longer hashes to the leaf anchored "
                        f"there (0x{anchored_leaf.hex() if anchored_leaf else '?'}): it was "
                        f"changed after anchoring",
                        event_id=event.event_id,
                        stream=stream,
                        seq=seq,
                        leaf_index=index,
                        anchored_leaf=anchored_leaf,
                        leaf=event.leaf,
                    )
                else:
                    self._find(
                        "leaf_mismatch",
                        f"{event.where}: the stored leaf column is not the hash of its "
                        f"envelope (the envelope is the one anchored)",
                        event_id=event.event_id,
                        stored_leaf=event.stored_leaf,
                        leaf=event.leaf,
                    )
            if event.seq != seq:
                self._find(
                    "event_in_wrong_batch",
                    f"{event.where} was anchored in batch {seq} of {stream} at leaf {index}",
                    event_id=event.event_id,
                    stored={"seq": event.seq, "leaf_index": event.index},
                    anchored={"stream": stream, "seq": seq, "leaf_index": index},
                )
            elif event.index != index:
                moved.append((event, index))
        if moved:
            self._find(
                "leaf_order",
                f"batch {seq} of {stream}: {len(moved)} event(s) sit at other leaf indices "
                f"than those anchored: "
                + ", ".join(
                    f"{e.event_id} (stored at {e.index}, anchored at {i})"
                    for e, i in moved[:_LISTED]
                ),
                stream=stream,
                seq=seq,
                events=[
                    {"event_id": e.event_id, "stored": e.index, "anchored": i}
                    for e, i in moved[:100]
                ],
            )
        times = [e.time_ms for e in layout if e.time_ms is not None]
        if len(times) == len(layout):
            span = (min(times), max(times))
            if span != (batch.first_event_time, batch.last_event_time):
                self._find(
                    "time_range_mismatch",
                    f"batch {seq} of {stream}: its events span {span[0]}..{span[1]} ms, the "
                    f"chain anchored {batch.first_event_time}..{batch.last_event_time}",
                    stream=stream,
                    seq=seq,
                )

    def _unresolved(self, stream: str, seq: int, rows: Sequence[_Event]) -> None:
        batch = self._on_chain[(stream, seq)]
        n = batch.leaf_count
        for event in rows:
            if event.leaf is not None and event.leaf != event.stored_leaf:
                self._find(
                    "leaf_mismatch",
                    f"{event.where}: the stored leaf column is not the hash of its envelope",
                    event_id=event.event_id,
                    stored_leaf=event.stored_leaf,
                    leaf=event.leaf,
                )
        held = {e.index for e in rows if e.anchored is None or e.anchored[:2] == (stream, seq)}
        if len(rows) < n:
            holes = sorted(set(range(n)) - held)
            self._find(
                "event_missing",
                f"batch {seq} of {stream}: the store holds {len(rows)} of the {n} events "
                f"anchored; missing leaf indices {holes[:_LISTED]}"
                + (f" and {len(holes) - _LISTED} more" if len(holes) > _LISTED else ""),
                stream=stream,
                seq=seq,
                held=len(rows),
                anchored=n,
                missing_indices=holes[:100],
            )
        elif len(rows) > n:
            self._find(
                "leaf_count_mismatch",
                f"batch {seq} of {stream}: the store holds {len(rows)} events for it, the "
                f"chain anchored {n}, and no {n} of them give its root",
                stream=stream,
                seq=seq,
                held=len(rows),
                anchored=n,
            )
        else:
            leaves = [e.leaf for e in sorted(rows, key=_by_index)]
            computed = _root(leaves)
            self._find(
                "root_mismatch",
                f"batch {seq} of {stream}: its {len(rows)} stored events give root "
                f"{'0x' + computed.hex() if computed else '(none)'}, the chain holds "
                f"0x{batch.root.hex()}",
                stream=stream,
                seq=seq,
                computed=computed,
                anchored=batch.root,
            )

    # --- 2. events from a package ----------------------------------------------------------

    def _entries(self) -> list[dict[str, Any]]:
        assert not isinstance(self.source, Store)
        entries = self.source.get("entries")
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def _check_package(self, package: Mapping[str, Any]) -> None:
        info = package.get("chain")
        info = info if isinstance(info, dict) else {}
        if info.get("chain_id") != self.chain.chain_id or info.get("contracts") != self.contracts:
            self._find(
                "package_deployment_mismatch",
                f"the package is for chain {info.get('chain_id')} and contracts "
                f"{info.get('contracts')}; the manifest names chain {self.chain.chain_id} and "
                f"{self.contracts}",
                package=info,
            )
        events: list[_Event] = []
        seen: set[tuple[str, bytes | None, str]] = set()
        entries = self._entries()
        for done, entry in enumerate(entries, 1):
            self._progress("events", done, len(entries))
            proof = entry.get("proof")
            if not isinstance(proof, dict) or proof.get("type") != "merkle":
                continue
            if proof.get("status") != "anchored":
                self._find(
                    "event_unanchored",
                    f"package entry {entry.get('id')} is not anchored yet: it cannot be proven",
                    entry=entry.get("id"),
                )
                continue
            event = self._from_bundle(entry, proof.get("bundle"))
            if event is None:
                continue
            key = (event.event_id, event.leaf, repr(event.raw))
            if key not in seen:
                seen.add(key)
                events.append(event)
        self._report.counts.events = len(events)
        self._package_events = events
        for event in events:
            self._check_bundle_path(event)
        self._check_whole_batches(events)
        self._check_signatures(events)
        self._remember_cited(events)
        self._report.skipped.append(
            "from a package: the store's rows, its unanchored events and its batch rows are "
            "not checked"
        )

    def _from_bundle(self, entry: Mapping[str, Any], raw: Any) -> _Event | None:
        try:
            bundle = ProofBundle.model_validate(raw)
        except ValidationError as exc:
            self._find(
                "package_invalid",
                f"package entry {entry.get('id')}: its bundle is malformed: "
                f"{str(exc).splitlines()[0]}",
                entry=entry.get("id"),
            )
            return None
        ref = bundle.batch
        if ref.stream_id != "0x" + stream_id(ref.stream).hex():
            self._find(
                "package_invalid",
                f"package entry {entry.get('id')}: stream_id {ref.stream_id} is not the id of "
                f"{ref.stream!r}",
                entry=entry.get("id"),
            )
            return None
        anchor = bundle.anchor
        if (anchor.chain_id, anchor.contract) != (self.chain.chain_id, self.registry.address):
            self._find(
                "package_deployment_mismatch",
                f"package entry {entry.get('id')}: anchored on chain {anchor.chain_id} in "
                f"{anchor.contract}, not in this deployment's registry {self.registry.address}",
                entry=entry.get("id"),
            )
        envelope_raw = bundle.envelope.model_dump(mode="json")  # as ledger.verify hashes it
        event = _Event(
            event_id=bundle.envelope.event.event_id,
            stream=ref.stream,
            seq=ref.seq,
            index=ref.leaf_index,
            position=None,
            stored_leaf=_hex(bundle.leaf),
            raw=envelope_raw,
            valid=True,
            leaf=leaf_hash(envelope_raw),
            digest=event_digest(envelope_raw["event"]),
            time_ms=bundle.envelope.event.event_time_ms,
            proof=list(ref.proof),
        )
        # valid: hex text and safe integers only, which orjson writes as JCS
        ref_digest = hashlib.sha256(simple_jcs(envelope_raw["submission"])).digest()
        self._signed_parts(event, envelope_raw, ref_digest)
        return event

    def _check_bundle_path(self, event: _Event) -> None:
        assert event.seq is not None and event.index is not None and event.proof is not None
        batch = self._on_chain.get((event.stream, event.seq))
        if batch is None:
            self._find(
                "anchor_missing",
                f"{event.where}: its bundle cites batch {event.seq} of {event.stream}, which "
                f"the chain has not anchored",
                event_id=event.event_id,
            )
            return
        try:
            reached = root_from_proof(
                leaf=event.leaf or b"",
                index=event.index,
                leaf_count=batch.leaf_count,
                proof=event.proof,
            )
        except InvalidInput as exc:
            self._find(
                "proof_invalid",
                f"{event.where}: {exc.message} (the chain anchored {batch.leaf_count} leaves)",
                event_id=event.event_id,
            )
            return
        if reached == batch.root:
            event.anchored = (event.stream, event.seq, event.index)
            if event.stored_leaf != event.leaf:
                self._find(
                    "leaf_mismatch",
                    f"{event.where}: the bundle's leaf is not the hash of its envelope (the "
                    f"envelope is the one anchored)",
                    event_id=event.event_id,
                )
            return
        if event.stored_leaf is not None and event.stored_leaf != event.leaf:
            anchored_leaf = root_from_proof(
                leaf=event.stored_leaf,
                index=event.index,
                leaf_count=batch.leaf_count,
                proof=event.proof,
            )
            if anchored_leaf == batch.root:
                self._find(
                    "payload_tampered",
                    f"{event.where}: its envelope no longer hashes to the leaf anchored there "
                    f"(0x{event.stored_leaf.hex()}): it was changed after anchoring",
                    event_id=event.event_id,
                    anchored_leaf=event.stored_leaf,
                    leaf=event.leaf,
                )
                return
        self._find(
            "root_mismatch",
            f"{event.where}: its Merkle path leads to 0x{reached.hex()}, the chain holds "
            f"0x{batch.root.hex()}",
            event_id=event.event_id,
            computed=reached,
            anchored=batch.root,
        )

    def _check_whole_batches(self, events: Sequence[_Event]) -> None:
        proven: dict[tuple[str, int], dict[int, _Event]] = defaultdict(dict)
        for event in events:
            if event.anchored is not None:
                stream, seq, index = event.anchored
                proven[(stream, seq)][index] = event
        whole = 0
        for key, by_index in proven.items():
            batch = self._on_chain[key]
            if len(by_index) != batch.leaf_count:
                continue
            whole += 1
            layout = [by_index[i] for i in range(batch.leaf_count)]
            if _root([e.leaf for e in layout]) != batch.root:  # cannot differ if every path held
                self._find(
                    "root_mismatch",
                    f"batch {key[1]} of {key[0]}: the package's events give another root",
                    stream=key[0],
                    seq=key[1],
                )
            else:
                self._settle(key[0], key[1], layout, leaves="bundle")
        partial = len(self._on_chain) - whole
        if partial:
            self._report.skipped.append(
                f"from a package: {partial} anchored batch(es) are not wholly in the package; "
                f"their roots were not recomputed (each packaged event's path was checked)"
            )

    # --- 3. signatures and roles -------------------------------------------------------------

    def _check_signatures(self, events: Sequence[_Event]) -> None:
        included = self._included(events)
        read_again = self._to_read_again(events, included)
        self._read_again(read_again)
        try:
            self._check_signers(events, included)
        finally:
            for event in read_again:  # held again only for these checks
                if event.leaf not in self._cited_leaves:
                    event.raw = None

    def _check_signers(self, events: Sequence[_Event], included: set[int]) -> None:
        for event in events:
            if not event.valid:
                continue
            if not event.domain_ours:  # both well formed: field for field
                domain = self._raw_of(event)["domain"]
                self._find(
                    "signature_wrong_domain",
                    f"{event.where}: signed for {domain['name']!r} v"
                    f"{domain['version']} on chain {domain['chainId']} at "
                    f"{domain['verifyingContract']}, not this deployment's registry "
                    f"{self.domain.verifyingContract} on chain {self.domain.chainId}",
                    event_id=event.event_id,
                )
                continue
            signer = self._signer(event, id(event) in included)
            if signer is None:
                continue
            self._report.counts.signatures += 1
            self._signers.add(signer)
            block = self._anchored_block(event)
            if block is not None and signer not in self._submitters_at.get(block, frozenset()):
                self._find(
                    "signer_not_registered",
                    f"{event.where}: signed by {signer}, who did not hold SUBMITTER_ROLE on "
                    f"the anchor registry in block {block}, when the batch was anchored",
                    event_id=event.event_id,
                    signer=signer,
                    block=block,
                )

    def _to_read_again(self, events: Sequence[_Event], included: set[int]) -> list[_Event]:
        """The events whose envelopes the signature checks will read whole: those not
        shown included (their own path is checked), and the first of each submission
        not recovered yet (its signature is recovered from the envelope)."""
        wanted, first = [], set(self._recovered) | set(self._unrecovered)
        for event in events:
            if event.valid and event.domain_ours and event.raw is None:
                if id(event) not in included or event.signing not in first:
                    wanted.append(event)
                first.add(event.signing)  # type: ignore[arg-type]
        return wanted

    def _included(self, events: Sequence[_Event]) -> set[int]:
        """The ids of the well-formed ``events`` whose inclusion in their signed submission
        is shown by rebuilding the submission's tree: where ``events`` hold all of a
        submission's events, each once at its index, and their digests give its root,
        every event whose proof is the tree's path for its index is included (what
        verify_inclusion checks of it, with one tree for the submission instead of one
        path an event). The rest are checked one by one by ``_signer``."""
        submissions: dict[tuple[str, str, int, str], list[_Event]] = defaultdict(list)
        for event in events:
            if event.signing is not None:
                submissions[event.signing].append(event)
        included: set[int] = set()
        for (_, root, count, signature), members in submissions.items():
            if len(members) != count:
                continue
            placed: list[_Event | None] = [None] * count
            for event in members:
                index = event.sub_index
                if index >= count or placed[index] is not None:
                    break
                placed[index] = event
            else:
                digests = [e.digest for e in placed if e is not None and e.digest]
                if len(digests) != count:
                    continue
                tree = build_tree(digests)
                if tree.root != _hex(root):
                    continue
                # the reference each event would hold with the tree's path for its index;
                # the same canonical JSON means the same proof: side, sibling and length
                refs = submission_refs_jcs(root, signature, tree.proof_jsons())
                sha256 = hashlib.sha256
                for event in members:
                    if sha256(refs[event.sub_index]).digest() == event.ref_digest:
                        included.add(id(event))
        return included

    def _signer(self, event: _Event, included: bool) -> str | None:
        assert event.signing is not None  # a valid event's
        submitter, root, count, _ = key = event.signing
        try:
            if not included:
                verify_inclusion(
                    leaf=event.digest or b"",
                    index=event.sub_index,
                    leaf_count=count,
                    proof=self._raw_of(event)["submission"]["proof"],
                    root=_hex(root),
                )
            signer = self._recovered.get(key)
            if signer is None:
                if key in self._unrecovered:  # the submission's signature, not this event
                    raise InvalidInput(self._unrecovered[key])
                envelope = SignedEnvelope.model_validate(self._raw_of(event))
                try:
                    signer = self._recovered[key] = recover_envelope_signer(envelope)
                except InvalidInput as exc:
                    self._unrecovered[key] = exc.message
                    raise
        except InvalidInput as exc:
            self._find(
                "signature_invalid",
                f"{event.where}: the event is not the one its submitter signed: {exc.message}",
                event_id=event.event_id,
            )
            return None
        if signer != submitter:
            self._find(
                "signature_invalid",
                f"{event.where}: the signature recovers {signer}, not the submitter {submitter}",
                event_id=event.event_id,
                signer=signer,
                submitter=submitter,
            )
            return None
        return signer

    def _anchored_block(self, event: _Event) -> int | None:
        if event.anchored is not None:
            batch = self._on_chain.get((event.anchored[0], event.anchored[1]))
        elif event.seq is not None:
            batch = self._on_chain.get((event.stream, event.seq))
        else:
            return None
        return None if batch is None else batch.anchored_block

    def _check_roles(self, state: ChainState) -> None:
        replayed = frozenset(state.roles.get(_SUBMITTER, set()))
        for account in sorted(replayed | self._signers):
            held = self.registry.has_role(SUBMITTER_ROLE, account, block=self._head)
            if held != (account in replayed):
                logs_say = "holds" if account in replayed else "does not hold"
                self._find(
                    "role_state_mismatch",
                    f"{account}: the role logs say it {logs_say} SUBMITTER_ROLE on the anchor "
                    f"registry, hasRole says {held}",
                    account=account,
                )

    # --- 4. facts --------------------------------------------------------------------------

    def _remember_cited(self, events: Iterable[_Event]) -> None:
        for event in events:
            if event.leaf in self._cited_leaves:
                held = self._cited.get(event.leaf)
                if held is None or (held.anchored is None and event.anchored is not None):
                    self._cited[event.leaf] = event

    def _in_scope(self, log: ChainLog) -> bool:
        if isinstance(self.source, Store):
            return True
        subject = self.source.get("subject") or {}
        return log.args["pledgeId"] in (subject.get("pledges") or []) or log.args["receiptId"] in (
            subject.get("receipts") or []
        )

    def _check_facts(self, facts: Sequence[ChainLog]) -> None:
        outside = 0
        for done, log in enumerate(facts, 1):
            self._progress("facts", done, len(facts))
            if not self._in_scope(log):
                outside += 1
                continue
            self._report.counts.facts += 1
            a = log.args
            stream = self._stream_names.get(a["streamId"], a["streamId"])
            what = (
                f"fact {FactKind(a['kind']).name.lower()} about receipt {a['receiptId']} "
                f"(pledge {a['pledgeId']}, block {log.block_number}, tx {log.tx_hash})"
            )
            event = self._cited.get(_hex(a["leaf"]))
            if event is None:
                self._find(
                    "fact_evidence_missing",
                    f"{what} cites leaf {a['leaf']} of batch {a['seq']} of {stream}; no event "
                    f"the auditor holds hashes to it" + self._at_cited_place(log, stream),
                    block=log.block_number,
                    tx=log.tx_hash,
                    pledge_id=a["pledgeId"],
                    stream=stream,
                    seq=a["seq"],
                    leaf=a["leaf"],
                )
                continue
            differ = _fact_differences(a, self._raw_of(event))
            if differ:
                self._find(
                    "fact_content_mismatch",
                    f"{what} cites {event.where}, which does not say the same: "
                    + "; ".join(
                        f"{k}: fact {v['fact']}, event {v['event']}" for k, v in differ.items()
                    ),
                    block=log.block_number,
                    tx=log.tx_hash,
                    pledge_id=a["pledgeId"],
                    event_id=event.event_id,
                    fields=differ,
                )
        if outside:
            self._report.skipped.append(
                f"{outside} fact(s) about other pledges and receipts than the package's: "
                f"their evidence is not in the package"
            )

    def _at_cited_place(self, log: ChainLog, stream: str) -> str:
        """What the evidence now holds at the place the fact's transaction cited."""
        index = self._cited_index(log)
        if index is None:
            return ""
        seq, held = log.args["seq"], None
        if isinstance(self.source, Store):
            with self.source.session() as session:
                row = session.exec(
                    select(EventRow).where(
                        EventRow.stream == stream,
                        EventRow.batch_seq == seq,
                        EventRow.leaf_index == index,
                    )
                ).first()
            if row is not None:
                held = self._from_row(row, row.envelope, quiet=True)
        else:
            places = {(e.stream, e.seq, e.index): e for e in self._package_events}
            held = places.get((stream, seq, index))
        if held is None:
            return (
                f"; the evidence holds no event at leaf {index} (as the fact's transaction cited)"
            )
        differ = _fact_differences(log.args, held.raw)
        said = "; ".join(f"{k}: fact {v['fact']}, event {v['event']}" for k, v in differ.items())
        return (
            f"; at leaf {index}, where the fact's transaction cited it, the evidence holds "
            f"{held.event_id}, which hashes to "
            f"{'0x' + held.leaf.hex() if held.leaf else 'nothing'}"
            + (f" and says otherwise ({said})" if said else "")
        )

    def _cited_index(self, log: ChainLog) -> int | None:
        """The leaf index the fact's transaction passed (not in the log: in its input)."""
        contract = self.chain.w3.eth.contract(abi=load_artifact("PledgeRegistry").abi)
        try:
            tx = self.chain.call(
                "reading a transaction",
                lambda: self.chain.w3.eth.get_transaction(HexBytes(log.tx_hash)),
            )
            function, args = contract.decode_function_input(tx["input"])
        except (ChainError, ValueError):
            return None
        if function.fn_name != "reportFact":
            return None
        evidence = args["evidence"]
        values = evidence.values() if isinstance(evidence, Mapping) else evidence
        return int(list(values)[3])

    # --- 5. pledge and receipt state -------------------------------------------------------

    def _view(self, name: str, function: str, *args: Any) -> Any:
        contract = self.chain.w3.eth.contract(
            address=to_checksum_address(self.contracts[name]), abi=load_artifact(name).abi
        )
        call = getattr(contract.functions, function)(*args)
        return self.chain.call(f"{name}.{function}", lambda: call.call(block_identifier=self._head))

    def _check_state(self, state: ChainState) -> None:
        for name, code, check in (
            ("PledgeRegistry", "pledge_state_mismatch", self._check_pledges),
            ("ReceiptRegistry", "receipt_state_mismatch", self._check_receipts),
        ):
            if name not in self.contracts:
                continue
            try:
                check(state)
            except ChainError as exc:
                if not isinstance(exc.__cause__, (*_NOT_ANSWERING, *tester_failures())):
                    raise  # the node, not the contract
                # not the contract the manifest says it is (step 6 says how it differs)
                self._find(
                    code,
                    f"{name} at {self.contracts[name]} does not answer as one: "
                    f"{str(exc.__cause__) or type(exc.__cause__).__name__}",
                    contract=name,
                )

    def _check_pledges(self, state: ChainState) -> None:
        last = int(self._view("PledgeRegistry", "lastPledgeId"))
        replayed = state.pledges
        ids = range(1, max([last, *replayed]) + 1)
        for pledge_id in ids:
            self._progress("pledges", pledge_id, len(ids))
            on_chain = Pledge.decode(self._view("PledgeRegistry", "pledgeOf", pledge_id))
            self._report.counts.pledges += 1
            mine = replayed.get(pledge_id)
            if mine is None:
                self._find(
                    "pledge_state_mismatch",
                    f"pledge {pledge_id} is in contract storage but no PledgeOpened log opens it",
                    pledge_id=pledge_id,
                )
            elif pledge_id > last:
                self._find(
                    "pledge_state_mismatch",
                    f"pledge {pledge_id} was opened in the logs; lastPledgeId is {last}",
                    pledge_id=pledge_id,
                )
            elif differ := _differences(on_chain, mine):
                self._find(
                    "pledge_state_mismatch",
                    f"pledge {pledge_id}: replayed from the logs it differs from pledgeOf in "
                    f"{', '.join(differ)}",
                    pledge_id=pledge_id,
                    fields=differ,
                )

    def _check_receipts(self, state: ChainState) -> None:
        last = int(self._view("ReceiptRegistry", "lastReceiptId"))
        ids = range(1, max([last, *state.receipts]) + 1)
        for receipt_id in ids:
            self._progress("receipts", receipt_id, len(ids))
            view = state.receipts.get(receipt_id)
            self._report.counts.receipts += 1
            if view is None or receipt_id > last:
                self._find(
                    "receipt_state_mismatch",
                    f"receipt {receipt_id}: "
                    + (
                        "in contract storage but no ReceiptIssued log issues it"
                        if view is None
                        else f"issued in the logs; lastReceiptId is {last}"
                    ),
                    receipt_id=receipt_id,
                )
                continue
            on_chain = Receipt.decode(self._view("ReceiptRegistry", "receiptOf", receipt_id))
            if differ := _differences(on_chain, view.contract_view()):
                self._find(
                    "receipt_state_mismatch",
                    f"receipt {receipt_id}: replayed from the logs it differs from receiptOf in "
                    f"{', '.join(differ)}",
                    receipt_id=receipt_id,
                    fields=differ,
                )

    # --- 6. bytecode ---------------------------------------------------------------------

    def _check_bytecode(self) -> None:
        addresses = list(self.contracts.values())
        for address in sorted({a for a in addresses if addresses.count(a) > 1}):
            named = [n for n, a in self.contracts.items() if a == address]
            self._find(
                "manifest_invalid",
                f"the manifest names {address} for {' and '.join(named)}",
                address=address,
                contracts=named,
            )
        if not self.bytecode:
            self._report.skipped.append("bytecode: not compared (asked not to)")
            return
        self._progress("compiling the sources", 0, 1)
        try:
            compiled = self.compiled = self.compiled or compile_contracts()
        except ArtifactError as exc:
            self._find(
                "bytecode_unchecked",
                f"the contracts' sources could not be compiled, so no deployed code was "
                f"compared: {exc.message}",
            )
            return
        self._progress("compiling the sources", 1, 1)
        for name, address in self.contracts.items():
            self._check_code(name, address, compiled[name])

    def _check_code(self, name: str, address: str, artifact: Artifact) -> None:
        code = self.chain.call(
            "reading contract code",
            lambda: bytes(self.chain.w3.eth.get_code(to_checksum_address(address), self._head)),
        )
        self._report.counts.contracts += 1
        if not code:
            self._find(
                "contract_missing",
                f"{name}: the manifest names {address}, which has no code at block {self._head}",
                contract=name,
                address=address,
            )
            return
        expected = artifact.deployed_bytecode
        masked = bytearray(code)
        values: dict[str, set[bytes]] = {}
        if len(code) == len(expected):
            for immutable, starts in artifact.immutables.items():
                values[immutable] = {code[s : s + 32] for s in starts}
                for start in starts:
                    masked[start : start + 32] = expected[start : start + 32]
        if bytes(masked) != expected:
            first = next(
                (i for i, (a, b) in enumerate(zip(masked, expected, strict=False)) if a != b),
                min(len(masked), len(expected)),
            )
            self._find(
                "bytecode_mismatch",
                f"{name} at {address}: its runtime code ({len(code)} bytes) is not the code "
                f"compiled from the sources ({len(expected)} bytes); first difference at byte "
                f"{first}",
                contract=name,
                address=address,
                deployed_size=len(code),
                compiled_size=len(expected),
                first_difference=first,
                deployed_sha256=hashlib.sha256(code).hexdigest(),
                compiled_sha256=hashlib.sha256(expected).hexdigest(),
            )
            return
        wanted = self._expected_immutables(name, address)
        for immutable, held in sorted(values.items()):
            if len(held) != 1:
                self._find(
                    "immutable_mismatch",
                    f"{name} at {address}: the references to {immutable} hold different values",
                    contract=name,
                    immutable=immutable,
                    values=sorted(held),
                )
                continue
            value = next(iter(held))
            if immutable not in wanted:
                self._report.skipped.append(f"{name}: no expected value for {immutable}")
            elif value != wanted[immutable]:
                self._find(
                    "immutable_mismatch",
                    f"{name} at {address}: {immutable} holds 0x{value.hex()}, this deployment "
                    f"implies 0x{wanted[immutable].hex()}",
                    contract=name,
                    immutable=immutable,
                    held=value,
                    expected=wanted[immutable],
                )

    def _expected_immutables(self, name: str, address: str) -> dict[str, bytes]:
        if name != "PledgeRegistry":
            return {}
        manifest = self.deployment
        chain_id = self.chain.chain_id
        hashed_name = keccak(text=CONSENT_DOMAIN_NAME)
        hashed_version = keccak(text=CONSENT_DOMAIN_VERSION)
        separator = keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [_EIP712_TYPE_HASH, hashed_name, hashed_version, chain_id, address],
            )
        )
        return {
            "PledgeRegistry.anchors": _word(manifest.anchor_registry),
            "PledgeRegistry.receipts": _word(manifest.receipt_registry or 0),
            "PledgeRegistry.prices": _word(manifest.price_feed or 0),
            "PledgeRegistry._priceScale": _word(PRICE_SCALE),
            "EIP712._cachedChainId": _word(chain_id),
            "EIP712._cachedThis": _word(address),
            "EIP712._hashedName": hashed_name,
            "EIP712._hashedVersion": hashed_version,
            "EIP712._cachedDomainSeparator": separator,
            "EIP712._name": _short_string(CONSENT_DOMAIN_NAME),
            "EIP712._version": _short_string(CONSENT_DOMAIN_VERSION),
        }


def _fact_differences(fact: Mapping[str, Any], envelope: Any) -> dict[str, dict[str, Any]]:
    """Field -> {"fact": …, "event": …} where the cited event does not say what the fact
    says, mirroring how the oracle makes facts (oracles.pipeline): a Quantity fact comes
    from a count event (its head_count or quantity), an UnauthorizedMovement, TagRemoval
    or CovenantBreach fact from an ``oracle.alarm`` event naming that fact; observedAt is
    the event's time in whole seconds."""
    try:
        event = envelope["event"]
        kind, payload = event["kind"], event["payload"]
        seconds = event_time_ms(event["event_time"]) // 1000
    except (KeyError, TypeError, ValueError):
        return {"event": {"fact": "an event", "event": "unreadable"}}
    differ: dict[str, dict[str, Any]] = {}
    fact_kind = FactKind(fact["kind"])
    if fact_kind == FactKind.QUANTITY:
        name = _COUNT_FIELDS.get(kind)
        if name is None:
            differ["kind"] = {"fact": "a count (" + " or ".join(_COUNT_FIELDS) + ")", "event": kind}
        elif not isinstance(payload, dict) or payload.get(name) != fact["quantity"]:
            said = payload.get(name) if isinstance(payload, dict) else None
            differ["quantity"] = {"fact": fact["quantity"], "event": said}
    else:
        wanted = _ALARM_FACTS[fact_kind]
        said = payload.get("fact") if isinstance(payload, dict) else None
        if kind != "oracle.alarm" or said != wanted:
            differ["kind"] = {"fact": f"oracle.alarm ({wanted})", "event": f"{kind} ({said})"}
        if fact["quantity"] != 0:
            differ["quantity"] = {"fact": fact["quantity"], "event": 0}
    if fact["observedAt"] != seconds:
        differ["observed_at"] = {"fact": fact["observedAt"], "event": seconds}
    return differ
