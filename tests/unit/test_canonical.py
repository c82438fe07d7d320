"""ledger.canonical: RFC 8785 bytes, tagged double-sha256 digests, stream ids.

Golden values come from tests/vectors/canonical.json (frozen by tests/vectors/generate.py);
independent checks use RFC 8785's own examples, json.dumps and plain hashlib.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.canonical import (
    EVENT_TAG,
    LEAF_TAG,
    canonical_json,
    event_digest,
    leaf_hash,
    loads_canonical,
    simple_jcs,
    stream_id,
)
from ledger.errors import InvalidInput
from ledger.models import EventBody, SignedEnvelope
from ledger.signing import recover_envelope_signer
from tests.unit._vectors import load

VECTORS = load("canonical.json")
CASES = VECTORS["cases"]
CASE_IDS = [case["name"] for case in CASES]
ENVELOPE = VECTORS["envelope"]

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _double_sha256(tag: bytes, body: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(tag + body).digest()).digest()


def _case(name: str) -> dict[str, Any]:
    return next(case for case in CASES if case["name"] == name)


# --- golden vectors --------------------------------------------------------------------


def test_vectors_cover_the_required_cases() -> None:
    assert {"unicode", "nested", "floats", "integers", "key-order-a", "key-order-b"} <= set(
        CASE_IDS
    )
    floats = _case("floats")["body"]["payload"]
    assert floats["temperature"] == 24.6
    assert floats["big"] == 1e21
    assert str(floats["negative_zero"]) == "-0.0"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_canonical_bytes_match_vector(case: dict[str, Any]) -> None:
    assert canonical_json(case["body"]) == case["jcs"].encode("utf-8")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_event_digest_matches_vector(case: dict[str, Any]) -> None:
    assert event_digest(case["body"]).hex() == case["event_digest"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_event_digest_is_tagged_double_sha256_of_the_vector_bytes(case: dict[str, Any]) -> None:
    expected = _double_sha256(b"fourflow/event/v1", case["jcs"].encode("utf-8"))
    assert expected.hex() == case["event_digest"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_model_dump_hashes_like_the_raw_body(case: dict[str, Any]) -> None:
    # The ledger hashes EventBody.model_dump(mode="json"), not the submitted dict.
    dumped = EventBody.model_validate(case["body"]).model_dump(mode="json")
    assert canonical_json(dumped) == case["jcs"].encode("utf-8")
    assert event_digest(dumped).hex() == case["event_digest"]


def test_key_order_does_not_matter() -> None:
    a, b = _case("key-order-a"), _case("key-order-b")
    assert list(a["body"]) != list(b["body"])  # the vectors really differ in order
    assert list(a["body"]["payload"]) != list(b["body"]["payload"])
    assert a["jcs"] == b["jcs"]
    assert a["event_digest"] == b["event_digest"]
    assert canonical_json(a["body"]) == canonical_json(b["body"])


def test_integral_float_and_int_are_the_same_number() -> None:
    as_int, as_float = _case("int-one"), _case("float-one")
    assert isinstance(as_float["body"]["payload"]["n"], float)
    assert isinstance(as_int["body"]["payload"]["n"], int)
    assert as_int["jcs"] == as_float["jcs"]
    assert event_digest(as_int["body"]) == event_digest(as_float["body"])


def test_unicode_keys_sort_by_utf16_code_units() -> None:
    jcs = _case("unicode")["jcs"]
    order = ["\r", "1", "escapes", "\x80", "ö", "€", "\U0001f600", "\ufb33"]
    positions = [jcs.index(json.dumps(key, ensure_ascii=False)) for key in order]
    assert positions == sorted(positions)
    # code-point order would put U+FB33 before U+1F600; UTF-16 order does not
    assert sorted(["\U0001f600", "\ufb33"]) == ["\ufb33", "\U0001f600"]


def test_envelope_leaf_matches_vector() -> None:
    envelope = ENVELOPE["envelope"]
    assert canonical_json(envelope) == ENVELOPE["jcs"].encode("utf-8")
    assert leaf_hash(envelope).hex() == ENVELOPE["leaf"]
    assert (
        _double_sha256(b"fourflow/leaf/v1", ENVELOPE["jcs"].encode("utf-8")).hex()
        == (ENVELOPE["leaf"])
    )


def test_envelope_vector_survives_the_model_and_is_validly_signed() -> None:
    model = SignedEnvelope.model_validate(ENVELOPE["envelope"])
    assert leaf_hash(model.model_dump(mode="json")).hex() == ENVELOPE["leaf"]
    assert recover_envelope_signer(model) == model.event.submitter


def test_leaf_and_event_digest_are_domain_separated() -> None:
    body = CASES[0]["body"]
    assert EVENT_TAG != LEAF_TAG
    assert b"{" not in EVENT_TAG and b"{" not in LEAF_TAG
    assert event_digest(body) != leaf_hash(body)


@pytest.mark.parametrize("entry", VECTORS["stream_ids"], ids=lambda e: e["name"][:16])
def test_stream_id_matches_vector(entry: dict[str, str]) -> None:
    assert stream_id(entry["name"]).hex() == entry["stream_id"]
    assert hashlib.sha256(entry["name"].encode("utf-8")).hexdigest() == entry["stream_id"]


# --- independent RFC 8785 checks -------------------------------------------------------

# RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical_json({"n": value}) == b'{"n":' + expected.encode() + b"}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(24.6, "24.6"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (-0.0, "0"),
     (1.0, "1"), (1e-7, "1e-7"), (0.1 + 0.2, "0.30000000000000004"),
     (2**53 - 1, "9007199254740991"), (-(2**53 - 1), "-9007199254740991"), (0, "0")],
)  # fmt: skip
def test_number_forms(value: float, expected: str) -> None:
    assert canonical_json({"n": value}) == ('{"n":' + expected + "}").encode()


def test_rfc8785_sorting_example() -> None:
    # RFC 8785 section 3.2.3
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_json(value) == expected.encode("utf-8")


def test_rfc8785_string_escaping() -> None:
    # minimal escaping: only '"', '\\' and C0 controls; short forms where JSON has them
    value = {"s": '\u20ac$\u000f\nA\'B"\\\\"/\b\f\r\t\x00\x7f\u2028'}
    expected = '{"s":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/\\b\\f\\r\\t\\u0000\x7f\u2028"}'
    assert canonical_json(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        {"n": float("nan")},
        {"n": float("inf")},
        {"n": float("-inf")},
        {"n": 2**53},
        {"n": -(2**53)},
        {"n": 10**30},
        {"s": "\ud800"},
        {"\udfff": 1},
        {"b": b"bytes"},
        {1: "non-string key"},
        {"set": {1, 2}},
    ],
    ids=["nan", "inf", "-inf", "2**53", "-2**53", "10**30", "lone-high", "lone-low-key",
         "bytes", "int-key", "set"],
)  # fmt: skip
def test_canonical_json_rejects_what_jcs_cannot_represent(value: dict[Any, Any]) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        canonical_json(value)
    assert excinfo.value.code == "invalid_input"


ASCII = st.characters(max_codepoint=0x7F)
_ascii_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.text(ASCII, max_size=12)
)
ASCII_JSON = st.recursive(
    _ascii_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(ASCII, max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@PROPERTY
@given(st.dictionaries(st.text(ASCII, max_size=6), ASCII_JSON, max_size=6))
def test_ascii_without_floats_equals_sorted_compact_json_dumps(value: dict[str, Any]) -> None:
    independent = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == independent.encode("utf-8")


# --- the fast writer against rfc8785 ---------------------------------------------------
# canonical_json writes most values with the C JSON encoder and hands the rest to
# rfc8785; the two must never disagree, in bytes or in what they reject.

_any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=8)
_keys = st.one_of(
    _any_text,
    st.sampled_from(["a", "A", "\ufb33", "\U0001f600", "\ue000", "\uffff", "\ud800", "é"]),
)
_any_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**54), max_value=2**54)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.floats(min_value=-(2.0**54), max_value=2.0**54).map(float.__floor__).map(float)
    | st.sampled_from([1e-4, 9.999999999999999e-5, 1e16, 1e21, 1e-7, -0.0, 2.0**53, 2.0**53 - 1])
    | _any_text
)
ANY_JSON = st.recursive(
    _any_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(_keys, children, max_size=5)
    ),
    max_leaves=25,
)


def _rfc8785_or_error(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return None


@settings(PROPERTY, max_examples=600)
@given(st.dictionaries(_keys, ANY_JSON, max_size=6))
def test_fast_writer_agrees_with_rfc8785_on_any_value(value: dict[str, Any]) -> None:
    expected = _rfc8785_or_error(value)
    if expected is None:
        with pytest.raises(InvalidInput):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "number",
    [1e-4, 1.5e-4, 9.99e-5, 123.456, 1e15 + 0.5, 2.0**52 + 0.5, 2.0**53 - 1, 2.0**53,
     -(2.0**53), 1e16, 1e21, 5e-324, -0.0, 0.0, 1e-7, 0.1 + 0.2],
)  # fmt: skip
def test_fast_writer_agrees_with_rfc8785_at_the_float_boundaries(number: float) -> None:
    value = {"n": number, "list": [number, {"k": number}]}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_common_envelopes_never_reach_rfc8785(monkeypatch: pytest.MonkeyPatch) -> None:
    # The speed of taking in events rests on this: an ordinary envelope (and a reading
    # with whole and fractional floats) is written without the slow writer.
    def slow(value: Any) -> bytes:
        raise AssertionError("rfc8785 was called")

    monkeypatch.setattr(rfc8785, "dumps", slow)
    assert canonical_json(ENVELOPE["envelope"]) == ENVELOPE["jcs"].encode("utf-8")
    reading = {"celsius": 21.5, "count": 40.0, "ratio": 0.8125, "ok": True, "note": None}
    assert (
        canonical_json(reading)
        == b'{"celsius":21.5,"count":40,"note":null,"ok":true,"ratio":0.8125}'
    )
    with pytest.raises(AssertionError, match="rfc8785 was called"):
        canonical_json({"n": 1e-7, "none": None})  # and the rest still goes there


def test_plain_envelopes_are_written_by_orjson_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first writer takes the common envelope, floats and all (each written again as
    # ECMAScript writes it); anything it is unsure of (a null, which may be a NaN, an
    # escape, a character beyond the BMP) goes on to the next ones.
    import ledger.canonical as canonical

    def never(value: Any) -> Any:
        raise AssertionError("the C encoder was called")

    envelope = ENVELOPE["envelope"]
    assert isinstance(envelope["event"]["payload"]["temp"], float)  # the vector's one float
    monkeypatch.setattr(canonical, "_plain", never)
    assert canonical_json(envelope) == ENVELOPE["jcs"].encode("utf-8")
    assert canonical_json({"b": [1, True, "é"], "a": {"k": -(2**53 - 1)}}) == (
        '{"a":{"k":-9007199254740991},"b":[1,true,"é"]}'.encode()
    )
    floats = {"whole": 26.0, "small": 1e-5, "big": 1e16, "huge": -1e21, "s": "1.0e5 in text"}
    assert canonical_json(floats) == (
        b'{"big":10000000000000000,"huge":-1e+21,"s":"1.0e5 in text","small":0.00001,"whole":26}'
    )
    for unsure in ({"n": None}, {"n": float("nan")}, {"s": 'a"b'}, {"\U0001f600": 1}):
        with pytest.raises(AssertionError, match="the C encoder was called"):
            canonical_json(unsure)


@settings(PROPERTY, max_examples=2_000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_is_written_as_rfc8785_writes_it(number: float) -> None:
    # orjson's shortest digits, placed again by _ecmascript: in a value, in a list, in
    # a nested object, beside a string that looks like a number
    value = {"n": number, "list": [number, {"k": -number}], "text": "-1.5e-7"}
    assert canonical_json(value) == rfc8785.dumps(value)


_bmp_text = st.text(st.characters(min_codepoint=0, max_codepoint=0xFFFF, exclude_categories=["Cs"]))
_simple_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8)  # any text, escapes too
    | st.sampled_from(["\b\t\n\f\r", '"\\', "\x00\x1f\x7f", "\u2028\u2029", "😀"])
)
SIMPLE_JSON = st.recursive(
    _simple_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_bmp_text, children, max_size=4)
    ),
    max_leaves=25,
)


@settings(PROPERTY, max_examples=400)
@given(st.dictionaries(_bmp_text, SIMPLE_JSON, max_size=6))
def test_simple_values_are_written_by_orjson_alone_as_rfc8785_writes_them(
    value: dict[str, Any],
) -> None:
    # what the audit relies on for every simple stored envelope (ledger.audit)
    assert simple_jcs(value) == rfc8785.dumps(value)


def test_nan_written_as_null_by_orjson_is_still_refused() -> None:
    assert orjson.dumps({"n": float("nan")}) == b'{"n":null}'  # why null is not plain
    for value in ({"n": float("nan")}, {"a": [1, {"n": float("-inf")}]}):
        with pytest.raises(InvalidInput):
            canonical_json(value)


def _stdlib_loads(text: str) -> Any:
    def parse_int(digits: str) -> int | float:
        value = int(digits)
        return value if abs(value) < 2**53 else float(digits)

    return json.loads(text, parse_int=parse_int)


_READ_BACK_CASES = [
    '{"a":1}', '{"big":9007199254740993}', '{"big":-12345678901234567890}', '{"s":"\\u00e9"}',
    '{"q":"say \\"9007199254740993\\""}', '{"n":NaN}', '[1.5e300,1e400,-0,-0.0]',
    '{"a":1,"a":2}', '  {"x" : [ 1 , 2 ] }  ', '{"digits":"12345678901234567890"}',
    '{"bad":}', '{"unterminated', '"\\ud800"',
]  # fmt: skip


@pytest.mark.parametrize("text", _READ_BACK_CASES)
def test_loads_canonical_reads_as_the_standard_library_does(text: str) -> None:
    try:
        expected: Any = _stdlib_loads(text)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            loads_canonical(text)
        return
    for got in (loads_canonical(text), loads_canonical(text.encode("utf-8"))):
        assert json.dumps(got) == json.dumps(expected)  # NaN and -0.0 compare by their text
        assert _types(got) == _types(expected)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


@PROPERTY
@given(st.dictionaries(_keys, ANY_JSON, max_size=6))
def test_canonical_bytes_read_back_to_the_same_bytes(value: dict[str, Any]) -> None:
    try:
        jcs = canonical_json(value)
    except InvalidInput:
        return
    text = jcs.decode("utf-8")
    read = loads_canonical(jcs)
    assert json.dumps(read) == json.dumps(_stdlib_loads(text))
    assert _types(read) == _types(_stdlib_loads(text))
    assert canonical_json(read) == jcs


# --- tampering -------------------------------------------------------------------------

_JCS = ENVELOPE["jcs"].encode("utf-8")
_LEAF = bytes.fromhex(ENVELOPE["leaf"])


@PROPERTY
@given(position=st.integers(0, len(_JCS) - 1), xor=st.integers(1, 255))
def test_flipping_any_byte_of_the_envelope_json_changes_the_leaf(position: int, xor: int) -> None:
    tampered = bytearray(_JCS)
    tampered[position] ^= xor
    assert _double_sha256(LEAF_TAG, bytes(tampered)) != _LEAF
    # If the tampered bytes still parse, the leaf of the parsed value equals the original
    # leaf exactly when its canonical form is the original canonical form (e.g. "\u001F").
    try:
        parsed = json.loads(bytes(tampered).decode("utf-8"))
    except ValueError:
        return
    assume(isinstance(parsed, dict))
    try:
        canonical = canonical_json(parsed)
    except InvalidInput:
        return
    assert (leaf_hash(parsed) == _LEAF) == (canonical == _JCS)


def test_envelope_leaf_formula_matches_code() -> None:
    assert _double_sha256(LEAF_TAG, _JCS) == leaf_hash(ENVELOPE["envelope"]) == _LEAF


def test_generator_reproduces_the_committed_vectors() -> None:
    # tests/vectors/generate.py run against today's code must give the committed files,
    # i.e. nobody hand-edited a vector and the generator is not stale.
    import importlib.util

    from tests.unit._vectors import VECTORS as VECTOR_DIR

    spec = importlib.util.spec_from_file_location("vector_generator", VECTOR_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    signing, envelope = generator.build_signing()
    assert generator.build_canonical(envelope) == load("canonical.json")
    assert generator.build_merkle() == load("merkle.json")
    assert signing == load("signing.json")
