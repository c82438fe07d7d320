"""Property tests of the pledge contracts over random operation sequences (hypothesis).

One world (eth-tester, the four contracts, the parties of ``tests.collateral_world``) is
deployed per module with a small book on it: a static steel pledge with money out, a
dynamic steel pledge, a free copper receipt (no price yet) and a free steel lot. Every
hypothesis example starts from an eth-tester snapshot of that book and runs a sequence
of operations with random arguments, valid and invalid: receipts issued (reusing keys of
live and retired receipts), goods added, delivered and re-keyed, receipts transferred,
pledges opened (either mode, lines right or wrong, consent right or wrong),
disbursements, repayments, margin, prices up and down (and driven onto a pledge's
lines), covenant facts citing fresh anchored evidence (and replayed, forged, late or
future evidence), freezes and their clearing, releases instructed and executed, swaps,
liquidations, time travel. Two mixes: every operation with its invalid variants, and the
pledge life cycle with little noise (count, open, lend, freeze, clear, release, re-open).

A Python model follows the rules the contracts' NatSpec and docs/contracts.md state
(valuation, LTV, lines, freezes, release allowance, static release credit, lien index):
before each transaction it predicts success or the custom errors allowed, and after each
step that changed the chain the whole observed state (every receipt, observation,
pledge, valuation, allowance and lien-index entry) is read and compared with the model.
On top of that comparison, these properties are checked on what the chain says:

1. lien index: no identifier key behind two live receipts (``backingOf`` of every key
   ever bound is 0 or one live receipt; the live receipts' key sets are disjoint);
2. no receipt in two active pledges (an active pledge's receipt points back to it;
   active pledges have distinct receipts; a locked receipt's pledge is active);
3. capital: outstanding = disbursed − repaid ≥ 0, disbursed ≤ principal;
4. static release credit: Σ GoodsReleased.creditUsed ≤ Σ ⌊repayment × 10000 / r⌋ and
   releaseCredit is exactly the difference;
5. lines: after any re-check (checkLines, repay, top-up, goods added, swap, fact) a
   margin call is open iff outstanding > 0 and outstanding × 10000 ≥ w × value;
   a successful disbursement leaves outstanding × 10000 ≤ r × value;
6. covenants: an active pledge whose latest observed quantity is under its minimum is
   frozen (BELOW_MINIMUM) unless its lender cleared the freeze after that observation
   (and so a pledge cannot open on goods already under its minimum); a frozen pledge
   refuses disbursements, release instructions and executions and swaps with
   PledgeRegistryFrozen; PledgeFrozen carries the bits a call set;
7. releasableOf is exact: instructing a + 1 reverts PledgeRegistryReleaseBeyondAllowance,
   a succeeds and executes, and what is left stands within the rules (a probe operation,
   kept or rolled back by snapshot); releasableOf equals the largest release the rules
   allow, found by searching the rules themselves;
8. a reverted operation leaves every observed value unchanged.

A failing case prints its step log: each operation, then each transaction's outcome.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from ledger.chain import TxReceipt
from ledger.collateral import (
    PRICE_SCALE,
    Change,
    Collateral,
    Evidence,
    Fact,
    FactKind,
    Freeze,
    Ground,
    Mode,
    Observation,
    Pledge,
    PledgeStatus,
    ReceiptStatus,
    Terms,
    Valuation,
    identifier_key,
)
from ledger.errors import ContractReverted
from tests.collateral_world import (
    CNY,
    COPPER,
    DAY,
    STEEL,
    STEEL_PRICE,
    World,
    build_world,
    ceil_div,
    ref,
)

BPS = 10_000
SCALE = PRICE_SCALE
U256_MAX = 2**256 - 1
COPPER_PRICE = 7_000 * PRICE_SCALE  # 70 CNY a kg, first reported by the sequences
KEYS = [identifier_key(f"urn:epc:id:sgtin:6901234.0777.{i}") for i in range(8)]
ZERO_KEY = bytes(32)
KEY_POOL = [*KEYS, ZERO_KEY]  # index 8: the zero key, refused by the lien index
ACTIVE = PledgeStatus.ACTIVE

# error names
ACCESS = "AccessControlUnauthorizedAccount"
FROZEN = "PledgeRegistryFrozen"
NOT_ACTIVE = "PledgeRegistryNotActive"
NOT_LENDER = "PledgeRegistryNotLender"
NOT_CUSTODIAN = "PledgeRegistryNotCustodian"
BEYOND = "PledgeRegistryReleaseBeyondAllowance"
ERC721_ERRORS = ["ERC721InsufficientApproval", "ERC721IncorrectOwner", "ERC721NonexistentToken"]


def scaled(basis: int, x: int, delta: int) -> int:
    """basis × x / 10000 + delta, at least 0: x = 10000, delta = ±1 hits a boundary."""
    return max(0, basis * x // BPS + delta)


# --- the model ----------------------------------------------------------------------------


@dataclass
class RModel:
    rid: int
    asset: str
    owner: str | None  # None once retired
    custodian: str
    quantity: int
    keys: set[bytes]
    live: bool = True
    pledge: int = 0
    obs_q: int = 0
    obs_at: int = 0
    obs_step: int = -1  # the step that reported the latest quantity observation


@dataclass
class PModel:
    pid: int
    rid: int
    terms: Terms
    borrower: str
    asset: str
    opened_at: int
    status: PledgeStatus = ACTIVE
    frozen: int = 0
    call_deadline: int = 0
    release_quantity: int = 0
    release_all: bool = False
    disbursed: int = 0
    repaid: int = 0
    outstanding: int = 0
    margin: int = 0
    credit: int = 0
    granted: int = 0  # Σ ⌊repayment × 10000 / r⌋ (static mode)
    used: int = 0  # Σ GoodsReleased.creditUsed, as the events say
    cleared_step: int = -1  # the step of the lender's last clearFreeze


@dataclass
class Model:
    receipts: dict[int, RModel]
    pledges: dict[int, PModel]
    reports: dict[str, list[int]]
    price_at: dict[str, int]
    rates: dict[tuple[str, str], int]
    used_evidence: list[tuple[Evidence, int]] = field(default_factory=list)
    ever_bound: set[bytes] = field(default_factory=set)  # every identifier key ever bound
    step: int = 0

    def quote(self, asset: str) -> int:
        """PriceFeed's valuation price: min(spot, average of the last 30 reports)."""
        reports = self.reports.get(asset, [])
        if not reports:
            return 0
        window = reports[-30:]
        return min(reports[-1], sum(window) // len(window))

    def valuation(self, p: PModel, booked: int | None = None) -> tuple[int, int, int, int]:
        """(q, price, goods, value): q = min(booked, latest observed), value = goods + margin."""
        r = self.receipts[p.rid]
        booked = r.quantity if booked is None else booked
        q = min(booked, r.obs_q) if r.obs_at != 0 else booked
        price = self.quote(p.asset)
        goods = q * price // SCALE
        return q, price, goods, goods + p.margin

    def ltv(self, p: PModel) -> int:
        value = self.valuation(p)[3]
        if p.outstanding == 0:
            return 0
        if value == 0:
            return U256_MAX
        return ceil_div(p.outstanding * BPS, value)

    def above_minimum(self, p: PModel, booked: int | None = None) -> bool:
        q, price, goods, _ = self.valuation(p, booked)
        if q < p.terms.min_quantity or q == 0:
            return False
        return price == 0 or goods >= p.terms.min_value

    def allowance(self, p: PModel) -> int:
        """The largest release that leaves the rules standing, by search over the rules
        themselves (remaining q ≥ max(minQuantity, 1), goods ≥ minValue, LTV ≤ r, and in
        static mode ⌈released × price / 10⁶⌉ ≤ credit); 0 without a price."""
        price = self.quote(p.asset)
        if price == 0:
            return 0
        r = self.receipts[p.rid]
        t = p.terms

        def ok(out: int) -> bool:
            left = r.quantity - out
            q = min(left, r.obs_q) if r.obs_at != 0 else left
            if q < max(t.min_quantity, 1):
                return False
            goods = q * price // SCALE
            if goods < t.min_value:
                return False
            if p.outstanding * BPS > t.pledge_rate_bps * (goods + p.margin):
                return False
            return not (t.mode == Mode.STATIC and ceil_div(out * price, SCALE) > p.credit)

        if not ok(0):
            return 0
        lo, hi = 0, r.quantity  # ok(lo), not ok(hi): q would be 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo

    def releasable(self, p: PModel) -> int:
        if p.status != ACTIVE or p.frozen:
            return 0
        return self.allowance(p)

    def check_lines(self, p: PModel, ts: int) -> None:
        """The one place calls open and close: at warning iff outstanding × 10000 ≥ w × value."""
        _, price, _, value = self.valuation(p)
        if price == 0:
            return
        at_warning = p.outstanding != 0 and p.outstanding * BPS >= p.terms.warning_ltv_bps * value
        if at_warning and p.call_deadline == 0:
            p.call_deadline = ts + p.terms.cure_period
        elif not at_warning and p.call_deadline != 0:
            p.call_deadline = 0

    def key_owner(self, key: bytes) -> int:
        for r in self.receipts.values():
            if r.live and key in r.keys:
                return r.rid
        return 0

    def bind_errors(self, keys: list[bytes], freed: set[bytes] | None = None) -> list[str]:
        """Errors _bind may raise for `keys` (after `freed` were freed)."""
        freed = freed or set()
        errors = []
        seen: set[bytes] = set()
        for key in keys:
            if key == ZERO_KEY:
                errors.append("ReceiptRegistryZeroKey")
            elif key in seen or (key not in freed and self.key_owner(key) != 0):
                errors.append("ReceiptRegistryIdentifierAlreadyBacked")
            seen.add(key)
        return errors

    def free_errors(self, rid: int, keys: list[bytes]) -> list[str]:
        owned = set(self.receipts[rid].keys)
        for key in keys:
            if key not in owned:
                return ["ReceiptRegistryIdentifierNotBacking"]
            owned.discard(key)
        return []


@dataclass(frozen=True)
class Seen:
    """Everything the checks read from the chain after a step."""

    receipts: dict[int, tuple[Collateral, Observation]]
    pledges: dict[int, tuple[Pledge, Valuation | None, int | None]]
    backing: dict[bytes, int]  # every key ever bound -> backingOf


# --- operations ---------------------------------------------------------------------------
# Indices pick among what exists (modulo); `caller`/`lender`/`custodian` 0 is the right
# party, 1 another party holding the role, 2 the outsider.


@dataclass(frozen=True)
class Issue:
    custodian: int
    owner: int
    copper: bool
    quantity: int
    keys: tuple[int, ...]


@dataclass(frozen=True)
class ReceiptDirect:
    """ReceiptRegistry directly: 0 addGoods, 1 removeGoods, 2 bindKeys."""

    receipt: int
    action: int
    caller: int
    x: int
    delta: int
    own_keys: int
    keys: tuple[int, ...]
    change: int


@dataclass(frozen=True)
class Transfer:
    receipt: int
    by_owner: bool
    to: int


OPEN_FLAWS = (
    "caller is the other lender",
    "caller is no lender",
    "receipt already pledged or retired",
    "pledge rate 0",
    "pledge rate above the lender's rate for the class",
    "warning not above the pledge rate",
    "liquidation not above warning",
    "liquidation above 100%",
    "zero principal",
    "zero maximum data age",
    "maturity not in the future",
    "consent signed by someone else",
    "consent expired",
    "no consent",
    "consent with a stale nonce",
)


@dataclass(frozen=True)
class Open:
    """Opens a pledge on a free live receipt with valid terms, unless `flaw` breaks one rule."""

    receipt: int
    lender: int
    dynamic: bool
    rate: int
    warning_gap: int
    liquidation_gap: int
    principal: int
    min_quantity: int
    min_value: int
    max_data_age: int
    cure_period: int
    maturity_days: int
    consent_by_transaction: bool
    flaw: str | None


@dataclass(frozen=True)
class Disburse:
    pledge: int
    lender: int
    payee_ok: bool
    basis: int  # 0 available principal, 1 room to the pledge rate, 2 a small sum
    x: int
    delta: int


@dataclass(frozen=True)
class Repay:
    pledge: int
    lender: int
    x: int
    delta: int


@dataclass(frozen=True)
class TopUp:
    pledge: int
    lender: int
    amount: int


@dataclass(frozen=True)
class CheckLines:
    pledge: int


@dataclass(frozen=True)
class ReportPrice:
    copper: bool
    factor: int  # bps of the base price
    variant: int  # 0 ok, 1 zero, 2 not newer, 3 future, 4 not an oracle


@dataclass(frozen=True)
class PriceToLine:
    """A spot price that puts a pledge's LTV on one of its lines (or between two)."""

    pledge: int
    line: int  # 0 pledge rate, 1 warning, 2 liquidation, 3 r..w, 4 w..l, 5 100%
    delta: int  # micro-units of price around it


@dataclass(frozen=True)
class ReportFact:
    receipt: int
    kind: int
    basis: int  # quantity: 0 of booked, 1 of the pledge's minimum
    x: int
    delta: int
    variant: int  # 0 ok, 1 replayed, 2 old, 3 outside batch, 4 forged, 5 future, 6 not an oracle


@dataclass(frozen=True)
class ClearFreeze:
    pledge: int
    lender: int


@dataclass(frozen=True)
class AuditFreeze:
    pledge: int
    by_auditor: bool


@dataclass(frozen=True)
class FlagStale:
    pledge: int


@dataclass(frozen=True)
class Instruct:
    pledge: int
    lender: int
    basis: int  # 0 of the allowance, 1 of booked
    x: int
    delta: int


@dataclass(frozen=True)
class InstructFull:
    pledge: int
    lender: int


@dataclass(frozen=True)
class Execute:
    pledge: int
    custodian: int
    own_keys: int
    keys: tuple[int, ...]


@dataclass(frozen=True)
class AddGoods:
    pledge: int
    custodian: int
    quantity: int
    keys: tuple[int, ...]


@dataclass(frozen=True)
class Swap:
    pledge: int
    custodian: int
    x: int
    delta: int
    extra_in: int
    own_keys: int
    keys_in: tuple[int, ...]


@dataclass(frozen=True)
class Liquidate:
    pledge: int
    lender: int
    x: int  # proceeds in bps of outstanding


@dataclass(frozen=True)
class Travel:
    seconds: int


@dataclass(frozen=True)
class Probe:
    """releasableOf exactness: a + 1 refused, a instructed and executed; kept or rolled back."""

    pledge: int
    keep: bool
    keys_out: int  # how many of the receipt's keys leave with the goods


@dataclass(frozen=True)
class Count:
    """A quantity fact on a pledge's receipt around its minimum: 0 one under, 1 at it,
    2 one over, 3 half of it, 4 nothing left."""

    pledge: int
    where: int


@dataclass(frozen=True)
class Release:
    """The lender instructs x/10000 of the allowance, the custodian executes it."""

    pledge: int
    x: int
    keys_out: int


@dataclass(frozen=True)
class SetRate:
    lender: int
    copper: bool
    bps: int


@dataclass(frozen=True)
class FullRelease:
    """Repays what is outstanding (if `repay`), instructs the full release, executes it."""

    pledge: int
    repay: bool


idx = st.integers(0, 7)
party = st.sampled_from([0, 0, 1, 0, 0, 0, 2, 0, 0])  # the ends are drawn most
bps_x = st.one_of(st.sampled_from([5_000, 10_000, 0]), st.integers(0, 12_000))
delta = st.sampled_from([0, 0, 1, -1])
# mostly keys free at the start (5, 6, 7), sometimes keys of the book's receipts or zero
key_list = st.lists(st.sampled_from([5, 6, 7, 5, 6, 7, 0, 2, 3, 4, 8]), max_size=2).map(tuple)


def facts(variants: list[int], kinds: list[int]) -> st.SearchStrategy[ReportFact]:
    return st.builds(
        ReportFact,
        receipt=idx,
        kind=st.sampled_from(kinds),
        basis=st.integers(0, 1),
        x=bps_x,
        delta=delta,
        variant=st.sampled_from(variants),
    )


def opens(flaws: st.SearchStrategy[str | None]) -> st.SearchStrategy[Open]:
    return st.builds(
        Open,
        receipt=st.integers(0, 3),
        lender=st.integers(0, 1),
        dynamic=st.booleans(),
        rate=st.sampled_from([6000, 5000, 7000]),
        warning_gap=st.sampled_from([1000, 1500, 500]),
        liquidation_gap=st.sampled_from([1500, 2000, 500]),
        principal=st.sampled_from([10_000_000, 20_000_000, 50_000_000]),
        min_quantity=st.sampled_from([50_000, 0, 10_000, 30_000]),
        min_value=st.sampled_from([0, 1_000_000, 10_000_000]),
        max_data_age=st.sampled_from([2 * DAY, DAY, 30 * DAY]),
        cure_period=st.sampled_from([3 * DAY, 0, DAY]),
        maturity_days=st.sampled_from([365, 30, 2]),
        consent_by_transaction=st.sampled_from([False, False, True]),
        flaw=flaws,
    )


def disbursements(*, noisy: bool) -> st.SearchStrategy[Disburse]:
    """Mostly up to the room left under the pledge rate; noisy: wrong parties, zero sums."""
    return st.builds(
        Disburse,
        pledge=idx,
        lender=party if noisy else st.just(0),
        payee_ok=st.sampled_from([True, True, False, True]) if noisy else st.just(True),
        basis=st.sampled_from([1, 0, 1, 2]),
        x=bps_x if noisy else st.one_of(st.sampled_from([5_000, 10_000]), st.integers(1, 11_000)),
        delta=delta,
    )


def prices(variants: list[int]) -> st.SearchStrategy[ReportPrice]:
    return st.builds(
        ReportPrice,
        copper=st.sampled_from([False, True, False]),
        factor=st.one_of(st.integers(2_000, 14_000), st.sampled_from([3_000, 5_000])),
        variant=st.sampled_from(variants),
    )


issues = st.builds(
    Issue,
    custodian=party,
    owner=st.integers(0, 1),
    copper=st.booleans(),
    quantity=st.sampled_from([60_000, 100_000, 30_000, 150_000, 1, 0]),
    keys=key_list,
)
receipt_changes = st.builds(
    ReceiptDirect,
    receipt=idx,
    action=st.integers(0, 2),
    caller=party,
    x=bps_x,
    delta=delta,
    own_keys=st.integers(0, 2),
    keys=key_list,
    change=st.sampled_from([Change.DELIVERED, Change.SOLD, Change.ADDED, Change.LOST]),
)
transfers = st.builds(Transfer, receipt=idx, by_owner=st.booleans(), to=st.integers(0, 2))
repayments = st.builds(Repay, pledge=idx, lender=party, x=bps_x, delta=delta)
top_ups = st.builds(
    TopUp, pledge=idx, lender=party, amount=st.sampled_from([1_000_000, 10_000_000, 1, 0])
)
line_checks = st.builds(CheckLines, pledge=idx)
clears = st.builds(ClearFreeze, pledge=idx, lender=party)
audits = st.builds(AuditFreeze, pledge=idx, by_auditor=st.sampled_from([True, False, True]))
stale_flags = st.builds(FlagStale, pledge=idx)
instructions = st.builds(
    Instruct, pledge=idx, lender=party, basis=st.integers(0, 1), x=bps_x, delta=delta
)
full_instructions = st.builds(InstructFull, pledge=idx, lender=party)
executions = st.builds(
    Execute, pledge=idx, custodian=party, own_keys=st.integers(0, 2), keys=st.just(())
)
additions = st.builds(
    AddGoods,
    pledge=idx,
    custodian=party,
    quantity=st.sampled_from([20_000, 1_000, 60_000, 1, 0]),
    keys=key_list,
)
swaps = st.builds(
    Swap,
    pledge=idx,
    custodian=party,
    x=bps_x,
    delta=delta,
    extra_in=st.sampled_from([1_000, 0, 1, 30_000, -1]),
    own_keys=st.integers(0, 2),
    keys_in=key_list,
)
liquidations = st.builds(
    Liquidate, pledge=idx, lender=party, x=st.sampled_from([5_000, 10_000, 20_000, 0])
)
travels = st.builds(Travel, seconds=st.sampled_from([3_600, DAY, 3 * DAY + 1, 40 * DAY, 400 * DAY]))
probes = st.builds(Probe, pledge=idx, keep=st.booleans(), keys_out=st.integers(0, 1))
counts = st.builds(Count, pledge=idx, where=st.integers(0, 4))
releases = st.builds(
    Release, pledge=idx, x=st.sampled_from([5_000, 10_000, 1]), keys_out=st.integers(0, 1)
)
rate_changes = st.builds(
    SetRate,
    lender=st.integers(0, 1),
    copper=st.booleans(),
    bps=st.sampled_from([6000, 3000, 10_000, 0, 10_001]),
)
full_releases = st.builds(FullRelease, pledge=idx, repay=st.sampled_from([True, True, False]))
prices_to_lines = st.builds(
    PriceToLine, pledge=idx, line=st.integers(0, 5), delta=st.sampled_from([0, -1, 1, 0])
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """one_of with weights (one_of drops a repeated branch, so each copy is a new object).
    one_of draws its first and last branches most, and the first one alone in the simplest
    examples: a cheap operation goes first."""
    return st.one_of(*[s.map(lambda op: op) for n, s in choices for _ in range(n)])


# Every operation, valid and invalid.
OPERATIONS = weighted(
    (1, clears),
    (3, facts([0] * 8 + [1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 2, 3])),
    (2, issues),
    (1, receipt_changes),
    (1, transfers),
    (3, opens(st.one_of(st.none(), st.none(), st.sampled_from(OPEN_FLAWS)))),
    (3, disbursements(noisy=True)),
    (2, repayments),
    (1, top_ups),
    (2, line_checks),
    (2, prices([0] * 6 + [1, 2, 3, 4])),
    (2, prices_to_lines),
    (2, counts),
    (2, releases),
    (1, rate_changes),
    (1, audits),
    (1, stale_flags),
    (2, instructions),
    (1, full_instructions),
    (2, executions),
    (2, full_releases),
    (1, additions),
    (2, swaps),
    (1, liquidations),
    (1, travels),
    (3, probes),
)

# The pledge life cycle with little noise: counts, openings, money, prices, freezes and
# their clearing, releases (partial and full), liquidations, re-pledging what came free.
LIFE_CYCLE = weighted(
    (2, clears),
    (4, facts([0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 3])),
    (4, opens(st.none())),
    (3, disbursements(noisy=False)),
    (2, repayments),
    (1, top_ups),
    (2, full_releases),
    (1, prices([0])),
    (3, prices_to_lines),
    (3, counts),
    (2, releases),
    (2, line_checks),
    (1, stale_flags),
    (1, instructions),
    (1, executions),
    (1, liquidations),
    (1, travels),
    (1, issues),
    (2, probes),
)


# --- the runner ---------------------------------------------------------------------------


class Runner:
    def __init__(self, w: World, model: Model, log: list[str]) -> None:
        self.w = w
        self.m = model
        self.log = log  # what happened, step by step: hypothesis notes it
        self.accounts: dict[str, LocalAccount] = {
            a.address: a
            for a in (
                w.admin,
                w.custodian,
                w.custodian2,
                w.lender,
                w.lender2,
                w.borrower,
                w.borrower2,
                w.oracle,
                w.auditor,
                w.payee,
                w.buyer,
                w.outsider,
            )
        }
        self.lines_checked: set[int] = set()
        self.retired: dict[int, tuple[Collateral, Observation]] = {}
        self.closed: dict[int, Pledge] = {}

    # --- helpers --------------------------------------------------------------------------

    def ts(self) -> int:
        """The timestamp the next transaction's block will carry."""
        return int(self.w.tester.get_block_by_number("pending")["timestamp"])

    def attempt(self, what: str, send: Callable[[], Any], errors: list[str]) -> Any:
        """Sends; `errors` empty: it must succeed, else it must revert with one of them."""
        try:
            result = send()
        except ContractReverted as exc:
            self.log.append(f"  {what}: reverted {exc.error}{exc.error_args}")
            assert errors, f"{what} reverted {exc.error}{exc.error_args}, the rules allow it"
            assert exc.error in errors, f"{what} reverted {exc.error}, expected one of {errors}"
            return None
        self.log.append(f"  {what}: ok")
        assert not errors, f"{what} succeeded, expected a revert with one of {errors}"
        return result

    def pick_receipt(self, i: int) -> RModel:
        rids = sorted(self.m.receipts)
        return self.m.receipts[rids[i % len(rids)]]

    def pick_pledge(self, i: int, *, frozen_first: bool = False) -> PModel:
        """i < 6: an active pledge (a frozen one first if asked), if any; else any pledge."""
        pids = sorted(self.m.pledges)
        active = [pid for pid in pids if self.m.pledges[pid].status == ACTIVE]
        frozen = [pid for pid in active if self.m.pledges[pid].frozen] if frozen_first else []
        for choice in (frozen, active):
            if choice and i < 6:
                return self.m.pledges[choice[i % len(choice)]]
        return self.m.pledges[pids[i % len(pids)]]

    def lender_of(self, p: PModel, who: int) -> LocalAccount:
        right = self.accounts[p.terms.lender]
        other = self.w.lender2 if right.address == self.w.lender.address else self.w.lender
        return (right, other, self.w.outsider)[who]

    def custodian_of(self, r: RModel, who: int) -> LocalAccount:
        right = self.accounts[r.custodian]
        other = self.w.custodian2 if right.address == self.w.custodian.address else self.w.custodian
        return (right, other, self.w.outsider)[who]

    def own_keys(self, r: RModel, n: int, extra: tuple[int, ...] = ()) -> list[bytes]:
        return sorted(r.keys)[:n] + [KEY_POOL[i] for i in extra]

    def lender_errors(self, p: PModel, who: int) -> list[str]:
        if p.status != ACTIVE:
            return [NOT_ACTIVE]
        return [NOT_LENDER] if who != 0 else []

    def custodian_errors(self, p: PModel, who: int) -> list[str]:
        if p.status != ACTIVE:
            return [NOT_ACTIVE]
        return [NOT_CUSTODIAN] if who != 0 else []

    def recheck(self, p: PModel, ts: int) -> None:
        self.m.check_lines(p, ts)
        self.lines_checked.add(p.pid)

    # --- receipts -------------------------------------------------------------------------

    def do_Issue(self, op: Issue) -> bool:
        custodian = (self.w.custodian, self.w.custodian2, self.w.outsider)[op.custodian]
        owner = (self.w.borrower, self.w.borrower2)[op.owner]
        asset = COPPER if op.copper else STEEL
        keys = [KEY_POOL[i] for i in op.keys]
        errors = []
        if op.custodian == 2:
            errors.append(ACCESS)
        if op.quantity == 0:
            errors.append("ReceiptRegistryZeroQuantity")
        errors += self.m.bind_errors(keys)
        result = self.attempt(
            "issue",
            lambda: self.w.receipts.issue(
                owner=owner.address,
                asset_class=asset,
                unit="kg",
                quantity=op.quantity,
                keys=keys,
                location="urn:epc:id:sgln:6901234.00001.0",
                ref=ref("inbound"),
                custodian=custodian,
            ),
            errors,
        )
        if result is None:
            return False
        rid = result[0]
        assert rid not in self.m.receipts and rid == max(self.m.receipts) + 1
        self.m.receipts[rid] = RModel(
            rid, asset, owner.address, custodian.address, op.quantity, set(keys)
        )
        return True

    def do_ReceiptDirect(self, op: ReceiptDirect) -> bool:
        r = self.pick_receipt(op.receipt)
        caller = self.custodian_of(r, op.caller)
        errors = []
        if not r.live:
            errors.append("ReceiptRegistryNotLive")
        if op.caller != 0:
            errors.append("ReceiptRegistryNotCustodian")
        if r.pledge != 0:
            errors.append("ReceiptRegistryPledged")
        if op.action == 0:
            quantity = scaled(r.quantity, op.x, op.delta)
            keys = [KEY_POOL[i] for i in op.keys]
            if quantity == 0:
                errors.append("ReceiptRegistryZeroQuantity")
            errors += self.m.bind_errors(keys)
            send: Callable[[], Any] = lambda: self.w.receipts.add_goods(  # noqa: E731
                r.rid, quantity, keys=keys, custodian=caller
            )
        elif op.action == 1:
            quantity = scaled(r.quantity, op.x, op.delta)
            keys = self.own_keys(r, op.own_keys, op.keys)
            if op.change == Change.ADDED:
                errors.append("ReceiptRegistryInvalidChange")
            errors += self.m.free_errors(r.rid, keys)
            if quantity == 0:
                errors.append("ReceiptRegistryZeroQuantity")
            if quantity > r.quantity:
                errors.append("ReceiptRegistryQuantityExceeded")
            send = lambda: self.w.receipts.remove_goods(  # noqa: E731
                r.rid, quantity, change=Change(op.change), keys=keys, custodian=caller
            )
        else:
            keys = [KEY_POOL[i] for i in op.keys]
            errors += self.m.bind_errors(keys)
            send = lambda: self.w.receipts.bind_keys(r.rid, keys, custodian=caller)  # noqa: E731
        if self.attempt(f"receipt {r.rid} action {op.action}", send, errors) is None:
            return False
        if op.action == 0:
            r.quantity += quantity
            r.keys |= set(keys)
        elif op.action == 1:
            r.keys -= set(keys)
            r.quantity -= quantity
            if r.quantity == 0:  # retired: burnt, its keys back no receipt any more
                r.live, r.owner, r.keys = False, None, set()
        else:
            r.keys |= set(keys)
        return True

    def do_Transfer(self, op: Transfer) -> bool:
        r = self.pick_receipt(op.receipt)
        to = (self.w.borrower, self.w.borrower2, self.w.buyer)[op.to]
        sender = self.accounts[r.owner] if (op.by_owner and r.owner) else self.w.outsider
        if r.pledge != 0:
            errors = ["ReceiptRegistryPledged"]  # a pledged receipt never moves
        elif not r.live or not op.by_owner:
            errors = ERC721_ERRORS
        else:
            errors = []
        sent = self.attempt(
            f"transfer receipt {r.rid}",
            lambda: self.w.receipts.transfer(r.rid, to.address, owner=sender),
            errors,
        )
        if sent is None:
            return False
        r.owner = to.address
        return True

    # --- opening --------------------------------------------------------------------------

    def do_Open(self, op: Open) -> bool:
        flaw = op.flaw
        # free receipts, the one observed last first (receipt=0 is drawn most)
        free = sorted(
            (r for r in self.m.receipts.values() if r.live and r.pledge == 0),
            key=lambda r: (-r.obs_step, r.rid),
        )
        taken = [r for r in self.m.receipts.values() if not r.live or r.pledge != 0]
        if taken and (flaw == OPEN_FLAWS[2] or not free):
            r = taken[op.receipt % len(taken)]
            flaw = OPEN_FLAWS[2]
        else:
            flaw = None if flaw == OPEN_FLAWS[2] else flaw
            r = free[op.receipt % len(free)]
        lender = (self.w.lender, self.w.lender2)[op.lender]
        other = (self.w.lender2, self.w.lender)[op.lender]
        caller = {OPEN_FLAWS[0]: other, OPEN_FLAWS[1]: self.w.outsider}.get(flaw, lender)
        class_rate = self.m.rates.get((lender.address, r.asset), 0)
        rate = min(op.rate, class_rate) if class_rate else op.rate
        if flaw == OPEN_FLAWS[3]:
            rate = 0
        elif flaw == OPEN_FLAWS[4]:
            rate = class_rate + 1
        warning = rate + (0 if flaw == OPEN_FLAWS[5] else op.warning_gap)
        liquidation = warning + (0 if flaw == OPEN_FLAWS[6] else op.liquidation_gap)
        liquidation = min(liquidation, BPS)
        if flaw == OPEN_FLAWS[7]:
            liquidation = BPS + 1
        now, ts = self.w.now(), self.ts()
        terms = Terms(
            receipt_id=r.rid,
            lender=lender.address,
            payee=self.w.payee.address,
            currency=CNY,
            principal=0 if flaw == OPEN_FLAWS[8] else op.principal,
            pledge_rate_bps=rate,
            warning_ltv_bps=warning,
            liquidation_ltv_bps=liquidation,
            min_quantity=op.min_quantity,
            min_value=op.min_value,
            max_data_age=0 if flaw == OPEN_FLAWS[9] else op.max_data_age,
            cure_period=op.cure_period,
            maturity=now if flaw == OPEN_FLAWS[10] else now + op.maturity_days * DAY,
            mode=Mode.DYNAMIC if op.dynamic else Mode.STATIC,
        )
        owner = self.accounts[r.owner] if r.owner else self.w.borrower
        deadline = now if flaw == OPEN_FLAWS[12] else now + DAY
        nonce = self.w.pledges.nonce_of(owner.address) + (flaw == OPEN_FLAWS[14])
        signer = self.w.outsider if flaw == OPEN_FLAWS[11] else owner
        signature = b""
        if op.consent_by_transaction and flaw != OPEN_FLAWS[13]:
            digest = self.w.pledges.consent_digest(terms, nonce=nonce, deadline=deadline)
            self.w.pledges.consent(digest, borrower=signer)
            ts = self.ts()
        elif flaw != OPEN_FLAWS[13]:
            signature, _ = self.w.pledges.sign_consent(
                terms, borrower=signer, nonce=nonce, deadline=deadline
            )
        # every rule the terms break, whatever the flaw meant to break
        errors = []
        if caller.address == self.w.outsider.address:
            errors.append(ACCESS)
        elif caller.address != lender.address:
            errors.append(NOT_LENDER)
        if not r.live:
            errors.append("PledgeRegistryReceiptNotLive")
        if r.pledge != 0:
            errors.append("PledgeRegistryAlreadyPledged")
        if class_rate == 0:
            errors.append("PledgeRegistryAssetClassNotAccepted")
        if (
            not 0 < terms.pledge_rate_bps <= class_rate
            or not terms.pledge_rate_bps < terms.warning_ltv_bps < terms.liquidation_ltv_bps
            or terms.liquidation_ltv_bps > BPS
            or terms.principal == 0
            or terms.max_data_age == 0
            or terms.maturity <= ts
        ):
            errors.append("PledgeRegistryInvalidTerms")
        if deadline < ts:
            errors.append("PledgeRegistryConsentExpired")
        if flaw in (OPEN_FLAWS[11], OPEN_FLAWS[13]):
            errors.append("PledgeRegistryNoConsent")
        if flaw == OPEN_FLAWS[14]:
            errors.append("InvalidAccountNonce")
        # the goods may not already be under the minimum: min(booked, latest count)
        counted = min(r.quantity, r.obs_q) if r.obs_at != 0 else r.quantity
        if r.live and counted < terms.min_quantity:
            errors.append("PledgeRegistryBelowMinimum")
        result = self.attempt(
            f"open on receipt {r.rid} ({flaw or 'valid'})",
            lambda: self.w.pledges.open(
                terms, nonce=nonce, deadline=deadline, signature=signature, lender=caller
            ),
            errors,
        )
        if result is None:
            return False
        pid = result[0]
        assert pid not in self.m.pledges
        self.m.pledges[pid] = PModel(
            pid, r.rid, terms, owner.address, r.asset, opened_at=ts, status=ACTIVE
        )
        r.pledge = pid
        return True

    # --- capital --------------------------------------------------------------------------

    def do_Disburse(self, op: Disburse) -> bool:
        p = self.pick_pledge(op.pledge)
        lender = self.lender_of(p, op.lender)
        _, price, _, value = self.m.valuation(p)
        room = max(0, p.terms.pledge_rate_bps * value // BPS - p.outstanding)
        basis = (p.terms.principal - p.disbursed, room, 100_000)[op.basis]
        amount = scaled(basis, op.x, op.delta)
        payee = self.w.payee.address if op.payee_ok else self.w.outsider.address
        ts = self.ts()
        errors = self.lender_errors(p, op.lender)
        if not errors and p.frozen:
            errors = [FROZEN]  # never a disbursement from a frozen pledge
        elif not errors:
            if amount == 0:
                errors.append("PledgeRegistryZeroAmount")
            if not op.payee_ok:
                errors.append("PledgeRegistryWrongPayee")
            if ts > p.terms.maturity:
                errors.append("PledgeRegistryMatured")
            if amount > p.terms.principal - p.disbursed:
                errors.append("PledgeRegistryPrincipalExceeded")
            if price == 0:
                errors.append("PledgeRegistryNoPrice")
            elif (p.outstanding + amount) * BPS > p.terms.pledge_rate_bps * value:
                errors.append("PledgeRegistryLtvExceeded")
        sent = self.attempt(
            f"disburse {amount} on pledge {p.pid}",
            lambda: self.w.pledges.disburse(
                p.pid, amount, payee=payee, ref=ref("disbursement"), lender=lender
            ),
            errors,
        )
        if sent is None:
            return False
        p.disbursed += amount
        p.outstanding += amount
        # property 5: a disbursement never leaves LTV above the pledge rate
        valuation = self.w.pledges.valuation_of(p.pid)
        rate = p.terms.pledge_rate_bps
        assert valuation.outstanding * BPS <= rate * valuation.value, (
            f"disbursement left LTV {valuation.ltv_bps} above the pledge rate {rate}"
        )
        assert valuation.ltv_bps <= rate
        return True

    def do_Repay(self, op: Repay) -> bool:
        p = self.pick_pledge(op.pledge)
        lender = self.lender_of(p, op.lender)
        amount = scaled(p.outstanding, op.x, op.delta)
        ts = self.ts()
        errors = self.lender_errors(p, op.lender)
        if not errors:
            if amount == 0:
                errors.append("PledgeRegistryZeroAmount")
            if amount > p.outstanding:
                errors.append("PledgeRegistryRepaymentExceedsOutstanding")
        sent: TxReceipt | None = self.attempt(
            f"repay {amount} on pledge {p.pid}",
            lambda: self.w.pledges.repay(p.pid, amount, ref=ref("repayment"), lender=lender),
            errors,
        )
        if sent is None:
            return False
        p.outstanding -= amount
        p.repaid += amount
        if p.terms.mode == Mode.STATIC:
            freed = amount * BPS // p.terms.pledge_rate_bps
            p.credit += freed
            p.granted += freed
        (event,) = self.w.pledges.events(sent.tx_hash, "Repaid")
        assert event["releaseCredit"] == p.credit and event["outstanding"] == p.outstanding
        self.recheck(p, ts)
        return True

    def do_TopUp(self, op: TopUp) -> bool:
        p = self.pick_pledge(op.pledge)
        lender = self.lender_of(p, op.lender)
        ts = self.ts()
        errors = self.lender_errors(p, op.lender)
        if not errors and op.amount == 0:
            errors.append("PledgeRegistryZeroAmount")
        sent = self.attempt(
            f"top up {op.amount} on pledge {p.pid}",
            lambda: self.w.pledges.top_up_margin(
                p.pid, op.amount, ref=ref("margin"), lender=lender
            ),
            errors,
        )
        if sent is None:
            return False
        p.margin += op.amount
        self.recheck(p, ts)
        return True

    def do_CheckLines(self, op: CheckLines) -> bool:
        p = self.pick_pledge(op.pledge)
        ts = self.ts()
        errors = [NOT_ACTIVE] if p.status != ACTIVE else []
        if not errors and self.m.quote(p.asset) == 0:
            errors.append("PledgeRegistryNoPrice")
        sent = self.attempt(
            f"checkLines {p.pid}",
            lambda: self.w.pledges.check_lines(p.pid, caller=self.w.outsider),
            errors,
        )
        if sent is None:
            return False
        self.recheck(p, ts)
        return True

    # --- prices and facts -----------------------------------------------------------------

    def do_ReportPrice(self, op: ReportPrice) -> bool:
        asset = COPPER if op.copper else STEEL
        price = (COPPER_PRICE if op.copper else STEEL_PRICE) * op.factor // BPS
        return self.report_price(asset, price, op.variant)

    def do_PriceToLine(self, op: PriceToLine) -> bool:
        p = self.pick_pledge(op.pledge)
        q, _, _, _ = self.m.valuation(p)
        t = p.terms
        lines = (
            t.pledge_rate_bps,
            t.warning_ltv_bps,
            t.liquidation_ltv_bps,
            (t.pledge_rate_bps + t.warning_ltv_bps) // 2,
            (t.warning_ltv_bps + t.liquidation_ltv_bps) // 2,
            BPS,
        )
        if p.outstanding == 0 or q == 0:
            return self.report_price(
                p.asset, (COPPER_PRICE if p.asset == COPPER else STEEL_PRICE) // 2, 0
            )
        # the least value (and so spot price) at which LTV is at most the line
        value = ceil_div(p.outstanding * BPS, lines[op.line])
        spot = ceil_div(max(value - p.margin, 1) * SCALE, q) + op.delta
        return self.report_price(p.asset, max(spot, 1), 0)

    def report_price(self, asset: str, price: int, variant: int) -> bool:
        """A spot report; the valuation price is min(spot, average), so a report under
        the average sets it exactly."""
        at = self.w.now()
        oracle = self.w.oracle
        errors = []
        if variant == 1:
            price = 0
            errors.append("PriceFeedZeroPrice")
        elif variant == 2:
            at = self.m.price_at.get(asset, 0)
            errors.append("PriceFeedNotNewer")
        elif variant == 3:
            at = self.ts() + 600
            errors.append("PriceFeedFromFuture")
        elif variant == 4:
            oracle = self.w.outsider
            errors.append(ACCESS)
        sent = self.attempt(
            f"price {asset} {price} at {at}",
            lambda: self.w.prices.report(
                asset_class=asset, currency=CNY, price=price, observed_at=at, oracle=oracle
            ),
            errors,
        )
        if sent is None:
            return False
        self.m.reports.setdefault(asset, []).append(price)
        self.m.price_at[asset] = at
        return True

    def do_ReportFact(self, op: ReportFact) -> bool:
        r = self.pick_receipt(op.receipt)
        p = self.m.pledges.get(r.pledge)
        kind = FactKind(op.kind)
        basis = p.terms.min_quantity if (op.basis == 1 and p is not None) else r.quantity
        quantity = scaled(basis, op.x, op.delta) if kind == FactKind.QUANTITY else 0
        oracle = self.w.oracle
        errors = []
        variant = op.variant
        if variant == 1 and not self.m.used_evidence:
            variant = 0
        if variant == 1:
            evidence, at = self.m.used_evidence[-1]
            errors.append("PledgeRegistryEvidenceReplayed")
        elif variant == 2:
            at = r.obs_at if r.obs_at else self.w.now() - 10
            (evidence,) = self.w.evidence(1, at=at)
        elif variant == 5:
            at = self.ts() + 600
            (evidence,) = self.w.evidence(1, at=at)
            errors.append("PledgeRegistryFromFuture")
        else:
            at = self.w.now()
            (evidence,) = self.w.evidence(1, at=at)
            if variant == 3:
                at -= 5
                errors.append("PledgeRegistryEvidenceOutsideBatch")
            elif variant == 4:
                evidence = replace(evidence, leaf=bytes([evidence.leaf[0] ^ 1]) + evidence.leaf[1:])
                errors.append("PledgeRegistryEvidenceNotAnchored")
            elif variant == 6:
                oracle = self.w.outsider
                errors.append(ACCESS)
        ts = self.ts()
        if not r.live:
            errors.append("PledgeRegistryReceiptNotLive")
        if kind == FactKind.QUANTITY and at <= r.obs_at:
            errors.append("PledgeRegistryObservationNotNewer")
        fact = Fact(receipt_id=r.rid, kind=kind, quantity=quantity, observed_at=at)
        sent = self.attempt(
            f"fact {kind.name} {quantity} on receipt {r.rid} at {at} (variant {variant})",
            lambda: self.w.pledges.report_fact(fact, evidence, oracle=oracle),
            errors,
        )
        if sent is None:
            return False
        self.m.used_evidence.append((evidence, at))
        if kind == FactKind.QUANTITY:
            r.obs_q, r.obs_at, r.obs_step = quantity, at, self.m.step
        if p is not None:
            if kind == FactKind.UNAUTHORIZED_MOVEMENT:
                self.freeze(p, Freeze.UNAUTHORIZED_MOVEMENT, sent)
            elif kind == FactKind.TAG_REMOVAL:
                self.freeze(p, Freeze.TAG_REMOVED, sent)
            elif kind == FactKind.COVENANT_BREACH:
                self.freeze(p, Freeze.COVENANT_BREACH, sent)
            else:
                self.freeze(p, 0 if self.m.above_minimum(p) else Freeze.BELOW_MINIMUM, sent)
            self.recheck(p, ts)
        return True

    # --- freezes --------------------------------------------------------------------------

    def do_ClearFreeze(self, op: ClearFreeze) -> bool:
        p = self.pick_pledge(op.pledge, frozen_first=True)
        lender = self.lender_of(p, op.lender)
        errors = self.lender_errors(p, op.lender)
        if not errors and not p.frozen:
            errors.append("PledgeRegistryNotFrozen")
        sent = self.attempt(
            f"clearFreeze {p.pid}",
            lambda: self.w.pledges.clear_freeze(p.pid, lender=lender),
            errors,
        )
        if sent is None:
            return False
        p.frozen = 0
        p.cleared_step = self.m.step
        return True

    def do_AuditFreeze(self, op: AuditFreeze) -> bool:
        p = self.pick_pledge(op.pledge)
        auditor = self.w.auditor if op.by_auditor else self.w.outsider
        errors = [ACCESS] if not op.by_auditor else []
        if p.status != ACTIVE:
            errors.append(NOT_ACTIVE)
        sent = self.attempt(
            f"freezeOnFinding {p.pid}",
            lambda: self.w.pledges.freeze_on_finding(p.pid, ref("finding"), auditor=auditor),
            errors,
        )
        if sent is None:
            return False
        self.freeze(p, Freeze.AUDIT_FINDING, sent)
        return True

    def do_FlagStale(self, op: FlagStale) -> bool:
        p = self.pick_pledge(op.pledge)
        ts = self.ts()
        reasons = 0
        if ts - max(self.m.receipts[p.rid].obs_at, p.opened_at) > p.terms.max_data_age:
            reasons |= Freeze.STALE_DATA
        if ts - self.m.price_at.get(p.asset, 0) > p.terms.max_data_age:
            reasons |= Freeze.STALE_PRICE
        errors = [NOT_ACTIVE] if p.status != ACTIVE else []
        if not errors and not reasons:
            errors.append("PledgeRegistryNotStale")
        sent = self.attempt(
            f"flagStale {p.pid}",
            lambda: self.w.pledges.flag_stale(p.pid, caller=self.w.outsider),
            errors,
        )
        if sent is None:
            return False
        self.freeze(p, reasons, sent)
        return True

    def freeze(self, p: PModel, reasons: int, sent: TxReceipt) -> None:
        """Sets the bits; PledgeFrozen carries the bits this call set and all now set, and
        is emitted only if it set any."""
        added = reasons & ~p.frozen
        p.frozen |= reasons
        events = self.w.pledges.events(sent.tx_hash, "PledgeFrozen")
        got = [(e["pledgeId"], e["reasons"], e["frozen"]) for e in events]
        assert got == ([(p.pid, added, p.frozen)] if added else []), f"PledgeFrozen {got}"

    # --- release ----------------------------------------------------------------------------

    def do_Instruct(self, op: Instruct) -> bool:
        p = self.pick_pledge(op.pledge)
        lender = self.lender_of(p, op.lender)
        allowed = self.m.allowance(p)
        quantity = scaled((allowed, self.m.receipts[p.rid].quantity)[op.basis], op.x, op.delta)
        errors = self.lender_errors(p, op.lender)
        if not errors and p.frozen:
            errors = [FROZEN]  # a frozen pledge never releases
        elif not errors and (quantity == 0 or quantity > allowed):
            errors = [BEYOND]
        sent = self.attempt(
            f"instructRelease {quantity} of {allowed} on pledge {p.pid}",
            lambda: self.w.pledges.instruct_release(p.pid, quantity, lender=lender),
            errors,
        )
        if sent is None:
            return False
        p.release_quantity, p.release_all = quantity, False
        return True

    def do_InstructFull(self, op: InstructFull) -> bool:
        p = self.pick_pledge(op.pledge)
        lender = self.lender_of(p, op.lender)
        errors = self.lender_errors(p, op.lender)
        if not errors and p.frozen:
            errors = [FROZEN]
        elif not errors and p.outstanding != 0:
            errors = ["PledgeRegistryOutstanding"]
        sent = self.attempt(
            f"instructFullRelease {p.pid}",
            lambda: self.w.pledges.instruct_full_release(p.pid, lender=lender),
            errors,
        )
        if sent is None:
            return False
        p.release_quantity, p.release_all = 0, True
        return True

    def do_Execute(self, op: Execute) -> bool:
        p = self.pick_pledge(op.pledge)
        r = self.m.receipts[p.rid]
        custodian = self.custodian_of(r, op.custodian)
        keys = self.own_keys(r, op.own_keys, op.keys)
        errors = self.custodian_errors(p, op.custodian)
        quantity = p.release_quantity
        price = self.m.quote(p.asset)
        if not errors and p.frozen:
            errors = [FROZEN]  # a frozen pledge never releases
        elif not errors and p.release_all:
            if p.outstanding != 0:
                errors = ["PledgeRegistryOutstanding"]
        elif not errors:
            if quantity == 0:
                errors = ["PledgeRegistryNoInstruction"]
            elif quantity > self.m.allowance(p):
                errors = [BEYOND]
            else:
                errors = self.m.free_errors(r.rid, keys)
        sent: TxReceipt | None = self.attempt(
            f"executeRelease {'all' if p.release_all else quantity} on pledge {p.pid}",
            lambda: self.w.pledges.execute_release(p.pid, keys_out=keys, custodian=custodian),
            errors,
        )
        if sent is None:
            return False
        self.apply_execution(p, sent, keys, price)
        return True

    def apply_execution(self, p: PModel, sent: TxReceipt, keys: list[bytes], price: int) -> None:
        r = self.m.receipts[p.rid]
        if p.release_all:
            p.status, p.release_all, p.margin, p.call_deadline = PledgeStatus.RELEASED, False, 0, 0
            r.pledge = 0
            return
        quantity = p.release_quantity
        (event,) = self.w.pledges.events(sent.tx_hash, "GoodsReleased")
        assert event["quantity"] == quantity
        spent = ceil_div(quantity * price, SCALE) if p.terms.mode == Mode.STATIC else 0
        assert event["creditUsed"] == spent, f"creditUsed {event['creditUsed']}, rule {spent}"
        p.used += event["creditUsed"]
        p.credit -= spent
        p.release_quantity = 0
        r.quantity -= quantity
        r.keys -= set(keys)

    def do_Count(self, op: Count) -> bool:
        p = self.pick_pledge(op.pledge)
        minimum = p.terms.min_quantity
        quantity = (minimum - 1, minimum, minimum + 1, minimum // 2, 0)[op.where]
        receipt = sorted(self.m.receipts).index(p.rid)
        # x = 0, delta = quantity: a count of exactly `quantity`, from fresh evidence
        fact = ReportFact(receipt=receipt, kind=0, basis=0, x=0, delta=quantity, variant=0)
        return self.do_ReportFact(fact)

    def do_Release(self, op: Release) -> bool:
        changed = self.do_Instruct(Instruct(op.pledge, 0, 0, op.x, 0))
        changed |= self.do_Execute(Execute(op.pledge, 0, op.keys_out, ()))
        return changed

    def do_FullRelease(self, op: FullRelease) -> bool:
        p = self.pick_pledge(op.pledge)
        changed = False
        if op.repay and p.status == ACTIVE and p.outstanding:
            changed |= self.do_Repay(Repay(op.pledge, 0, BPS, 0))
        changed |= self.do_InstructFull(InstructFull(op.pledge, 0))
        changed |= self.do_Execute(Execute(op.pledge, 0, 0, ()))
        return changed

    def do_Probe(self, op: Probe) -> bool:
        """Property 7: releasableOf is exact."""
        p = self.pick_pledge(op.pledge)
        allowed = self.w.pledges.releasable_of(p.pid)
        assert allowed == self.m.releasable(p), (
            f"releasableOf {allowed}, the rules give {self.m.releasable(p)}"
        )
        lender = self.accounts[p.terms.lender]
        if p.status != ACTIVE:
            return False
        if p.frozen:
            self.attempt(
                "instruct 1 while frozen",
                lambda: self.w.pledges.instruct_release(p.pid, 1, lender=lender),
                [FROZEN],
            )
            return False
        snapshot = self.w.tester.take_snapshot()
        keep = False
        try:
            try:
                self.w.pledges.instruct_release(p.pid, allowed + 1, lender=lender)
            except ContractReverted as exc:
                assert exc.error == BEYOND, f"instructing a + 1 reverted {exc.error}"
                assert tuple(exc.error_args) == (p.pid, allowed, allowed + 1), exc.error_args
            else:
                raise AssertionError(f"instructing {allowed + 1} > releasableOf {allowed} passed")
            if allowed == 0:
                return False
            price = self.m.quote(p.asset)
            self.w.pledges.instruct_release(p.pid, allowed, lender=lender)
            r = self.m.receipts[p.rid]
            custodian = self.accounts[r.custodian]
            keys = self.own_keys(r, op.keys_out)
            sent = self.w.pledges.execute_release(p.pid, keys_out=keys, custodian=custodian)
            self.log.append(f"  probe: released {allowed} of pledge {p.pid}")
            # what is left stands within every rule
            pledge = self.w.pledges.pledge_of(p.pid)
            valuation = self.w.pledges.valuation_of(p.pid)
            t = p.terms
            assert valuation.quantity >= max(t.min_quantity, 1)
            assert valuation.goods_value >= t.min_value
            assert pledge.outstanding * BPS <= t.pledge_rate_bps * valuation.value
            if t.mode == Mode.STATIC:
                assert pledge.release_credit >= 0
            keep = op.keep
            if keep:
                p.release_quantity, p.release_all = allowed, False
                self.apply_execution(p, sent, keys, price)
            return keep
        finally:
            if not keep:
                self.w.tester.revert_to_snapshot(snapshot)

    # --- goods ------------------------------------------------------------------------------

    def do_AddGoods(self, op: AddGoods) -> bool:
        p = self.pick_pledge(op.pledge)
        r = self.m.receipts[p.rid]
        custodian = self.custodian_of(r, op.custodian)
        keys = [KEY_POOL[i] for i in op.keys]
        ts = self.ts()
        errors = self.custodian_errors(p, op.custodian)
        if not errors:
            if op.quantity == 0:
                errors.append("PledgeRegistryZeroAmount")
            errors += self.m.bind_errors(keys)
        sent = self.attempt(
            f"addGoods {op.quantity} to pledge {p.pid}",
            lambda: self.w.pledges.add_goods(p.pid, op.quantity, keys=keys, custodian=custodian),
            errors,
        )
        if sent is None:
            return False
        r.quantity += op.quantity
        r.keys |= set(keys)
        self.recheck(p, ts)
        return True

    def do_Swap(self, op: Swap) -> bool:
        p = self.pick_pledge(op.pledge)
        r = self.m.receipts[p.rid]
        custodian = self.custodian_of(r, op.custodian)
        q_out = scaled(r.quantity, op.x, op.delta)
        q_in = max(0, q_out + op.extra_in)
        keys_out = self.own_keys(r, op.own_keys)
        keys_in = [KEY_POOL[i] for i in op.keys_in]
        ts = self.ts()
        errors = self.custodian_errors(p, op.custodian)
        if not errors and p.terms.mode != Mode.DYNAMIC:
            errors = ["PledgeRegistryNotDynamic"]
        elif not errors and p.frozen:
            errors = [FROZEN]
        elif not errors:
            after = r.quantity + q_in - q_out
            _, price, _, _ = self.m.valuation(p, after)
            if q_out == 0 or q_in < q_out:
                errors.append("PledgeRegistrySwapReducesGoods")
            elif price == 0:
                errors.append("PledgeRegistryNoPrice")
            else:
                if not self.m.above_minimum(p, after):
                    errors.append("PledgeRegistryBelowMinimum")
                if p.outstanding * BPS > p.terms.pledge_rate_bps * self.m.valuation(p, after)[3]:
                    errors.append("PledgeRegistryLtvExceeded")
                if q_out >= r.quantity:
                    errors.append("ReceiptRegistryQuantityExceeded")
                errors += self.m.free_errors(r.rid, keys_out)
                errors += self.m.bind_errors(keys_in, freed=set(keys_out))
        sent = self.attempt(
            f"swap {q_out} out {q_in} in on pledge {p.pid}",
            lambda: self.w.pledges.swap(
                p.pid,
                quantity_out=q_out,
                quantity_in=q_in,
                keys_out=keys_out,
                keys_in=keys_in,
                custodian=custodian,
            ),
            errors,
        )
        if sent is None:
            return False
        r.quantity += q_in - q_out
        r.keys = (r.keys - set(keys_out)) | set(keys_in)
        self.recheck(p, ts)
        return True

    # --- liquidation ------------------------------------------------------------------------

    def do_Liquidate(self, op: Liquidate) -> bool:
        p = self.pick_pledge(op.pledge)
        lender = self.lender_of(p, op.lender)
        proceeds = p.outstanding * op.x // BPS
        ts = self.ts()
        errors = self.lender_errors(p, op.lender)
        ground = Ground.NONE
        if not errors:
            _, price, _, value = self.m.valuation(p)
            owed = p.outstanding * BPS
            if price != 0 and p.outstanding != 0:
                if owed >= p.terms.liquidation_ltv_bps * value:
                    ground = Ground.LIQUIDATION_LINE
                elif (
                    p.call_deadline != 0
                    and ts > p.call_deadline
                    and owed >= p.terms.warning_ltv_bps * value
                ):
                    ground = Ground.UNCURED_MARGIN_CALL
            if ground == Ground.NONE and ts > p.terms.maturity and p.outstanding != 0:
                ground = Ground.DEFAULT
            if ground == Ground.NONE:
                errors.append("PledgeRegistryLiquidationNotAllowed")
        sent: TxReceipt | None = self.attempt(
            f"liquidate pledge {p.pid} for {proceeds}",
            lambda: self.w.pledges.liquidate(
                p.pid, buyer=self.w.buyer.address, proceeds=proceeds, ref=ref("sale"), lender=lender
            ),
            errors,
        )
        if sent is None:
            return False
        margin_applied = min(p.margin, p.outstanding)
        proceeds_applied = min(proceeds, p.outstanding - margin_applied)
        (event,) = self.w.pledges.events(sent.tx_hash, "PledgeLiquidated")
        (event,) = self.w.pledges.events(sent.tx_hash, "PledgeLiquidated")
        outcome = self.w.pledges.liquidation_of(event)
        assert outcome.ground == ground
        assert outcome.margin_applied == margin_applied
        assert outcome.proceeds_applied == proceeds_applied
        assert outcome.surplus == proceeds - proceeds_applied + p.margin - margin_applied
        assert outcome.shortfall == p.outstanding - margin_applied - proceeds_applied
        p.repaid += margin_applied + proceeds_applied
        p.outstanding = outcome.shortfall
        p.margin = p.call_deadline = p.release_quantity = 0
        p.release_all = False
        p.status = PledgeStatus.LIQUIDATED
        r = self.m.receipts[p.rid]
        r.pledge, r.owner = 0, self.w.buyer.address
        return True

    # --- other ----------------------------------------------------------------------------

    def do_Travel(self, op: Travel) -> bool:
        self.w.travel(op.seconds)
        return False  # time alone moves no observed value

    def do_SetRate(self, op: SetRate) -> bool:
        lender = (self.w.lender, self.w.lender2)[op.lender]
        asset = COPPER if op.copper else STEEL
        errors = ["PledgeRegistryInvalidRate"] if op.bps > BPS else []
        sent = self.attempt(
            f"setPledgeRate {asset} {op.bps}",
            lambda: self.w.pledges.set_pledge_rate(asset, op.bps, lender=lender),
            errors,
        )
        if sent is None:
            return False
        self.m.rates[(lender.address, asset)] = op.bps
        return True

    # --- reading and checking -------------------------------------------------------------

    def read(self) -> Seen:
        """Reads every receipt, observation, pledge, valuation, allowance and key. Retired
        receipts and closed pledges are terminal (every mutator requires Live / Active),
        so once read in that state they are not read again."""
        receipts = {}
        for rid in sorted(self.m.receipts):
            if rid in self.retired:
                receipts[rid] = self.retired[rid]
                continue
            receipts[rid] = (self.w.receipts.collateral_of(rid), self.w.pledges.observation_of(rid))
            if receipts[rid][0].status == ReceiptStatus.RETIRED:
                self.retired[rid] = receipts[rid]
        pledges: dict[int, tuple[Pledge, Valuation | None, int | None]] = {}
        for pid in sorted(self.m.pledges):
            if pid in self.closed:
                pledges[pid] = (self.closed[pid], None, None)
                continue
            pledge = self.w.pledges.pledge_of(pid)
            if pledge.status == ACTIVE:
                pledges[pid] = (
                    pledge,
                    self.w.pledges.valuation_of(pid),
                    self.w.pledges.releasable_of(pid),
                )
            else:
                pledges[pid] = (pledge, None, None)
                self.closed[pid] = pledge
        for r in self.m.receipts.values():
            self.m.ever_bound |= r.keys
        backing = {key: self.w.receipts.backing_of(key) for key in sorted(self.m.ever_bound)}
        return Seen(receipts, pledges, backing)

    def check(self, seen: Seen) -> None:
        m = self.m
        # receipts and observations against the model
        for rid, (col, obs) in seen.receipts.items():
            r = m.receipts[rid]
            assert col.status == (ReceiptStatus.LIVE if r.live else ReceiptStatus.RETIRED), rid
            assert col.quantity == r.quantity, f"receipt {rid}: {col.quantity} != {r.quantity}"
            assert col.pledge_id == r.pledge, f"receipt {rid} pledge {col.pledge_id}"
            assert col.owner == r.owner and col.custodian == r.custodian, rid
            assert col.asset_class == r.asset
            assert (obs.quantity, obs.observed_at) == (r.obs_q, r.obs_at), rid

        # property 1: the lien index
        claimed: dict[bytes, int] = {}
        for r in m.receipts.values():
            if r.live:
                for key in r.keys:
                    assert key not in claimed, (
                        f"key {key.hex()} in receipts {claimed[key]}, {r.rid}"
                    )
                    claimed[key] = r.rid
        for key, backing in seen.backing.items():
            assert backing == claimed.get(key, 0), f"key {key.hex()} backs {backing}"
            if backing:
                assert seen.receipts[backing][0].status == ReceiptStatus.LIVE

        # pledges
        active_receipts: dict[int, int] = {}
        for pid, (pledge, valuation, releasable) in seen.pledges.items():
            p = m.pledges[pid]
            t = pledge.terms
            expected = (
                p.status,
                p.frozen,
                p.call_deadline,
                p.release_quantity,
                p.release_all,
                p.disbursed,
                p.repaid,
                p.outstanding,
                p.margin,
                p.credit,
                p.borrower,
                p.opened_at,
                p.terms,
            )
            got = (
                pledge.status,
                int(pledge.frozen),
                pledge.call_deadline,
                pledge.release_quantity,
                pledge.release_all,
                pledge.disbursed,
                pledge.repaid,
                pledge.outstanding,
                pledge.margin,
                pledge.release_credit,
                pledge.borrower,
                pledge.opened_at,
                t,
            )
            assert got == expected, f"pledge {pid}: chain {got} != model {expected}"
            # property 3: capital
            assert pledge.outstanding >= 0
            assert pledge.outstanding == pledge.disbursed - pledge.repaid
            assert pledge.disbursed <= t.principal
            # property 4: static release credit
            if t.mode == Mode.STATIC:
                assert p.used <= p.granted, f"pledge {pid}: released {p.used} > freed {p.granted}"
                assert pledge.release_credit == p.granted - p.used
            else:
                assert pledge.release_credit == 0 and p.used == 0
            if pledge.status != ACTIVE:
                assert seen.receipts[t.receipt_id][0].pledge_id != pid
                continue
            assert valuation is not None and releasable is not None
            # property 2: one active pledge per receipt, and it points back
            assert t.receipt_id not in active_receipts, (
                f"receipt {t.receipt_id} in pledges {active_receipts[t.receipt_id]} and {pid}"
            )
            active_receipts[t.receipt_id] = pid
            assert seen.receipts[t.receipt_id][0].pledge_id == pid
            # valuation and allowance against the rules
            q, price, goods, value = m.valuation(p)
            assert (
                valuation.quantity,
                valuation.price,
                valuation.goods_value,
                valuation.value,
                valuation.outstanding,
                valuation.ltv_bps,
            ) == (q, price, goods, value, p.outstanding, m.ltv(p)), f"pledge {pid}: {valuation}"
            assert releasable == m.releasable(p), (
                f"pledge {pid}: releasableOf {releasable}, the rules give {m.releasable(p)}"
            )
            if pledge.frozen:
                assert releasable == 0
            # property 5: after a re-check, a call is open iff LTV is at the warning line
            if pid in self.lines_checked and valuation.price != 0:
                at_warning = (
                    pledge.outstanding != 0
                    and pledge.outstanding * BPS >= t.warning_ltv_bps * valuation.value
                )
                assert pledge.margin_call_open == at_warning, (
                    f"pledge {pid}: call open {pledge.margin_call_open}, LTV {valuation.ltv_bps}"
                    f" vs warning {t.warning_ltv_bps}"
                )
            # property 6: a count under the minimum freezes, until the lender clears it
            r = m.receipts[t.receipt_id]
            obs = seen.receipts[t.receipt_id][1]
            if (
                obs.observed_at != 0
                and obs.quantity < t.min_quantity
                and r.obs_step > p.cleared_step
            ):
                assert pledge.frozen & Freeze.BELOW_MINIMUM, (
                    f"pledge {pid}: latest observed quantity {obs.quantity} < minimum"
                    f" {t.min_quantity} (observed at step {r.obs_step}), yet frozen ="
                    f" {int(pledge.frozen)}"
                )
        for rid, (col, _) in seen.receipts.items():
            if col.pledge_id:
                assert active_receipts.get(rid) == col.pledge_id, f"receipt {rid} locked"


# --- the book every example starts from -----------------------------------------------------


class Base:
    """The deployed world, the snapshot of its book, and the model of that book."""

    def __init__(self, world: World, snapshot: int, model: Model) -> None:
        self.world, self.snapshot, self.model = world, snapshot, model

    def __repr__(self) -> str:  # hypothesis prints the fixture with a failing case
        return "<the book: receipts 1-4, pledge 1 static on 1, pledge 2 dynamic on 2>"


def open_book(w: World) -> Model:
    r1 = w.issue_steel(quantity=100_000, keys=KEYS[0:2])
    r2 = w.issue_steel(quantity=60_000, keys=KEYS[2:3], owner=w.borrower2, custodian=w.custodian2)
    r3, _ = w.receipts.issue(
        owner=w.borrower.address,
        asset_class=COPPER,
        unit="kg",
        quantity=50_000,
        keys=KEYS[3:4],
        location="urn:epc:id:sgln:6901234.00001.0",
        custodian=w.custodian,
    )
    r4 = w.issue_steel(quantity=20_000, keys=KEYS[4:5], lot="L4")
    p1 = w.open_pledge(w.terms(r1))
    w.pledges.disburse(p1, 15_000_000, payee=w.payee.address, ref=ref("d1"), lender=w.lender)
    p2 = w.open_pledge(
        w.terms(
            r2,
            principal=10_000_000,
            warning_ltv_bps=7500,
            liquidation_ltv_bps=9000,
            min_quantity=30_000,
            min_value=5_000_000,
            maturity=w.now() + 60 * DAY,
            mode=Mode.DYNAMIC,
        ),
        borrower=w.borrower2,
    )
    w.pledges.disburse(p2, 8_000_000, payee=w.payee.address, ref=ref("d2"), lender=w.lender)
    keys = {r1: set(KEYS[0:2]), r2: {KEYS[2]}, r3: {KEYS[3]}, r4: {KEYS[4]}}
    receipts = {}
    for rid in (r1, r2, r3, r4):
        col = w.receipts.collateral_of(rid)
        assert col.owner is not None
        receipts[rid] = RModel(
            rid,
            col.asset_class,
            col.owner,
            col.custodian,
            col.quantity,
            keys[rid],
            pledge=col.pledge_id,
        )
    pledges = {}
    for pid in (p1, p2):
        pl = w.pledges.pledge_of(pid)
        pledges[pid] = PModel(
            pid,
            pl.terms.receipt_id,
            pl.terms,
            pl.borrower,
            pl.asset_class,
            opened_at=pl.opened_at,
            disbursed=pl.disbursed,
            outstanding=pl.outstanding,
        )
    steel = w.prices.quote_of(asset_class=STEEL, currency=CNY)
    assert steel.price == STEEL_PRICE
    rates = {
        (lender.address, asset): w.pledges.pledge_rate_of(lender.address, asset)
        for lender in (w.lender, w.lender2)
        for asset in (STEEL, COPPER)
    }
    return Model(
        receipts=receipts,
        pledges=pledges,
        reports={STEEL: [STEEL_PRICE]},
        price_at={STEEL: steel.observed_at},
        rates=rates,
    )


@pytest.fixture(scope="module")
def base() -> Iterator[Base]:
    w = build_world(seed="pledge-properties")
    model = open_book(w)
    yield Base(w, w.tester.take_snapshot(), model)


def run_sequence(base: Base, operations: list[Any], log: list[str]) -> None:
    w = base.world
    w.tester.revert_to_snapshot(base.snapshot)
    runner = Runner(w, copy.deepcopy(base.model), log)
    try:
        seen = runner.read()
        runner.check(seen)
        head = w.chain.w3.eth.get_block("latest")["hash"]
        for step, op in enumerate(operations, start=1):
            runner.m.step = step
            runner.lines_checked = set()
            runner.log.append(f"step {step}: {op}")
            changed = getattr(runner, f"do_{type(op).__name__}")(op)
            latest = w.chain.w3.eth.get_block("latest")["hash"]
            if not changed and latest == head:
                # Property 8, nothing mined: the chain is at the very block (state root) the
                # last full read saw, so every observed value is the same by construction.
                continue
            after = runner.read()
            if not changed:
                # Property 8, something mined (evidence anchored, a consent sent, the clock
                # moved) but the operation itself reverted: no observed value may move.
                assert after == seen, f"step {step} changed observed state without a success"
            runner.check(after)
            seen, head = after, latest
    finally:
        w.tester.revert_to_snapshot(base.snapshot)


def run(base: Base, operations: list[Any]) -> None:
    """Runs the sequence on a fresh thread, then notes its log and re-raises its failure.

    Why a thread: CPython 3.11 grows a thread's frame stack in 16 KiB chunks that it maps
    and unmaps as the call depth crosses a chunk boundary. Under pytest and hypothesis the
    EVM's deep, oscillating calls sit on such a boundary, and the main thread spends as
    long in mmap/munmap as in Python; a fresh thread starts shallow and runs ~1.6× faster.
    """
    log: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            run_sequence(base, operations, log)
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    worker = threading.Thread(target=work, name="pledge-sequence")
    worker.start()
    worker.join()
    for line in log:
        note(line)
    if failures:
        raise failures[0]


# No shrinking: an example costs seconds of eth-tester, and hypothesis's shrinker
# gives up after five minutes with little to show for it. A failing case prints its
# step-by-step log (operation, then each transaction's outcome) instead.
SETTINGS = settings(
    max_examples=8,  # derandomized: the same eight sequences each run, ~8 s each
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(operations=st.lists(OPERATIONS, min_size=8, max_size=20))
def test_random_operation_sequences_keep_the_pledge_invariants(
    base: Base, operations: list[Any]
) -> None:
    run(base, operations)


# Found by this test (its derandomized generation found it too): a count under the minimum
# reported while the receipt was free, then a pledge opened on it, active and unfrozen
# (property 6). Opening now refuses goods already under the minimum.
COUNT_BEFORE_OPENING = [
    ReportFact(receipt=3, kind=0, basis=0, x=5_000, delta=0, variant=0),
    Open(
        receipt=0,
        lender=0,
        dynamic=False,
        rate=6000,
        warning_gap=1000,
        liquidation_gap=1500,
        principal=10_000_000,
        min_quantity=50_000,
        min_value=0,
        max_data_age=2 * DAY,
        cure_period=DAY,
        maturity_days=30,
        consent_by_transaction=False,
        flaw=None,
    ),
]


@SETTINGS
@example(operations=COUNT_BEFORE_OPENING)
@given(operations=st.lists(LIFE_CYCLE, min_size=8, max_size=20))
def test_pledge_life_cycles_keep_the_pledge_invariants(base: Base, operations: list[Any]) -> None:
    run(base, operations)
