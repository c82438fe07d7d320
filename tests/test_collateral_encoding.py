"""The Python side of the collateral contracts' encodings, checked three ways.

The EIP-712 consent digest is computed by eth-account from ``consent_typed_data``, by
hand here from the EIP-712 spec (keccak over ABI words), and by the contract's own
``consentDigest``: all three must agree, or a borrower's signature would not open the
pledge it was meant for. Short strings, identifier keys and the identifiers digest are
checked against hashlib.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.collateral import (
    Mode,
    Pledge,
    Terms,
    ascii32,
    consent_typed_data,
    from_ascii32,
    identifier_key,
    identifiers_digest,
)
from ledger.errors import InvalidInput
from tests.collateral_world import World, build_world

TERMS_TYPE = (
    "Terms(uint256 receiptId,address lender,address payee,bytes32 currency,uint256 principal,"
    "uint16 pledgeRateBps,uint16 warningLtvBps,uint16 liquidationLtvBps,uint64 minQuantity,"
    "uint256 minValue,uint32 maxDataAge,uint32 curePeriod,uint64 maturity,uint8 mode)"
)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    yield build_world()


def sample_terms(world: World, **changes: object) -> Terms:
    base = world.terms(7, maturity=1_931_536_000)
    return Terms(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def hand_digest(terms: Terms, *, nonce: int, deadline: int, chain_id: int, contract: str) -> bytes:
    """EIP-712 by the spec: hashStruct(s) = keccak(typeHash ‖ encodeData(s))."""
    domain_type = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    domain = keccak(
        domain_type
        + keccak(text="fourflow pledges")
        + keccak(text="1")
        + abi_encode(["uint256", "address"], [chain_id, contract])
    )
    words = abi_encode(
        ["uint256", "address", "address", "bytes32", "uint256", "uint16", "uint16", "uint16",
         "uint64", "uint256", "uint32", "uint32", "uint64", "uint8"],
        list(terms.encode()),
    )  # fmt: skip
    terms_hash = keccak(keccak(text=TERMS_TYPE) + words)
    consent_type = keccak(
        text="PledgeConsent(Terms terms,uint256 nonce,uint64 deadline)" + TERMS_TYPE
    )
    consent = keccak(
        consent_type + terms_hash + abi_encode(["uint256", "uint64"], [nonce, deadline])
    )
    return keccak(b"\x19\x01" + domain + consent)


def test_type_strings_match_the_contract(world: World) -> None:
    functions = world.pledges._contract.functions
    assert bytes(functions.TERMS_TYPEHASH().call()) == keccak(text=TERMS_TYPE)
    assert bytes(functions.CONSENT_TYPEHASH().call()) == keccak(
        text="PledgeConsent(Terms terms,uint256 nonce,uint64 deadline)" + TERMS_TYPE
    )


@pytest.mark.parametrize("mode", list(Mode))
def test_consent_digest_agrees_three_ways(world: World, mode: Mode) -> None:
    terms = sample_terms(world, mode=mode, min_value=12_345)
    typed = consent_typed_data(
        terms, nonce=3, deadline=1_900_100_000, chain_id=world.chain.chain_id,
        pledge_registry=world.pledges.address,
    )  # fmt: skip
    signable = encode_typed_data(full_message=typed)
    by_eth_account = keccak(b"\x19\x01" + signable.header + signable.body)
    by_hand = hand_digest(
        terms, nonce=3, deadline=1_900_100_000, chain_id=world.chain.chain_id,
        contract=world.pledges.address,
    )  # fmt: skip
    by_contract = world.pledges.consent_digest(terms, nonce=3, deadline=1_900_100_000)
    assert by_eth_account == by_hand == by_contract


def test_a_signature_recovers_to_the_borrower(world: World) -> None:
    terms = sample_terms(world)
    signature, nonce = world.pledges.sign_consent(terms, borrower=world.borrower, deadline=5)
    digest = world.pledges.consent_digest(terms, nonce=nonce, deadline=5)
    assert Account._recover_hash(digest, signature=signature) == world.borrower.address
    other = world.pledges.consent_digest(
        Terms(**{**terms.__dict__, "principal": terms.principal + 1}), nonce=nonce, deadline=5
    )
    assert Account._recover_hash(other, signature=signature) != world.borrower.address


def test_terms_round_trip_through_the_contract_encoding(world: World) -> None:
    terms = sample_terms(world, mode=Mode.DYNAMIC, currency="USD")
    assert Terms.decode(terms.encode()) == terms
    assert terms.message()["pledgeRateBps"] == terms.pledge_rate_bps
    assert list(terms.message()) == [part.split(" ")[1] for part in TERMS_TYPE[6:-1].split(",")]


def test_pledge_decodes_every_field() -> None:
    terms = Terms(
        1,
        "0x" + "11" * 20,
        "0x" + "22" * 20,
        "CNY",
        5,
        6000,
        7000,
        8500,
        1,
        2,
        3,
        4,
        9,
        Mode.STATIC,
    )
    raw = (
        terms.encode(),
        "0x" + "33" * 20,
        1,
        3,
        10,
        11,
        12,
        True,
        13,
        14,
        15,
        16,
        17,
        ascii32("steel.hrc"),
    )
    pledge = Pledge.decode(raw)
    assert pledge.terms == terms
    assert (pledge.frozen, pledge.opened_at, pledge.call_deadline, pledge.release_quantity) == (
        3,
        10,
        11,
        12,
    )
    assert (pledge.release_all, pledge.disbursed, pledge.repaid, pledge.outstanding) == (
        True,
        13,
        14,
        15,
    )
    assert (pledge.margin, pledge.release_credit, pledge.asset_class) == (16, 17, "steel.hrc")
    assert pledge.margin_call_open


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=32))
@settings(max_examples=200)
def test_ascii32_round_trips(text: str) -> None:
    raw = ascii32(text)
    assert len(raw) == 32 and raw.startswith(text.encode()) and from_ascii32(raw) == text


@pytest.mark.parametrize("bad", ["", "x" * 33, "钢", "a\x00b"])
def test_ascii32_refuses_what_bytes32_cannot_carry(bad: str) -> None:
    with pytest.raises(InvalidInput):
        ascii32(bad)


def test_identifier_keys_and_digest_are_plain_sha256() -> None:
    uris = [f"urn:epc:id:sgtin:6901234.000L1.{i}" for i in range(3)]
    keys = [identifier_key(u) for u in uris]
    assert keys[0] == hashlib.sha256(uris[0].encode()).digest()
    digest = b"\x00" * 32
    for key in keys:
        digest = hashlib.sha256(digest + key).digest()
    assert identifiers_digest(keys) == digest
    assert identifiers_digest(keys[1:], start=identifiers_digest(keys[:1])) == digest
    for bad in ("", " urn:epc:id:sgtin:1.2.3", "urn:epc:id:sgtin:1.2.3\n"):
        with pytest.raises(InvalidInput):
            identifier_key(bad)
