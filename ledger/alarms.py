"""Alarms for lenders: what the oracle rules found, and what the pledge contract did.

Two sources, one list:

- oracle alarms (``alarms`` table, written by the rules worker with a signed, anchored
  record event): covenant breaches (a count under the minimum, a daily drop),
  unauthorized movement, tag removal, stale data (a silent device), and sensor
  findings (climate, fence, intrusion …).
- chain alarms, derived from the indexed logs: a margin call is open from
  ``MarginCallOpened`` until ``MarginCallCured`` (or the pledge ends); a freeze reason is
  open from ``PledgeFrozen`` until ``PledgeUnfrozen`` clears it.

Each alarm has a state: open → acknowledged → cleared. Chain alarms clear themselves
when the contract says so; a person's acknowledgement of any alarm (and a lender's
clearing of an oracle alarm) is a signed statement (EIP-191 ``personal_sign`` of
``change_statement``), kept with the signature in ``alarm_acks``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from sqlalchemy import BigInteger, Integer, or_
from sqlmodel import Field, SQLModel, col, select

from ledger.chainlog import ChainLog
from ledger.collateral import Freeze
from ledger.errors import InvalidInput, InvalidSignature, NotFound
from ledger.indexer import ChainIndex
from ledger.models import utc_text
from ledger.oracle_state import ACKNOWLEDGED, CLEARED, OPEN, AlarmRow
from ledger.store import Store

__all__ = ["STATES", "Alarm", "AlarmBook", "category_of", "change_statement", "sign_change"]

STATES = (OPEN, ACKNOWLEDGED, CLEARED)
_BIG = BigInteger().with_variant(Integer, "sqlite")
_CATEGORY = {
    "below_minimum": "covenant_breach",
    "daily_drop": "covenant_breach",
    "no_count": "stale_data",
    "stale_device": "stale_data",
    "unseen": "tag_removal",
    "tag_removal": "tag_removal",
    "unauthorized_movement": "unauthorized_movement",
    "outbound_without_custody": "unauthorized_movement",
    "stock_discrepancy": "covenant_breach",
    # the performance covenants (oracles.machines, oracles.energy, oracles.crosscheck)
    "low_utilization": "covenant_breach",
    "low_performance": "covenant_breach",
    "low_revenue": "covenant_breach",
    "declaration_overstated": "covenant_breach",
}
_FREEZE_CATEGORY = {
    Freeze.BELOW_MINIMUM: "covenant_breach",
    Freeze.UNAUTHORIZED_MOVEMENT: "unauthorized_movement",
    Freeze.TAG_REMOVED: "tag_removal",
    Freeze.STALE_DATA: "stale_data",
    Freeze.STALE_PRICE: "stale_data",
    Freeze.AUDIT_FINDING: "audit_finding",
    Freeze.COVENANT_BREACH: "covenant_breach",
}


_FACT_CATEGORY = {  # a rule whose alarm calls for an on-chain fact is of that fact's kind
    "unauthorized_movement": "unauthorized_movement",
    "tag_removal": "tag_removal",
    "stale_data": "stale_data",
    "covenant_breach": "covenant_breach",
}


def category_of(rule: str, fact: str | None = None) -> str:
    """An alarm's category: its rule's, else that of the fact it calls for (a machine
    moved off-site, a tracker unplugged, a silent sensor), else "sensor"."""
    return _CATEGORY.get(rule) or _FACT_CATEGORY.get(fact or "", "sensor")


MAX_SKEW_MS = 5 * 60_000


def change_statement(*, alarm_id: str, state: str, at: str, chain_id: int) -> str:
    """The text a person signs (EIP-191 personal_sign) to acknowledge or clear an alarm:
    who did it is the signer; ``at`` (RFC 3339) must be within five minutes of the
    server's clock, so an old signature cannot be replayed later."""
    return f"fourflow: mark alarm {state}\nalarm: {alarm_id}\nat: {at}\nchain: {chain_id}"


def sign_change(account: LocalAccount, *, alarm_id: str, state: str, at: str, chain_id: int) -> str:
    text = change_statement(alarm_id=alarm_id, state=state, at=at, chain_id=chain_id)
    signature: str = account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
    return signature


class AlarmAckRow(SQLModel, table=True):
    __tablename__ = "alarm_acks"

    key: str = Field(primary_key=True, max_length=300)
    # acknowledged | cleared (chain alarms: acknowledged): one signed row per change
    state: str = Field(primary_key=True, max_length=16)
    by: str = Field(primary_key=True, max_length=42)  # each party's own signed record
    at_ms: int = Field(sa_type=_BIG)
    statement: str  # what ``by`` signed (change_statement)
    signature: str = Field(max_length=132)


@dataclass
class Alarm:
    id: str
    source: str  # "oracle" | "chain"
    category: str
    rule: str
    severity: str
    state: str
    subject: str
    pledge_id: int | None
    opened_ms: int
    message: str
    changed_ms: int
    cleared_ms: int | None = None
    acknowledged_by: str | None = None
    evidence: list[str] = field(default_factory=list)
    record_event_id: str | None = None
    proof: dict[str, Any] | None = None  # chain alarms: where the contract said it

    def to_json(self) -> dict[str, Any]:
        links: dict[str, Any] = {}
        since = self.opened_ms - 3_600_000
        if self.pledge_id is not None:
            links["history"] = f"/v1/pledges/{self.pledge_id}/history?since={since}"
            links["pledge"] = f"/v1/pledges/{self.pledge_id}"
        elif self.subject:
            links["history"] = f"/v1/assets/{self.subject}/history?since={since}"
        if self.record_event_id:
            links["record"] = f"/v1/events/{self.record_event_id}/proof"
        links["evidence"] = [f"/v1/events/{e}/proof" for e in self.evidence[:20]]
        return {
            "id": self.id,
            "source": self.source,
            "category": self.category,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "subject": self.subject,
            "pledge_id": self.pledge_id,
            "opened": utc_text(self.opened_ms),
            "opened_ms": self.opened_ms,
            "changed_ms": self.changed_ms,
            "cleared": None if self.cleared_ms is None else utc_text(self.cleared_ms),
            "acknowledged_by": self.acknowledged_by,
            "message": self.message,
            "proof": self.proof,
            "links": links,
        }


class AlarmBook:
    def __init__(self, store: Store, index: ChainIndex, *, chain_id: int) -> None:
        self.store = store
        self.index = index
        self.chain_id = chain_id

    def all(self) -> list[Alarm]:
        """Every alarm, oldest first."""
        with self.store.session() as session:
            rows = session.exec(select(AlarmRow).order_by(col(AlarmRow.opened_ms))).all()
            # the latest signed change of each alarm (acknowledged, then cleared)
            acks: dict[str, AlarmAckRow] = {}
            for ack in session.exec(select(AlarmAckRow).order_by(col(AlarmAckRow.at_ms))).all():
                acks[ack.key] = ack
        alarms = [self._oracle(row, acks.get(row.key)) for row in rows]
        alarms += self._chain_alarms(acks)
        return sorted(alarms, key=lambda a: (a.opened_ms, a.id))

    def about(self, *, pledges: Sequence[int], subjects: Sequence[str]) -> list[Alarm]:
        """The alarms of these pledges, and the pledge-less ones about these subjects,
        oldest first: what ``all()`` holds of them, read without reading the whole book
        (a history summary asks for one asset's or one pledge's)."""
        pledge_set, subject_set = set(pledges), set(subjects)
        with self.store.session() as session:
            mine = or_(
                col(AlarmRow.pledge_id).in_(sorted(pledge_set)),
                col(AlarmRow.pledge_id).is_(None) & col(AlarmRow.subject).in_(sorted(subject_set)),
            )
            rows = session.exec(
                select(AlarmRow).where(mine).order_by(col(AlarmRow.opened_ms))
            ).all()
            keys = [row.key for row in rows]
            acks: dict[str, AlarmAckRow] = {}
            for start in range(0, len(keys), 1_000):
                for ack in session.exec(
                    select(AlarmAckRow)
                    .where(col(AlarmAckRow.key).in_(keys[start : start + 1_000]))
                    .order_by(col(AlarmAckRow.at_ms))
                ).all():
                    acks[ack.key] = ack
            if pledge_set:
                for ack in session.exec(
                    select(AlarmAckRow)
                    .where(col(AlarmAckRow.key).startswith("chain:"))
                    .order_by(col(AlarmAckRow.at_ms))
                ).all():
                    acks[ack.key] = ack
        alarms = [self._oracle(row, acks.get(row.key)) for row in rows]
        if pledge_set:
            alarms += self._chain_alarms(acks, pledges=sorted(pledge_set))
        return sorted(alarms, key=lambda a: (a.opened_ms, a.id))

    def get(self, alarm_id: str) -> Alarm:
        for alarm in self.all():
            if alarm.id == alarm_id:
                return alarm
        raise NotFound(f"no alarm {alarm_id!r}")

    def set_state(self, alarm_id: str, state: str, *, by: str, at: str, signature: str) -> Alarm:
        """A person's acknowledgement (or, for an oracle alarm, clearing), signed by them
        over ``change_statement``."""
        if state not in (ACKNOWLEDGED, CLEARED):
            raise InvalidInput(
                f"cannot set an alarm to {state!r}", field="state", code="invalid_state"
            )
        statement = change_statement(alarm_id=alarm_id, state=state, at=at, chain_id=self.chain_id)
        self._check_signed(statement, at=at, signature=signature, by=by)
        alarm = self.get(alarm_id)
        if alarm.state == CLEARED:
            raise InvalidInput(
                f"alarm {alarm_id!r} is cleared already", field="state", code="alarm_cleared"
            )
        if alarm.source == "chain" and state == CLEARED:
            raise InvalidInput(
                "a chain alarm clears when the contract says so (cure the margin call, "
                "clear the freeze), not by hand",
                field="state",
                code="chain_alarm",
            )
        now = int(time.time() * 1000)
        with self.store.session() as session:
            if alarm.source == "oracle":
                row = session.get(AlarmRow, alarm_id)
                assert row is not None
                row.state = state
                session.add(row)
            session.merge(
                AlarmAckRow(
                    key=alarm_id, state=state, by=by, at_ms=now, statement=statement,
                    signature=signature,
                )
            )  # fmt: skip
            session.commit()
        return self.get(alarm_id)

    @staticmethod
    def _check_signed(statement: str, *, at: str, signature: str, by: str) -> None:
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise InvalidInput(f"at: expected RFC 3339 with an offset, got {at!r}", field="at")
        if abs(int(when.timestamp() * 1000) - int(time.time() * 1000)) > MAX_SKEW_MS:
            raise InvalidInput(
                f"at: {at} is more than five minutes from now: sign a fresh statement",
                field="at",
                code="stale_statement",
            )
        try:
            signer = Account.recover_message(
                encode_defunct(text=statement),
                signature=bytes.fromhex(signature.removeprefix("0x")),
            )
        except (ValueError, TypeError) as exc:
            raise InvalidSignature(f"not a signature: {exc}", field="signature") from exc
        if signer != by:
            raise InvalidSignature(
                f"the statement is signed by {signer}, not by the signed-in {by}",
                field="signature",
            )

    @staticmethod
    def _oracle(row: AlarmRow, ack: AlarmAckRow | None) -> Alarm:
        return Alarm(
            id=row.key,
            source="oracle",
            category=category_of(row.rule, row.fact),
            rule=row.rule,
            severity=row.severity,
            state=row.state,
            subject=row.subject,
            pledge_id=row.pledge_id,
            opened_ms=row.opened_ms,
            message=row.message,
            changed_ms=ack.at_ms if ack else row.opened_ms,
            cleared_ms=ack.at_ms if ack and row.state == CLEARED else None,
            acknowledged_by=ack.by if ack else None,
            evidence=list(json.loads(row.evidence)),
            record_event_id=row.record_event_id,
        )

    def _chain_alarms(
        self, acks: dict[str, AlarmAckRow], *, pledges: Sequence[int] | None = None
    ) -> list[Alarm]:
        names = ("MarginCallOpened", "MarginCallCured", "PledgeFrozen", "PledgeUnfrozen",
                 "PledgeReleased", "PledgeLiquidated")  # fmt: skip
        if pledges is None:
            logs = [log for name in names for log in self.index.logs_of_event(name)]
        else:
            logs = self.index.logs(pledge_ids=pledges, events=names)
        logs.sort(key=lambda g: g.position)
        open_calls: dict[int, Alarm] = {}
        open_freezes: dict[tuple[int, int], Alarm] = {}
        alarms: list[Alarm] = []

        def close(alarm: Alarm, log: ChainLog) -> None:
            alarm.state = CLEARED
            alarm.cleared_ms = alarm.changed_ms = log.block_time_ms

        for log in logs:
            pledge_id = int(log.args["pledgeId"])
            if log.event == "MarginCallOpened":
                alarm = self._from_log(
                    log, "margin_call", "margin_call", "breach",
                    f"pledge {pledge_id}: LTV {log.args['ltvBps'] / 100:.2f}% reached the "
                    f"warning line; cure by {utc_text(log.args['deadline'] * 1000)}",
                    acks,
                )  # fmt: skip
                open_calls[pledge_id] = alarm
                alarms.append(alarm)
            elif log.event == "PledgeFrozen":
                for flag in Freeze:
                    if flag & log.args["reasons"] and flag.name:
                        alarm = self._from_log(
                            log, _FREEZE_CATEGORY[flag], f"frozen_{flag.name.lower()}",
                            "breach", f"pledge {pledge_id} frozen: {flag.name.lower()}", acks,
                            suffix=flag.name.lower(),
                        )  # fmt: skip
                        open_freezes[(pledge_id, int(flag))] = alarm
                        alarms.append(alarm)
            elif log.event == "MarginCallCured" and pledge_id in open_calls:
                close(open_calls.pop(pledge_id), log)
            elif log.event == "PledgeUnfrozen":
                for pid, bit in list(open_freezes):
                    if pid == pledge_id and bit & log.args["cleared"]:
                        close(open_freezes.pop((pid, bit)), log)
            elif log.event in ("PledgeReleased", "PledgeLiquidated"):
                if pledge_id in open_calls:
                    close(open_calls.pop(pledge_id), log)
                for pid, bit in list(open_freezes):
                    if pid == pledge_id:
                        close(open_freezes.pop((pid, bit)), log)
        return alarms

    def _from_log(
        self,
        log: ChainLog,
        category: str,
        rule: str,
        severity: str,
        message: str,
        acks: dict[str, AlarmAckRow],
        *,
        suffix: str = "",
    ) -> Alarm:
        # by transaction, not block: a reorganization that re-includes it keeps the id
        key = f"chain:{log.tx_hash[2:18]}:{log.log_index}" + (f":{suffix}" if suffix else "")
        ack = acks.get(key)
        return Alarm(
            id=key,
            source="chain",
            category=category,
            rule=rule,
            severity=severity,
            state=ACKNOWLEDGED if ack else OPEN,
            subject=f"pledge:{log.args['pledgeId']}",
            pledge_id=int(log.args["pledgeId"]),
            opened_ms=log.block_time_ms,
            message=message,
            changed_ms=ack.at_ms if ack else log.block_time_ms,
            acknowledged_by=ack.by if ack else None,
            proof={
                "type": "chain_log",
                "chain_id": self.chain_id,
                "contract": log.address,
                "block_number": log.block_number,
                "block_hash": log.block_hash,
                "tx_hash": log.tx_hash,
                "log_index": log.log_index,
            },
        )
