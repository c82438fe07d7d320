"""EPCIS 2.0 capture: a document in, signed fourflow events and their index out.

The capture service is the oracle's front door for traceability systems that speak
EPCIS and do not sign: it validates and normalises the document (oracles.epcis.document),
drops events already stored under the same GS1 event hash ID, works out what each new
event means (oracles.epcis.mapping), and signs the new events with the gateway key
(which must hold SUBMITTER_ROLE on-chain) as one submission. The signed events, their
EPCIS index rows, four-flow entries, custody and pallet changes and the capture job are
written in one transaction: a crash keeps all of it or none, and the 202 is sent only
after the commit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import ValidationError
from sqlmodel import Session

from ledger.errors import InvalidDocument
from ledger.flows import (
    CaptureJobRow,
    CustodyRow,
    EpcisEventRow,
    EpcisIdentifierRow,
    Flows,
)
from ledger.intake import Intake
from ledger.models import EventBody, utc_text
from ledger.signing import sign_submission
from ledger.store import Receipt, Store
from oracles.epcis.document import MAX_IDENTIFIERS, CapturedEvent, parse_capture
from oracles.epcis.mapping import Effects, effects_of

__all__ = ["CaptureOutcome", "EpcisCapture"]


@dataclass(frozen=True)
class CaptureOutcome:
    job: CaptureJobRow
    events: list[tuple[str, str]]  # (event hash ID, "accepted" | "duplicate"), document order


class EpcisCapture:
    """Captures EPCIS documents into ``stream``, signed by ``gateway``."""

    def __init__(
        self,
        *,
        store: Store,
        intake: Intake,
        gateway: LocalAccount,
        stream: str = "epcis",
        max_events: int = 10_000,
    ) -> None:
        self.store = store
        self.intake = intake
        self.gateway = gateway
        self.stream = stream
        self.max_events = max_events
        self.flows = Flows(store)

    def capture(
        self, body: Any, *, document_sha256: str, now_ms: int, captured_by: str
    ) -> CaptureOutcome:
        """Validate, sign and store ``body``; raises InvalidDocument and stores nothing.
        ``captured_by`` names the authenticated client (kept with the capture job)."""
        captured = parse_capture(body, max_events=self.max_events)
        stored = self.store.stored_ids([c.hash_id for c in captured])
        fresh = [c for c in captured if c.hash_id not in stored]
        plans = self._plan(fresh)
        job = CaptureJobRow(
            capture_id=str(uuid.uuid4()),
            created_at_ms=now_ms,
            finished_at_ms=now_ms,
            document_sha256=document_sha256,
            captured_by=captured_by[:200],
            events=len(captured),
            event_ids=json.dumps([c.hash_id for c in captured]),
        )
        written: set[str] = set()

        def related(session: Session, receipts: list[Receipt]) -> None:
            new = {r.event_id for r in receipts if not r.duplicate}
            for event, effects in plans:
                if event.hash_id in new:
                    self._index(session, event, effects, job.capture_id, now_ms)
                    written.add(event.hash_id)
            job.duplicates = len(captured) - len(written)
            session.add(job)

        if plans:
            bodies = [self._body(event, effects, now_ms) for event, effects in plans]
            submission = sign_submission(
                bodies, private_key=self.gateway.key, domain=self.intake.domain
            )
            self.intake.submit(submission, same_id_is_duplicate=True, related=related)
        else:
            with self.store.session() as session:
                related(session, [])
                session.commit()
        statuses = [
            (c.hash_id, "accepted" if c.hash_id in written else "duplicate") for c in captured
        ]
        return CaptureOutcome(job=job, events=statuses)

    def _plan(self, events: list[CapturedEvent]) -> list[tuple[CapturedEvent, Effects]]:
        """Each event's effects, replaying pallet contents in event-time order."""
        named = [
            p
            for e in events
            for p in e.identifiers.get("parent", []) + e.identifiers.get("epc", [])
        ]
        packed = {parent: list(children) for parent, children in self.flows.children(named).items()}
        plans = []
        problems = []
        for event in sorted(events, key=lambda e: e.event_time_ms):
            effects = effects_of(event, packed)
            if len(effects.assets) > MAX_IDENTIFIERS:
                problems.append(
                    {
                        "pointer": event.pointer or "/",
                        "message": f"concerns {len(effects.assets)} assets with what its "
                        f"pallets hold; the limit is {MAX_IDENTIFIERS}",
                    }
                )
            for parent, children in effects.packed.items():
                packed[parent] = list(dict.fromkeys([*packed.get(parent, []), *children]))
            for parent, removed in effects.unpacked.items():
                packed[parent] = (
                    []
                    if removed is None
                    else [c for c in packed.get(parent, []) if c not in removed]
                )
            plans.append((event, effects))
        if problems:
            raise InvalidDocument(problems[0]["message"], errors=problems)
        order = {e.hash_id: i for i, e in enumerate(events)}
        return sorted(plans, key=lambda plan: order[plan[0].hash_id])

    def _body(self, event: CapturedEvent, effects: Effects, now_ms: int) -> EventBody:
        try:
            return EventBody(
                kind=f"epcis.{event.type}",
                schema_version=1,
                stream=self.stream,
                event_id=event.hash_id,
                asset_ids=effects.assets,
                event_time=event.event_time,
                payload={**event.event, "recordTime": utc_text(now_ms)},
                submitter=self.gateway.address,
            )
        except ValidationError as exc:  # what EPCIS allows but a fourflow event cannot hold
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            message = f"cannot be stored as a fourflow event: {where}: {problem['msg']}"
            raise InvalidDocument(
                message, errors=[{"pointer": event.pointer or "/", "message": message}]
            ) from exc

    @staticmethod
    def _index(
        session: Session, event: CapturedEvent, effects: Effects, capture_id: str, now_ms: int
    ) -> None:
        e = event.event
        session.add(
            EpcisEventRow(
                event_id=event.hash_id,
                type=event.type,
                action=e.get("action"),
                biz_step=e.get("bizStep"),
                disposition=e.get("disposition"),
                read_point=(e.get("readPoint") or {}).get("id"),
                biz_location=(e.get("bizLocation") or {}).get("id"),
                event_time_ms=event.event_time_ms,
                record_time_ms=now_ms,
                capture_id=capture_id,
            )
        )
        for role, identifiers in event.identifiers.items():
            for identifier in identifiers:
                session.add(
                    EpcisIdentifierRow(event_id=event.hash_id, identifier=identifier, role=role)
                )
        Flows.add_entries(
            session, event_id=event.hash_id, time_ms=event.event_time_ms, entries=effects.entries
        )
        if effects.custody is not None:
            for asset in effects.assets:
                Flows.move_custody(
                    session,
                    CustodyRow(
                        asset_id=asset,
                        status=effects.custody.status,
                        location=effects.custody.location,
                        possessor=effects.custody.possessor,
                        owner=effects.custody.owner,
                        since_ms=event.event_time_ms,
                        event_id=event.hash_id,
                    ),
                )
        for parent, children in effects.packed.items():
            Flows.pack(
                session, parent=parent, children=children, packed=True,
                time_ms=event.event_time_ms, event_id=event.hash_id,
            )  # fmt: skip
        for parent, removed in effects.unpacked.items():
            Flows.pack(
                session, parent=parent, children=removed, packed=False,
                time_ms=event.event_time_ms, event_id=event.hash_id,
            )  # fmt: skip
