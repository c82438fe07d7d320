"""The HTTP API through FastAPI's TestClient, on an in-process chain and a SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from api.app import create_app
from api.schemas import SubmissionAccepted
from api.settings import Settings
from api.siwe_client import sign_in
from ledger.runtime import DevKeys, Runtime
from ledger.signing import domain_for, sign_submission
from ledger.verify import verify_bundle
from tests.conftest import make_events


@pytest.fixture
def client(dev: tuple[Runtime, DevKeys]) -> Iterator[TestClient]:
    runtime, keys = dev
    settings = Settings(max_body_bytes=256 * 1024, max_events_per_submission=50)
    with TestClient(create_app(runtime, settings=settings)) as c:
        # reads need a sign-in (EIP-4361); the firm reads back what it submitted
        c.headers["Authorization"] = f"Bearer {sign_in(c, keys.submitters[0])}"
        yield c


def signed(dev: tuple[Runtime, DevKeys], n: int = 3, **kw: Any) -> dict[str, Any]:
    runtime, keys = dev
    firm = keys.submitters[0]
    sub = sign_submission(
        make_events(firm.address, n, **kw), private_key=firm.key, domain=runtime.intake.domain
    )
    return sub.model_dump(mode="json")


def stored(dev: tuple[Runtime, DevKeys]) -> int:
    return dev[0].store.counts()["events"]


def test_good_batch_is_stored_anchored_and_provable(client: TestClient, dev: Any) -> None:
    runtime, keys = dev
    body = signed(dev, 5)
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 202
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["accepted"] == 5
    assert [r["status"] for r in answer.json()["receipts"]] == ["accepted"] * 5
    # the answer the route writes itself is what its declared schema holds, field for field
    accepted = SubmissionAccepted.model_validate(answer.json())
    assert accepted.model_dump(mode="json") == answer.json() and accepted.duplicates == 0
    stored_event = runtime.store.event(body["events"][0]["event_id"])
    assert answer.json()["receipts"][0] == {
        "event_id": stored_event.event_id,
        "stream": stored_event.stream,
        "digest": stored_event.digest,
        "leaf": stored_event.leaf,
        "status": "accepted",
    }
    event_id = body["events"][2]["event_id"]

    event = client.get(f"/v1/events/{event_id}").json()
    assert event["status"] == "pending" and event["batch"] is None
    assert event["envelope"]["event"] == body["events"][2]
    pending = client.get(f"/v1/events/{event_id}/proof")
    assert pending.status_code == 404
    assert pending.json()["error"]["code"] == "not_anchored"

    runtime.anchorer(keys.oracle).run_once(force=True)
    event = client.get(f"/v1/events/{event_id}").json()
    assert event["status"] == "anchored"
    assert event["batch"]["leaf_index"] == 2
    bundle = client.get(f"/v1/events/{event_id}/proof").json()
    verify_bundle(bundle, chain=runtime.chain)

    batch = client.get(event["batch"]["href"]).json()
    assert batch["leaf_count"] == 5 and batch["state"] == "anchored"
    assert batch["event_ids"] == [e["event_id"] for e in body["events"]]
    assert batch["root"] == bundle["batch"]["root"]


def test_resubmission_is_idempotent(client: TestClient, dev: Any) -> None:
    body = signed(dev, 4)
    assert client.post("/v1/events", json=body).status_code == 202
    again = client.post("/v1/events", json=body)
    assert again.status_code == 202
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 4
    assert stored(dev) == 4


def test_same_id_other_content_is_a_conflict_and_stores_nothing(
    client: TestClient, dev: Any
) -> None:
    runtime, keys = dev
    firm = keys.submitters[0]
    first = make_events(firm.address, 2, prefix="lot7")
    client.post(
        "/v1/events",
        json=sign_submission(first, private_key=firm.key, domain=runtime.intake.domain).model_dump(
            mode="json"
        ),
    )
    changed = first[1].model_copy(
        update={"payload": {"bizStep": "urn:epcglobal:cbv:bizstep:receiving"}}
    )
    fresh = make_events(firm.address, 1, prefix="fresh")[0]
    body = sign_submission([fresh, changed], private_key=firm.key, domain=runtime.intake.domain)
    answer = client.post("/v1/events", json=body.model_dump(mode="json"))
    assert answer.status_code == 409
    assert answer.json()["error"] == {
        "code": "conflict",
        "message": "event_id 'lot7-1' is already stored with different content",
        "field": "events[1].event_id",
    }
    assert stored(dev) == 2
    assert runtime.store.stored_ids([fresh.event_id]) == set()


def _mutate(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("events.0.event_time", "2026-11-26T08:15:00", "events[0].event_time"),
        ("events.0.event_time", "yesterday", "events[0].event_time"),
        ("events.1.stream", "Acme/Custody", "events[1].stream"),
        ("events.0.asset_ids", [], "events[0].asset_ids"),
        ("events.0.schema_version", "1", "events[0].schema_version"),
        ("events.0.kind", _DELETE, "events[0].kind"),
        ("events.0.colour", "red", "events[0].colour"),
        ("events.2.payload", "not an object", "events[2].payload"),
        ("events.0.payload", {"n": 2**60}, "events[0].payload"),
        ("signature", "0x1234", "signature"),
        ("events", [], "events"),
    ],
)
def test_malformed_input_is_422_naming_the_field_and_stores_nothing(
    client: TestClient, dev: Any, path: str, value: Any, field: str
) -> None:
    answer = client.post("/v1/events", json=_mutate(signed(dev), path, value))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["field"] == field
    assert stored(dev) == 0


def test_events_of_another_submitter_or_repeated_ids_are_422(client: TestClient, dev: Any) -> None:
    body = _mutate(signed(dev), "events.1.submitter", dev[1].submitters[1].address)
    assert client.post("/v1/events", json=body).status_code == 422
    body = signed(dev)
    body["events"][2]["event_id"] = body["events"][0]["event_id"]
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 422
    assert "repeats" in answer.json()["error"]["message"]
    assert stored(dev) == 0


def test_unparseable_json_and_nan_are_422(client: TestClient, dev: Any) -> None:
    headers = {"content-type": "application/json"}
    assert client.post("/v1/events", content=b'{"events": [', headers=headers).status_code == 422
    text = json.dumps(signed(dev)).replace('"seq": 0', '"seq": NaN')
    answer = client.post("/v1/events", content=text.encode(), headers=headers)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "events[0].payload"
    assert stored(dev) == 0


def test_a_signature_by_another_key_is_401(client: TestClient, dev: Any) -> None:
    runtime, keys = dev
    other = Account.create()
    theirs = sign_submission(
        make_events(other.address, 2), private_key=other.key, domain=runtime.intake.domain
    )
    body = signed(dev, 2) | {"signature": theirs.signature}
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_signature"
    assert keys.submitters[0].address in answer.json()["error"]["message"]
    assert stored(dev) == 0


@pytest.mark.parametrize("wrong", ["chain", "contract"])
def test_a_signature_for_another_deployment_is_401(
    client: TestClient, dev: Any, wrong: str
) -> None:
    runtime, keys = dev
    firm = keys.submitters[0]
    domain = domain_for(
        chain_id=runtime.chain.chain_id + (1 if wrong == "chain" else 0),
        contract=runtime.registry.address if wrong == "chain" else "0x" + "42" * 20,
    )
    body = sign_submission(make_events(firm.address, 2), private_key=firm.key, domain=domain)
    answer = client.post("/v1/events", json=body.model_dump(mode="json"))
    assert answer.status_code == 401
    assert stored(dev) == 0


def test_an_unregistered_signer_is_403(client: TestClient, dev: Any) -> None:
    runtime, _ = dev
    stranger = Account.create()
    body = sign_submission(
        make_events(stranger.address, 2), private_key=stranger.key, domain=runtime.intake.domain
    )
    answer = client.post("/v1/events", json=body.model_dump(mode="json"))
    assert answer.status_code == 403
    assert answer.json()["error"] == {
        "code": "unregistered_signer",
        "message": f"{stranger.address} does not hold SUBMITTER_ROLE on registry "
        f"{runtime.registry.address}",
        "field": "submitter",
    }
    assert stored(dev) == 0


def test_a_lowercase_submitter_address_is_refused(client: TestClient, dev: Any) -> None:
    body = signed(dev)
    lower = body["submitter"].lower()
    body["submitter"] = lower
    for event in body["events"]:
        event["submitter"] = lower
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_address"
    assert stored(dev) == 0


def test_oversized_input_is_413(client: TestClient, dev: Any) -> None:
    too_many = client.post("/v1/events", json=signed(dev, 51))
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "too_many_events"
    body = signed(dev, 1)
    body["events"][0]["payload"]["blob"] = "x" * 300_000
    too_big = client.post("/v1/events", json=body)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    assert stored(dev) == 0


def test_unknown_things_are_answered_with_codes(client: TestClient) -> None:
    # an event the caller may not see and one that does not exist: the same answer
    unknown = client.get("/v1/events/nope")
    assert unknown.status_code == 403
    assert unknown.json()["error"]["code"] == "not_found_or_forbidden"
    assert client.get("/v1/events/nope/proof").json() == unknown.json() | {
        "error": unknown.json()["error"]
    }
    assert client.get("/v1/batches/acme.custody/0").status_code == 404
    assert client.get("/v1/batches/Not%20A%20Stream/0").status_code == 422
    assert client.get("/v1/batches/acme.custody/-1").status_code == 422


def test_event_ids_with_slashes_round_trip(client: TestClient, dev: Any) -> None:
    """EPCIS event hash ids (ni:///sha-256;...?ver=CBV2.0) are valid ids."""
    runtime, keys = dev
    firm = keys.submitters[0]
    event = make_events(firm.address, 1)[0].model_copy(
        update={"event_id": "ni:///sha-256;0a1b2c?ver=CBV2.0"}
    )
    body = sign_submission([event], private_key=firm.key, domain=runtime.intake.domain)
    assert client.post("/v1/events", json=body.model_dump(mode="json")).status_code == 202
    runtime.anchorer(keys.oracle).run_once(force=True)
    quoted = quote(event.event_id, safe="")
    assert client.get(f"/v1/events/{quoted}").json()["event_id"] == event.event_id
    verify_bundle(client.get(f"/v1/events/{quoted}/proof").json(), chain=runtime.chain)


def test_health_reports_backlog_then_none(client: TestClient, dev: Any) -> None:
    runtime, keys = dev
    client.post("/v1/events", json=signed(dev, 3))
    health = client.get("/v1/health").json()
    assert health["status"] == "ok"
    assert health["backlog"]["acme.custody"]["pending"] == 3
    assert health["chain"]["chain_id"] == runtime.chain.chain_id
    runtime.anchorer(keys.oracle).run_once(force=True)
    health = client.get("/v1/health").json()
    assert health["backlog"] == {}
    assert health["store"]["batches_anchored"] == 1


def test_openapi_documents_errors_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/events"]["post"]
    assert {"202", "401", "403", "409", "413", "422", "503"} <= set(post["responses"])
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert examples["custody"]["value"]["events"][0]["kind"] == "epcis.ObjectEvent"
    assert "/v1/events/{event_id}/proof" in spec["paths"]


def test_a_streamed_body_over_the_limit_is_413(client: TestClient, dev: Any) -> None:
    """No Content-Length (chunked): the limit is enforced while the body streams in."""
    chunk = b" " * 65_536

    def body() -> Any:
        yield b'{"events": ['
        for _ in range(8):
            yield chunk

    answer = client.post("/v1/events", content=body(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert stored(dev) == 0


@pytest.mark.parametrize(
    ("path", "status"), [("/v1/events", 422), ("/v1/readings", 422), ("/v1/epcis/capture", 400)]
)
def test_a_body_nested_too_deep_is_refused_before_parsing(
    client: TestClient, dev: Any, path: str, status: int
) -> None:
    """100,000 nested brackets (200 KB) would exhaust the C stack of Python's json
    parser and kill the server; they get a clear error and the server goes on."""
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = client.post(path, content=deep, headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert "nested too deep" in answer.text
    assert client.get("/v1/health").status_code in (200, 503)
    assert stored(dev) == 0


def test_a_submission_is_parsed_once(
    client: TestClient, dev: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events route takes the value JsonNestingLimit parsed (ParsedJsonRoute); a
    body it could not parse still gets json.loads's 422."""
    from starlette.requests import Request

    async def no_second_parse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the body was parsed a second time")

    monkeypatch.setattr(Request, "json", no_second_parse)
    answer = client.post("/v1/events", json=signed(dev, 2))
    assert answer.status_code == 202 and answer.json()["accepted"] == 2
    monkeypatch.undo()
    headers = {"content-type": "application/json"}
    broken = client.post("/v1/events", content=b'{"events": [', headers=headers)
    assert (
        broken.status_code == 422 and "Expecting value at character 12" in broken.text
    )  # json.loads said it


_JSON_TEXT_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


@given(
    value=_JSON_TEXT_VALUES,
    ascii_only=st.booleans(),
    spaced=st.booleans(),
    number=st.from_regex(
        r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
    ),
)
def test_the_nesting_check_parses_json_as_json_loads_does(
    value: Any, ascii_only: bool, spaced: bool, number: str
) -> None:
    """What ParsedJsonRoute hands a route (pydantic-core's parse, in JsonNestingLimit)
    is what FastAPI's json.loads would have made of the same text: the same values of
    the same types, floats rounded alike, the last of a repeated key."""
    from pydantic_core import from_json

    separators = (", ", ": ") if spaced else (",", ":")
    texts = [
        json.dumps(value, ensure_ascii=ascii_only, separators=separators),
        f'{{"n": {number}, "n2": [{number}], "k": 1, "k": {number}}}',
    ]
    for text in texts:
        expected = json.loads(text)
        got = from_json(text.encode(), allow_inf_nan=True)
        assert repr(got) == repr(expected)
        assert json.dumps(got) == json.dumps(expected)  # types too: 1 and 1.0 differ here
