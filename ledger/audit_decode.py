"""How the audit reads a stored envelope: parsed, its event digest and Merkle leaf
recomputed, its event time, and whether it is a valid ``SignedEnvelope``. Pure.

``decode`` is the whole answer for one envelope. The common case (an envelope that is
plainly well formed, read by orjson and written back in canonical JSON by orjson) costs
a few microseconds; anything else goes through the models, which also say why it is
not valid.

``decode_stored`` is what an audit's worker processes run (``ledger.audit``, ``jobs``):
for a chunk of stored events, their envelopes read from the store and, of each one that
is certainly valid and signed for this deployment, the few values the auditor keeps;
the text of any other, for the auditor to decode whole. This module imports no chain
code, so that a worker holds little.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from ledger.canonical import (
    canonical_json,
    digest_of_canonical,
    event_digest,
    leaf_hash,
    leaf_of_canonical,
    loads_canonical,
    simple_jcs,
)
from ledger.errors import InvalidInput
from ledger.models import (
    ADDRESS_PATTERN,
    HEX32_PATTERN,
    IDENTIFIER_PATTERN,
    KIND_PATTERN,
    MAX_PAYLOAD_DEPTH,
    SIBLING_PATTERN,
    SIGNATURE_PATTERN,
    STREAM_PATTERN,
    SignedEnvelope,
)
from ledger.signing import envelope_jcs

__all__ = ["Decoded", "Domain", "Quick", "decode", "decode_stored", "start_worker"]


# What ledger.models requires of a SignedEnvelope, for the common case (see
# _hashes): the models' patterns, anchored at both ends as pydantic anchors them,
# with ASCII digits where the models' own RFC 3339 pattern also takes other digits.
_KIND = re.compile(KIND_PATTERN)
_STREAM = re.compile(STREAM_PATTERN)
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_ADDRESS = re.compile(ADDRESS_PATTERN)
_HEX32 = re.compile(HEX32_PATTERN)
_SIGNATURE = re.compile(SIGNATURE_PATTERN)
_SIBLING = re.compile(SIBLING_PATTERN)
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# _is_submission_ref over the canonical JSON orjson writes for it: its keys in order,
# count >= 1 and index >= 0 as safe integers (under 16 digits), the proof's steps
_STEP = rb'\{"(?:left|right)":"' + SIBLING_PATTERN.encode() + rb'"\}'
_SIMPLE_REF = re.compile(
    rb'\{"count":[1-9][0-9]{0,14},"index":(?:0|[1-9][0-9]{0,14}),"proof":\[(?:%s(?:,%s)*)?\],'
    rb'"root":"%s","signature":"%s"\}'
    % (_STEP, _STEP, HEX32_PATTERN.encode(), SIGNATURE_PATTERN.encode())
)
_SAFE = 2**53 - 1
_EVENT_KEYS = frozenset(
    {"kind", "schema_version", "stream", "event_id", "asset_ids", "event_time", "payload"}
    | {"submitter"}
)


def _is_text(value: Any, pattern: re.Pattern[str]) -> bool:
    return type(value) is str and pattern.fullmatch(value) is not None


def _within_depth(value: Any, depth: int) -> bool:
    """Whether ``value`` nests no deeper than ``depth`` (ledger.models' payload rule)."""
    if type(value) is dict:
        items: Iterable[Any] = value.values()
    elif type(value) is list:
        items = value
    else:
        return True
    return depth > 0 and all(_within_depth(item, depth - 1) for item in items)


def _simple_within_depth(value: Any, depth: int) -> bool:
    """``_within_depth``, and simple as ledger.canonical.simple_jcs needs: no float, no
    integer beyond 2**53 - 1, no key beyond the Basic Multilingual Plane."""
    kind = type(value)
    if kind is dict:
        if depth <= 0:
            return False
        for key, item in value.items():
            if not key.isascii() and max(key) > "\uffff":
                return False
            if type(item) in _SIMPLE_SCALARS or item is None:
                continue
            if not _simple_within_depth(item, depth - 1):
                return False
        return True
    if kind is list:
        return depth > 0 and all(_simple_within_depth(item, depth - 1) for item in value)
    if kind is int:
        return bool(-_SAFE <= value <= _SAFE)
    return kind is str or kind is bool or value is None


_SIMPLE_SCALARS = frozenset({str, bool})  # ints are checked for size


def _event_time_ms(
    body: Mapping[str, Any], payload_ok: Callable[[Any, int], bool] = _within_depth
) -> int | None:
    """The time of an event body that is certainly a valid EventBody, else None.
    ``payload_ok``: _within_depth, or _simple_within_depth for the simple path."""
    if body.keys() != _EVENT_KEYS:
        return None
    asset_ids, version, text = body["asset_ids"], body["schema_version"], body["event_time"]
    if not (
        _is_text(body["kind"], _KIND)
        and type(version) is int
        and 1 <= version <= 1_000
        and _is_text(body["stream"], _STREAM)
        and _is_text(body["event_id"], _IDENTIFIER)
        and type(asset_ids) is list
        and 1 <= len(asset_ids) <= 1_000
        and all(_is_text(a, _IDENTIFIER) for a in asset_ids)
        and len(set(asset_ids)) == len(asset_ids)
        and _is_text(body["submitter"], _ADDRESS)
        and type(body["payload"]) is dict
        and payload_ok(body["payload"], MAX_PAYLOAD_DEPTH)
        and _is_text(text, _TIME)
    ):
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None or moment.astimezone(UTC).year < 1970:
            return None
        return int(moment.timestamp() * 1000)  # ledger.models.event_time_ms
    except (ValueError, OverflowError):
        return None


def _is_submission_ref(ref: Mapping[str, Any]) -> bool:
    """Whether ``ref`` is certainly a valid SubmissionRef."""
    if len(ref) != 5:
        return False
    try:
        root, count, index = ref["root"], ref["count"], ref["index"]
        proof, signature = ref["proof"], ref["signature"]
    except KeyError:
        return False
    if not (
        _is_text(root, _HEX32)
        and type(count) is int
        and count >= 1
        and type(index) is int
        and index >= 0
        and _is_text(signature, _SIGNATURE)
        and type(proof) is list
    ):
        return False
    sibling = _SIBLING.fullmatch
    for step in proof:
        if type(step) is not dict or len(step) != 1:
            return False
        for side, value in step.items():
            if side not in ("left", "right") or type(value) is not str or not sibling(value):
                return False
    return True


def _is_domain(domain: Mapping[str, Any]) -> bool:
    """Whether ``domain`` is certainly a valid Eip712Domain."""
    return (
        domain.keys() == {"name", "version", "chainId", "verifyingContract"}
        and type(domain["name"]) is str
        and type(domain["version"]) is str
        and type(domain["chainId"]) is int
        and type(domain["verifyingContract"]) is str
    )


def _hashes(
    raw: dict[str, Any], domain: Domain, simple: bool
) -> tuple[bytes, bytes, int, bytes] | None:
    """(event digest, leaf, event time, sha256 of the submission reference's canonical
    JSON) of ``raw``, parsed JSON, if it is certainly a
    valid SignedEnvelope; None when the models must decide. The body is written in
    canonical JSON once, and the envelope's from its members' (ledger.signing.envelope_jcs),
    so the leaf is ``leaf_hash(raw)``.

    ``simple``: ``raw`` was read by orjson, and is taken only if every part of it is
    certainly simple (see _simple_within_depth), so that orjson writes its canonical
    JSON (ledger.canonical.simple_jcs) and read it as the standard library does."""
    if len(raw) != 3:
        return None
    body, ref, raw_domain = raw.get("event"), raw.get("submission"), raw.get("domain")
    if type(body) is not dict or type(ref) is not dict or type(raw_domain) is not dict:
        return None
    time_ms = _event_time_ms(body, _simple_within_depth if simple else _within_depth)
    if time_ms is None:
        return None
    if not simple:
        if not _is_submission_ref(ref):
            return None
        ref_jcs = canonical_json(ref)
    else:  # one pattern over the reference's canonical JSON instead of a walk
        try:
            ref_jcs = simple_jcs(ref)
        except TypeError:  # an integer beyond 2**53 - 1
            return None
        if _SIMPLE_REF.fullmatch(ref_jcs) is None:
            return None
    ours, ours_jcs = domain
    if raw_domain == ours and type(raw_domain["chainId"]) is int:
        domain_jcs = ours_jcs
        if simple:  # one dict for a million equal ones (what the audit holds adds up)
            raw["domain"] = ours
    elif not _is_domain(raw_domain):
        return None
    elif not simple:
        domain_jcs = canonical_json(raw_domain)
    elif -_SAFE <= raw_domain["chainId"] <= _SAFE:
        domain_jcs = simple_jcs(raw_domain)  # its keys are ASCII, its strings any text
    else:
        return None
    try:  # the models require a body that has canonical JSON (the payload's)
        body_jcs = simple_jcs(body) if simple else canonical_json(body)
    except InvalidInput:
        return None
    envelope = envelope_jcs(domain_jcs, body_jcs, ref_jcs)
    ref_digest = hashlib.sha256(ref_jcs).digest()
    return digest_of_canonical(body_jcs), leaf_of_canonical(envelope), time_ms, ref_digest


Domain = tuple[dict[str, Any], bytes]  # the deployment's EIP-712 domain, and its JCS
# (raw, digest, leaf, time_ms, why it is not a valid envelope): see _decode
Decoded = tuple[Any, bytes | None, bytes | None, int | None, str | None, bytes | None]


def decode(text: str, domain: Domain) -> Decoded:
    """A stored envelope parsed, its leaf and (if it is a valid SignedEnvelope) its event
    digest recomputed, and its event time; or the first line of why it is not valid.
    Last, for a valid one, the sha256 of its submission reference's canonical JSON."""
    raw: Any = None
    leaf: bytes | None = None
    try:
        quick = orjson.loads(text)
    except orjson.JSONDecodeError:
        quick = None  # the standard library below says why, or reads what orjson would not
    if type(quick) is dict:
        hashed = _hashes(quick, domain, simple=True)
        if hashed is not None:
            digest, leaf, time_ms, ref_digest = hashed
            return quick, digest, leaf, time_ms, None, ref_digest
    try:
        raw = loads_canonical(text)
        if not isinstance(raw, dict):
            return raw, None, None, None, None, None
        hashed = _hashes(raw, domain, simple=False)
        if hashed is not None:
            digest, leaf, time_ms, ref_digest = hashed
            return raw, digest, leaf, time_ms, None, ref_digest
        # not plainly well formed: the models decide, and say why
        leaf = leaf_hash(raw)
        envelope = SignedEnvelope.model_validate(raw)
        digest = event_digest(envelope.event.model_dump(mode="json"))
        ref_digest = hashlib.sha256(canonical_json(raw["submission"])).digest()
        return raw, digest, leaf, envelope.event.event_time_ms, None, ref_digest
    except (ValueError, InvalidInput, ValidationError, RecursionError) as exc:
        # RecursionError: text nested deeper than any parser here follows (~1,000 levels)
        return raw, None, leaf, None, str(exc).splitlines()[0], None


# --- in a worker process ------------------------------------------------------------------------

# Of an envelope that is certainly valid and signed in this deployment's domain: (event
# digest, leaf, event time, sha256 of its submission reference's canonical JSON, event
# id, stream, kind, (submitter, submission root, count, signature), index in the
# submission). The signing tuple is one object for a chunk's events of one submission,
# so that it is pickled once.
Quick = tuple[bytes, bytes, int, bytes, str, str, str, tuple[str, str, int, str], int]
Reader = Callable[[Sequence[int]], dict[int, str]]  # positions -> their envelopes

_domain: Domain | None = None
_read: Reader | None = None
_whole: frozenset[bytes] = frozenset()


def start_worker(domain: Domain, database: str, whole: frozenset[bytes]) -> None:
    """A worker process's initializer: the deployment's domain, a read-only connection
    to the store at the SQLAlchemy URL ``database``, the leaves whose envelopes the
    auditor keeps ``whole`` (those covenant facts cite), and no cycle collector (a
    worker makes no reference cycles, and a chunk's parsed envelopes are many)."""
    global _domain, _read, _whole
    _domain, _read, _whole = domain, _reader(database), whole
    gc.disable()


def decode_stored(positions: Sequence[int]) -> list[Quick | str | None]:
    """In a worker (``start_worker``), for the stored event at each of ``positions``:
    ``decode``'s common case as ``Quick``, for an envelope that is certainly valid,
    signed for this deployment and not one to keep whole; else the envelope's text, for
    the auditor to decode itself; None for a position the store no longer holds."""
    assert _domain is not None and _read is not None, "start_worker ran"
    texts = _read(positions)
    signings: dict[tuple[str, str, int, str], tuple[str, str, int, str]] = {}
    out: list[Quick | str | None] = []
    for position in positions:
        text = texts.get(position)
        quick = None if text is None else _quick(text, _domain, signings)
        out.append(text if quick is None or quick[1] in _whole else quick)
    return out


def _quick(
    text: str,
    domain: Domain,
    signings: dict[tuple[str, str, int, str], tuple[str, str, int, str]],
) -> Quick | None:
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    hashed = _hashes(raw, domain, simple=True) if type(raw) is dict else None
    if hashed is None or raw["domain"] is not domain[0]:  # _hashes shares ours if equal
        return None
    digest, leaf, time_ms, ref_digest = hashed
    body, ref = raw["event"], raw["submission"]
    key = (body["submitter"], ref["root"], ref["count"], ref["signature"])
    signing = signings.setdefault(key, key)
    return (digest, leaf, time_ms, ref_digest, body["event_id"], body["stream"], body["kind"],
            signing, ref["index"])  # fmt: skip


_ENVELOPES_AT = "SELECT position, envelope FROM events WHERE position IN "


def _reader(database: str) -> Reader:
    """Envelopes by position from the store at ``database``: SQLite read-only through
    its driver, anything else through SQLAlchemy."""
    from sqlalchemy import bindparam, create_engine, make_url, text

    url = make_url(database)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "").resolve()
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)

        def read_sqlite(positions: Sequence[int]) -> dict[int, str]:
            marks = ",".join("?" * len(positions))
            return dict(connection.execute(f"{_ENVELOPES_AT}({marks})", tuple(positions)))

        return read_sqlite
    engine = create_engine(url)
    query = text(_ENVELOPES_AT + ":positions").bindparams(bindparam("positions", expanding=True))

    def read_database(positions: Sequence[int]) -> dict[int, str]:
        with engine.connect() as connection:
            found = connection.execute(query, {"positions": list(positions)})
            return {position: text for position, text in found}

    return read_database
