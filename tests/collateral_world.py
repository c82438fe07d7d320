"""A deployed fourflow contract set on eth-tester with its parties, for the collateral tests.

``World`` holds the chain, one account per role (admin, custodian, a second custodian,
two lenders, borrower, oracle, auditor, payee, buyer, outsider), the four contracts with
roles granted, a steel price and a dairy-cattle price, and helpers: ``issue_steel`` /
``issue_herd`` for receipts, ``terms`` for pledge terms, ``open_pledge`` (borrower signs
EIP-712 consent), ``evidence`` (anchors real leaves in the AnchorRegistry and returns
citations with their Merkle proofs) and ``travel`` (moves the chain's clock).

Shared checks for the collateral test modules: ``reverts`` (a call reverts with a named
custom error and values), ``lower``, ``ceil_div``, ``sha256_chain`` (identifiersDigest by
hand), and ``PARTIES`` (the accounts' names).

Fixtures: ``world_base`` deploys once per test module; ``world`` reverts the chain to that
fresh state after each test (eth-tester snapshots), so tests never see each other.
Import both into a test module: ``from tests.collateral_world import world, world_base``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from ledger.canonical import leaf_hash, stream_id
from ledger.chain import ORACLE_ROLE, Chain, Deployment, TxReceipt, new_account
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PRICE_SCALE,
    Contracts,
    Evidence,
    Mode,
    Terms,
    deploy_contracts,
    identifier_key,
    siblings_of,
)
from ledger.errors import ContractReverted
from ledger.merkle import build_tree

T0 = 1_900_000_000  # unix seconds the chain's clock starts at (2030-03-17)
DAY = 86_400
STEEL = "steel.hrc"
COPPER = "copper.cathode"
CATTLE = "cattle.dairy"
CNY = "CNY"
# 4,050 CNY a tonne = 405 fen a kg; prices are micro-fen per unit of quantity.
STEEL_PRICE = 405 * PRICE_SCALE
COW_PRICE = 1_800_000 * PRICE_SCALE  # 18,000 CNY a head
REF = b"\x00" * 31 + b"\x01"


PARTIES = (
    "admin",
    "custodian",
    "custodian2",
    "lender",
    "lender2",
    "borrower",
    "borrower2",
    "oracle",
    "auditor",
    "payee",
    "buyer",
    "outsider",
)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def sha256_chain(keys: Sequence[bytes], start: bytes = bytes(32)) -> bytes:
    """identifiersDigest by hand: sha256(digest ‖ key) for each key, from 32 zero bytes."""
    digest = start
    for key in keys:
        digest = hashlib.sha256(digest + key).digest()
    return digest


def lower(account: LocalAccount) -> str:
    return account.address.lower()  # eth-abi decodes addresses in errors as lowercase hex


def reverts(call: Callable[[], object], error: str, *args: object) -> None:
    """``call`` reverts with the custom error ``error(*args)``."""
    with pytest.raises(ContractReverted) as info:
        call()
    assert (info.value.error, info.value.error_args) == (error, args)


def ref(text: str) -> bytes:
    """A 32-byte reference (bank transaction, delivery note) from a short text."""
    return text.encode().ljust(32, b"\x00")[:32]


def steel_keys(n: int, *, lot: str = "L1") -> list[bytes]:
    """Lien keys of n coils (SGTINs) of one lot."""
    return [identifier_key(f"urn:epc:id:sgtin:6901234.000{lot}.{i}") for i in range(n)]


def ear_tags(n: int, *, herd: str = "H1") -> list[bytes]:
    return [identifier_key(f"urn:fourflow:eartag:CN:{herd}:{i:06d}") for i in range(n)]


@dataclass
class World:
    chain: Chain
    contracts: Contracts
    admin: LocalAccount
    custodian: LocalAccount
    custodian2: LocalAccount
    lender: LocalAccount
    lender2: LocalAccount
    borrower: LocalAccount
    borrower2: LocalAccount
    oracle: LocalAccount
    auditor: LocalAccount
    payee: LocalAccount
    buyer: LocalAccount
    outsider: LocalAccount
    deployment: Deployment | None = None
    counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def receipts(self) -> Any:
        return self.contracts.receipts

    @property
    def pledges(self) -> Any:
        return self.contracts.pledges

    @property
    def prices(self) -> Any:
        return self.contracts.prices

    @property
    def anchors(self) -> Any:
        return self.contracts.anchors

    # --- clock -------------------------------------------------------------------------

    @property
    def tester(self) -> Any:
        return self.chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]

    def now(self) -> int:
        """The timestamp of the latest block."""
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> int:
        """Moves the clock forward; the next transaction's block is ``seconds`` later."""
        target = self.now() + seconds
        self.tester.time_travel(target)
        return target

    # --- receipts and pledges ----------------------------------------------------------

    def issue_steel(
        self,
        *,
        quantity: int = 100_000,
        keys: Sequence[bytes] | None = None,
        owner: LocalAccount | None = None,
        custodian: LocalAccount | None = None,
        lot: str = "L1",
    ) -> int:
        """A lot of hot-rolled coil in kg, ten coils' SGTINs as its keys."""
        receipt_id, _ = self.receipts.issue(
            owner=(owner or self.borrower).address,
            asset_class=STEEL,
            unit="kg",
            quantity=quantity,
            keys=steel_keys(10, lot=lot) if keys is None else keys,
            location="urn:epc:id:sgln:6901234.00001.0",
            registration="ZD2030031700001",
            warehouse_receipt_code="WR-SH-2030-0001",
            ref=ref(f"inbound {lot}"),
            custodian=custodian or self.custodian,
        )
        return int(receipt_id)

    def issue_herd(self, *, head: int = 100, herd: str = "H1") -> int:
        """A dairy herd on a ranch, one ear tag a cow."""
        receipt_id, _ = self.receipts.issue(
            owner=self.borrower.address,
            asset_class=CATTLE,
            unit="head",
            quantity=head,
            keys=ear_tags(head, herd=herd),
            location="urn:epc:id:sgln:6909999.00002.0",
            ref=ref(f"herd {herd}"),
            custodian=self.custodian,
        )
        return int(receipt_id)

    def terms(self, receipt_id: int, **changes: Any) -> Terms:
        """Steel-like defaults: 60% pledge rate, warning at 70%, liquidation at 85%."""
        base = Terms(
            receipt_id=receipt_id,
            lender=self.lender.address,
            payee=self.payee.address,
            currency=CNY,
            principal=200_000_00,  # 200,000 CNY in fen
            pledge_rate_bps=6000,
            warning_ltv_bps=7000,
            liquidation_ltv_bps=8500,
            min_quantity=50_000,
            min_value=0,
            max_data_age=2 * DAY,
            cure_period=3 * DAY,
            maturity=self.now() + 365 * DAY,
            mode=Mode.STATIC,
        )
        return replace(base, **changes)

    def open_pledge(
        self,
        terms: Terms,
        *,
        borrower: LocalAccount | None = None,
        lender: LocalAccount | None = None,
    ) -> int:
        return self.open_pledge_tx(terms, borrower=borrower, lender=lender)[0]

    def open_pledge_tx(
        self,
        terms: Terms,
        *,
        borrower: LocalAccount | None = None,
        lender: LocalAccount | None = None,
    ) -> tuple[int, TxReceipt]:
        """Opens with the borrower's EIP-712 consent; returns the id and the transaction."""
        borrower = borrower or self.borrower
        deadline = self.now() + DAY
        signature, nonce = self.pledges.sign_consent(terms, borrower=borrower, deadline=deadline)
        pledge_id, receipt = self.pledges.open(
            terms,
            nonce=nonce,
            deadline=deadline,
            signature=signature,
            lender=lender or self.lender,
        )
        return int(pledge_id), receipt

    def report_price(
        self, price: int, *, asset_class: str = STEEL, at: int | None = None
    ) -> TxReceipt:
        result: TxReceipt = self.prices.report(
            asset_class=asset_class,
            currency=CNY,
            price=price,
            observed_at=self.now() if at is None else at,
            oracle=self.oracle,
        )
        return result

    # --- evidence ----------------------------------------------------------------------

    def evidence(
        self, count: int = 1, *, at: int | None = None, stream: str = "ranch.counts"
    ) -> list[Evidence]:
        """Anchors a batch of ``count`` distinct leaves whose events happened at ``at``
        (unix seconds, default now) and returns each one's citation with its proof."""
        at = self.now() if at is None else at
        leaves = [
            leaf_hash({"kind": "observation", "n": next(self.counter), "at": at})
            for _ in range(count)
        ]
        tree = build_tree(leaves)
        seq = self.anchors.head_of(stream).next_seq
        self.chain.wait(
            self.anchors.send_anchor(
                stream=stream,
                seq=seq,
                root=tree.root,
                leaf_count=count,
                first_event_time=at * 1000,
                last_event_time=at * 1000 + 999,
                oracle=self.oracle,
            )
        )
        return [
            Evidence(
                stream_id=stream_id(stream),
                seq=seq,
                leaf=leaf,
                leaf_index=i,
                siblings=siblings_of(tree.proof(i)),
            )
            for i, leaf in enumerate(leaves)
        ]


def build_world(*, seed: str | None = None) -> World:
    """A fresh world; with ``seed`` its accounts (and so every transaction) are the same
    on every run, which the gas table needs."""
    chain = Chain.in_process()
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    tester.time_travel(T0)
    accounts = {
        name: new_account() if seed is None else Account.from_key(keccak(text=f"{seed}:{name}"))
        for name in PARTIES
    }
    for account in accounts.values():
        chain.fund(account.address)
    admin = accounts["admin"]
    contracts, deployment = deploy_contracts(chain, admin=admin)
    for custodian in ("custodian", "custodian2"):
        contracts.receipts.grant(CUSTODIAN_ROLE, accounts[custodian].address, admin=admin)
    for lender in ("lender", "lender2"):
        contracts.pledges.grant(LENDER_ROLE, accounts[lender].address, admin=admin)
    contracts.pledges.grant(ORACLE_ROLE, accounts["oracle"].address, admin=admin)
    contracts.prices.grant(ORACLE_ROLE, accounts["oracle"].address, admin=admin)
    contracts.anchors.grant(ORACLE_ROLE, accounts["oracle"].address, admin=admin)
    contracts.pledges.grant(AUDITOR_ROLE, accounts["auditor"].address, admin=admin)
    world = World(chain=chain, contracts=contracts, deployment=deployment, **accounts)
    for lender in (world.lender, world.lender2):
        contracts.pledges.set_pledge_rate(STEEL, 6000, lender=lender)
        contracts.pledges.set_pledge_rate(COPPER, 7000, lender=lender)
        contracts.pledges.set_pledge_rate(CATTLE, 5000, lender=lender)
    world.report_price(STEEL_PRICE, asset_class=STEEL)
    world.report_price(COW_PRICE, asset_class=CATTLE)
    return world


@pytest.fixture(scope="module")
def world_base() -> World:
    return build_world()


@pytest.fixture
def world(world_base: World) -> Iterator[World]:
    snapshot = world_base.tester.take_snapshot()
    yield world_base
    world_base.tester.revert_to_snapshot(snapshot)
