"""Reporting covenant facts on-chain once their evidence is anchored.

The rules queue facts in the ``facts`` outbox (ledger.oracle_state) in the same
transaction that stores the signed event the fact rests on. This reporter waits until
that event's batch is anchored, then calls ``PledgeRegistry.reportFact`` with the fact
and the event's Merkle path (the contract checks the path against the anchored root
itself), or ``flagStale`` for stale data (the contract checks the age itself). A
contract refusal is recorded with the custom error's name and arguments and is final,
except a fact observed ahead of the chain's clock (tried again next pass) and evidence
already used (our own earlier transaction landed before it was recorded: reported). A
node that is down leaves the fact pending for the next pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from ledger.bundle import BundleBuilder
from ledger.chain import TxReceipt
from ledger.collateral import Fact, FactKind, PledgeRegistry, evidence_from_bundle
from ledger.errors import ChainError, ContractReverted, NotAnchored
from ledger.oracle_state import REFUSED, REPORTED, FactRow, OracleState

__all__ = ["FACT_KINDS", "FactReporter", "Settled"]

log = logging.getLogger("fourflow.facts")

_TRANSIENT = frozenset({"PledgeRegistryFromFuture"})
_ALREADY_USED = "PledgeRegistryEvidenceReplayed"

FACT_KINDS = {
    "quantity": FactKind.QUANTITY,
    "unauthorized_movement": FactKind.UNAUTHORIZED_MOVEMENT,
    "tag_removal": FactKind.TAG_REMOVAL,
    "covenant_breach": FactKind.COVENANT_BREACH,
}


@dataclass(frozen=True)
class Settled:
    key: str
    state: str
    outcome: str
    tx_hash: str | None


class FactReporter:
    def __init__(
        self,
        *,
        state: OracleState,
        bundles: BundleBuilder,
        pledges: PledgeRegistry,
        oracle: LocalAccount,
    ) -> None:
        self.state = state
        self.bundles = bundles
        self.pledges = pledges
        self.oracle = oracle

    def run_once(self) -> list[Settled]:
        """Report every pending fact whose evidence is anchored; returns what settled."""
        settled = []
        for row in self.state.pending_facts():
            try:
                outcome = self._report(row)
            except NotAnchored:
                continue
            except ChainError as exc:
                if isinstance(exc, ContractReverted) and exc.error in _TRANSIENT:
                    continue  # e.g. observed a few seconds ahead of the chain's clock
                if isinstance(exc, ContractReverted) and exc.error == _ALREADY_USED:
                    # our own earlier transaction went through before we could record it
                    outcome = Settled(row.key, REPORTED, "reported earlier (evidence used)", None)
                elif isinstance(exc, ContractReverted):
                    outcome = Settled(row.key, REFUSED, _refusal(exc), None)
                else:
                    log.warning("fact %s not reported yet: %s", row.key, exc.message)
                    break  # the node is away; the next pass retries
            self.state.settle_fact(
                row.key, state=outcome.state, tx_hash=outcome.tx_hash, outcome=outcome.outcome
            )
            settled.append(outcome)
        return settled

    def _report(self, row: FactRow) -> Settled:
        if row.kind == "stale_data":
            receipt = self.pledges.flag_stale(row.pledge_id, caller=self.oracle)
            return Settled(row.key, REPORTED, "flagged stale", _hash(receipt))
        bundle = self.bundles.bundle(row.event_id)  # NotAnchored until its batch is
        fact = Fact(
            receipt_id=row.receipt_id,
            kind=FACT_KINDS[row.kind],
            quantity=row.quantity,
            observed_at=row.observed_at,
        )
        receipt = self.pledges.report_fact(fact, evidence_from_bundle(bundle), oracle=self.oracle)
        return Settled(row.key, REPORTED, f"reported {row.kind}", _hash(receipt))


def _hash(receipt: TxReceipt) -> str:
    return "0x" + receipt.tx_hash.hex()


def _refusal(exc: ContractReverted) -> str:
    args = ", ".join(str(a) for a in exc.error_args)
    return f"{exc.error}({args})"
