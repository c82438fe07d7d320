"""ledger.models: what EventBody / SubmissionIn / envelopes / bundles accept and refuse,
and the serializer round trip (model_dump(mode="json") -> model_validate)."""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ledger.canonical import canonical_json, leaf_hash, loads_canonical, stream_id
from ledger.merkle import build_tree
from ledger.models import (
    MAX_PAYLOAD_DEPTH,
    AnchorRef,
    BatchRef,
    EventBody,
    ProofBundle,
    SignedEnvelope,
    SubmissionIn,
    event_time_ms,
)
from tests.unit._vectors import load

ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
OTHER = "0x1563915e194D8CfBA1943570603F7606A3115508"
SIGNATURE = "0x" + "ab" * 65
CANONICAL = load("canonical.json")
ENVELOPE = CANONICAL["envelope"]["envelope"]


def body(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "kind": "epcis.ObjectEvent",
        "schema_version": 1,
        "stream": "acme-logistics.custody",
        "event_id": "6f1c7a2e-8a51-4f4e-9d8c-0f5b2c7e9a10",
        "asset_ids": ["urn:epc:id:sgtin:0614141.107346.2018"],
        "event_time": "2026-11-26T08:15:00.000+08:00",
        "payload": {"bizStep": "urn:epcglobal:cbv:bizstep:shipping", "temp": 24.6},
        "submitter": ADDRESS,
    }
    value.update(overrides)
    return value


def nested(depth: int) -> dict[str, Any]:
    """A payload whose _depth is exactly ``depth``: dicts and lists alternate, dict outside."""
    value: Any = 0
    for level in range(depth - 1):
        value = {"a": value} if level % 2 == 0 else [value]
    return {"a": value}


def _rejected_at(field: str, **overrides: Any) -> ValidationError:
    with pytest.raises(ValidationError) as excinfo:
        EventBody.model_validate(body(**overrides))
    locs = {err["loc"][0] for err in excinfo.value.errors() if err["loc"]}
    assert field in locs, excinfo.value.errors()
    return excinfo.value


# --- EventBody: accepted -----------------------------------------------------------------


def test_the_base_body_is_valid() -> None:
    event = EventBody.model_validate(body())
    assert event.event_time_ms == calendar.timegm((2026, 11, 26, 0, 15, 0)) * 1000


@pytest.mark.parametrize(
    "event_time",
    ["2026-11-26T00:15:00Z", "2026-11-26T00:15:00.5Z", "2026-11-26T08:15:00.123456+08:00",
     "2026-11-25T18:45:00.000-05:30", "1970-01-01T00:00:00.000Z", "2026-11-26T00:15:00+00:00"],
)  # fmt: skip
def test_event_time_with_offset_is_accepted(event_time: str) -> None:
    assert EventBody.model_validate(body(event_time=event_time)).event_time == event_time


@pytest.mark.parametrize(
    ("event_time", "ms"),
    [("2026-11-26T08:15:00.000+08:00", 1795652100000), ("1970-01-01T00:00:00.001Z", 1),
     ("1970-01-01T01:00:00.999+01:00", 999), ("2026-11-26T00:15:00.123456Z", 1795652100123)],
)  # fmt: skip
def test_event_time_ms(event_time: str, ms: int) -> None:
    assert event_time_ms(event_time) == ms
    assert EventBody.model_validate(body(event_time=event_time)).event_time_ms == ms


def test_stream_name_limits() -> None:
    EventBody.model_validate(body(stream="a" * 64))
    EventBody.model_validate(body(stream="0.a_b:c-d"))


@pytest.mark.parametrize("depth", [1, MAX_PAYLOAD_DEPTH - 1, MAX_PAYLOAD_DEPTH])
def test_payload_up_to_max_depth_is_accepted(depth: int) -> None:
    EventBody.model_validate(body(payload=nested(depth)))


def _depth(value: Any) -> int:
    """Containers nested in ``value``, counted the obvious (recursive) way."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_nested_helper_depths() -> None:
    assert [_depth(nested(d)) for d in (1, 2, 3, 16, 17)] == [1, 2, 3, 16, 17]


_JSON_TREES = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=40,
)


@given(tree=st.dictionaries(st.text(max_size=2), _JSON_TREES), limit=st.integers(1, 12))
def test_deeper_than_agrees_with_recursive_depth(tree: dict[str, Any], limit: int) -> None:
    from ledger.models import _deeper_than

    assert _deeper_than(tree, limit) == (_depth(tree) > limit)
    for d in (limit, limit + 1):
        assert _deeper_than(nested(d), limit) == (d > limit)


# --- EventBody: refused ------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_time",
    [
        "2026-11-26T08:15:00.000",  # no offset
        "2026-11-26T08:15:00",  # naive
        "2026-11-26 08:15:00Z",  # space instead of T
        "2026-11-26",  # a date
        "08:15:00+08:00",  # a time
        "2026-11-26T08:15:00.000+0800",  # offset without colon
        "2026-11-26T08:15:00.0000000Z",  # 7 fraction digits
        "2026-02-30T08:15:00.000Z",  # no such day
        "2026-11-26T08:15:00.000+24:00",  # offset out of range
        "1969-12-31T23:59:59.999Z",  # before 1970
        "1970-01-01T00:30:00.000+01:00",  # before 1970 in UTC
        "",
    ],
)
def test_event_time_refused(event_time: str) -> None:
    _rejected_at("event_time", event_time=event_time)


@pytest.mark.parametrize(
    "value",
    [dt.datetime(2026, 11, 26, 8, 15), dt.datetime(2026, 11, 26, 8, 15, tzinfo=dt.UTC), 1795652100],
    ids=["naive-datetime", "aware-datetime", "unix-seconds"],
)  # fmt: skip
def test_event_time_must_be_a_string(value: Any) -> None:
    _rejected_at("event_time", event_time=value)


@pytest.mark.parametrize(
    "stream",
    ["Acme.custody", "acme/custody", "a" * 65, "", "-acme", ".acme", "acme custody", "acmé"],
)
def test_bad_stream_name(stream: str) -> None:
    _rejected_at("stream", stream=stream)


@pytest.mark.parametrize(
    "asset_ids",
    [[], ["a", "a"], ["a", "b", "a"], ["has space"], [""], ["é"], ["x" * 201]],
    ids=["empty", "duplicate", "duplicate-later", "space", "empty-id", "non-ascii", "too-long"],
)
def test_bad_asset_ids(asset_ids: list[str]) -> None:
    _rejected_at("asset_ids", asset_ids=asset_ids)


def test_too_many_asset_ids() -> None:
    _rejected_at("asset_ids", asset_ids=[f"a{i}" for i in range(1001)])
    EventBody.model_validate(body(asset_ids=[f"a{i}" for i in range(1000)]))


@pytest.mark.parametrize("extra", [{"note": "x"}, {"signature": SIGNATURE}, {"Kind": "x"}])
def test_extra_fields_are_forbidden(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        EventBody.model_validate({**body(), **extra})
    assert excinfo.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("field", ["kind", "stream", "event_id", "payload", "submitter"])
def test_missing_field(field: str) -> None:
    value = body()
    del value[field]
    with pytest.raises(ValidationError) as excinfo:
        EventBody.model_validate(value)
    assert excinfo.value.errors()[0]["type"] == "missing"


@pytest.mark.parametrize("depth", [MAX_PAYLOAD_DEPTH + 1, MAX_PAYLOAD_DEPTH + 10])
def test_payload_deeper_than_max_depth(depth: int) -> None:
    error = _rejected_at("payload", payload=nested(depth))
    assert "deeper" in str(error)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"t": float("nan")}, "nan"),
        ({"t": float("inf")}, "inf"),
        ({"deep": [{"t": float("-inf")}]}, "inf"),
        ({"n": 2**53 + 1}, "safe integer"),
        ({"n": 2**53}, "safe integer"),
        ({"n": -(2**53) - 1}, "safe integer"),
        ({"s": "lone \ud800 surrogate"}, "canonical"),
        ({"\udc00": "lone surrogate key"}, "canonical"),
        ({"l": ["ok", "\udbff"]}, "canonical"),
    ],
    ids=["nan", "inf", "nested-inf", "2**53+1", "2**53", "-2**53-1", "surrogate-value",
         "surrogate-key", "surrogate-in-list"],
)  # fmt: skip
def test_payload_without_canonical_form(payload: dict[str, Any], message: str) -> None:
    error = _rejected_at("payload", payload=payload)
    assert message in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema_version", "1"),
        ("schema_version", 1.0),
        ("schema_version", True),
        ("schema_version", 0),
        ("schema_version", 1001),
        ("event_id", 123),
        ("asset_ids", ("a",)),
        ("asset_ids", "a"),
        ("payload", [1]),
        ("payload", {"b": b"bytes"}),
        ("payload", {"t": (1, 2)}),
        ("kind", "1kind"),
        ("kind", ""),
        ("event_id", "has space"),
        ("event_id", "x" * 201),
        ("submitter", ADDRESS.lower()[:-1]),
        ("submitter", ADDRESS[2:]),
        ("submitter", "0x" + "g" * 40),
    ],
)
def test_non_strict_or_malformed_values(field: str, value: Any) -> None:
    _rejected_at(field, **{field: value})


def test_models_are_frozen() -> None:
    event = EventBody.model_validate(body())
    with pytest.raises(ValidationError):
        event.kind = "other"  # type: ignore[misc]


# --- SubmissionIn ------------------------------------------------------------------------


def _events(n: int, submitter: str = ADDRESS) -> list[dict[str, Any]]:
    return [body(event_id=f"ev-{i}", submitter=submitter) for i in range(n)]


def test_submission_accepts_consistent_events() -> None:
    sub = SubmissionIn.model_validate(
        {"submitter": ADDRESS, "signature": SIGNATURE, "events": _events(3)}
    )
    assert [e.event_id for e in sub.events] == ["ev-0", "ev-1", "ev-2"]


def test_submission_refuses_a_foreign_submitter() -> None:
    events = _events(3)
    events[2]["submitter"] = OTHER
    with pytest.raises(ValidationError, match=r"events\[2\]\.submitter"):
        SubmissionIn.model_validate(
            {"submitter": ADDRESS, "signature": SIGNATURE, "events": events}
        )


def test_submission_refuses_a_case_variant_of_the_submitter() -> None:
    with pytest.raises(ValidationError, match=r"events\[0\]\.submitter"):
        SubmissionIn.model_validate(
            {"submitter": ADDRESS, "signature": SIGNATURE, "events": _events(1, ADDRESS.lower())}
        )


def test_submission_refuses_repeated_event_ids() -> None:
    events = _events(3)
    events[2]["event_id"] = events[0]["event_id"]
    with pytest.raises(ValidationError, match=r"events\[2\]\.event_id .* repeats"):
        SubmissionIn.model_validate(
            {"submitter": ADDRESS, "signature": SIGNATURE, "events": events}
        )


@pytest.mark.parametrize(
    "overrides",
    [{"events": []}, {"signature": "0x" + "AB" * 65}, {"signature": "0x" + "ab" * 64},
     {"signature": "ab" * 65}, {"submitter": "nope"}, {"extra": 1}],
    ids=["no-events", "uppercase-sig", "short-sig", "sig-without-0x", "bad-submitter", "extra"],
)  # fmt: skip
def test_submission_shape(overrides: dict[str, Any]) -> None:
    value = {"submitter": ADDRESS, "signature": SIGNATURE, "events": _events(1), **overrides}
    with pytest.raises(ValidationError):
        SubmissionIn.model_validate(value)


# --- round trips (house rule: every serializer gets one) ---------------------------------


@pytest.mark.parametrize("case", CANONICAL["cases"], ids=[c["name"] for c in CANONICAL["cases"]])
def test_event_body_round_trip(case: dict[str, Any]) -> None:
    model = EventBody.model_validate(case["body"])
    dumped = model.model_dump(mode="json")
    again = EventBody.model_validate(dumped)
    assert again == model
    assert canonical_json(again.model_dump(mode="json")) == canonical_json(dumped)
    assert canonical_json(dumped) == case["jcs"].encode("utf-8")
    via_text = EventBody.model_validate_json(model.model_dump_json())
    assert canonical_json(via_text.model_dump(mode="json")) == canonical_json(dumped)


@pytest.mark.parametrize(
    "case",
    [c for c in CANONICAL["cases"]],
    ids=[c["name"] for c in CANONICAL["cases"]],
)
def test_canonical_text_reparses_to_the_same_event(case: dict[str, Any]) -> None:
    # The store keeps canonical_json(envelope) as text and bundle.py re-validates it.
    jcs = canonical_json(EventBody.model_validate(case["body"]).model_dump(mode="json"))
    reparsed = EventBody.model_validate(loads_canonical(jcs))
    assert canonical_json(reparsed.model_dump(mode="json")) == jcs


def test_signed_envelope_round_trip() -> None:
    model = SignedEnvelope.model_validate(ENVELOPE)
    dumped = model.model_dump(mode="json")
    assert dumped == ENVELOPE
    again = SignedEnvelope.model_validate(dumped)
    assert again == model
    assert canonical_json(again.model_dump(mode="json")) == canonical_json(ENVELOPE)
    assert SignedEnvelope.model_validate_json(model.model_dump_json()) == model


def make_bundle() -> dict[str, Any]:
    """A plausible bundle: the vector envelope at leaf 3 of a 5-leaf batch."""
    envelope = copy.deepcopy(ENVELOPE)
    leaf = leaf_hash(envelope)
    batch_leaves = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    batch_leaves[3] = leaf
    tree = build_tree(batch_leaves)
    stream = ENVELOPE["event"]["stream"]
    t = event_time_ms(ENVELOPE["event"]["event_time"])
    return {
        "format": "fourflow/proof-bundle",
        "version": 1,
        "envelope": envelope,
        "leaf": "0x" + leaf.hex(),
        "batch": {
            "stream": stream,
            "stream_id": "0x" + stream_id(stream).hex(),
            "seq": 0,
            "leaf_index": 3,
            "leaf_count": 5,
            "root": "0x" + tree.root.hex(),
            "proof": tree.proof(3),
            "first_event_time": t - 60_000,
            "last_event_time": t + 60_000,
        },
        "anchor": {
            "chain_id": ENVELOPE["domain"]["chainId"],
            "contract": ENVELOPE["domain"]["verifyingContract"],
            "tx_hash": "0x" + hashlib.sha256(b"tx").hexdigest(),
            "block_number": 6,
        },
    }


def test_proof_bundle_round_trip() -> None:
    raw = make_bundle()
    model = ProofBundle.model_validate(raw)
    dumped = model.model_dump(mode="json")
    assert dumped == raw
    assert model.to_json_dict() == raw
    again = ProofBundle.model_validate(dumped)
    assert again == model
    assert canonical_json(again.model_dump(mode="json")) == canonical_json(raw)
    assert ProofBundle.model_validate_json(model.model_dump_json()) == model


def test_proof_bundle_defaults_format_and_version() -> None:
    raw = make_bundle()
    del raw["format"], raw["version"]
    model = ProofBundle.model_validate(raw)
    assert (model.format, model.version) == ("fourflow/proof-bundle", 1)


def test_sub_models_construct_directly() -> None:
    raw = make_bundle()
    assert BatchRef(**raw["batch"]).leaf_count == 5
    assert AnchorRef(**raw["anchor"]).block_number == 6


def _set(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("format", "fourflow/proof-bundle/v2"),
        ("version", 2),
        ("version", "1"),
        ("leaf", "0x" + "AB" * 32),
        ("leaf", "ab" * 32),
        ("leaf", "0x" + "ab" * 31),
        ("batch.seq", -1),
        ("batch.leaf_count", 0),
        ("batch.leaf_index", -1),
        ("batch.stream", "Bad/Stream"),
        ("batch.proof.0", {"up": "ab" * 32}),
        ("batch.proof.0", {"left": "ab" * 32, "right": "ab" * 32}),
        ("batch.proof.0", {"left": "AB" * 32}),
        ("batch.proof.0", {"left": "0x" + "ab" * 32}),
        ("batch.proof.0", {"left": "ab" * 31}),
        ("batch.proof.0", {}),
        ("envelope.submission.count", 0),
        ("envelope.submission.signature", "0x" + "ab" * 64),
        ("envelope.submission.proof.0", {"left": "zz" * 32}),
        ("envelope.domain.chainId", "31337"),
        ("envelope.event.schema_version", "1"),
        ("anchor.block_number", -1),
        ("anchor.tx_hash", "0x" + "ab" * 33),
        ("anchor.extra", 1),
    ],
)
def test_proof_bundle_refuses(path: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        ProofBundle.model_validate(_set(make_bundle(), path, value))


def test_bundle_refusal_helper_edits_the_bundle() -> None:
    raw = _set(make_bundle(), "batch.proof.0", {"left": "cd" * 32})
    assert raw["batch"]["proof"][0] == {"left": "cd" * 32}
    ProofBundle.model_validate(raw)  # still well formed (though it would not verify)


# --- bugs found and fixed: these stay as regression tests ---------------------------------


@pytest.mark.parametrize("number", [1e20, 2.0**53, -(2.0**60)])
def test_stored_envelope_with_a_large_integral_float_reloads(number: float) -> None:
    envelope = copy.deepcopy(ENVELOPE)
    envelope["event"]["payload"]["reading"] = number
    model = SignedEnvelope.model_validate(envelope)  # accepted on the way in
    stored = canonical_json(model.model_dump(mode="json")).decode("utf-8")  # as store.py
    SignedEnvelope.model_validate(loads_canonical(stored))  # as bundle.py


@pytest.mark.parametrize(
    "event_time", ["9999-12-31T23:59:59.000-01:00", "0001-01-01T00:00:00+01:00"]
)
def test_out_of_range_event_time_is_a_validation_error(event_time: str) -> None:
    with pytest.raises(ValidationError):
        EventBody.model_validate(body(event_time=event_time))


def test_submitter_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        EventBody.model_validate(body(submitter=ADDRESS + "\n"))


def test_proof_sibling_with_trailing_newline_is_refused() -> None:
    raw = make_bundle()
    ((side, value),) = raw["batch"]["proof"][0].items()
    raw["batch"]["proof"][0] = {side: value + "\n"}
    with pytest.raises(ValidationError):
        ProofBundle.model_validate(raw)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


@given(payload=st.dictionaries(st.text(max_size=4), _JSON_VALUES, max_size=5))
def test_as_json_is_model_dump(payload: dict[str, Any]) -> None:
    """The cheap JSON form is the model's own, value for value and type for type."""
    try:
        event = EventBody.model_validate(body(payload=payload))
    except ValidationError:
        return  # refused (a lone surrogate, say): nothing to serialize
    dumped = event.model_dump(mode="json")
    assert event.as_json() == dumped
    assert canonical_json(event.as_json()) == canonical_json(dumped)
    assert repr(event.as_json()) == repr(dumped)  # 1 stays 1, 1.0 stays 1.0, True stays True
