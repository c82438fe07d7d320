"""What the oracle services keep besides the events themselves.

    alarms        each rule finding, by its deterministic key: open → acknowledged →
                  cleared; the event ids of its evidence and of its own signed record
    quarantine    input that was refused (bad signature, unknown device, malformed),
                  with the reason and the raw bytes, so nothing is silently dropped
    cursors       how far each worker has read the events table (by arrival position)
    facts         the covenant-fact outbox: facts waiting for their evidence to be
                  anchored, then reported to the pledge registry, with the outcome

All writes are idempotent on their keys, so a worker that dies mid-step and replays
from its cursor changes nothing it already wrote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Index, Integer
from sqlmodel import Field, Session, SQLModel, col, func, select

from ledger.errors import NotFound
from ledger.store import Store

__all__ = ["AlarmRow", "CursorRow", "FactRow", "OracleState", "QuarantineRow"]

_BIG = BigInteger().with_variant(Integer, "sqlite")
OPEN, ACKNOWLEDGED, CLEARED = "open", "acknowledged", "cleared"
PENDING, REPORTED, REFUSED = "pending", "reported", "refused"


def _now_ms() -> int:
    return int(time.time() * 1000)


class AlarmRow(SQLModel, table=True):
    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_state", "state", "opened_ms"),)

    key: str = Field(primary_key=True, max_length=300)
    rule: str = Field(max_length=64)
    subject: str = Field(max_length=200)
    severity: str = Field(max_length=16)
    state: str = Field(default=OPEN, max_length=16)
    opened_ms: int = Field(sa_type=_BIG)
    message: str
    evidence: str  # JSON list of event ids
    details: str  # JSON object
    fact: str | None = Field(default=None, max_length=32)
    pledge_id: int | None = Field(default=None, sa_type=_BIG)
    record_event_id: str | None = Field(default=None, max_length=300)  # the signed alarm event


class QuarantineRow(SQLModel, table=True):
    __tablename__ = "quarantine"

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG)
    received_ms: int = Field(sa_type=_BIG)
    source: str = Field(max_length=300)  # mqtt:<topic> | http | file:<name>:<line>
    reason: str
    raw: str  # the refused input, truncated to 64 KiB


class CursorRow(SQLModel, table=True):
    __tablename__ = "cursors"

    name: str = Field(primary_key=True, max_length=64)
    position: int = Field(default=0, sa_type=_BIG)


class FactRow(SQLModel, table=True):
    __tablename__ = "facts"
    __table_args__ = (Index("ix_facts_state", "state"),)

    key: str = Field(primary_key=True, max_length=300)
    pledge_id: int = Field(sa_type=_BIG)
    receipt_id: int = Field(sa_type=_BIG)
    # quantity | unauthorized_movement | tag_removal | covenant_breach | stale_data
    kind: str = Field(max_length=32)
    quantity: int = Field(default=0, sa_type=_BIG)
    observed_at: int = Field(sa_type=_BIG)  # unix seconds
    event_id: str = Field(max_length=300)  # the anchored evidence the fact cites
    state: str = Field(default=PENDING, max_length=16)
    tx_hash: str | None = Field(default=None, max_length=66)
    outcome: str | None = None
    attempts: int = 0
    created_ms: int = Field(sa_type=_BIG)


def _storable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (lone surrogates from a JSON parser) escaped:
    a refusal is kept with its raw input, whatever the input was."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class OracleState:
    """Reads and idempotent writes of the tables above."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- quarantine ----------------------------------------------------------------------

    def quarantine(self, *, source: str, reason: str, raw: bytes | str) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        with self.store.session() as session:
            session.add(
                QuarantineRow(
                    received_ms=_now_ms(), source=source[:300], reason=reason, raw=text[:65_536]
                )
            )
            session.commit()

    def quarantine_many(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """(source, reason, raw) refusals, in one transaction."""
        now = _now_ms()
        with self.store.session() as session:
            for source, reason, raw in rows:
                session.add(
                    QuarantineRow(
                        received_ms=now,
                        source=_storable(source[:300]),
                        reason=_storable(reason),
                        raw=_storable(raw[:65_536]),
                    )
                )
            session.commit()

    def quarantined(self, *, limit: int = 100) -> list[QuarantineRow]:
        with self.store.session() as session:
            return list(
                session.exec(
                    select(QuarantineRow).order_by(col(QuarantineRow.id).desc()).limit(limit)
                )
            )

    # --- cursors -------------------------------------------------------------------------

    def cursor(self, name: str) -> int:
        with self.store.session() as session:
            row = session.get(CursorRow, name)
        return 0 if row is None else row.position

    @staticmethod
    def advance(session: Session, name: str, position: int) -> None:
        row = session.get(CursorRow, name) or CursorRow(name=name)
        row.position = max(row.position, position)
        session.add(row)

    # --- alarms --------------------------------------------------------------------------

    @staticmethod
    def raise_alarm(session: Session, row: AlarmRow) -> bool:
        """Insert ``row`` unless an alarm with its key exists; True if it is new."""
        if session.get(AlarmRow, row.key) is not None:
            return False
        session.add(row)
        return True

    def alarms(
        self, *, states: Sequence[str] = (OPEN, ACKNOWLEDGED), subject: str | None = None
    ) -> list[AlarmRow]:
        query = select(AlarmRow).where(col(AlarmRow.state).in_(states))
        if subject is not None:
            query = query.where(AlarmRow.subject == subject)
        with self.store.session() as session:
            return list(session.exec(query.order_by(col(AlarmRow.opened_ms), col(AlarmRow.key))))

    def set_alarm_state(self, key: str, state: str) -> AlarmRow:
        with self.store.session() as session:
            row = session.get(AlarmRow, key)
            if row is None:
                raise NotFound(f"no alarm {key!r}")
            row.state = state
            session.add(row)
            session.commit()
        return row

    # --- facts ---------------------------------------------------------------------------

    @staticmethod
    def queue_fact(session: Session, row: FactRow) -> bool:
        if session.get(FactRow, row.key) is not None:
            return False
        session.add(row)
        return True

    def pending_facts(self) -> list[FactRow]:
        with self.store.session() as session:
            return list(
                session.exec(
                    select(FactRow)
                    .where(FactRow.state == PENDING)
                    .order_by(col(FactRow.created_ms))
                )
            )

    def facts(self) -> list[FactRow]:
        with self.store.session() as session:
            return list(
                session.exec(select(FactRow).order_by(col(FactRow.created_ms), col(FactRow.key)))
            )

    def settle_fact(self, key: str, *, state: str, tx_hash: str | None, outcome: str) -> None:
        with self.store.session() as session:
            row = session.get(FactRow, key)
            if row is None:
                raise NotFound(f"no fact {key!r}")
            row.state, row.tx_hash, row.outcome = state, tx_hash, outcome
            row.attempts += 1
            session.add(row)
            session.commit()

    def counts(self) -> dict[str, Any]:
        with self.store.session() as session:
            alarms = dict(
                session.exec(select(AlarmRow.state, func.count()).group_by(AlarmRow.state)).all()
            )
            facts = dict(
                session.exec(select(FactRow.state, func.count()).group_by(FactRow.state)).all()
            )
            quarantined = session.exec(select(func.count()).select_from(QuarantineRow)).one()
        return {"alarms": alarms, "facts": facts, "quarantined": int(quarantined)}
