"""Contract state rebuilt from contract logs alone.

The receipt and pledge registries emit one past-tense event per state change, carrying
the values an observer needs to follow along. Replaying those logs in chain order gives
every receipt's and pledge's state, field for field what ``receiptOf`` / ``pledgeOf``
return, and who holds which role. The indexer serves reads from this; ``fourflow audit``
replays the chain's logs and compares the result with contract storage, so a contract
whose storage drifted from its own event trail (or an indexer that missed a log) shows.

Pure: no web3, no store. Input is ``ledger.chainlog.ChainLog`` records in chain order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from ledger.chainlog import ChainLog
from ledger.collateral import (
    Freeze,
    Mode,
    Pledge,
    PledgeStatus,
    Receipt,
    ReceiptStatus,
    Terms,
    from_ascii32,
)

__all__ = ["ROLE_NAMES", "ChainState", "ReceiptView", "replay"]

_ZERO = "0x0000000000000000000000000000000000000000"

# role hash (0x hex) -> (contract, our name for it)
ROLE_NAMES: dict[tuple[str, str], str] = {
    ("PledgeRegistry", "0x" + keccak(text="LENDER_ROLE").hex()): "lender",
    ("PledgeRegistry", "0x" + keccak(text="ORACLE_ROLE").hex()): "oracle",
    ("PledgeRegistry", "0x" + keccak(text="AUDITOR_ROLE").hex()): "auditor",
    ("ReceiptRegistry", "0x" + keccak(text="CUSTODIAN_ROLE").hex()): "custodian",
    ("ReceiptRegistry", "0x" + keccak(text="PLEDGE_REGISTRY_ROLE").hex()): "pledge_registry",
    ("AnchorRegistry", "0x" + keccak(text="SUBMITTER_ROLE").hex()): "submitter",
    ("AnchorRegistry", "0x" + keccak(text="ORACLE_ROLE").hex()): "anchor_oracle",
    ("PriceFeed", "0x" + keccak(text="ORACLE_ROLE").hex()): "price_oracle",
}
_ADMIN = "0x" + "00" * 32


@dataclass
class ReceiptView:
    """A receipt as its logs tell it: the contract's fields plus owner and bound keys."""

    receipt_id: int
    owner: str | None
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
    keys: set[str] = field(default_factory=set)  # 0x hex of the identifier keys bound now
    ever_keys: set[str] = field(default_factory=set)  # ... and of every key it ever bound
    pledges: list[int] = field(default_factory=list)  # every pledge ever opened on it

    def contract_view(self) -> Receipt:
        """The same value ``ReceiptRegistry.receipt_of`` decodes from storage."""
        return Receipt(
            custodian=self.custodian,
            quantity=self.quantity,
            status=self.status,
            issued_at=self.issued_at,
            key_count=self.key_count,
            pledge_id=self.pledge_id,
            asset_class=self.asset_class,
            unit=self.unit,
            identifiers_digest=self.identifiers_digest,
            location=self.location,
            registration=self.registration,
            warehouse_receipt_code=self.warehouse_receipt_code,
        )


@dataclass
class _PledgeView:
    terms: Terms
    borrower: str
    status: PledgeStatus = PledgeStatus.ACTIVE
    frozen: int = 0
    opened_at: int = 0
    call_deadline: int = 0
    release_quantity: int = 0
    release_all: bool = False
    disbursed: int = 0
    repaid: int = 0
    outstanding: int = 0
    margin: int = 0
    release_credit: int = 0
    asset_class: str = ""

    def freeze(self) -> Pledge:
        return Pledge(
            terms=self.terms,
            borrower=self.borrower,
            status=self.status,
            frozen=Freeze(self.frozen),
            opened_at=self.opened_at,
            call_deadline=self.call_deadline,
            release_quantity=self.release_quantity,
            release_all=self.release_all,
            disbursed=self.disbursed,
            repaid=self.repaid,
            outstanding=self.outstanding,
            margin=self.margin,
            release_credit=self.release_credit,
            asset_class=self.asset_class,
        )


def _terms(raw: dict[str, Any]) -> Terms:
    return Terms(
        receipt_id=raw["receiptId"],
        lender=raw["lender"],
        payee=raw["payee"],
        currency=from_ascii32(bytes.fromhex(raw["currency"][2:])),
        principal=raw["principal"],
        pledge_rate_bps=raw["pledgeRateBps"],
        warning_ltv_bps=raw["warningLtvBps"],
        liquidation_ltv_bps=raw["liquidationLtvBps"],
        min_quantity=raw["minQuantity"],
        min_value=raw["minValue"],
        max_data_age=raw["maxDataAge"],
        cure_period=raw["curePeriod"],
        maturity=raw["maturity"],
        mode=Mode(raw["mode"]),
    )


def _ascii(hex32: str) -> str:
    return from_ascii32(bytes.fromhex(hex32[2:]))


@dataclass
class ChainState:
    """Everything the logs say, after replaying them in order."""

    receipts: dict[int, ReceiptView] = field(default_factory=dict)
    _pledges: dict[int, _PledgeView] = field(default_factory=dict)
    roles: dict[str, set[str]] = field(default_factory=dict)  # role name -> accounts
    anchors: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (stream id, seq)
    unknown: list[ChainLog] = field(default_factory=list)  # logs no rule applies to

    @property
    def pledges(self) -> dict[int, Pledge]:
        return {pledge_id: view.freeze() for pledge_id, view in self._pledges.items()}

    def pledge(self, pledge_id: int) -> Pledge | None:
        view = self._pledges.get(pledge_id)
        return None if view is None else view.freeze()

    def roles_of(self, account: str) -> frozenset[str]:
        return frozenset(role for role, members in self.roles.items() if account in members)

    def apply(self, log: ChainLog) -> None:
        handler = getattr(self, f"_on_{log.event}", None)
        if handler is None:
            self.unknown.append(log)
            return
        handler(log, log.args)

    # --- roles (every contract) -----------------------------------------------------------

    def _role(self, log: ChainLog, role: str) -> str:
        if role == _ADMIN:
            return "admin"
        return ROLE_NAMES.get((log.contract, role), f"{log.contract}:{role}")

    def _on_RoleGranted(self, log: ChainLog, a: dict[str, Any]) -> None:
        self.roles.setdefault(self._role(log, a["role"]), set()).add(a["account"])

    def _on_RoleRevoked(self, log: ChainLog, a: dict[str, Any]) -> None:
        self.roles.setdefault(self._role(log, a["role"]), set()).discard(a["account"])

    def _on_RoleAdminChanged(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass

    # --- anchors ------------------------------------------------------------------------

    def _on_BatchAnchored(self, log: ChainLog, a: dict[str, Any]) -> None:
        self.anchors[(a["streamId"], a["seq"])] = a

    # --- receipts -----------------------------------------------------------------------

    def _on_ReceiptIssued(self, log: ChainLog, a: dict[str, Any]) -> None:
        issue = a["issue"]
        self.receipts[a["receiptId"]] = ReceiptView(
            receipt_id=a["receiptId"],
            owner=a["owner"],
            custodian=a["custodian"],
            quantity=issue["quantity"],
            status=ReceiptStatus.LIVE,
            issued_at=log.block_time_ms // 1000,
            key_count=0,
            pledge_id=0,
            asset_class=_ascii(issue["assetClass"]),
            unit=_ascii(issue["unit"]),
            identifiers_digest=b"\x00" * 32,
            location=issue["location"],
            registration=issue["registration"],
            warehouse_receipt_code=issue["warehouseReceiptCode"],
        )

    def _on_Transfer(self, log: ChainLog, a: dict[str, Any]) -> None:
        receipt = self.receipts.get(a["tokenId"])
        if receipt is not None:  # the mint precedes ReceiptIssued: the issue sets the owner
            receipt.owner = None if a["to"] == _ZERO else a["to"]

    def _on_Approval(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass

    def _on_ApprovalForAll(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass

    def _on_ReceiptKeysBound(self, log: ChainLog, a: dict[str, Any]) -> None:
        receipt = self.receipts[a["receiptId"]]
        receipt.keys.update(a["keys"])
        receipt.ever_keys.update(a["keys"])
        receipt.key_count = a["keyCount"]
        receipt.identifiers_digest = bytes.fromhex(a["identifiersDigest"][2:])

    def _on_ReceiptKeysFreed(self, log: ChainLog, a: dict[str, Any]) -> None:
        receipt = self.receipts[a["receiptId"]]
        receipt.keys.difference_update(a["keys"])
        receipt.key_count = a["keyCount"]

    def _on_ReceiptQuantityChanged(self, log: ChainLog, a: dict[str, Any]) -> None:
        self.receipts[a["receiptId"]].quantity = a["quantity"]

    def _on_ReceiptRetired(self, log: ChainLog, a: dict[str, Any]) -> None:
        receipt = self.receipts[a["receiptId"]]
        receipt.status = ReceiptStatus.RETIRED
        receipt.owner = None

    def _on_ReceiptLocked(self, log: ChainLog, a: dict[str, Any]) -> None:
        self.receipts[a["receiptId"]].pledge_id = a["pledgeId"]

    def _on_ReceiptUnlocked(self, log: ChainLog, a: dict[str, Any]) -> None:
        self.receipts[a["receiptId"]].pledge_id = 0

    # --- prices -------------------------------------------------------------------------

    def _on_PriceReported(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass  # the price feed keeps its own series; valuations are read from the contract

    # --- pledges ------------------------------------------------------------------------

    def _pledge(self, a: dict[str, Any]) -> _PledgeView:
        return self._pledges[a["pledgeId"]]

    def _on_PledgeRateSet(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass

    def _on_PledgeConsented(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass

    def _on_PledgeOpened(self, log: ChainLog, a: dict[str, Any]) -> None:
        terms = _terms(a["terms"])
        receipt = self.receipts.get(terms.receipt_id)
        self._pledges[a["pledgeId"]] = _PledgeView(
            terms=terms,
            borrower=a["borrower"],
            opened_at=log.block_time_ms // 1000,
            asset_class=receipt.asset_class if receipt else "",
        )
        if receipt is not None:
            receipt.pledges.append(a["pledgeId"])

    def _on_Disbursed(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        pledge.disbursed += a["amount"]
        pledge.outstanding = a["outstanding"]

    def _on_Repaid(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        pledge.repaid += a["amount"]
        pledge.outstanding = a["outstanding"]
        pledge.release_credit = a["releaseCredit"]

    def _on_MarginToppedUp(self, log: ChainLog, a: dict[str, Any]) -> None:
        self._pledge(a).margin = a["margin"]

    def _on_MarginCallOpened(self, log: ChainLog, a: dict[str, Any]) -> None:
        self._pledge(a).call_deadline = a["deadline"]

    def _on_MarginCallCured(self, log: ChainLog, a: dict[str, Any]) -> None:
        self._pledge(a).call_deadline = 0

    def _on_FactReported(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass  # observations are facts' own history; the pledge changes via PledgeFrozen

    def _on_PledgeFrozen(self, log: ChainLog, a: dict[str, Any]) -> None:
        self._pledge(a).frozen = a["frozen"]

    def _on_PledgeUnfrozen(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        pledge.frozen &= ~a["cleared"] & 0xFF

    def _on_GoodsAdded(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass  # the receipt's quantity moves with ReceiptQuantityChanged

    def _on_GoodsSwapped(self, log: ChainLog, a: dict[str, Any]) -> None:
        pass

    def _on_ReleaseInstructed(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        pledge.release_quantity = a["quantity"]
        pledge.release_all = a["full"]

    def _on_GoodsReleased(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        pledge.release_credit -= a["creditUsed"]
        pledge.release_quantity = 0

    def _on_PledgeReleased(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        pledge.release_all = False
        pledge.margin = 0
        pledge.call_deadline = 0
        pledge.status = PledgeStatus.RELEASED

    def _on_PledgeLiquidated(self, log: ChainLog, a: dict[str, Any]) -> None:
        pledge = self._pledge(a)
        outcome = a["outcome"]
        pledge.repaid += outcome["marginApplied"] + outcome["proceedsApplied"]
        pledge.outstanding = outcome["shortfall"]
        pledge.margin = 0
        pledge.call_deadline = 0
        pledge.release_quantity = 0
        pledge.release_all = False
        pledge.status = PledgeStatus.LIQUIDATED


def replay(logs: Iterable[ChainLog]) -> ChainState:
    """The state ``logs`` (in chain order) lead to."""
    state = ChainState()
    for log in logs:
        state.apply(log)
    return state
