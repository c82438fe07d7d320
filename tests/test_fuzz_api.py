"""Hostile input against the real HTTP server: a `fourflow serve` process (uvicorn) on
the session's anvil node and a SQLite file, hit over loopback with httpx, the input drawn
by hypothesis.

Wrong types in every field of a submission, bodies over the size limit (declared and
streamed), deep nesting, text that is not Unicode (bytes that are not UTF-8, lone
surrogates, encoded or escaped), signatures for another chain or contract, signatures
of another key, an event id sent again with other content, a replay; then the sign-in,
alarm and EPCIS endpoints and device readings. For every one of them:

- the answer is a 4xx (never a 5xx, never a hang) with a machine-readable body:
  ``{"error": {"code", "message", ...}}``, or RFC 7807 problem details under /v1/epcis;
- nothing is stored: the store's counts (ledger.store.Store.counts) and the rows of the
  other tables a request could write are the same before and after;
- the server process is still running, and /v1/health answers 200 after each test.

The examples are derandomized (the same every run) and bounded: a few hundred in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from api.siwe_client import compose_sign_in, sign_in
from ledger.chain import Chain
from ledger.models import EventBody, SubmissionIn
from ledger.runtime import DevKeys, Runtime
from ledger.signing import SUBMISSION_TYPES, domain_for, sign_submission, submission_root
from tests.conftest import AnvilNode, ServeProcess, make_events

pytestmark = pytest.mark.anvil

MAX_BODY = 16 * 1024  # FOURFLOW_MAX_BODY_BYTES of the server under test
MAX_EVENTS = 5  # FOURFLOW_MAX_EVENTS
CAPTURE_TOKEN = "fuzz-capture-client-token"
ANSWER_TIMEOUT_S = 10.0  # an answer slower than this is a failure, not a wait
# the tables a POST could write besides events and batches (Store.counts covers those)
TABLES = ("event_assets", "quarantine", "capture_jobs", "epcis_events", "flow_entries",
          "alarm_acks", "custody")  # fmt: skip
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


@dataclass
class Server:
    """The `fourflow serve` process under test and what it was deployed with."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    db_path: Path
    runtime: Runtime
    keys: DevKeys
    client: httpx.Client
    token: str  # the firm's sign-in token

    @property
    def firm(self) -> LocalAccount:
        return self.keys.submitters[0]

    def snapshot(self) -> dict[str, int]:
        """Everything a request may have stored: the store's counts, the other tables'
        row counts, and how many sign-in nonces were spent."""
        counts = self.runtime.store.counts()
        with closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            for table in TABLES:
                counts[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            counts["nonces_used"] = db.execute(
                "SELECT count(*) FROM siwe_nonces WHERE used_ms IS NOT NULL"
            ).fetchone()[0]
        return counts

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.post(path, **kwargs)
        except httpx.TransportError as exc:  # a dropped connection or a hang: a failure
            raise AssertionError(f"POST {path}: no answer ({exc!r}); {self.tail()}") from exc

    def assert_up(self) -> None:
        assert self.proc.poll() is None, f"the server exited: {self.tail()}"

    def assert_healthy(self) -> None:
        self.assert_up()
        health = self.client.get("/v1/health")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"

    def tail(self) -> str:
        """The server's log but its access lines, last 3,000 characters."""
        lines = self.log.read_text(errors="replace").splitlines()
        kept = "\n".join(line for line in lines if "fourflow.access" not in line)
        return "server log: " + kept[-3000:]


@pytest.fixture(scope="module")
def server(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`fourflow serve` on a free loopback port: a fresh registry on the session's anvil,
    a SQLite store, EPCIS capture (the gateway key is the second submitter) and device
    readings (an oracle config with no devices) enabled, small body and event limits."""
    folder = tmp_path_factory.mktemp("fuzz")
    db_path = folder / "store.sqlite"
    db_url = f"sqlite:///{db_path}"
    runtime, keys = Runtime.dev(db_url=db_url, chain=Chain.connect(anvil.url), submitters=2)
    manifest = folder / "deployment.json"
    runtime.deployment.write(manifest)
    oracle_config = folder / "oracle.json"
    oracle_config.write_text(json.dumps({"tenant": "fuzz"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOURFLOW_")} | {
        "FOURFLOW_DB_URL": db_url,
        "FOURFLOW_RPC_URL": anvil.url,
        "FOURFLOW_MANIFEST": str(manifest),
        "FOURFLOW_MAX_BODY_BYTES": str(MAX_BODY),
        "FOURFLOW_MAX_EVENTS": str(MAX_EVENTS),
        "FOURFLOW_GATEWAY_KEY": keys.submitters[1].key.hex(),
        "FOURFLOW_ORACLE_CONFIG": str(oracle_config),
        "FOURFLOW_CAPTURE_TOKENS": "fuzz:" + hashlib.sha256(CAPTURE_TOKEN.encode()).hexdigest(),
    }  # no FOURFLOW_ORACLE_KEY: nothing anchors, so the counts move only with submissions
    try:
        serve = ServeProcess.start(env, log=folder / "serve.log")
        try:
            with httpx.Client(base_url=serve.url, timeout=ANSWER_TIMEOUT_S) as client:
                token = sign_in(client, keys.submitters[0])
                yield Server(
                    serve.url, serve.proc, serve.log, db_path, runtime, keys, client, token
                )
        finally:
            serve.stop(timeout=30)
    finally:
        runtime.close()


# --- what every refusal looks like ---------------------------------------------------------


def assert_refused(answer: httpx.Response, path: str, *, code: str | None = None) -> str:
    """A 4xx with a machine-readable body; returns its code."""
    assert 400 <= answer.status_code < 500, f"{path}: {answer.status_code} {answer.text[:800]}"
    body = answer.json()
    if path.startswith("/v1/epcis"):
        assert answer.headers["content-type"].startswith("application/problem+json"), body
        assert body["status"] == answer.status_code, body
        assert body["type"] == f"epcisException:{body['title']}", body
        assert isinstance(body["detail"], str) and body["detail"], body
        found = body["code"]
    else:
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"], body
        found = error["code"]
    assert isinstance(found, str) and found, body
    if code is not None:
        assert found == code, f"{path}: expected {code}, got {answer.status_code} {body}"
    return found


def refused_and_nothing_stored(
    server: Server, path: str, *, code: str | None = None, **request: Any
) -> str:
    before = server.snapshot()
    answer = server.post(path, **request)
    found = assert_refused(answer, path, code=code)
    assert server.snapshot() == before, f"{path} stored something: {answer.text[:300]}"
    server.assert_up()
    return found


JSON = {"content-type": "application/json"}


def raw(body: Any) -> bytes:
    """JSON text as Python writes it (NaN and Infinity included)."""
    return json.dumps(body).encode()


def signed_body(server: Server, events: list[EventBody] | None = None) -> dict[str, Any]:
    events = events or make_events(server.firm.address, 2)
    submission = sign_submission(
        events, private_key=server.firm.key, domain=server.runtime.intake.domain
    )
    return submission.model_dump(mode="json")


# --- strategies ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
DELETE = object()
EVENT_FIELDS = ("kind", "schema_version", "stream", "event_id", "asset_ids", "event_time",
                "payload", "submitter")  # fmt: skip
FIELD_PATHS: list[tuple[Any, ...]] = [
    ("submitter",),
    ("signature",),
    ("events",),
    ("events", 0),
    ("events", 1, "colour"),  # an unknown field
    ("events", 0, "payload", "bizStep"),
    ("events", 0, "asset_ids", 0),
    *[("events", i, field) for i in (0, 1) for field in EVENT_FIELDS],
]


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


def _get(body: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = body
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError):
            return DELETE
    return node


# --- submissions ---------------------------------------------------------------------------


@fuzz(70)
@given(path=st.sampled_from(FIELD_PATHS), value=json_values | st.just(DELETE))
def test_a_field_of_the_wrong_type_or_value_is_refused(
    server: Server, path: tuple[Any, ...], value: Any
) -> None:
    """Any change to any field of a signed submission: malformed (422), or well formed
    but no longer what was signed (401). Never stored."""
    body = signed_body(server)
    original = _get(body, path)
    assume(value is not original)
    if value is not DELETE and original is not DELETE:
        assume(json.dumps(value, sort_keys=True) != json.dumps(original, sort_keys=True))
    refused_and_nothing_stored(
        server, "/v1/events", content=raw(_set(body, path, value)), headers=JSON
    )


@fuzz(20)
@given(
    how=st.sampled_from(["declared", "streamed", "one_big_string", "many_events"]),
    size=st.integers(min_value=MAX_BODY + 1, max_value=4 * MAX_BODY),
    events=st.integers(min_value=MAX_EVENTS + 1, max_value=60),
)
def test_a_body_over_the_limits_is_413(server: Server, how: str, size: int, events: int) -> None:
    if how == "declared":
        request: dict[str, Any] = {"content": b" " * size, "headers": JSON}
    elif how == "streamed":  # chunked: no Content-Length, the limit is counted as it comes

        def chunks() -> Iterator[bytes]:
            yield b'{"events": ['
            for _ in range(size // 4096 + 1):
                yield b" " * 4096

        request = {"content": chunks(), "headers": JSON}
    elif how == "one_big_string":
        body = signed_body(server)
        body["events"][0]["payload"]["blob"] = "x" * size
        request = {"content": raw(body), "headers": JSON}
    else:
        body = signed_body(server, make_events(server.firm.address, events))
        request = {"content": raw(body), "headers": JSON}
    code = refused_and_nothing_stored(server, "/v1/events", **request)
    if how == "many_events" and len(request["content"]) <= MAX_BODY:
        assert code == "too_many_events"
    else:
        assert code == "payload_too_large"


def _nested(depth: int, bracket: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if bracket == "[" else {"a": value}
    return value


def _nested_text(depth: int, bracket: str) -> bytes:
    opening, closing_ = ("[", "]") if bracket == "[" else ('{"a":', "}")
    return (opening * depth + "1" + closing_ * depth).encode()


@fuzz(30)
@given(
    depth=st.integers(min_value=17, max_value=2_500),
    bracket=st.sampled_from(["[", "{"]),
    where=st.sampled_from(["payload", "body", "asset_ids", "submitter"]),
)
def test_deep_nesting_in_a_submission_is_refused(
    server: Server, depth: int, bracket: str, where: str
) -> None:
    """Deeper than the payload allows (16), than the parser allows (~200), or than the
    C stack would survive: always a clear 4xx."""
    nested = _nested_text(depth, bracket)
    if where == "body":
        content = nested
    else:
        body = signed_body(server)
        marker = "NESTED-HERE"
        if where == "payload":
            body["events"][0]["payload"]["deep"] = marker
        elif where == "asset_ids":
            body["events"][0]["asset_ids"] = marker
        else:
            body["submitter"] = marker
        content = raw(body).replace(f'"{marker}"'.encode(), nested)
    code = refused_and_nothing_stored(server, "/v1/events", content=content, headers=JSON)
    if len(content) <= MAX_BODY and depth > 300:
        assert code == "too_deep"


@fuzz(25)
@given(
    wrong=st.sampled_from(["chain", "contract", "both", "name", "version"]),
    chain_id=st.integers(min_value=0, max_value=2**256 - 1),
    contract=st.binary(min_size=20, max_size=20),
    text=st.text(min_size=0, max_size=20),
)
def test_a_signature_for_another_deployment_is_401(
    server: Server, wrong: str, chain_id: int, contract: bytes, text: str
) -> None:
    """Signed by the right key over the right events, but for another EIP-712 domain."""
    real = server.runtime.intake.domain
    domain = domain_for(
        chain_id=chain_id if wrong in ("chain", "both") else real.chainId,
        contract="0x" + contract.hex() if wrong in ("contract", "both") else real.verifyingContract,
    )
    if wrong in ("name", "version"):
        domain = domain.model_copy(update={wrong: text})
    assume(domain != real)
    events = make_events(server.firm.address, 2)
    body = sign_submission(events, private_key=server.firm.key, domain=domain)
    refused_and_nothing_stored(
        server, "/v1/events", json=body.model_dump(mode="json"), code="invalid_signature"
    )


def _signed_by(
    events: list[EventBody], *, claimed: str, key: LocalAccount, server: Server
) -> SubmissionIn:
    """``events`` declared as ``claimed``'s, but signed (properly) by ``key``."""
    message = {
        "types": SUBMISSION_TYPES,
        "primaryType": "Submission",
        "domain": server.runtime.intake.domain.model_dump(),
        "message": {
            "submitter": claimed,
            "eventsRoot": submission_root(events),
            "eventCount": len(events),
        },
    }
    signature = key.sign_message(encode_typed_data(full_message=message)).signature
    return SubmissionIn(submitter=claimed, signature="0x" + bytes(signature).hex(), events=events)


_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@fuzz(20)
@given(
    secret=st.integers(min_value=1, max_value=_SECP256K1_N - 1),
    case=st.sampled_from(["stranger_claims_firm", "stranger_as_itself", "colleague_claims_firm"]),
)
def test_a_signature_of_another_key_is_refused(server: Server, secret: int, case: str) -> None:
    stranger: LocalAccount = Account.from_key(secret.to_bytes(32, "big"))
    assume(stranger.address not in {a.address for a in server.keys.submitters})
    if case == "stranger_as_itself":  # a good signature, by a key with no role
        events = make_events(stranger.address, 2)
        body = sign_submission(
            events, private_key=stranger.key, domain=server.runtime.intake.domain
        )
        expected = "unregistered_signer"
    else:
        key = stranger if case == "stranger_claims_firm" else server.keys.submitters[1]
        body = _signed_by(
            make_events(server.firm.address, 2), claimed=server.firm.address, key=key, server=server
        )
        expected = "invalid_signature"
    before = server.snapshot()
    answer = server.post("/v1/events", json=body.model_dump(mode="json"))
    assert_refused(answer, "/v1/events", code=expected)
    if expected == "invalid_signature":
        assert answer.status_code == 401
        assert server.firm.address in answer.json()["error"]["message"]
    else:
        assert answer.status_code == 403
    assert server.snapshot() == before


def _changed(event: EventBody, change: str) -> EventBody:
    updates: dict[str, Any] = {
        "payload": {**event.payload, "bizStep": "urn:epcglobal:cbv:bizstep:receiving"},
        "event_time": "2026-11-26T09:59:59.000+08:00",
        "asset_ids": ["urn:epc:id:sgtin:0614141.107346.9999"],
        "kind": "epcis.AggregationEvent",
        "stream": "acme.custody.other",
        "schema_version": 2,
    }
    return event.model_copy(update={change: updates[change]})


@fuzz(15)
@given(
    change=st.sampled_from(
        ["payload", "event_time", "asset_ids", "kind", "stream", "schema_version"]
    ),
    position=st.integers(min_value=0, max_value=2),
    with_fresh=st.booleans(),
)
def test_an_event_id_sent_again_with_other_content_is_409_and_a_replay_is_a_duplicate(
    server: Server, change: str, position: int, with_fresh: bool
) -> None:
    firm, domain = server.firm, server.runtime.intake.domain
    events = make_events(firm.address, 3, prefix=f"lot-{uuid.uuid4().hex[:10]}")
    first = sign_submission(events, private_key=firm.key, domain=domain).model_dump(mode="json")
    accepted = server.post("/v1/events", json=first)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 3
    stored = server.snapshot()

    # the same id, other content, properly signed: a conflict, and the fresh event too is not stored
    altered = [*events]
    altered[position] = _changed(events[position], change)
    fresh = make_events(firm.address, 1, prefix=f"fresh-{uuid.uuid4().hex[:10]}")
    batch = fresh + altered if with_fresh else altered
    body = sign_submission(batch, private_key=firm.key, domain=domain).model_dump(mode="json")
    answer = server.post("/v1/events", json=body)
    assert_refused(answer, "/v1/events", code="conflict")
    assert answer.status_code == 409
    at = position + (1 if with_fresh else 0)
    assert answer.json()["error"]["field"] == f"events[{at}].event_id"
    assert server.snapshot() == stored
    assert server.runtime.store.stored_ids([fresh[0].event_id]) == set()

    # the first submission again, byte for byte: answered as duplicates, nothing new
    replay = server.post("/v1/events", json=first)
    assert replay.status_code == 202, replay.text
    assert (replay.json()["accepted"], replay.json()["duplicates"]) == (0, 3)
    assert [r["leaf"] for r in replay.json()["receipts"]] == [
        r["leaf"] for r in accepted.json()["receipts"]
    ]
    assert server.snapshot() == stored
    server.assert_up()


# --- text that is not Unicode, on every endpoint that takes a body -------------------------

lone_surrogate_escapes = st.integers(min_value=0xD800, max_value=0xDFFF).flatmap(
    lambda c: st.sampled_from([f"\\u{c:04x}", f"\\u{c:04X}", f"x\\u{c:04x}\\u0041"]).map(str.encode)
)
encoded_surrogates = st.integers(min_value=0xD800, max_value=0xDFFF).map(
    lambda c: bytes([0xED, 0xA0 | ((c >> 6) & 0x1F), 0x80 | (c & 0x3F)])
)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


invalid_utf8 = st.sampled_from(
    [
        b"\xff",
        b"\xfe\xff",
        b"\xc3",
        b"\xc0\xaf",
        b"\x80",
        b"\xf4\x90\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"caf\xe9",
    ]
) | st.binary(min_size=1, max_size=6).filter(_not_utf8)
not_unicode = lone_surrogate_escapes | encoded_surrogates | invalid_utf8
bad_escapes = st.sampled_from([b"\\uZZZZ", b"\\u12", b"\\x41", b"\\", b"\\U0001F600", b"\\u{41}"])

CAPTURE_AUTH = {"authorization": f"Bearer {CAPTURE_TOKEN}"}


def _templates(server: Server) -> dict[str, tuple[bytes, dict[str, str]]]:
    """A well-formed body for each endpoint, with FUZZ where hostile text goes."""
    submission = signed_body(server)
    submission["events"][0]["payload"]["note"] = "FUZZ"
    token_auth = {"authorization": f"Bearer {server.token}"}
    document: dict[str, Any] = {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-26T08:00:00.000Z",
        "epcisBody": {"eventList": [{"type": "ObjectEvent", "eventTime": "2026-11-26T08:00:00.000Z",
                                     "eventTimeZoneOffset": "+00:00", "action": "OBSERVE",
                                     "epcList": ["urn:epc:id:sgtin:0614141.107346.FUZZ"]}]},
    }  # fmt: skip
    reading = {"device": "urn:fourflow:device:FUZZ", "seq": 1, "kind": "collar",
               "time": "2026-11-26T08:00:00.000Z", "data": {}, "signature": "0x00"}  # fmt: skip
    return {
        "/v1/events": (raw(submission), JSON),
        "/v1/auth/token": (raw({"message": "FUZZ", "signature": "0x" + "ab" * 65}), JSON),
        "/v1/auth/nonce": (raw({"note": "FUZZ"}), JSON),
        "/v1/readings": (raw(reading), JSON),
        "/v1/epcis/capture": (raw(document), JSON | CAPTURE_AUTH),
        "/v1/epcis/events": (raw(document["epcisBody"]["eventList"][0]), JSON | CAPTURE_AUTH),
        "/v1/alarms/a-1/acknowledge": (
            raw({"at": "FUZZ", "signature": "0x" + "ab" * 65}),
            JSON | token_auth,
        ),
    }


BODY_PATHS = ("/v1/events", "/v1/auth/token", "/v1/auth/nonce", "/v1/readings",
              "/v1/epcis/capture", "/v1/epcis/events", "/v1/alarms/a-1/acknowledge")  # fmt: skip


@fuzz(60)
@given(path=st.sampled_from(BODY_PATHS), hostile=not_unicode, no_content_type=st.booleans())
# found while fuzzing: a 500 from the quarantine table's INSERT (UnicodeEncodeError)
@example(path="/v1/readings", hostile=b"\\ud800", no_content_type=False)
@example(path="/v1/events", hostile=b"\xff\xfe", no_content_type=False)
def test_text_that_is_not_unicode_is_refused_everywhere(
    server: Server, path: str, hostile: bytes, no_content_type: bool
) -> None:
    """Not UTF-8, or a lone surrogate (escaped or encoded): refused before any handler
    sees it, with code invalid_unicode. (A lone surrogate in a device reading used to
    reach the quarantine table's INSERT and fail there with a 500.)"""
    template, headers = _templates(server)[path]
    if no_content_type and not path.startswith("/v1/epcis"):
        headers = {k: v for k, v in headers.items() if k != "content-type"}
    content = template.replace(b"FUZZ", hostile)
    refused_and_nothing_stored(
        server, path, content=content, headers=headers, code="invalid_unicode"
    )


@fuzz(20)
@given(path=st.sampled_from([p for p in BODY_PATHS if p != "/v1/auth/nonce"]), escape=bad_escapes)
def test_a_bad_escape_is_refused_everywhere(server: Server, path: str, escape: bytes) -> None:
    template, headers = _templates(server)[path]
    refused_and_nothing_stored(
        server, path, content=template.replace(b"FUZZ", escape), headers=headers
    )


@fuzz(25)
@given(
    path=st.sampled_from(BODY_PATHS),
    how=st.sampled_from(["deep", "huge", "huge_streamed", "long_number"]),
    depth=st.integers(min_value=300, max_value=5_000),
    size=st.integers(min_value=MAX_BODY + 1, max_value=3 * MAX_BODY),
)
def test_deep_huge_and_unreadable_bodies_are_refused_everywhere(
    server: Server, path: str, how: str, depth: int, size: int
) -> None:
    _, headers = _templates(server)[path]
    if how == "deep":
        content: Any = _nested_text(depth, "[")
        code = "too_deep" if len(content) <= MAX_BODY else "payload_too_large"
    elif how == "huge":
        content, code = b"[" + b"1," * (size // 2) + b"1]", "payload_too_large"
    elif how == "huge_streamed":

        def chunks() -> Iterator[bytes]:
            for _ in range(size // 4096 + 1):
                yield b" " * 4096

        content, code = chunks(), "payload_too_large"
    else:
        content, code = b'{"n": ' + b"7" * (4_301 + depth % 1_000) + b"}", "invalid_json"
    found = refused_and_nothing_stored(server, path, content=content, headers=headers, code=code)
    if path.startswith("/v1/epcis") and found == "payload_too_large":
        assert server.client.post(path, content=b" " * size, headers=headers).json()["title"] == (
            "CaptureLimitExceededException"
        )


# --- sign-in --------------------------------------------------------------------------------

signatures = st.text(alphabet="0123456789abcdefABCDEFx", min_size=0, max_size=140) | st.just(
    "0x" + "ab" * 65
)
HEADER = "{domain} wants you to sign in with your Ethereum account:\n{address}\n\n"


@fuzz(40)
@given(
    body=json_values
    | st.fixed_dictionaries({"message": json_values, "signature": json_values})
    | st.fixed_dictionaries(
        {
            "message": st.text(min_size=1, max_size=3_000)
            | st.text(max_size=900).map(lambda tail: HEADER + tail),
            "signature": signatures,
        }
    )
)
# found by hand: 8 KB of junk kept siwe's parser (and the GIL) busy for over 30 s, and a
# real header with a long tail for seconds
@example(body={"message": "a" * 8_000, "signature": "0x" + "ab" * 65})
@example(body={"message": HEADER + "x" * 3_000, "signature": "0x" + "ab" * 65})
@example(body={"message": "a" * 1_000, "signature": "0x" + "ab" * 65})
def test_a_bad_sign_in_is_refused_quickly_and_spends_no_nonce(server: Server, body: Any) -> None:
    """Junk, wrong types, and text of up to 3,000 characters (siwe's grammar parser once
    took half a minute on 8 KB of junk, with the server's GIL held)."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        body["message"] = (
            body["message"]
            .replace("{domain}", server.base.split("//")[1], 1)
            .replace("{address}", server.firm.address, 1)
        )
    started = time.monotonic()
    refused_and_nothing_stored(server, "/v1/auth/token", content=raw(body), headers=JSON)
    assert time.monotonic() - started < ANSWER_TIMEOUT_S


@fuzz(18)
@given(
    wrong=st.sampled_from(
        [
            "domain",
            "uri",
            "chain",
            "issued_long_ago",
            "issued_ahead",
            "expired",
            "not_yet_valid",
            "nonce",
            "other_key",
        ]
    ),
    chain_id=st.integers(min_value=1, max_value=2**53),
)
def test_a_sign_in_for_the_wrong_place_or_time_is_401_and_only_a_signature_spends_its_nonce(
    server: Server, wrong: str, chain_id: int
) -> None:
    offer_answer = server.post("/v1/auth/nonce")
    assert offer_answer.status_code == 201
    offer = offer_answer.json()
    now = datetime.now(UTC)
    altered = dict(offer)
    times: dict[str, Any] = {}
    account: LocalAccount = server.firm
    if wrong == "domain":
        altered["domain"] = "fourflow.example.com"
    elif wrong == "uri":
        altered["uri"] = "https://fourflow.example.com/"
    elif wrong == "chain":
        assume(chain_id != offer["chain_id"])
        altered["chain_id"] = chain_id
    elif wrong == "issued_long_ago":
        times["issued_at"] = now - timedelta(minutes=30)
    elif wrong == "issued_ahead":
        times["issued_at"] = now + timedelta(minutes=30)
    elif wrong == "expired":
        times["expiration_time"] = now - timedelta(seconds=5)
    elif wrong == "not_yet_valid":
        times["not_before"] = now + timedelta(minutes=3)
    elif wrong == "nonce":
        altered["nonce"] = uuid.uuid4().hex
    signed = compose_sign_in(altered, account=account, **times)
    if wrong == "other_key":  # the message names the firm; the signature is someone else's
        other = compose_sign_in(offer, account=server.keys.submitters[1])
        signed = type(signed)(message=signed.message, signature=other.signature)
    expected = {"domain": "siwe_domain", "uri": "siwe_uri", "chain": "siwe_chain",
                "issued_long_ago": "siwe_issued_at", "issued_ahead": "siwe_issued_at",
                "expired": "siwe_expired", "not_yet_valid": "siwe_not_yet_valid",
                "nonce": "siwe_nonce_unknown", "other_key": "siwe_signature"}[wrong]  # fmt: skip
    before = server.snapshot()
    answer = server.post("/v1/auth/token", json=signed.to_json())
    assert_refused(answer, "/v1/auth/token", code=expected)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    # steps 1-7 cost nothing; the signature check (step 9) spends the nonce (api/auth.py)
    spent = 1 if wrong == "other_key" else 0
    assert server.snapshot() == before | {"nonces_used": before["nonces_used"] + spent}
    retry = server.post("/v1/auth/token", json=compose_sign_in(offer, account=account).to_json())
    if spent:
        assert_refused(retry, "/v1/auth/token", code="siwe_nonce_used")
    else:
        assert retry.status_code == 200, retry.text
        assert retry.json()["address"] == account.address
    server.assert_up()


# --- alarms and EPCIS -----------------------------------------------------------------------


@fuzz(25)
@given(
    alarm_id=st.text(min_size=1, max_size=40),
    action=st.sampled_from(["acknowledge", "clear"]),
    body=json_values
    | st.fixed_dictionaries({"at": json_values | st.text(max_size=60), "signature": signatures}),
    signed_in=st.booleans(),
)
def test_an_alarm_change_that_cannot_apply_is_refused(
    server: Server, alarm_id: str, action: str, body: Any, signed_in: bool
) -> None:
    """No such alarm, or a malformed change, or no sign-in: a 4xx, and no acknowledgement."""
    headers = JSON | ({"authorization": f"Bearer {server.token}"} if signed_in else {})
    path = f"/v1/alarms/{quote(alarm_id, safe='')}/{action}"
    code = refused_and_nothing_stored(server, path, content=raw(body), headers=headers)
    if not signed_in:
        assert code == "token_missing"


@fuzz(25)
@given(
    path=st.sampled_from(["/v1/epcis/capture", "/v1/epcis/events"]),
    document=json_values
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["EPCISDocument", "ObjectEvent", "AggregationEvent"])},
        optional={"epcisBody": json_values, "eventTime": json_values, "epcList": json_values},
    ),
    token=st.sampled_from([CAPTURE_TOKEN, "someone-else", None]),
)
def test_a_bad_epcis_capture_is_an_rfc7807_problem(
    server: Server, path: str, document: Any, token: str | None
) -> None:
    headers = JSON | ({"authorization": f"Bearer {token}"} if token else {})
    code = refused_and_nothing_stored(server, path, content=raw(document), headers=headers)
    if token != CAPTURE_TOKEN:
        assert code == "unauthenticated"


def test_the_server_survived_it_all(server: Server) -> None:
    server.assert_healthy()
    # uvicorn's words for an exception no handler answered (a 500)
    assert "Exception in ASGI application" not in server.log.read_text(errors="replace")
