"""Typed wrappers over the collateral contracts: receipts, prices and pledges.

Oracles, the API and the CLI call the contracts only through these classes, so a
revert always surfaces as ``ContractReverted`` carrying the custom error's name and
values, and every struct crosses the boundary as a frozen dataclass. Short on-chain
strings (asset class, unit, currency) are ``bytes32`` right-padded ASCII; ``ascii32``
and ``from_ascii32`` convert. Identifier keys are ``sha256`` of the identifier's URI
(``identifier_key``), the same on-chain and off.

``deploy_contracts`` deploys the whole set (anchor registry included) and wires the
pledge registry into the receipt registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from enum import IntEnum, IntFlag
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ledger.chain import AnchorRegistry, Chain, ContractClient, Deployment, TxReceipt
from ledger.errors import ChainError, InvalidInput
from ledger.merkle import ProofStep
from ledger.models import ProofBundle
from ledger.signing import EIP712_DOMAIN_TYPE

__all__ = [
    "AUDITOR_ROLE",
    "BPS",
    "CUSTODIAN_ROLE",
    "LENDER_ROLE",
    "PLEDGE_REGISTRY_ROLE",
    "PRICE_SCALE",
    "Change",
    "Collateral",
    "Contracts",
    "Evidence",
    "Fact",
    "FactKind",
    "Freeze",
    "Ground",
    "Liquidation",
    "Mode",
    "Observation",
    "Pledge",
    "PledgeRegistry",
    "PledgeStatus",
    "PriceFeed",
    "Quote",
    "Receipt",
    "ReceiptRegistry",
    "ReceiptStatus",
    "Terms",
    "Valuation",
    "ascii32",
    "consent_typed_data",
    "contracts_from",
    "deploy_collateral",
    "deploy_contracts",
    "evidence_from_bundle",
    "from_ascii32",
    "identifier_key",
    "identifiers_digest",
    "siblings_of",
    "sign_consent",
]

CUSTODIAN_ROLE = keccak(text="CUSTODIAN_ROLE")
PLEDGE_REGISTRY_ROLE = keccak(text="PLEDGE_REGISTRY_ROLE")
LENDER_ROLE = keccak(text="LENDER_ROLE")
AUDITOR_ROLE = keccak(text="AUDITOR_ROLE")
PRICE_SCALE = 10**6
BPS = 10_000
CONSENT_DOMAIN_NAME = "fourflow pledges"
CONSENT_DOMAIN_VERSION = "1"
_NO_KEYS: list[bytes] = []


# --- encodings -----------------------------------------------------------------------


def ascii32(text: str) -> bytes:
    """A short ASCII string as bytes32, right-padded with zeros ("steel.hrc", "CNY")."""
    raw = text.encode("ascii", errors="strict") if text.isascii() else b""
    if not raw or len(raw) > 32 or b"\x00" in raw:
        raise InvalidInput(
            f"expected 1 to 32 ASCII characters, got {text!r}", code="invalid_short_string"
        )
    return raw.ljust(32, b"\x00")


def from_ascii32(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("ascii")


def identifier_key(uri: str) -> bytes:
    """The lien-index key of one physical identifier: sha256 of its URI's UTF-8 bytes.

    Pass the canonical form (a GS1 EPC URN such as ``urn:epc:id:sgtin:…``, or an
    ear-tag URI): the same goods must always give the same key.
    """
    if not uri or uri != uri.strip():
        raise InvalidInput(f"invalid identifier {uri!r}", code="invalid_identifier")
    return hashlib.sha256(uri.encode("utf-8")).digest()


def identifiers_digest(keys: Sequence[bytes], *, start: bytes = b"\x00" * 32) -> bytes:
    """The receipt's identifiersDigest after binding ``keys`` in order."""
    digest = start
    for key in keys:
        digest = hashlib.sha256(digest + key).digest()
    return digest


# --- structs -------------------------------------------------------------------------


class ReceiptStatus(IntEnum):
    NONE = 0
    LIVE = 1
    RETIRED = 2


class Change(IntEnum):
    ADDED = 0
    DELIVERED = 1
    SOLD = 2
    DIED = 3
    CULLED = 4
    LOST = 5
    RELEASED = 6
    SWAPPED_OUT = 7
    SWAPPED_IN = 8


class Mode(IntEnum):
    STATIC = 0
    DYNAMIC = 1


class PledgeStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    RELEASED = 2
    LIQUIDATED = 3


class FactKind(IntEnum):
    QUANTITY = 0
    UNAUTHORIZED_MOVEMENT = 1
    TAG_REMOVAL = 2
    COVENANT_BREACH = 3  # a performance covenant broken (utilization, output, revenue, books)


class Ground(IntEnum):
    NONE = 0
    LIQUIDATION_LINE = 1
    UNCURED_MARGIN_CALL = 2
    DEFAULT = 3


class Freeze(IntFlag):
    BELOW_MINIMUM = 1
    UNAUTHORIZED_MOVEMENT = 2
    TAG_REMOVED = 4
    STALE_DATA = 8
    STALE_PRICE = 16
    AUDIT_FINDING = 32
    COVENANT_BREACH = 64


@dataclass(frozen=True)
class Receipt:
    custodian: str
    quantity: int
    status: ReceiptStatus
    issued_at: int
    key_count: int
    pledge_id: int
    asset_class: str
    unit: str
    identifiers_digest: bytes
    location: str
    registration: str
    warehouse_receipt_code: str

    @classmethod
    def decode(cls, raw: Sequence[Any]) -> Receipt:
        (custodian, quantity, status, issued_at, key_count, pledge_id, asset_class, unit,
         digest, location, registration, code) = raw  # fmt: skip
        return cls(
            to_checksum_address(custodian), quantity, ReceiptStatus(status), issued_at,
            key_count, pledge_id, from_ascii32(asset_class), from_ascii32(unit), bytes(digest),
            location, registration, code,
        )  # fmt: skip


@dataclass(frozen=True)
class Collateral:
    owner: str | None  # None once retired
    custodian: str
    quantity: int
    status: ReceiptStatus
    pledge_id: int
    asset_class: str


@dataclass(frozen=True)
class Terms:
    """What borrower and lender agree on; field order is the EIP-712 ``Terms`` type."""

    receipt_id: int
    lender: str
    payee: str
    currency: str
    principal: int
    pledge_rate_bps: int
    warning_ltv_bps: int
    liquidation_ltv_bps: int
    min_quantity: int
    min_value: int
    max_data_age: int
    cure_period: int
    maturity: int
    mode: Mode

    def encode(self) -> tuple[Any, ...]:
        values = list(astuple(self))
        values[1] = to_checksum_address(self.lender)
        values[2] = to_checksum_address(self.payee)
        values[3] = ascii32(self.currency)
        values[13] = int(self.mode)
        return tuple(values)

    def message(self) -> dict[str, Any]:
        """The EIP-712 message form (camelCase names, as in the Solidity struct)."""
        encoded = self.encode()
        return {_camel(f.name): value for f, value in zip(fields(self), encoded, strict=True)}

    @classmethod
    def decode(cls, raw: Sequence[Any]) -> Terms:
        values = list(raw)
        values[1] = to_checksum_address(values[1])
        values[2] = to_checksum_address(values[2])
        values[3] = from_ascii32(values[3])
        values[13] = Mode(values[13])
        return cls(*values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() if part != "bps" else "Bps" for part in rest)


@dataclass(frozen=True)
class Pledge:
    terms: Terms
    borrower: str
    status: PledgeStatus
    frozen: Freeze
    opened_at: int
    call_deadline: int  # 0: no margin call open
    release_quantity: int  # pending instruction
    release_all: bool
    disbursed: int
    repaid: int
    outstanding: int
    margin: int
    release_credit: int
    asset_class: str

    @property
    def margin_call_open(self) -> bool:
        return self.call_deadline != 0

    @classmethod
    def decode(cls, raw: Sequence[Any]) -> Pledge:
        (terms, borrower, status, frozen, opened_at, call_deadline, release_quantity,
         release_all, disbursed, repaid, outstanding, margin, credit, asset_class) = raw  # fmt: skip
        return cls(
            Terms.decode(terms), to_checksum_address(borrower), PledgeStatus(status),
            Freeze(frozen), opened_at, call_deadline, release_quantity, release_all, disbursed,
            repaid, outstanding, margin, credit, from_ascii32(asset_class),
        )  # fmt: skip


@dataclass(frozen=True)
class Valuation:
    quantity: int
    price: int
    goods_value: int
    value: int
    outstanding: int
    ltv_bps: int
    price_observed_at: int


@dataclass(frozen=True)
class Quote:
    price: int
    spot: int
    average: int
    observed_at: int
    count: int


@dataclass(frozen=True)
class Observation:
    quantity: int
    observed_at: int


@dataclass(frozen=True)
class Fact:
    receipt_id: int
    kind: FactKind
    quantity: int
    observed_at: int  # unix seconds

    def encode(self) -> tuple[int, int, int, int]:
        return (self.receipt_id, int(self.kind), self.quantity, self.observed_at)


@dataclass(frozen=True)
class Evidence:
    """Where a fact's event sits on-chain: leaf ``leaf`` at ``leaf_index`` of batch ``seq``."""

    stream_id: bytes
    seq: int
    leaf: bytes
    leaf_index: int
    siblings: tuple[bytes, ...]

    def encode(self) -> tuple[bytes, int, bytes, int, list[bytes]]:
        return (self.stream_id, self.seq, self.leaf, self.leaf_index, list(self.siblings))


def evidence_from_bundle(bundle: ProofBundle) -> Evidence:
    """The on-chain citation of an event from its proof bundle."""
    return Evidence(
        stream_id=bytes.fromhex(bundle.batch.stream_id.removeprefix("0x")),
        seq=bundle.batch.seq,
        leaf=bytes.fromhex(bundle.leaf.removeprefix("0x")),
        leaf_index=bundle.batch.leaf_index,
        siblings=siblings_of(bundle.batch.proof),
    )


def siblings_of(proof: Sequence[ProofStep]) -> tuple[bytes, ...]:
    """The sibling hashes of a merkletools proof, leaf level first; the contract derives
    each one's side from (leaf index, leaf count)."""
    return tuple(bytes.fromhex(next(iter(step.values()))) for step in proof)


@dataclass(frozen=True)
class Liquidation:
    ground: Ground
    proceeds: int
    margin_applied: int
    proceeds_applied: int
    surplus: int
    shortfall: int


# --- consent (EIP-712) -----------------------------------------------------------------

_TERMS_TYPE = [
    {"name": "receiptId", "type": "uint256"},
    {"name": "lender", "type": "address"},
    {"name": "payee", "type": "address"},
    {"name": "currency", "type": "bytes32"},
    {"name": "principal", "type": "uint256"},
    {"name": "pledgeRateBps", "type": "uint16"},
    {"name": "warningLtvBps", "type": "uint16"},
    {"name": "liquidationLtvBps", "type": "uint16"},
    {"name": "minQuantity", "type": "uint64"},
    {"name": "minValue", "type": "uint256"},
    {"name": "maxDataAge", "type": "uint32"},
    {"name": "curePeriod", "type": "uint32"},
    {"name": "maturity", "type": "uint64"},
    {"name": "mode", "type": "uint8"},
]


def consent_typed_data(
    terms: Terms, *, nonce: int, deadline: int, chain_id: int, pledge_registry: str
) -> dict[str, Any]:
    """The EIP-712 typed data a borrower signs to consent to ``terms``."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPE,
            "PledgeConsent": [
                {"name": "terms", "type": "Terms"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint64"},
            ],
            "Terms": _TERMS_TYPE,
        },
        "primaryType": "PledgeConsent",
        "domain": {
            "name": CONSENT_DOMAIN_NAME,
            "version": CONSENT_DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(pledge_registry),
        },
        "message": {"terms": terms.message(), "nonce": nonce, "deadline": deadline},
    }


def sign_consent(
    borrower: LocalAccount,
    terms: Terms,
    *,
    nonce: int,
    deadline: int,
    chain_id: int,
    pledge_registry: str,
) -> bytes:
    """The borrower's 65-byte EIP-712 signature over (terms, nonce, deadline)."""
    typed = consent_typed_data(
        terms, nonce=nonce, deadline=deadline, chain_id=chain_id, pledge_registry=pledge_registry
    )
    signed = Account.sign_message(encode_typed_data(full_message=typed), borrower.key)
    return bytes(signed.signature)


# --- contracts -----------------------------------------------------------------------


class ReceiptRegistry(ContractClient):
    """Collateral receipts (ERC-721) and the lien index over identifier keys."""

    NAME = "ReceiptRegistry"

    def issue(
        self,
        *,
        owner: str,
        asset_class: str,
        unit: str,
        quantity: int,
        keys: Sequence[bytes],
        location: str,
        registration: str = "",
        warehouse_receipt_code: str = "",
        ref: bytes = b"\x00" * 32,
        custodian: LocalAccount,
    ) -> tuple[int, TxReceipt]:
        """Issues a receipt; returns its id and the transaction receipt."""
        request = (
            to_checksum_address(owner), ascii32(asset_class), ascii32(unit), quantity,
            location, registration, warehouse_receipt_code, ref,
        )  # fmt: skip
        fn = self._contract.functions.issue(request, list(keys))
        receipt = self._execute("issue", fn, custodian)
        (issued,) = self.events(receipt.tx_hash, "ReceiptIssued")
        return int(issued["receiptId"]), receipt

    def bind_keys(
        self, receipt_id: int, keys: Sequence[bytes], *, custodian: LocalAccount
    ) -> TxReceipt:
        fn = self._contract.functions.bindKeys(receipt_id, list(keys))
        return self._execute("bindKeys", fn, custodian)

    def add_goods(
        self,
        receipt_id: int,
        quantity: int,
        *,
        keys: Sequence[bytes] = (),
        ref: bytes = b"\x00" * 32,
        custodian: LocalAccount,
    ) -> TxReceipt:
        fn = self._contract.functions.addGoods(receipt_id, quantity, list(keys), ref)
        return self._execute("addGoods", fn, custodian)

    def remove_goods(
        self,
        receipt_id: int,
        quantity: int,
        *,
        change: Change,
        keys: Sequence[bytes] = (),
        ref: bytes = b"\x00" * 32,
        custodian: LocalAccount,
    ) -> TxReceipt:
        fn = self._contract.functions.removeGoods(
            receipt_id, quantity, int(change), list(keys), ref
        )
        return self._execute("removeGoods", fn, custodian)

    def transfer(self, receipt_id: int, to: str, *, owner: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.transferFrom(
            owner.address, to_checksum_address(to), receipt_id
        )
        return self._execute("transferFrom", fn, owner)

    def set_base_uri(self, base: str, *, admin: LocalAccount) -> TxReceipt:
        return self._execute("setBaseURI", self._contract.functions.setBaseURI(base), admin)

    def receipt_of(self, receipt_id: int) -> Receipt:
        return Receipt.decode(
            self._read("receiptOf", self._contract.functions.receiptOf(receipt_id))
        )

    def collateral_of(self, receipt_id: int) -> Collateral:
        owner, custodian, quantity, status, pledge_id, asset_class = self._read(
            "collateralOf", self._contract.functions.collateralOf(receipt_id)
        )
        return Collateral(
            None if int(owner, 16) == 0 else to_checksum_address(owner),
            to_checksum_address(custodian), quantity, ReceiptStatus(status), pledge_id,
            from_ascii32(asset_class),
        )  # fmt: skip

    def owner_of(self, receipt_id: int) -> str:
        return to_checksum_address(
            self._read("ownerOf", self._contract.functions.ownerOf(receipt_id))
        )

    def backing_of(self, key: bytes) -> int:
        """The live receipt ``key`` backs, 0 if none."""
        return int(self._read("backingOf", self._contract.functions.backingOf(key)))

    def last_receipt_id(self) -> int:
        return int(self._read("lastReceiptId", self._contract.functions.lastReceiptId()))

    def token_uri(self, receipt_id: int) -> str:
        return str(self._read("tokenURI", self._contract.functions.tokenURI(receipt_id)))


class PriceFeed(ContractClient):
    """Unit prices per (asset class, currency); valuation takes min(spot, average)."""

    NAME = "PriceFeed"

    def report(
        self,
        *,
        asset_class: str,
        currency: str,
        price: int,
        observed_at: int,
        source: bytes = b"\x00" * 32,
        oracle: LocalAccount,
    ) -> TxReceipt:
        """Reports ``price`` (micro minor units per unit of quantity, see PRICE_SCALE)."""
        fn = self._contract.functions.report(
            ascii32(asset_class), ascii32(currency), price, observed_at, source
        )
        return self._execute("report", fn, oracle)

    def quote_of(self, *, asset_class: str, currency: str) -> Quote:
        raw = self._read(
            "quoteOf", self._contract.functions.quoteOf(ascii32(asset_class), ascii32(currency))
        )
        return Quote(*raw)


class PledgeRegistry(ContractClient):
    """Pledges: consent, capital flows, lines, covenant facts, release and liquidation."""

    NAME = "PledgeRegistry"

    # --- lender policy and consent -----------------------------------------------------

    def set_pledge_rate(self, asset_class: str, bps: int, *, lender: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.setPledgeRate(ascii32(asset_class), bps)
        return self._execute("setPledgeRate", fn, lender)

    def consent_digest(self, terms: Terms, *, nonce: int, deadline: int) -> bytes:
        fn = self._contract.functions.consentDigest(terms.encode(), nonce, deadline)
        return bytes(self._read("consentDigest", fn))

    def nonce_of(self, borrower: str) -> int:
        return int(
            self._read("nonces", self._contract.functions.nonces(to_checksum_address(borrower)))
        )

    def consent(self, digest: bytes, *, borrower: LocalAccount) -> TxReceipt:
        """The borrower's consent by transaction (for wallets that cannot sign typed data)."""
        return self._execute("consent", self._contract.functions.consent(digest), borrower)

    def sign_consent(
        self, terms: Terms, *, borrower: LocalAccount, nonce: int | None = None, deadline: int
    ) -> tuple[bytes, int]:
        """Signs consent with the borrower's current nonce; returns (signature, nonce)."""
        nonce = self.nonce_of(borrower.address) if nonce is None else nonce
        signature = sign_consent(
            borrower,
            terms,
            nonce=nonce,
            deadline=deadline,
            chain_id=self.chain.chain_id,
            pledge_registry=self.address,
        )
        return signature, nonce

    def open(
        self,
        terms: Terms,
        *,
        nonce: int,
        deadline: int,
        signature: bytes = b"",
        lender: LocalAccount,
    ) -> tuple[int, TxReceipt]:
        """Opens a pledge; an empty ``signature`` relies on an earlier ``consent``."""
        fn = self._contract.functions.open(terms.encode(), nonce, deadline, signature)
        receipt = self._execute("open", fn, lender)
        (opened,) = self.events(receipt.tx_hash, "PledgeOpened")
        return int(opened["pledgeId"]), receipt

    # --- capital flow ------------------------------------------------------------------

    def disburse(
        self, pledge_id: int, amount: int, *, payee: str, ref: bytes, lender: LocalAccount
    ) -> TxReceipt:
        fn = self._contract.functions.disburse(pledge_id, amount, to_checksum_address(payee), ref)
        return self._execute("disburse", fn, lender)

    def repay(self, pledge_id: int, amount: int, *, ref: bytes, lender: LocalAccount) -> TxReceipt:
        return self._execute(
            "repay", self._contract.functions.repay(pledge_id, amount, ref), lender
        )

    def top_up_margin(
        self, pledge_id: int, amount: int, *, ref: bytes, lender: LocalAccount
    ) -> TxReceipt:
        fn = self._contract.functions.topUpMargin(pledge_id, amount, ref)
        return self._execute("topUpMargin", fn, lender)

    def check_lines(self, pledge_id: int, *, caller: LocalAccount) -> TxReceipt:
        return self._execute("checkLines", self._contract.functions.checkLines(pledge_id), caller)

    # --- facts and freezes ---------------------------------------------------------------

    def report_fact(self, fact: Fact, evidence: Evidence, *, oracle: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.reportFact(fact.encode(), evidence.encode())
        return self._execute("reportFact", fn, oracle)

    def flag_stale(self, pledge_id: int, *, caller: LocalAccount) -> TxReceipt:
        return self._execute("flagStale", self._contract.functions.flagStale(pledge_id), caller)

    def freeze_on_finding(
        self, pledge_id: int, finding: bytes, *, auditor: LocalAccount
    ) -> TxReceipt:
        fn = self._contract.functions.freezeOnFinding(pledge_id, finding)
        return self._execute("freezeOnFinding", fn, auditor)

    def clear_freeze(self, pledge_id: int, *, lender: LocalAccount) -> TxReceipt:
        return self._execute("clearFreeze", self._contract.functions.clearFreeze(pledge_id), lender)

    # --- goods ---------------------------------------------------------------------------

    def add_goods(
        self,
        pledge_id: int,
        quantity: int,
        *,
        keys: Sequence[bytes] = (),
        ref: bytes = b"\x00" * 32,
        custodian: LocalAccount,
    ) -> TxReceipt:
        fn = self._contract.functions.addGoods(pledge_id, quantity, list(keys), ref)
        return self._execute("addGoods", fn, custodian)

    def swap(
        self,
        pledge_id: int,
        *,
        quantity_out: int,
        quantity_in: int,
        keys_out: Sequence[bytes] = (),
        keys_in: Sequence[bytes] = (),
        ref: bytes = b"\x00" * 32,
        custodian: LocalAccount,
    ) -> TxReceipt:
        fn = self._contract.functions.swap(
            pledge_id, quantity_out, list(keys_out), quantity_in, list(keys_in), ref
        )
        return self._execute("swap", fn, custodian)

    def instruct_release(self, pledge_id: int, quantity: int, *, lender: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.instructRelease(pledge_id, quantity)
        return self._execute("instructRelease", fn, lender)

    def instruct_full_release(self, pledge_id: int, *, lender: LocalAccount) -> TxReceipt:
        fn = self._contract.functions.instructFullRelease(pledge_id)
        return self._execute("instructFullRelease", fn, lender)

    def execute_release(
        self,
        pledge_id: int,
        *,
        keys_out: Sequence[bytes] = _NO_KEYS,
        ref: bytes = b"\x00" * 32,
        custodian: LocalAccount,
    ) -> TxReceipt:
        fn = self._contract.functions.executeRelease(pledge_id, list(keys_out), ref)
        return self._execute("executeRelease", fn, custodian)

    def liquidate(
        self, pledge_id: int, *, buyer: str, proceeds: int, ref: bytes, lender: LocalAccount
    ) -> TxReceipt:
        fn = self._contract.functions.liquidate(
            pledge_id, to_checksum_address(buyer), proceeds, ref
        )
        return self._execute("liquidate", fn, lender)

    # --- views ---------------------------------------------------------------------------

    def pledge_of(self, pledge_id: int) -> Pledge:
        return Pledge.decode(self._read("pledgeOf", self._contract.functions.pledgeOf(pledge_id)))

    def valuation_of(self, pledge_id: int) -> Valuation:
        raw = self._read("valuationOf", self._contract.functions.valuationOf(pledge_id))
        return Valuation(*raw)

    def releasable_of(self, pledge_id: int) -> int:
        return int(self._read("releasableOf", self._contract.functions.releasableOf(pledge_id)))

    def observation_of(self, receipt_id: int) -> Observation:
        raw = self._read("observationOf", self._contract.functions.observationOf(receipt_id))
        return Observation(*raw)

    def pledge_rate_of(self, lender: str, asset_class: str) -> int:
        fn = self._contract.functions.pledgeRateOf(
            to_checksum_address(lender), ascii32(asset_class)
        )
        return int(self._read("pledgeRateOf", fn))

    def is_evidence_used(self, leaf: bytes) -> bool:
        return bool(self._read("isEvidenceUsed", self._contract.functions.isEvidenceUsed(leaf)))

    def last_pledge_id(self) -> int:
        return int(self._read("lastPledgeId", self._contract.functions.lastPledgeId()))

    @staticmethod
    def liquidation_of(event: dict[str, Any]) -> Liquidation:
        """The outcome of a decoded PledgeLiquidated event."""
        outcome = event["outcome"]  # web3 decodes a struct to a dict by field name
        ground, *amounts = outcome.values() if isinstance(outcome, Mapping) else outcome
        return Liquidation(Ground(ground), *amounts)


# --- deployment ----------------------------------------------------------------------


@dataclass(frozen=True)
class Contracts:
    """fourflow's deployed contracts on one chain."""

    anchors: AnchorRegistry
    receipts: ReceiptRegistry
    prices: PriceFeed
    pledges: PledgeRegistry


def deploy_contracts(chain: Chain, *, admin: LocalAccount) -> tuple[Contracts, Deployment]:
    """Deploys every contract; ``admin`` holds DEFAULT_ADMIN_ROLE everywhere."""
    anchors, deployment = AnchorRegistry.deploy(chain, admin=admin)
    return deploy_collateral(anchors, deployment, admin=admin)


def deploy_collateral(
    anchors: AnchorRegistry, deployment: Deployment, *, admin: LocalAccount
) -> tuple[Contracts, Deployment]:
    """Deploys the receipts, the price feed and the pledges next to an anchor registry
    (which facts cite), wires the pledges into the receipts, and extends the manifest."""
    chain = anchors.chain
    receipts_at, _ = ReceiptRegistry._deploy(chain, admin.address, deployer=admin)
    prices_at, _ = PriceFeed._deploy(chain, admin.address, deployer=admin)
    pledges_at, _ = PledgeRegistry._deploy(
        chain, admin.address, anchors.address, receipts_at, prices_at, deployer=admin
    )
    contracts = Contracts(
        anchors=anchors,
        receipts=ReceiptRegistry(chain, receipts_at),
        prices=PriceFeed(chain, prices_at),
        pledges=PledgeRegistry(chain, pledges_at),
    )
    contracts.receipts.grant(PLEDGE_REGISTRY_ROLE, pledges_at, admin=admin)
    extended = replace(
        deployment, receipt_registry=receipts_at, price_feed=prices_at, pledge_registry=pledges_at
    )
    return contracts, extended


def contracts_from(chain: Chain, deployment: Deployment) -> Contracts:
    """The contracts a manifest names; fails if it predates the collateral contracts."""
    deployment.check_chain(chain)
    if not (deployment.receipt_registry and deployment.price_feed and deployment.pledge_registry):
        raise ChainError(
            "the deployment manifest names no collateral contracts; redeploy with `fourflow deploy`"
        )
    contracts = Contracts(
        anchors=AnchorRegistry(chain, deployment.anchor_registry),
        receipts=ReceiptRegistry(chain, deployment.receipt_registry),
        prices=PriceFeed(chain, deployment.price_feed),
        pledges=PledgeRegistry(chain, deployment.pledge_registry),
    )
    for client in (contracts.receipts, contracts.prices, contracts.pledges):
        if not chain.code_at(client.address):
            raise ChainError(
                f"no {client.NAME} contract at {client.address} on chain {chain.chain_id}"
            )
    return contracts
