"""Write the golden vectors in this directory from the CURRENT code.

    .venv/bin/python tests/vectors/generate.py           # refuses to overwrite
    .venv/bin/python tests/vectors/generate.py --force   # deliberately re-freeze

The vectors were generated once and committed; tests/unit compares the code's output
against them, so any change to canonicalisation, hashing, tree shape or signing shows up
as a test failure. Regenerating is a format change: only do it on purpose, together with
a new tag / bundle version (see docs/proof-format.md).

Files:
    canonical.json  event bodies -> RFC 8785 bytes and event digest; a signed envelope
                    -> its JCS bytes and Merkle leaf; stream names -> stream ids
    merkle.json     leaf counts 1..33 (leaf i = sha256(uint32_be(i))) -> root, and the
                    merkletools proofs of indices 0, n // 2 and n - 1
    signing.json    a well-known test key, a fixed EIP-712 domain and three events ->
                    event digests, submission root, EIP-712 digest, signature (RFC 6979)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

from ledger.canonical import canonical_json, event_digest, leaf_hash, stream_id
from ledger.merkle import build_tree
from ledger.models import EventBody
from ledger.signing import (
    SUBMISSION_TYPES,
    domain_for,
    envelopes_for,
    sign_submission,
    submission_root,
)

HERE = Path(__file__).resolve().parent

# A well-known test key (never holds funds); committing it is intended.
PRIVATE_KEY = "0x" + "11" * 32
CHAIN_ID = 31337
VERIFYING_CONTRACT = "0x" + "22" * 20
ENVELOPE_INDEX = 1  # which envelope of the signing submission canonical.json freezes

ADDRESS = Account.from_key(PRIVATE_KEY).address


def _body(event_id: str, payload: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "epcis.ObjectEvent",
        "schema_version": 1,
        "stream": "acme-logistics.custody",
        "event_id": event_id,
        "asset_ids": ["urn:epc:id:sscc:0614141.0000000001"],
        "event_time": "2026-11-26T08:15:00.000+08:00",
        "payload": payload,
        "submitter": ADDRESS,
    }
    body.update(overrides)
    return body


def canonical_cases() -> list[dict[str, Any]]:
    """(name, body) pairs; every body is a valid EventBody."""
    key_order_a = _body(
        "key-order",
        {"alpha": 1, "beta": {"x": [1, 2, {"b": True, "a": None}], "w": "w"}, "gamma": "g"},
    )
    key_order_b = dict(reversed(list(key_order_a.items())))
    key_order_b["payload"] = {
        "gamma": "g",
        "beta": {"w": "w", "x": [1, 2, {"a": None, "b": True}]},
        "alpha": 1,
    }
    return [
        {
            "name": "ascii-simple",
            "body": _body(
                "ascii-1",
                {"bizStep": "urn:epcglobal:cbv:bizstep:shipping", "seq": 0},
                event_time="2026-11-21T13:00:00.000Z",
            ),
        },
        {
            "name": "unicode",
            "body": _body(
                "unicode-1",
                {
                    # UTF-16 order: "\r" < "1" < "\x80" < "ö" < "€" < "😀" < "דּ"
                    # ("😀" is a surrogate pair 0xD83D 0xDE00 and sorts before U+FB33)
                    "€": "Zürich → 東京",
                    "\U0001f600": "emoji",
                    "\ufb33": "hebrew presentation form",
                    "ö": "o umlaut",
                    "\x80": "C1 control",
                    "1": "one",
                    "\r": "carriage return",
                    "escapes": 'tab\t nl\n quote" backslash\\ slash/ us\x1f del\x7f ls\u2028',
                },
                asset_ids=["urn:epc:id:sgtin:0614141.107346.2018", "lot:A~Z!"],
            ),
        },
        {
            "name": "nested",
            "body": _body(
                "nested-1",
                {
                    "epcList": ["urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:1"],
                    "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"},
                    "sensorElementList": [
                        {
                            "sensorMetadata": {"time": "2026-11-26T08:14:59.000+08:00"},
                            "sensorReport": [
                                {"type": "gs1:Temperature", "value": 4, "uom": "CEL"},
                                {"type": "gs1:RelativeHumidity", "value": 55, "uom": "A93"},
                            ],
                        }
                    ],
                    "empty_object": {},
                    "empty_list": [],
                    "flags": [True, False, None],
                    "deep": {"a": {"b": {"c": {"d": {"e": [[["bottom"]]]}}}}},
                },
                event_time="2026-11-26T08:15:00.123456-05:30",
            ),
        },
        {
            "name": "floats",
            "body": _body(
                "floats-1",
                {
                    "temperature": 24.6,
                    "big": 1e21,
                    "below_exponent": 1e20,
                    "negative_zero": -0.0,
                    "one_point_zero": 1.0,
                    "third": 0.1 + 0.2,
                    "small": 1e-7,
                    "micro": 0.000001,
                    "subnormal": 5e-324,
                    "max": 1.7976931348623157e308,
                    "kelvin": -273.15,
                    "list": [24.6, -0.0, 1e21, 333333333.3333333],
                },
            ),
        },
        {
            "name": "integers",
            "body": _body(
                "integers-1",
                {
                    "zero": 0,
                    "negative": -1,
                    "max_safe": 2**53 - 1,
                    "min_safe": -(2**53 - 1),
                    "seq": 42,
                    "list": [0, 1, -1, 1000000],
                },
                schema_version=7,
            ),
        },
        {"name": "int-one", "body": _body("number-1", {"n": 1, "m": [2]})},
        {"name": "float-one", "body": _body("number-1", {"n": 1.0, "m": [2.0]})},
        {"name": "key-order-a", "body": key_order_a},
        {"name": "key-order-b", "body": key_order_b},
    ]


def signing_events() -> list[dict[str, Any]]:
    return [
        _body(
            f"sign-{i}",
            {"bizStep": "urn:epcglobal:cbv:bizstep:receiving", "seq": i, "temp": 4.5 + i},
            event_time=f"2026-11-26T08:{15 + i:02d}:00.000+08:00",
            asset_ids=[f"urn:epc:id:sgtin:0614141.107346.{2018 + i}"],
        )
        for i in range(3)
    ]


def build_signing() -> tuple[dict[str, Any], dict[str, Any]]:
    """signing.json, and the envelope that canonical.json freezes."""
    domain = domain_for(chain_id=CHAIN_ID, contract=VERIFYING_CONTRACT)
    raw_events = signing_events()
    events = [EventBody.model_validate(e) for e in raw_events]
    root = submission_root(events)
    submission = sign_submission(events, private_key=PRIVATE_KEY, domain=domain)
    sealed = envelopes_for(submission, domain=domain)
    typed = {
        "types": SUBMISSION_TYPES,
        "primaryType": "Submission",
        "domain": domain.model_dump(),
        "message": {"submitter": ADDRESS, "eventsRoot": root, "eventCount": len(events)},
    }
    eip712_digest = _hash_eip191_message(encode_typed_data(full_message=typed))
    signing = {
        "comment": "generated by tests/vectors/generate.py; do not edit by hand",
        "private_key": PRIVATE_KEY,
        "address": ADDRESS,
        "domain": domain.model_dump(mode="json"),
        "events": raw_events,
        "event_digests": [event_digest(e).hex() for e in raw_events],
        "submission_root": root.hex(),
        "eip712_digest": bytes(eip712_digest).hex(),
        "signature": submission.signature,
        "proofs": [env.submission.proof for env in sealed.envelopes],
    }
    envelope = sealed.envelopes[ENVELOPE_INDEX].model_dump(mode="json")
    return signing, envelope


def build_canonical(envelope: dict[str, Any]) -> dict[str, Any]:
    cases = []
    for case in canonical_cases():
        EventBody.model_validate(case["body"])  # every vector body is a valid event
        cases.append(
            {
                "name": case["name"],
                "body": case["body"],
                "jcs": canonical_json(case["body"]).decode("utf-8"),
                "event_digest": event_digest(case["body"]).hex(),
            }
        )
    streams = ["acme-logistics.custody", "acme.custody", "a", "x" * 64]
    return {
        "comment": "generated by tests/vectors/generate.py; do not edit by hand",
        "cases": cases,
        "envelope": {
            "envelope": envelope,
            "jcs": canonical_json(envelope).decode("utf-8"),
            "leaf": leaf_hash(envelope).hex(),
        },
        "stream_ids": [{"name": s, "stream_id": stream_id(s).hex()} for s in streams],
    }


def merkle_leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def build_merkle() -> dict[str, Any]:
    trees = []
    for n in range(1, 34):
        tree = build_tree(merkle_leaves(n))
        indices = sorted({0, n // 2, n - 1})
        trees.append(
            {
                "count": n,
                "root": tree.root.hex(),
                "proofs": [{"index": i, "proof": tree.proof(i)} for i in indices],
            }
        )
    return {
        "comment": "generated by tests/vectors/generate.py; do not edit by hand",
        "leaf_rule": "leaf i = sha256(i.to_bytes(4, 'big')) for i in range(count)",
        "trees": trees,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing vectors")
    args = parser.parse_args(argv)
    signing, envelope = build_signing()
    outputs = {
        "canonical.json": build_canonical(envelope),
        "merkle.json": build_merkle(),
        "signing.json": signing,
    }
    existing = [name for name in outputs if (HERE / name).exists()]
    if existing and not args.force:
        print(f"refusing to overwrite {', '.join(existing)} (use --force)", file=sys.stderr)
        return 1
    for name, data in outputs.items():
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
