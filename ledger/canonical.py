"""Canonical bytes and the hashes built on them. Pure: hashlib and rfc8785 only.

Every hash that fourflow commits to is sha256 over RFC 8785 (JCS) JSON, behind a tag
that names the format and its version:

    event digest  = sha256(sha256(b"fourflow/event/v1" || JCS(event body)))
    leaf          = sha256(sha256(b"fourflow/leaf/v1"  || JCS(signed envelope)))
    stream id     = sha256(utf8(stream name))

Both digests are double hashes, so their preimage is always 32 bytes while an inner
Merkle node's preimage (left || right) is always 64: a leaf can never pass for a node.
No tag contains "{", and JCS of an object always starts with it, so tag and body can
never be re-split differently.

Speed: the rfc8785 package writes JCS in pure Python, one character at a time, and was
most of the cost of taking in an event (and of the audit). ``canonical_json`` therefore
tries three writers, each only where its bytes are certainly JCS:

1. orjson, with sorted keys and integers held to 53 bits, when what it wrote has no
   null (orjson writes NaN and infinities as null), no escape and no character beyond
   the Basic Multilingual Plane. What is left is objects, arrays, safe integers,
   booleans, strings without escapes and finite floats. Its bytes are JCS byte for
   byte except the floats, and each float it wrote is written again as ECMAScript's
   Number::toString writes it (``_ecmascript``): 26.0 as 26, 1e-05 as 0.00001, 1e+16
   as 10000000000000000. Most envelopes, EPCIS events with measurements, readings.
2. The C JSON encoder, over a copy in which whole floats are integers, when every key
   is in the Basic Multilingual Plane (so code-point order is UTF-16 order), every
   integer is a safe integer, and every float is either whole (written as an integer,
   as ECMAScript does below 2**53) or non-whole and at least 1e-4 (where Python's
   shortest repr and ECMAScript's Number::toString agree digit for digit). Values
   with a null.
3. rfc8785 itself: the rest, including every input JCS rejects.

So all give the same bytes or the same error for JSON values (dicts with string keys,
lists, tuples, strings, ints, floats, booleans, None); tests/unit/test_canonical.py
checks that against rfc8785 on generated values. (orjson also writes a UUID or an Enum
member as its JSON value, and an ``orjson.Fragment`` as its bytes, where rfc8785
refuses them; no caller passes any of these.)
``loads_canonical`` reads with orjson in the same spirit: only text without escapes and
without integers of 16 digits or more, which it reads as the standard library does.
``simple_jcs`` is the first writer alone, for callers that have checked the value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, AnyStr

import orjson
import rfc8785

from ledger.errors import InvalidInput

__all__ = [
    "EVENT_TAG",
    "LEAF_TAG",
    "canonical_json",
    "digest_of_canonical",
    "event_digest",
    "leaf_hash",
    "leaf_of_canonical",
    "loads_canonical",
    "simple_jcs",
    "stream_id",
]

EVENT_TAG = b"fourflow/event/v1"
LEAF_TAG = b"fourflow/leaf/v1"


_MAX_SAFE = 2**53 - 1  # JCS numbers are IEEE doubles: larger integers are not exact
_MIN_PLAIN_FLOAT = 1e-4  # below this, Python's repr turns to exponents before ECMAScript's

_encode = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    sort_keys=True,
    allow_nan=False,
    check_circular=False,
).encode


_ORJSON_JCS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER  # a TypeError beyond 2**53 - 1, as JCS needs
    | orjson.OPT_PASSTHROUGH_SUBCLASS  # subclasses, datetimes, dataclasses: to _refuse
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_ASTRAL = re.compile(rb"[\xf0-\xf4]")  # the lead byte of a UTF-8 character beyond the BMP
_FLOAT_MARK = re.compile(rb"\d[.eE]")  # in JSON, "." and "e" follow a digit
# a number with a fraction or an exponent: orjson writes every float with one of them
_FLOAT = re.compile(rb"-?\d+(?:\.\d+)?[eE][-+]?\d+|-?\d+\.\d+")


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _orjson_jcs(value: Any) -> bytes | None:
    """orjson's bytes for ``value``, its floats written again as JCS writes them, when
    they are certainly JCS; else None."""
    try:
        out = orjson.dumps(value, default=_refuse, option=_ORJSON_JCS)
    except TypeError:  # orjson.JSONEncodeError included: lone surrogates, depth, keys
        return None
    if b"\\" in out or (not out.isascii() and _ASTRAL.search(out)):
        return None
    parts = out.split(b'"')  # no escapes: the even parts lie between strings
    between = parts[::2]
    structure = b"".join(between)
    if b"null" in structure:
        return None  # maybe a NaN or an infinity: the next writers refuse those
    floats_at = [mark.start() for mark in _FLOAT_MARK.finditer(structure)]
    if not floats_at:
        return out
    ends = list(accumulate(map(len, between)))  # where each even part ends in structure
    for at in {bisect_right(ends, start) for start in floats_at}:
        parts[2 * at] = _FLOAT.sub(_rewrite_float, parts[2 * at])
    return b'"'.join(parts)


def _rewrite_float(number: re.Match[bytes]) -> bytes:
    return _ecmascript(float(number.group()))


def _ecmascript(number: float) -> bytes:
    """A finite float as ECMAScript's Number::toString writes it, which is how JCS
    writes numbers (RFC 8785 section 3.2.2.3): the fewest digits that read back as the
    same float (the ones Python's repr gives), as plain decimals from 1e-6 up to 1e21,
    with an exponent outside that range; -0 as 0."""
    if number == 0:
        return b"0"
    text = repr(abs(number))  # '26.0', '1.5e-07', '1e+16', '0.001'
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    written = whole + fraction
    digits = written.lstrip("0")
    # the value is 0.<digits> × 10**point
    point = len(whole) + int(exponent or 0) - (len(written) - len(digits))
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        out = digits + "0" * (point - count)
    elif 0 < point <= 21:
        out = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        out = "0." + "0" * -point + digits
    else:
        power = point - 1
        out = digits[0] + ("." + digits[1:] if count > 1 else "") + f"e{power:+d}"
    return ("-" + out if number < 0 else out).encode("ascii")


def _between_strings(text: AnyStr) -> AnyStr:
    """What lies between the strings of JSON text that has no escapes (structure,
    numbers and literals): there, every other quote opens or closes a string."""
    quote: Any = '"' if isinstance(text, str) else b'"'
    return text[:0].join(text.split(quote)[::2])


class _NotPlain(Exception):
    """The value needs rfc8785's own writer (or its error)."""


def _plain(value: Any) -> Any:
    """``value`` ready for the C encoder: the same object, or a copy in which whole
    floats are ints. Raises _NotPlain where the C encoder would not write JCS."""
    kind = type(value)
    if kind is dict:
        copy: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                raise _NotPlain  # beyond the BMP, UTF-16 order is not code-point order
            inner = type(item)
            if inner is str or inner is bool or item is None:  # the common cases, no call
                continue
            if inner is int and -_MAX_SAFE <= item <= _MAX_SAFE:
                continue
            ready = _plain(item)
            if ready is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = ready
        return value if copy is None else copy
    if kind is list:
        items: list[Any] | None = None
        for index, item in enumerate(value):
            inner = type(item)
            if inner is str or inner is bool or item is None:
                continue
            if inner is int and -_MAX_SAFE <= item <= _MAX_SAFE:
                continue
            ready = _plain(item)
            if ready is not item:
                if items is None:
                    items = list(value)
                items[index] = ready
        return value if items is None else items
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        raise _NotPlain
    if kind is float:
        if value.is_integer():
            if -_MAX_SAFE <= value <= _MAX_SAFE:
                return int(value)  # ECMAScript writes 2.0 as 2 and -0.0 as 0
        elif _MIN_PLAIN_FLOAT <= abs(value) < math.inf:  # also false for nan
            return value
        raise _NotPlain
    raise _NotPlain  # tuples, subclasses and other types: rfc8785 decides


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``value``; rejects what JCS cannot represent."""
    fast = _orjson_jcs(value)
    if fast is not None:
        return fast
    try:
        return _encode(_plain(value)).encode("utf-8")
    except (_NotPlain, UnicodeEncodeError, RecursionError):
        pass  # lone surrogates fail the UTF-8 step; rfc8785 names the problem
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"value has no canonical JSON form: {exc}") from exc


def _tagged_double_sha256(tag: bytes, body: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(tag + body).digest()).digest()


def event_digest(body: Mapping[str, Any]) -> bytes:
    """The digest of an unsigned event body; what a submission's signature covers."""
    return digest_of_canonical(canonical_json(body))


def digest_of_canonical(body_jcs: bytes) -> bytes:
    """``event_digest`` of a body whose canonical JSON is already at hand."""
    return _tagged_double_sha256(EVENT_TAG, body_jcs)


def leaf_hash(envelope: Mapping[str, Any]) -> bytes:
    """The Merkle leaf of a signed envelope; what an anchored batch root covers."""
    return leaf_of_canonical(canonical_json(envelope))


def leaf_of_canonical(envelope_jcs: bytes) -> bytes:
    """``leaf_hash`` of an envelope whose canonical JSON is already at hand."""
    return _tagged_double_sha256(LEAF_TAG, envelope_jcs)


def stream_id(name: str) -> bytes:
    """The on-chain id of a stream: sha256 of its UTF-8 name."""
    return hashlib.sha256(name.encode("utf-8")).digest()


def _parse_int(text: str) -> int | float:
    value = int(text)
    return value if -(2**53) < value < 2**53 else float(text)


_DECODER = json.JSONDecoder(parse_int=_parse_int)  # one, not one a call
_LONG_INTEGER = re.compile(r"\d{16}")  # 2**53 has 16 digits: _parse_int must decide


def simple_jcs(value: Any) -> bytes:
    """The canonical JSON of a simple value, written by orjson alone: one holding no
    float, no integer beyond 2**53 - 1 and no key beyond the Basic Multilingual Plane
    (any string, None, nesting up to orjson's limit of about 250 levels). The caller
    has made sure of that, as the audit does for each stored envelope
    (ledger.audit._simple_within_depth); for any other value, use ``canonical_json``.
    A TypeError for an integer beyond 2**53 - 1 or deeper nesting."""
    return orjson.dumps(value, option=_ORJSON_JCS)


def loads_canonical(text: str | bytes) -> Any:
    """Parse JSON written by ``canonical_json`` back into the same values.

    JCS writes a whole float such as 1e20 as plain digits; read back as an int it would
    be outside JSON's safe integer range. Such digits are floats again here, so
    ``canonical_json(loads_canonical(b)) == b``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if "\\" not in text and not _LONG_INTEGER.search(_between_strings(text)):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the standard library's own error (or its reading of NaN)
    return _DECODER.decode(text)
