"""EIP-712 signatures over submissions.

A submitter signs once for a whole batch of events. The signed struct is

    Submission(address submitter, bytes32 eventsRoot, uint256 eventCount)

where ``eventsRoot`` is the sha256 Merkle root (merkletools shape, see ledger.merkle)
over the events' digests (ledger.canonical.event_digest), in submission order. Each
stored envelope keeps the signature, the root and its own inclusion proof, so one
event's authorship can be shown without the rest of its submission.

The domain is {name: "fourflow", version: "1", chainId, verifyingContract: the anchor
registry}, so a signature made for one deployment is worthless on another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import is_checksum_address, to_checksum_address

from ledger.canonical import canonical_json, digest_of_canonical, event_digest
from ledger.errors import InvalidInput, InvalidSignature
from ledger.merkle import MerkleTree, build_tree, verify_inclusion
from ledger.models import Eip712Domain, EventBody, SignedEnvelope, SubmissionIn, SubmissionRef

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "EIP712_DOMAIN_TYPE",
    "SUBMISSION_TYPES",
    "SealedSubmission",
    "domain_for",
    "envelope_jcs",
    "envelopes_for",
    "recover_envelope_signer",
    "recover_submitter",
    "sign_submission",
    "submission_refs_jcs",
    "submission_root",
    "verify_checksum_address",
]

DOMAIN_NAME = "fourflow"
DOMAIN_VERSION = "1"
EIP712_DOMAIN_TYPE: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
SUBMISSION_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": EIP712_DOMAIN_TYPE,
    "Submission": [
        {"name": "submitter", "type": "address"},
        {"name": "eventsRoot", "type": "bytes32"},
        {"name": "eventCount", "type": "uint256"},
    ],
}


def domain_for(*, chain_id: int, contract: str) -> Eip712Domain:
    return Eip712Domain(
        name=DOMAIN_NAME,
        version=DOMAIN_VERSION,
        chainId=chain_id,
        verifyingContract=to_checksum_address(contract),
    )


def verify_checksum_address(value: str, *, field: str) -> None:
    if not is_checksum_address(value):
        raise InvalidInput(
            f"{field} must be an EIP-55 checksummed address, got {value}",
            field=field,
            code="invalid_address",
        )


def submission_root(events: Sequence[EventBody]) -> bytes:
    return build_tree([event_digest(e.as_json()) for e in events]).root


def _typed_message(
    domain: Eip712Domain, *, submitter: str, root: bytes, count: int
) -> dict[str, Any]:
    return {
        "types": SUBMISSION_TYPES,
        "primaryType": "Submission",
        "domain": domain.model_dump(),
        "message": {"submitter": submitter, "eventsRoot": root, "eventCount": count},
    }


def sign_submission(
    events: Sequence[EventBody], *, private_key: bytes | str, domain: Eip712Domain
) -> SubmissionIn:
    """Sign ``events`` (all with the key's address as submitter) as one submission."""
    account = Account.from_key(private_key)
    root = submission_root(events)
    message = _typed_message(domain, submitter=account.address, root=root, count=len(events))
    signed = account.sign_message(encode_typed_data(full_message=message))
    return SubmissionIn(
        submitter=account.address,
        signature="0x" + bytes(signed.signature).hex(),
        events=list(events),
    )


def _recover(domain: Eip712Domain, *, submitter: str, root: bytes, count: int, sig: str) -> str:
    message = _typed_message(domain, submitter=submitter, root=root, count=count)
    try:
        recovered: str = Account.recover_message(
            encode_typed_data(full_message=message), signature=bytes.fromhex(sig[2:])
        )
    except Exception as exc:  # eth_keys raises several types for malformed signatures
        raise InvalidSignature(f"signature does not recover: {exc}", field="signature") from exc
    return recovered


@dataclass(frozen=True)
class SealedSubmission:
    """A submission whose signature checked out, split into per-event envelopes: for
    each event, its digest, its place in the signed submission and the envelope's
    canonical JSON, which is all the store needs."""

    submitter: str
    root: bytes
    domain: Eip712Domain
    events: list[EventBody]
    signature: str
    tree: MerkleTree  # over the digests
    digests: list[bytes]  # each event's digest
    canonical: list[bytes]  # each envelope's RFC 8785 JSON: its leaf's preimage body

    @cached_property
    def refs(self) -> list[dict[str, Any]]:
        """Each event's SubmissionRef fields, in order."""
        root, count = "0x" + self.root.hex(), len(self.digests)
        return [
            {"root": root, "count": count, "index": i, "proof": proof, "signature": self.signature}
            for i, proof in enumerate(self.tree.proofs())
        ]

    @cached_property
    def envelopes(self) -> list[SignedEnvelope]:
        """The envelopes as models, built on first use: a pydantic model costs more to
        build than the rest of an event's sealing, and storing needs none."""
        # Built, not validated: every part is already checked (the events and signature
        # by SubmissionIn, the domain by its model) or computed (root, index, proof).
        return [
            SignedEnvelope.model_construct(
                event=event, submission=SubmissionRef.model_construct(**ref), domain=self.domain
            )
            for event, ref in zip(self.events, self.refs, strict=True)
        ]


def envelope_jcs(domain_jcs: bytes, event_jcs: bytes, submission_jcs: bytes) -> bytes:
    """A signed envelope's canonical JSON from its three members' canonical JSON. JCS
    writes an object as its members in key order, each value in its own canonical
    form, and an envelope has exactly the keys "domain" < "event" < "submission": so
    the event's bytes, already written for its digest, are not written again."""
    return b"".join(
        (
            b'{"domain":',
            domain_jcs,
            b',"event":',
            event_jcs,
            b',"submission":',
            submission_jcs,
            b"}",
        )
    )


def submission_refs_jcs(root: str, signature: str, proofs: Sequence[bytes]) -> list[bytes]:
    """The RFC 8785 JSON of the SubmissionRef of each event of a submission with that
    ``root`` and ``signature``, its ``proofs`` as ``MerkleTree.proof_jsons`` writes
    them: what ``canonical_json`` writes of each ref's fields, written from its parts
    (the keys in order: count, index, proof, root, signature)."""
    head = b'{"count":%d,"index":' % len(proofs)
    tail = b',"root":' + orjson.dumps(root) + b',"signature":' + orjson.dumps(signature) + b"}"
    return [
        b"".join((head, b"%d" % index, b',"proof":', proof, tail))
        for index, proof in enumerate(proofs)
    ]


def recover_submitter(submission: SubmissionIn, *, domain: Eip712Domain) -> str:
    """The address that signed ``submission``; raises unless it is the declared submitter."""
    return _verified_signer(submission, domain=domain, root=submission_root(submission.events))


def _verified_signer(submission: SubmissionIn, *, domain: Eip712Domain, root: bytes) -> str:
    verify_checksum_address(submission.submitter, field="submitter")
    signer = _recover(
        domain,
        submitter=submission.submitter,
        root=root,
        count=len(submission.events),
        sig=submission.signature,
    )
    if signer != submission.submitter:
        raise InvalidSignature(
            f"signature recovers {signer}, expected the submitter {submission.submitter} "
            f"(is the domain's chainId {domain.chainId} and verifyingContract "
            f"{domain.verifyingContract} right?)",
            field="signature",
        )
    return signer


def envelopes_for(submission: SubmissionIn, *, domain: Eip712Domain) -> SealedSubmission:
    """Check the signature, then give each event its envelope (signature + inclusion proof)."""
    bodies = [canonical_json(e.as_json()) for e in submission.events]
    digests = [digest_of_canonical(body) for body in bodies]
    tree = build_tree(digests)
    _verified_signer(submission, domain=domain, root=tree.root)
    domain_jcs = canonical_json(domain.model_dump(mode="json"))
    refs = submission_refs_jcs("0x" + tree.root.hex(), submission.signature, tree.proof_jsons())
    return SealedSubmission(
        submitter=submission.submitter,
        root=tree.root,
        domain=domain,
        events=submission.events,
        signature=submission.signature,
        tree=tree,
        digests=digests,
        canonical=[envelope_jcs(domain_jcs, b, r) for b, r in zip(bodies, refs, strict=True)],
    )


def recover_envelope_signer(envelope: SignedEnvelope) -> str:
    """The signer of ``envelope``: checks its inclusion in the signed submission root first."""
    ref = envelope.submission
    digest = event_digest(envelope.event.as_json())
    root = bytes.fromhex(ref.root[2:])
    verify_inclusion(leaf=digest, index=ref.index, leaf_count=ref.count, proof=ref.proof, root=root)
    return _recover(
        envelope.domain,
        submitter=envelope.event.submitter,
        root=root,
        count=ref.count,
        sig=ref.signature,
    )
