"""Who may read what. Identities are addresses with their on-chain roles (api.auth);
what they are party to is what the contracts' logs say (ledger.indexer).

    auditor     everything
    lender      the pledges it is lender on, and their goods
    borrower    the pledges it is borrower on, the receipts it owns now, and their goods
    custodian   the receipts it issued (the goods it holds), their pledges and goods
    submitter   the events it submitted itself (an event, not the asset's whole history)

An asset's history shows only the pledges on it that the caller may see: a lender whose
pledge was released does not see the next lender's loan on the same goods, and a buyer
of liquidated goods does not see the loan they were seized under.

Anyone else, and anyone asking for something outside the above, gets ``Hidden`` (403)
whether or not the object exists, with the same message either way; only callers who
may see everything get a real ``NotFound`` (404) for what does not exist.
"""

from __future__ import annotations

import json
from dataclasses import replace

from api.auth import Identity
from ledger.errors import Hidden, NotFound
from ledger.history import Histories, Subject
from ledger.indexer import ChainIndex
from ledger.replay import ChainState
from ledger.store import Store

__all__ = ["Access"]

MAX_ASSETS_CHECKED = 50


class Access:
    def __init__(self, store: Store, index: ChainIndex, histories: Histories) -> None:
        self.store = store
        self.index = index
        self.histories = histories

    @staticmethod
    def sees_everything(who: Identity) -> bool:
        return "auditor" in who.roles

    # --- what one is party to ------------------------------------------------------------

    def receipt_ids(self, who: Identity, state: ChainState | None = None) -> set[int]:
        """The receipts ``who`` owns now or issued as their custodian."""
        state = state or self.index.state()
        return {
            receipt.receipt_id
            for receipt in state.receipts.values()
            if who.address in (receipt.owner, receipt.custodian)
        }

    def pledge_ids(self, who: Identity) -> list[int]:
        """The pledges ``who`` may see, in id order: as lender, borrower, or custodian of
        the pledged receipt (never as a later owner of the receipt)."""
        state = self.index.state()
        if self.sees_everything(who):
            return sorted(state.pledges)
        return sorted(
            pledge_id
            for pledge_id, pledge in state.pledges.items()
            if who.address in (pledge.terms.lender, pledge.borrower)
            or who.address == self._custodian(state, pledge.terms.receipt_id)
        )

    @staticmethod
    def _custodian(state: ChainState, receipt_id: int) -> str | None:
        receipt = state.receipts.get(receipt_id)
        return None if receipt is None else receipt.custodian

    # --- the checks the routes make ----------------------------------------------------------

    def pledge(self, who: Identity, pledge_id: int) -> Subject:
        """The pledge's history subject, if ``who`` may see it."""
        hidden = Hidden(f"pledge {pledge_id}: no such pledge, or not yours to see")
        if not self.sees_everything(who) and pledge_id not in self.pledge_ids(who):
            raise hidden
        try:
            return self.histories.pledge_subject(pledge_id)
        except NotFound:
            if self.sees_everything(who):
                raise
            raise hidden from None

    def asset(self, who: Identity, asset_id: str) -> Subject:
        hidden = Hidden(f"asset {asset_id!r}: no such asset, or not yours to see")
        try:
            subject = self.histories.asset_subject(asset_id)
        except NotFound:
            if self.sees_everything(who):
                raise
            raise hidden from None
        if self.sees_everything(who):
            return subject
        pledges = set(self.pledge_ids(who)) & set(subject.pledges)
        if not pledges and not self.receipt_ids(who) & set(subject.receipts):
            raise hidden
        # only the pledges on these goods that the caller may see
        return replace(subject, pledges=tuple(sorted(pledges)))

    def event(self, who: Identity, event_id: str) -> None:
        """Raises unless ``who`` may see the event (and its proof)."""
        hidden = Hidden(f"event {event_id!r}: no such event, or not yours to see")
        try:
            row = self.store.event(event_id)
        except NotFound:
            if self.sees_everything(who):
                raise
            raise hidden from None
        if self.sees_everything(who) or row.submitter == who.address:
            return
        assets = json.loads(row.envelope)["event"]["asset_ids"][:MAX_ASSETS_CHECKED]
        for asset in assets:
            try:
                self.asset(who, asset)
                return
            except (Hidden, NotFound):
                continue
        raise hidden

    def may_see_event(self, who: Identity, event_id: str) -> bool:
        try:
            self.event(who, event_id)
        except (Hidden, NotFound):
            return False
        return True

    def alarm_visible(
        self, who: Identity, *, pledge_id: int | None, subject: str, pledges: set[int]
    ) -> bool:
        """``pledges``: the pledges ``who`` may see (``pledge_ids``), computed once."""
        if self.sees_everything(who):
            return True
        if pledge_id is not None:
            return pledge_id in pledges
        try:
            self.asset(who, subject)
        except (Hidden, NotFound):
            return False
        return True
