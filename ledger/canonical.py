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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger.errors import InvalidInput

__all__ = [
    "EVENT_TAG",
    "LEAF_TAG",
    "canonical_json",
    "event_digest",
    "leaf_hash",
    "loads_canonical",
    "stream_id",
]

EVENT_TAG = b"fourflow/event/v1"
LEAF_TAG = b"fourflow/leaf/v1"


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``value``; rejects what JCS cannot represent."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value has no canonical JSON form: {exc}") from exc


def _tagged_double_sha256(tag: bytes, body: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(tag + body).digest()).digest()


def event_digest(body: Mapping[str, Any]) -> bytes:
    """The digest of an unsigned event body; what a submission's signature covers."""
    return _tagged_double_sha256(EVENT_TAG, canonical_json(body))


def leaf_hash(envelope: Mapping[str, Any]) -> bytes:
    """The Merkle leaf of a signed envelope; what an anchored batch root covers."""
    return _tagged_double_sha256(LEAF_TAG, canonical_json(envelope))


def stream_id(name: str) -> bytes:
    """The on-chain id of a stream: sha256 of its UTF-8 name."""
    return hashlib.sha256(name.encode("utf-8")).digest()


def _parse_int(text: str) -> int | float:
    value = int(text)
    return value if -(2**53) < value < 2**53 else float(text)


def loads_canonical(text: str | bytes) -> Any:
    """Parse JSON written by ``canonical_json`` back into the same values.

    JCS writes a whole float such as 1e20 as plain digits; read back as an int it would
    be outside JSON's safe integer range. Such digits are floats again here, so
    ``canonical_json(loads_canonical(b)) == b``.
    """
    return json.loads(text, parse_int=_parse_int)
