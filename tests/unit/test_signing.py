"""ledger.signing: EIP-712 submission signatures, per-event envelopes, recovery.

Golden values come from tests/vectors/signing.json (a well-known test key, a fixed
domain, three events). The EIP-712 digest is recomputed by hand with keccak and via
eth_account's encode_typed_data on a hand-built message; signatures are checked with
eth_keys directly.
"""

from __future__ import annotations

import hashlib
import itertools
from functools import cache
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_keys import keys
from eth_utils import keccak
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json, event_digest
from ledger.errors import InvalidInput, InvalidSignature
from ledger.models import Eip712Domain, EventBody, SignedEnvelope, SubmissionIn
from ledger.signing import (
    SealedSubmission,
    domain_for,
    envelopes_for,
    recover_envelope_signer,
    recover_submitter,
    sign_submission,
    submission_root,
    verify_checksum_address,
)
from tests.unit._vectors import load

V = load("signing.json")
KEY = V["private_key"]
ADDRESS = V["address"]
OTHER_KEY = "0x" + "33" * 32
OTHER = Account.from_key(OTHER_KEY).address
DOMAIN = Eip712Domain.model_validate(V["domain"])
EVENTS = [EventBody.model_validate(e) for e in V["events"]]


def _events(n: int, submitter: str = ADDRESS, prefix: str = "ev") -> list[EventBody]:
    return [
        EventBody(
            kind="epcis.ObjectEvent",
            schema_version=1,
            stream="acme.custody",
            event_id=f"{prefix}-{i}",
            asset_ids=[f"urn:epc:id:sgtin:0614141.107346.{i}"],
            event_time=f"2026-11-26T08:{i % 60:02d}:00.000+08:00",
            payload={"bizStep": "urn:epcglobal:cbv:bizstep:shipping", "seq": i},
            submitter=submitter,
        )
        for i in range(n)
    ]


def _hand_typed_message(
    domain: dict[str, Any], *, submitter: str, root: bytes, count: int
) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Submission": [
                {"name": "submitter", "type": "address"},
                {"name": "eventsRoot", "type": "bytes32"},
                {"name": "eventCount", "type": "uint256"},
            ],
        },
        "primaryType": "Submission",
        "domain": dict(domain),
        "message": {"submitter": submitter, "eventsRoot": "0x" + root.hex(), "eventCount": count},
    }


def _eip191_hash(signable: SignableMessage) -> bytes:
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def _hand_eip712_digest(
    domain: dict[str, Any], *, submitter: str, root: bytes, count: int
) -> bytes:
    def word(value: int) -> bytes:
        return value.to_bytes(32, "big")

    def address(value: str) -> bytes:
        return bytes(12) + bytes.fromhex(value[2:])

    domain_type = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    separator = keccak(
        domain_type
        + keccak(domain["name"].encode())
        + keccak(domain["version"].encode())
        + word(domain["chainId"])
        + address(domain["verifyingContract"])
    )
    submission_type = keccak(b"Submission(address submitter,bytes32 eventsRoot,uint256 eventCount)")
    struct_hash = keccak(submission_type + address(submitter) + root + word(count))
    return keccak(b"\x19\x01" + separator + struct_hash)


def _recover_by_hand(digest: bytes, signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    assert len(raw) == 65 and raw[64] in (27, 28)
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64] - 27
    public = keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest)
    return public.to_checksum_address()


# --- golden vectors --------------------------------------------------------------------


def test_vector_key_and_domain() -> None:
    assert Account.from_key(KEY).address == ADDRESS
    assert V["domain"] == {
        "name": "fourflow",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": "0x" + "22" * 20,
    }
    assert domain_for(chain_id=31337, contract="0x" + "22" * 20) == DOMAIN
    assert len(EVENTS) == 3


def test_domain_for_checksums_the_contract() -> None:
    assert domain_for(chain_id=1, contract=OTHER.lower()).verifyingContract == OTHER
    assert domain_for(chain_id=1, contract=OTHER.lower()).chainId == 1


def test_event_digests_and_root_match_vector() -> None:
    digests = [event_digest(e.model_dump(mode="json")) for e in EVENTS]
    assert [d.hex() for d in digests] == V["event_digests"]
    assert [event_digest(raw).hex() for raw in V["events"]] == V["event_digests"]
    # three leaves: sha256(sha256(d0 || d1) || d2), the third promoted
    by_hand = hashlib.sha256(hashlib.sha256(digests[0] + digests[1]).digest() + digests[2])
    assert by_hand.hexdigest() == V["submission_root"]
    assert submission_root(EVENTS).hex() == V["submission_root"]


def test_signature_matches_vector() -> None:
    submission = sign_submission(EVENTS, private_key=KEY, domain=DOMAIN)
    assert submission.submitter == ADDRESS
    assert submission.signature == V["signature"]
    assert submission.events == EVENTS
    # bytes keys sign identically
    again = sign_submission(EVENTS, private_key=bytes.fromhex(KEY[2:]), domain=DOMAIN)
    assert again.signature == V["signature"]


def test_eip712_digest_by_hand_and_via_eth_account() -> None:
    root = bytes.fromhex(V["submission_root"])
    by_hand = _hand_eip712_digest(V["domain"], submitter=ADDRESS, root=root, count=3)
    message = _hand_typed_message(V["domain"], submitter=ADDRESS, root=root, count=3)
    via_eth_account = _eip191_hash(encode_typed_data(full_message=message))
    assert by_hand.hex() == via_eth_account.hex() == V["eip712_digest"]


def test_signature_is_the_rfc6979_signature_of_the_digest() -> None:
    digest = bytes.fromhex(V["eip712_digest"])
    assert _recover_by_hand(digest, V["signature"]) == ADDRESS
    signed = Account.unsafe_sign_hash(digest, KEY)
    assert "0x" + bytes(signed.signature).hex() == V["signature"]


def test_envelope_proofs_match_vector() -> None:
    submission = SubmissionIn(submitter=ADDRESS, signature=V["signature"], events=EVENTS)
    sealed = envelopes_for(submission, domain=DOMAIN)
    assert sealed.submitter == ADDRESS
    assert sealed.root.hex() == V["submission_root"]
    assert [env.submission.proof for env in sealed.envelopes] == V["proofs"]


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_every_envelope_recovers_the_signer(n: int) -> None:
    events = _events(n)
    submission = sign_submission(events, private_key=KEY, domain=DOMAIN)
    assert recover_submitter(submission, domain=DOMAIN) == ADDRESS
    sealed = envelopes_for(submission, domain=DOMAIN)
    assert sealed.root == submission_root(events)
    assert len(sealed.envelopes) == n
    for index, envelope in enumerate(sealed.envelopes):
        assert envelope.event == events[index]
        assert envelope.domain == DOMAIN
        assert envelope.submission.index == index
        assert envelope.submission.count == n
        assert envelope.submission.root == "0x" + sealed.root.hex()
        assert envelope.submission.signature == submission.signature
        assert recover_envelope_signer(envelope) == ADDRESS
        # and after a serializer round trip
        again = SignedEnvelope.model_validate(envelope.model_dump(mode="json"))
        assert recover_envelope_signer(again) == ADDRESS


# --- refusals --------------------------------------------------------------------------


def _sign_as(key: str, *, submitter: str, events: list[EventBody], domain: Eip712Domain) -> str:
    """Sign exactly the message a submission by ``submitter`` carries, with ``key``."""
    message = _hand_typed_message(
        domain.model_dump(), submitter=submitter, root=submission_root(events), count=len(events)
    )
    signed = Account.from_key(key).sign_message(encode_typed_data(full_message=message))
    return "0x" + bytes(signed.signature).hex()


def test_hand_signed_message_is_what_the_ledger_checks() -> None:
    # guards the next test: signing by hand with the right key does verify
    sig = _sign_as(KEY, submitter=ADDRESS, events=EVENTS, domain=DOMAIN)
    assert sig == V["signature"]
    submission = SubmissionIn(submitter=ADDRESS, signature=sig, events=EVENTS)
    assert recover_submitter(submission, domain=DOMAIN) == ADDRESS


def test_a_signature_from_another_key_is_refused() -> None:
    sig = _sign_as(OTHER_KEY, submitter=ADDRESS, events=EVENTS, domain=DOMAIN)
    submission = SubmissionIn(submitter=ADDRESS, signature=sig, events=EVENTS)
    with pytest.raises(InvalidSignature, match=f"recovers {OTHER}") as excinfo:
        recover_submitter(submission, domain=DOMAIN)
    assert excinfo.value.code == "invalid_signature"
    assert excinfo.value.field == "signature"
    with pytest.raises(InvalidSignature):
        envelopes_for(submission, domain=DOMAIN)


def test_an_envelope_with_another_keys_signature_recovers_that_key() -> None:
    envelope = envelopes_for(
        SubmissionIn(submitter=ADDRESS, signature=V["signature"], events=EVENTS), domain=DOMAIN
    ).envelopes[1]
    forged_sig = _sign_as(OTHER_KEY, submitter=ADDRESS, events=EVENTS, domain=DOMAIN)
    forged = envelope.model_copy(
        update={"submission": envelope.submission.model_copy(update={"signature": forged_sig})}
    )
    assert recover_envelope_signer(forged) == OTHER != ADDRESS


@pytest.mark.parametrize(
    "change",
    [{"chainId": 1}, {"chainId": 31338}, {"verifyingContract": "0x" + "23" * 20},
     {"verifyingContract": OTHER}, {"name": "fourflow2"}, {"version": "2"}],
    ids=["chain-1", "chain-31338", "contract-23", "contract-other", "name", "version"],
)  # fmt: skip
def test_a_signature_is_bound_to_its_domain(change: dict[str, Any]) -> None:
    submission = sign_submission(EVENTS, private_key=KEY, domain=DOMAIN)
    wrong = DOMAIN.model_copy(update=change)
    with pytest.raises(InvalidSignature):
        recover_submitter(submission, domain=wrong)
    with pytest.raises(InvalidSignature):
        envelopes_for(submission, domain=wrong)
    envelope = envelopes_for(submission, domain=DOMAIN).envelopes[0]
    moved = envelope.model_copy(update={"domain": wrong})
    assert recover_envelope_signer(moved) != ADDRESS


@pytest.mark.parametrize("spelling", ["lower", "upper"])
def test_submitter_must_be_checksummed(spelling: str) -> None:
    submitter = ADDRESS.lower() if spelling == "lower" else "0x" + ADDRESS[2:].upper()
    assert submitter != ADDRESS
    events = [e.model_copy(update={"submitter": submitter}) for e in EVENTS]
    submission = SubmissionIn(submitter=submitter, signature=V["signature"], events=events)
    for check in (recover_submitter, envelopes_for):
        with pytest.raises(InvalidInput) as excinfo:
            check(submission, domain=DOMAIN)
        assert excinfo.value.code == "invalid_address"
        assert excinfo.value.field == "submitter"
        assert not isinstance(excinfo.value, InvalidSignature)


def test_verify_checksum_address() -> None:
    verify_checksum_address(ADDRESS, field="x")
    verify_checksum_address("0x" + "22" * 20, field="x")  # no letters: trivially checksummed
    with pytest.raises(InvalidInput, match="EIP-55") as excinfo:
        verify_checksum_address(ADDRESS.lower(), field="anchor.contract")
    assert (excinfo.value.code, excinfo.value.field) == ("invalid_address", "anchor.contract")


PERMUTATIONS = [p for p in itertools.permutations(range(3)) if p != (0, 1, 2)]


@pytest.mark.parametrize("order", PERMUTATIONS, ids=lambda p: "".join(map(str, p)))
def test_reordering_events_changes_the_root_and_voids_the_signature(
    order: tuple[int, ...],
) -> None:
    reordered = [EVENTS[i] for i in order]
    assert submission_root(reordered) != submission_root(EVENTS)
    submission = SubmissionIn(submitter=ADDRESS, signature=V["signature"], events=reordered)
    with pytest.raises(InvalidSignature):
        recover_submitter(submission, domain=DOMAIN)
    with pytest.raises(InvalidSignature):
        envelopes_for(submission, domain=DOMAIN)
    resigned = sign_submission(reordered, private_key=KEY, domain=DOMAIN)
    assert resigned.signature != V["signature"]
    assert recover_submitter(resigned, domain=DOMAIN) == ADDRESS


def test_dropping_an_event_voids_the_signature() -> None:
    submission = SubmissionIn(submitter=ADDRESS, signature=V["signature"], events=EVENTS[:2])
    with pytest.raises(InvalidSignature):
        recover_submitter(submission, domain=DOMAIN)


@pytest.mark.parametrize(
    "signature",
    ["0x" + "00" * 65, "0x" + "ff" * 65, V["signature"][:-2] + "1d", V["signature"][:-2] + "00"],
    ids=["zeros", "ones", "v=29", "v=0"],
)
def test_malformed_signature_is_invalid_signature(signature: str) -> None:
    submission = SubmissionIn(submitter=ADDRESS, signature=signature, events=EVENTS)
    with pytest.raises(InvalidSignature):
        recover_submitter(submission, domain=DOMAIN)


# --- envelope tampering ----------------------------------------------------------------


@cache
def sealed() -> SealedSubmission:
    """The vector submission's envelopes (built lazily so a break shows up per test)."""
    submission = SubmissionIn(submitter=ADDRESS, signature=V["signature"], events=EVENTS)
    return envelopes_for(submission, domain=DOMAIN)


def _with_ref(envelope: SignedEnvelope, **update: Any) -> SignedEnvelope:
    return envelope.model_copy(update={"submission": envelope.submission.model_copy(update=update)})


def _signer_or_error(envelope: SignedEnvelope) -> str:
    try:
        return recover_envelope_signer(envelope)
    except InvalidInput as exc:
        return exc.code


@pytest.mark.parametrize(
    ("update", "outcome"),
    [({"index": 0}, "invalid_input"), ({"index": 2}, "invalid_input"),
     ({"count": 2}, "invalid_input"), ({"root": "0x" + "00" * 32}, "invalid_input"),
     ({"proof": []}, "invalid_input"),
     # index 1 has the same proof shape in 3 and 4 leaves: inclusion passes, but the
     # signed eventCount differs, so a different address is recovered
     ({"count": 4}, "other-address")],
    ids=["index-0", "index-2", "count-2", "root", "no-proof", "count-4"],
)  # fmt: skip
def test_envelope_with_a_wrong_place_in_the_submission_is_refused(
    update: dict[str, Any], outcome: str
) -> None:
    envelope = sealed().envelopes[1]
    assert recover_envelope_signer(envelope) == ADDRESS
    result = _signer_or_error(_with_ref(envelope, **update))
    if outcome == "other-address":
        assert result.startswith("0x") and result != ADDRESS
    else:
        assert result == outcome


def test_envelope_with_another_submitter_does_not_recover_to_it() -> None:
    envelope = sealed().envelopes[0]
    event = envelope.event.model_copy(update={"submitter": OTHER})
    moved = envelope.model_copy(update={"event": event})
    with pytest.raises(InvalidInput):  # the event digest changed, so inclusion fails
        recover_envelope_signer(moved)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(st.characters(max_codepoint=0x7F), max_size=5), children, max_size=3
        )
    ),
    max_leaves=8,
)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_changing_any_payload_value_breaks_the_envelope(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(sealed().envelopes) - 1), label="envelope")
    envelope = sealed().envelopes[position]
    payload = dict(envelope.event.payload)
    key = data.draw(st.sampled_from(sorted(payload)), label="key")
    value = data.draw(JSON_VALUES, label="new value")
    assume(canonical_json({"v": value}) != canonical_json({"v": payload[key]}))
    payload[key] = value
    event = EventBody.model_validate({**envelope.event.model_dump(mode="json"), "payload": payload})
    tampered = envelope.model_copy(update={"event": event})
    try:
        signer = recover_envelope_signer(tampered)
    except InvalidInput:
        return
    assert signer != envelope.event.submitter


@pytest.mark.parametrize("n", [1, 2, 5, 33])  # one event's proof is empty; 5, 33 promote
def test_sealed_canonical_forms_are_each_envelopes_own(n: int) -> None:
    events = _events(n)
    events[-1] = events[-1].model_copy(
        update={"payload": {"t": 21.5, "big": 1e20, "tiny": 1e-7, "名": "ö\u2028", "n": None}}
    )
    sealed = envelopes_for(sign_submission(events, private_key=KEY, domain=DOMAIN), domain=DOMAIN)
    assert sealed.canonical == [
        canonical_json(env.model_dump(mode="json")) for env in sealed.envelopes
    ]
    assert sealed.digests == [event_digest(e.model_dump(mode="json")) for e in events]
