"""The rules worker: stored readings and custody events in, alarms, counts and facts out.

Each pass reads the events stored since its cursor (readings, EPCIS custody events and
``oracle.release`` records of on-chain releases, in arrival order) and feeds them to the
monitor of each watched herd or lot
(oracles.livestock.HerdMonitor, oracles.warehouse.WarehouseMonitor). What the monitors
find is written in one transaction, together with the cursor:

    alarm events     kind ``oracle.alarm``, one per alarm key, signed by the gateway
    count events     kind ``livestock.daily_count`` / ``warehouse.stock_level``
    daily events     kind ``<industry>.daily``: a plant's, a station's, a dealer's or a
                     telemetry asset's closed local day (``SiteWatch``)
    check events     kind ``crosscheck.result``: a borrower's declared figure (a
                     ``document.declaration`` event) against the devices' (oracles.crosscheck),
                     judged only when its submitter is a declarant of the watched subject
    alarm rows       the alarm's state, evidence and the id of its signed event
    fact rows        the covenant facts to report on-chain (oracles.facts), each citing
                     the signed event it rests on, so the contract can check the
                     event's Merkle path against the anchored root

Every id here is derived from what was observed (the alarm's key, the herd and day, the
lot and the cycle count), so a worker that dies anywhere and replays finds what it
already wrote and writes nothing twice. Monitors keep their state in memory: on start
the worker replays the stored history through them before it continues (the store is
the state; a snapshot can come later if replay ever gets slow).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from pydantic import JsonValue
from sqlmodel import Session, col, select

from ledger.canonical import loads_canonical
from ledger.errors import InvalidInput, LedgerError
from ledger.intake import Intake
from ledger.models import EventBody, offset_zone, utc_text
from ledger.oracle_state import AlarmRow, FactRow, OracleState
from ledger.signing import sign_submission
from ledger.store import EventRow, Receipt, Store
from oracles.crosscheck import CrossCheckRules, Declaration, Observation, ObservationBook
from oracles.epcis.mapping import HELD_STEPS
from oracles.ingest import reading_of_payload
from oracles.livestock import DailyCount, HerdMonitor, HerdRules
from oracles.readings import Alarm, Device, Reading, TagRead
from oracles.warehouse import LotRules, StockLevel, WarehouseMonitor

__all__ = ["DailyMonitor", "HerdWatch", "LotWatch", "PassSummary", "RulesWorker", "SiteWatch"]

log = logging.getLogger("fourflow.rules")

CURSOR = "rules"
CUSTODY_OUT_STEPS = frozenset({"shipping", "departing", "loading"})


@dataclass(frozen=True)
class HerdWatch:
    rules: HerdRules
    receipt_id: int | None = None  # the herd's receipt, for on-chain facts
    pledge_id: int | None = None
    # who may declare figures about the herd (submitter addresses, checksummed)
    declarants: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LotWatch:
    rules: LotRules
    receipt_id: int | None = None
    pledge_id: int | None = None
    declarants: frozenset[str] = frozenset()


class DailyResult(Protocol):
    def to_payload(self) -> dict[str, Any]: ...


class DailyMonitor(Protocol):
    """What a site's rules monitor offers (oracles.machines.PlantMonitor,
    oracles.energy, oracles.vehicles.DealerMonitor, oracles.telemetry.TelemetryMonitor)."""

    def observe(self, reading: Reading) -> list[Alarm]: ...

    def check(self, now_ms: int) -> list[Alarm]: ...

    def close_day(self, day: str) -> tuple[DailyResult, list[Alarm]]: ...


# A closed day's figures that borrowers' declarations are checked against:
# (metric, unit, payload -> value or None), by the kind of the daily event
Measure = tuple[str, str, Callable[[Mapping[str, Any]], float | None]]


@dataclass(frozen=True)
class SiteWatch:
    """A subject watched day by day by a rules monitor: a plant, a solar plant or a
    charging station, a dealer's financed stock, a telemetry asset. Readings of the
    devices whose subject it is go to the monitor; each closed local day is recorded as
    a ``<kind>.daily`` event, and its ``measures`` are what declarations about the
    subject are checked against."""

    kind: str  # "manufacturing", "energy", "vehicles", "telemetry"
    subject: str
    utc_offset: str
    monitor: Callable[[Mapping[str, Device]], DailyMonitor]
    receipt_id: int | None = None
    pledge_id: int | None = None
    measures: tuple[Measure, ...] = ()
    grace_ms: int = 0  # a day is closed this long after it ends (late uploads count)
    # items pledged on their own receipt: (receipt, pledge) by the alarm subject naming
    # them (a dealer's financed vehicles, by VIN); the site's otherwise
    items: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    # who may declare figures about the subject (submitter addresses, checksummed): a
    # declaration by anyone else is not judged (RulesWorker._declaration)
    declarants: frozenset[str] = frozenset()

    def pledged(self, subject: str) -> tuple[int | None, int | None]:
        """The receipt and pledge an alarm about ``subject`` concerns."""
        return self.items.get(subject, (self.receipt_id, self.pledge_id))

    def pledged_for(self, alarm: Alarm) -> tuple[int | None, int | None]:
        """The receipt and pledge ``alarm`` concerns: its subject's, or, for an alarm about
        a device (a silent tracker), those of the item the device is on (details "vin")."""
        item = alarm.details.get("vin")
        if alarm.subject not in self.items and isinstance(item, str) and item in self.items:
            return self.items[item]
        return self.pledged(alarm.subject)


@dataclass
class PassSummary:
    events: int = 0
    alarms: list[str] = field(default_factory=list)  # keys of new alarms
    counts: list[str] = field(default_factory=list)  # ids of new count / stock / daily events
    facts: list[str] = field(default_factory=list)  # keys of newly queued facts


@dataclass(frozen=True)
class _Record:
    """A derived event to write: a count, a stock level, a closed day, a check."""

    event_id: str
    kind: str
    time_ms: int
    payload: dict[str, Any]
    subject: str
    receipt_id: int | None = None  # with ``quantity``: a quantity fact to report
    quantity: int = 0


@dataclass
class _Output:
    """What one pass found, before it is written."""

    alarms: list[tuple[Alarm, int | None, int | None]] = field(default_factory=list)
    counts: list[_Record] = field(default_factory=list)
    # (lot, items, time, the event that triggered it, what the chain said)
    releases: list[tuple[str, list[str], int, str | None, dict[str, JsonValue] | None]] = field(
        default_factory=list
    )


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def alarm_event_id(key: str) -> str:
    return f"urn:fourflow:alarm:{_short(key)}"


class RulesWorker:
    def __init__(
        self,
        *,
        store: Store,
        intake: Intake,
        gateway: LocalAccount,
        devices: Mapping[str, Device],
        tenant: str,
        herds: Sequence[HerdWatch] = (),
        lots: Sequence[LotWatch] = (),
        sites: Sequence[SiteWatch] = (),
        crosscheck: CrossCheckRules | None = None,
        state: OracleState | None = None,
        booked: Callable[[int], int] | None = None,
        pledge_of: Callable[[int], int] | None = None,
    ) -> None:
        self.store = store
        self.booked = booked  # receipt id -> quantity booked on-chain now
        self.pledge_of = pledge_of  # receipt id -> the pledge it is under on-chain now (0: none)
        self.intake = intake
        self.gateway = gateway
        self.devices = dict(devices)
        self.stream = f"{tenant}.findings".lower()
        self.state = state or OracleState(store)
        self._watches = (tuple(herds), tuple(lots))
        self._sites = tuple(sites)
        self._crosscheck = crosscheck or CrossCheckRules()
        self._reset()

    def _reset(self) -> None:
        """Fresh monitors at position 0: the next pass replays the stored history."""
        herds, lots = self._watches
        self.herds = {w.rules.herd: (w, HerdMonitor(w.rules, self.devices)) for w in herds}
        self.lots = [(w, WarehouseMonitor(w.rules, self.devices)) for w in lots]
        self.sites = {w.subject: (w, w.monitor(self.devices)) for w in self._sites}
        self.book = ObservationBook(self._crosscheck)
        self._declared: dict[str, Declaration] = {}  # awaiting a verdict
        self._judged = self._recorded_verdicts()  # a replay never judges them again
        self._open_day: dict[str, date] = {}
        self._held: set[str] = set()  # goods received or stored somewhere, per EPCIS
        self._position = 0  # events fed to the monitors so far (this process)
        self._clock_ms = 0  # the latest reading time seen
        self._released: dict[str, set[str]] = {w.rules.lot: set() for w in lots}
        # releases the chain authorized, by the event that triggered them (see _authorize)
        self._triggered = self._recorded_triggers()
        # alarms about items the chain had let go, dropped when first found: never raised,
        # wherever a replay meets them again (see _unless_released)
        self._dropped = self._recorded_dropped()
        self._live_from = self.state.cursor(CURSOR)  # later events were never judged

    # --- one pass ------------------------------------------------------------------------

    def run_once(
        self, *, now_ms: int | None = None, limit: int = 5_000, wall_clock: bool = False
    ) -> PassSummary:
        """Feed what was stored since the last pass to the monitors; write what they find.

        The time-based rules (silent devices, unseen tags, day ends) run at ``now_ms``
        if given (a simulation's clock), else at the latest reading's time; with
        ``wall_clock`` (the service), at the wall clock once the pass has caught up with
        the stored events, so a site whose every device went quiet is still noticed.
        """
        out = _Output()
        rows = self._next_events(limit)
        try:
            for row in rows:
                self._feed(row, out)
            now = now_ms if now_ms is not None else self._clock_ms
            if now_ms is None and wall_clock and len(rows) < limit:
                now = max(now, int(time.time() * 1000))
            if now:
                # caught up with the store, or past what was judged before: the chain may
                # be asked (a replay's checks never ask it)
                live = len(rows) < limit or (rows[-1].position or 0) > self._live_from
                self._check(now, out, live=live)
                for watch, herd in self.herds.values():
                    self._close_days_before(watch, herd, now, out)
                for site, monitor in self.sites.values():
                    self._close_site_days(site, monitor, now, out, live=live)
                self._judge(now, out)
            last = rows[-1].position if rows else None
            summary = self._write(out, last)
        except Exception:
            # The monitors moved on but what they found was not written: start over
            # from the stored history next time, which finds it again (idempotently).
            self._reset()
            raise
        summary.events = len(rows)
        return summary

    def record_release(
        self,
        *,
        lot: str,
        items: Sequence[str],
        time_ms: int,
        onchain: Mapping[str, JsonValue] | None = None,
    ) -> str:
        """Record that ``items`` of ``lot`` were released on-chain, so they may leave.

        The release is stored as a signed ``oracle.release`` event and reaches the
        monitors in its place in the event order, on this pass and on every replay.
        ``onchain``: what the record cites of the chain's release (its pledges, receipts
        and transaction hashes), kept in the payload as ``onchain``.
        """
        body = self._release_body(lot, items, time_ms, onchain=onchain)
        submission = sign_submission(
            [body], private_key=self.gateway.key, domain=self.intake.domain
        )
        self.intake.submit(submission, same_id_is_duplicate=True)
        return body.event_id

    def _release_body(
        self,
        lot: str,
        items: Sequence[str],
        time_ms: int,
        trigger: str | None = None,
        *,
        onchain: Mapping[str, JsonValue] | None = None,
    ) -> EventBody:
        released: list[JsonValue] = list(sorted(items))
        payload: dict[str, JsonValue] = {"lot": lot, "items": released, "time": utc_text(time_ms)}
        if trigger is not None:
            payload["trigger"] = trigger
        if onchain is not None:
            payload["onchain"] = dict(onchain)
        return EventBody(
            kind="oracle.release",
            schema_version=1,
            stream=self.stream,
            event_id=f"urn:fourflow:release:{_short(json.dumps(payload, sort_keys=True))}",
            asset_ids=[lot, *sorted(items)][:1_000],
            event_time=utc_text(time_ms),
            payload=payload,
            submitter=self.gateway.address,
        )

    def _next_events(self, limit: int) -> list[EventRow]:
        with self.store.session() as session:
            return list(
                session.exec(
                    select(EventRow)
                    .where(
                        col(EventRow.position) > self._position,
                        col(EventRow.kind).startswith("reading.")
                        | col(EventRow.kind).startswith("epcis.")
                        | col(EventRow.kind).in_(["oracle.release", "document.declaration"]),
                    )
                    .order_by(col(EventRow.position))
                    .limit(limit)
                )
            )

    def _feed(self, row: EventRow, out: _Output) -> None:
        assert row.position is not None
        self._position = row.position
        body = loads_canonical(row.envelope)["event"]
        payload = body["payload"]
        for lot_name, items, time_ms in self._triggered.pop(row.event_id, []):
            self._release(lot_name, items, time_ms)  # authorized by the chain when first seen
        if row.kind.startswith("epcis."):
            self._custody(payload, set(body["asset_ids"]), row, out)
            return
        if row.kind == "oracle.release":
            if "trigger" not in payload:
                self._release(
                    payload["lot"], payload["items"], _event_ms({"eventTime": payload["time"]})
                )
            return
        if row.kind == "document.declaration":
            self._declaration(row, body, out)
            return
        reading = reading_of_payload(payload)
        device = self.devices.get(reading.device)
        if device is None:
            return  # a device no longer registered: its old readings stay evidence only
        live = row.position > self._live_from
        if reading.time_ms > self._clock_ms:
            self._check_hours(reading.time_ms, out, live=live, trigger=row.event_id)
            self._clock_ms = reading.time_ms
        read = reading.parsed()
        if isinstance(read, TagRead) and read.direction == "out":
            self._authorize(row, list(read.tags), reading.time_ms, out, door=read.zone)
        if device.subject in self.herds:
            watch, herd = self.herds[device.subject]
            zone = offset_zone(watch.rules.utc_offset)
            first_day = datetime.fromtimestamp(reading.time_ms / 1000, tz=zone).date()
            self._open_day.setdefault(watch.rules.herd, first_day)
            self._close_days_before(watch, herd, reading.time_ms, out)
            out.alarms += [(a, watch.receipt_id, watch.pledge_id) for a in herd.observe(reading)]
        if device.subject in self.sites:
            site, monitor = self.sites[device.subject]
            zone = offset_zone(site.utc_offset)
            first = datetime.fromtimestamp((reading.time_ms - site.grace_ms) / 1000, tz=zone)
            self._open_day.setdefault(site.subject, first.date())
            self._close_site_days(
                site, monitor, reading.time_ms, out, live=live, trigger=row.event_id
            )
            try:
                found = monitor.observe(reading)
            except InvalidInput as exc:  # signed and stored, but not what its site expects
                found = [_refused(reading, row.event_id, device, exc)]
            if live:
                found = self._unless_released(site, found, reading.time_ms, row.event_id, out)
            out.alarms += [(a, *site.pledged_for(a)) for a in found]
        for lot_watch, lot in self.lots:
            if lot_watch.rules.watches(device):
                found = lot.observe(reading)
                if reading.kind == "cycle_count":
                    level, alarms = lot.stock(reading.time_ms)
                    found += alarms
                    self._stock_level(lot_watch, level, reading.time_ms, out)
                out.alarms += [(a, lot_watch.receipt_id, lot_watch.pledge_id) for a in found]

    def _custody(self, event: dict[str, Any], named: set[str], row: EventRow, out: _Output) -> None:
        """Goods shipped out with paperwork: fine once released, a breach for pledged
        goods that are not (the monitor decides). Only goods that were received or
        stored first count as leaving: the mill's shipment that brought them in does
        not. ``named``: the event's assets, with everything on a named pallet."""
        step = event.get("bizStep")
        if step in HELD_STEPS:
            self._held |= named
            return
        if step not in CUSTODY_OUT_STEPS:
            return
        leaving = named & self._held
        self._held -= leaving
        event_id = row.event_id
        self._authorize_row(event_id, sorted(leaving), _event_ms(event), out, row.position)
        for watch, lot in self.lots:
            items = sorted(leaving & watch.rules.items)
            if items:
                alarms = lot.custody_out(items, _event_ms(event), event_id)
                out.alarms += [(a, watch.receipt_id, watch.pledge_id) for a in alarms]

    # --- releases --------------------------------------------------------------------------

    def _release(self, lot_name: str, items: Sequence[str], time_ms: int) -> None:
        for lot_watch, lot in self.lots:
            if lot_watch.rules.lot == lot_name:
                lot.release(list(items), time_ms)
                self._released[lot_name].update(items)
        if lot_name in self.sites:  # a dealer's financed vehicles, released by VIN
            release = getattr(self.sites[lot_name][1], "release", None)
            if release is not None:
                for item in items:
                    with suppress(InvalidInput):  # not a vehicle the dealer has financed
                        release(item, time_ms)

    def _authorize(
        self, row: EventRow, tags: list[str], time_ms: int, out: _Output, *, door: str
    ) -> None:
        outbound = [w for w, _ in self.lots if door in w.rules.outbound_doors]
        if outbound:
            self._authorize_row(row.event_id, tags, time_ms, out, row.position)

    def _authorize_row(
        self,
        event_id: str,
        leaving: Sequence[str],
        time_ms: int,
        out: _Output,
        position: int | None,
    ) -> None:
        """Goods leaving a pledged lot: as many as the chain has released (the receipt's
        booked quantity fell by that much since the lot was pledged) and not yet
        accounted for are released now, and the release is recorded as a signed
        ``oracle.release`` event naming the event that triggered it, so a replay applies
        it at the same point. Only live events consult the chain: a replay sees the
        recorded releases, never today's chain state."""
        if self.booked is None or position is None or position <= self._live_from:
            return
        for watch, _ in self.lots:
            if watch.receipt_id is None:
                continue
            items = [
                i
                for i in leaving
                if i in watch.rules.items and i not in self._released[watch.rules.lot]
            ]
            if not items:
                continue
            released_on_chain = len(watch.rules.items) - self.booked(watch.receipt_id)
            allowance = released_on_chain - len(self._released[watch.rules.lot])
            take = items[: max(allowance, 0)]
            if take:
                self._release(watch.rules.lot, take, time_ms)
                out.releases.append((watch.rules.lot, take, time_ms, event_id, None))

    def _recorded_verdicts(self) -> set[str]:
        """The declarations a ``crosscheck.result`` of this worker's stream has judged."""
        with self.store.session() as session:
            rows = session.exec(
                select(EventRow.envelope).where(
                    EventRow.kind == "crosscheck.result", EventRow.stream == self.stream
                )
            )
            return {loads_canonical(e)["event"]["payload"]["declaration"] for e in rows}

    def _recorded_dropped(self) -> set[str]:
        """The alarm keys this worker's releases from the chain dropped."""
        dropped: set[str] = set()
        with self.store.session() as session:
            rows = session.exec(
                select(EventRow.envelope).where(
                    EventRow.kind == "oracle.release", EventRow.stream == self.stream
                )
            )
            for envelope in rows:
                onchain = loads_canonical(envelope)["event"]["payload"].get("onchain")
                if isinstance(onchain, dict) and isinstance(onchain.get("dropped"), list):
                    dropped.update(k for k in onchain["dropped"] if isinstance(k, str))
        return dropped

    def _recorded_triggers(self) -> dict[str, list[tuple[str, list[str], int]]]:
        triggered: dict[str, list[tuple[str, list[str], int]]] = {}
        with self.store.session() as session:
            rows = session.exec(
                select(EventRow.envelope).where(
                    EventRow.kind == "oracle.release", EventRow.stream == self.stream
                )
            )
            for envelope in rows:
                payload = loads_canonical(envelope)["event"]["payload"]
                if "trigger" in payload:
                    when = _event_ms({"eventTime": payload["time"]})
                    triggered.setdefault(payload["trigger"], []).append(
                        (payload["lot"], payload["items"], when)
                    )
        return triggered

    def _close_days_before(
        self, watch: HerdWatch, herd: HerdMonitor, time_ms: int, out: _Output
    ) -> None:
        zone = offset_zone(watch.rules.utc_offset)
        day = datetime.fromtimestamp(time_ms / 1000, tz=zone).date()
        opened = self._open_day.get(watch.rules.herd)
        if opened is None:
            return  # nothing observed yet: no day is open
        while opened < day:
            count, alarms = herd.close_day(opened.isoformat())
            out.alarms += [(a, watch.receipt_id, watch.pledge_id) for a in alarms]
            end = datetime.combine(opened + timedelta(days=1), datetime.min.time(), zone)
            self._daily_count(watch, count, int(end.timestamp() * 1000) - 1, out)
            opened += timedelta(days=1)
        self._open_day[watch.rules.herd] = opened

    def _daily_count(self, watch: HerdWatch, count: DailyCount, time_ms: int, out: _Output) -> None:
        event_id = f"urn:fourflow:herd-count:{watch.rules.herd}:{count.day}"
        payload = count.to_payload()
        out.counts.append(
            _Record(
                event_id,
                "livestock.daily_count",
                time_ms,
                payload,
                watch.rules.herd,
                watch.receipt_id if count.method != "none" else None,
                count.head_count,
            )
        )
        if count.method != "none":
            self.book.add(
                Observation(
                    watch.rules.herd, "head_count", time_ms, count.head_count, "head", event_id,
                    day=date.fromisoformat(count.day),
                )
            )  # fmt: skip

    def _stock_level(self, watch: LotWatch, level: StockLevel, time_ms: int, out: _Output) -> None:
        event_id = f"urn:fourflow:stock:{_short(watch.rules.lot)}:{time_ms}"
        out.counts.append(
            _Record(
                event_id,
                "warehouse.stock_level",
                time_ms,
                level.to_payload(),
                watch.rules.lot,
                watch.receipt_id if level.method != "none" else None,
                level.quantity,
            )
        )
        if level.method != "none":
            zone = offset_zone(watch.rules.utc_offset)
            self.book.add(
                Observation(
                    watch.rules.lot, "stock", time_ms, level.quantity, "items", event_id,
                    day=datetime.fromtimestamp(time_ms / 1000, tz=zone).date(),
                )
            )  # fmt: skip

    # --- sites watched day by day, and declarations ------------------------------------------

    def _close_site_days(
        self,
        site: SiteWatch,
        monitor: DailyMonitor,
        time_ms: int,
        out: _Output,
        *,
        live: bool = False,
        trigger: str | None = None,
    ) -> None:
        """Close the site's local days before ``time_ms``'s: record each as a daily event,
        and give its measures to the cross-checks."""
        zone = offset_zone(site.utc_offset)
        day = datetime.fromtimestamp((time_ms - site.grace_ms) / 1000, tz=zone).date()
        opened = self._open_day.get(site.subject)
        if opened is None:
            return
        while opened < day:
            result, alarms = monitor.close_day(opened.isoformat())
            if live:
                alarms = self._unless_released(site, alarms, time_ms, trigger, out)
            out.alarms += [(a, *site.pledged_for(a)) for a in alarms]
            end = datetime.combine(opened + timedelta(days=1), datetime.min.time(), zone)
            at = int(end.timestamp() * 1000) - 1
            event_id = f"urn:fourflow:daily:{site.kind}:{_short(site.subject)}:{opened}"
            payload = result.to_payload()
            out.counts.append(_Record(event_id, f"{site.kind}.daily", at, payload, site.subject))
            for metric, unit, measure in site.measures:
                value = measure(payload)
                if value is not None:
                    self.book.add(
                        Observation(site.subject, metric, at, value, unit, event_id, day=opened)
                    )
            opened += timedelta(days=1)
        self._open_day[site.subject] = opened

    def _declaration(self, row: EventRow, body: dict[str, Any], out: _Output) -> None:
        """A borrower's declared figure: checked now, or once the days it covers are
        closed (``_judge``). Only the watched subject's declarants may declare for it:
        a malformed declaration, or one from anyone else, is an alarm of its own
        (``declaration_invalid``, a warning) and is never judged, so it can call for no
        fact on-chain."""
        time_ms = _event_ms({"eventTime": body["event_time"]})
        try:
            declaration = Declaration.from_payload(body["payload"])
        except InvalidInput as exc:
            subject = (body.get("asset_ids") or ["urn:fourflow:unassigned"])[0]
            reason = f"cannot be checked: {exc.message}"
            out.alarms.append(
                (_invalid(row.event_id, subject, time_ms, reason, exc.field), None, None)
            )
            return
        if row.event_id in self._judged:
            return  # judged before (this is a replay): the recorded verdict stands
        refused = self._refused_declarant(declaration.subject, row.submitter)
        if refused is not None:
            alarm = _invalid(row.event_id, declaration.subject, time_ms, refused, "submitter")
            out.alarms.append((alarm, None, None))
            return
        self._declared[row.event_id] = declaration
        if self._clock_ms:
            self._judge(self._clock_ms, out)  # the devices' clock: never the document's own

    def _judge(self, now_ms: int, out: _Output) -> None:
        """Every declaration awaiting a verdict, against what the devices saw by now: a
        verdict is recorded once (a ``crosscheck.result`` event, with its alarm)."""
        for event_id, declaration in list(self._declared.items()):
            check = self.book.check(declaration, event_id, now_ms=now_ms)
            if check.status == "pending":
                continue
            del self._declared[event_id]
            self._judged.add(event_id)
            receipt, pledge = self._watch_of(declaration.subject)
            out.counts.append(
                _Record(
                    f"urn:fourflow:crosscheck:{_short(event_id)}",
                    "crosscheck.result",
                    now_ms,
                    check.to_payload(),
                    declaration.subject,
                )
            )
            alarm = check.alarm()
            if alarm is not None:
                out.alarms.append((alarm, receipt, pledge))

    def _refused_declarant(self, subject: str, submitter: str) -> str | None:
        """Why ``submitter`` may not declare figures about ``subject``, or None if it
        may: it must be one of the declarants of the herd, lot or site watching it."""
        declarants: frozenset[str] | None = None
        if subject in self.herds:
            declarants = self.herds[subject][0].declarants
        elif subject in self.sites:
            declarants = self.sites[subject][0].declarants
        else:
            for lot_watch, _ in self.lots:
                if lot_watch.rules.lot == subject:
                    declarants = lot_watch.declarants
        if declarants is None:
            return f"is not checked: {subject} is not watched by this oracle"
        if submitter.lower() in {d.lower() for d in declarants}:
            return None
        why = f"is not checked: {submitter} is not a declarant of {subject}"
        return why if declarants else f"{why} (its watch names none)"

    def _watch_of(self, subject: str) -> tuple[int | None, int | None]:
        """The receipt and pledge of the herd, lot or site ``subject``, if watched."""
        if subject in self.herds:
            watch = self.herds[subject][0]
            return watch.receipt_id, watch.pledge_id
        if subject in self.sites:
            site = self.sites[subject][0]
            return site.receipt_id, site.pledge_id
        for lot_watch, _ in self.lots:
            if lot_watch.rules.lot == subject:
                return lot_watch.receipt_id, lot_watch.pledge_id
        return None, None

    def _check_hours(
        self, time_ms: int, out: _Output, *, live: bool = False, trigger: str | None = None
    ) -> None:
        """Run the time-based rules at each hour the data clock crosses."""
        hour = 3_600_000
        if self._clock_ms and time_ms // hour > self._clock_ms // hour:
            self._check((time_ms // hour) * hour, out, live=live, trigger=trigger)

    def _unless_released(
        self,
        site: SiteWatch,
        alarms: list[Alarm],
        time_ms: int,
        trigger: str | None,
        out: _Output,
    ) -> list[Alarm]:
        """``alarms`` less those about a financed item (a dealer's VIN, pledged on its own
        receipt) that the chain has already let go: its receipt is no longer under the
        item's pledge (the dealer repaid, the bank released it). Such an item is released
        here, at ``time_ms``, and the release recorded as a signed ``oracle.release``
        naming ``trigger`` (the event whose rules found it), so a replay releases it at
        the same point and raises nothing either. Only live events come here: a replay
        sees the recorded releases, never today's chain state."""
        if self.pledge_of is None or not site.items:
            return alarms
        gone: dict[str, bool] = {}
        kept, dropped = [], []
        for alarm in alarms:
            item = alarm.subject if alarm.subject in site.items else alarm.details.get("vin")
            if isinstance(item, str) and item in site.items:
                if item not in gone:
                    gone[item] = self._let_go(*site.items[item])
                if gone[item]:
                    dropped.append(alarm.key)
                    continue
            kept.append(alarm)
        released = sorted(item for item, let_go in gone.items() if let_go)
        if released:
            self._release(site.subject, released, time_ms)
            self._dropped.update(dropped)
            onchain: dict[str, JsonValue] = {
                "receipt_ids": [site.items[item][0] for item in released],
                "pledge_ids": [site.items[item][1] for item in released],
                "state": "receipt no longer under the pledge",
                "dropped": list(dropped),
            }
            out.releases.append((site.subject, released, time_ms, trigger, onchain))
        return kept

    def _let_go(self, receipt_id: int, pledge_id: int | None) -> bool:
        """Whether the chain says ``receipt_id`` is no longer under ``pledge_id``; if it
        cannot say (a node down, a receipt it does not know), not: the alarm stands."""
        if self.pledge_of is None or pledge_id is None:
            return False
        try:
            return self.pledge_of(receipt_id) != pledge_id
        except LedgerError as exc:
            log.warning("receipt %s: cannot read its pledge on chain (%s)", receipt_id, exc)
            return False

    def _check(
        self, now_ms: int, out: _Output, *, live: bool = False, trigger: str | None = None
    ) -> None:
        for watch, herd in self.herds.values():
            out.alarms += [(a, watch.receipt_id, watch.pledge_id) for a in herd.check(now_ms)]
        for lot_watch, lot in self.lots:
            out.alarms += [
                (a, lot_watch.receipt_id, lot_watch.pledge_id) for a in lot.check(now_ms)
            ]
        for site, monitor in self.sites.values():
            found = monitor.check(now_ms)
            if live:
                found = self._unless_released(site, found, now_ms, trigger, out)
            out.alarms += [(a, *site.pledged_for(a)) for a in found]

    # --- writing -------------------------------------------------------------------------

    def _write(self, out: _Output, last_position: int | None) -> PassSummary:
        summary = PassSummary()
        bodies: list[EventBody] = []
        alarms = {
            a.key: (a, receipt, pledge)
            for a, receipt, pledge in out.alarms
            if a.key not in self._dropped  # about an item the chain had let go
        }
        existing = self._existing_alarms(list(alarms))
        fresh = {k: v for k, v in alarms.items() if k not in existing}
        for key, (alarm, _, _) in fresh.items():
            bodies.append(
                self._body(
                    alarm_event_id(key),
                    "oracle.alarm",
                    alarm.time_ms,
                    _alarm_payload(alarm),
                    alarm.evidence,
                    alarm.subject,
                )
            )
        written = self.store.stored_ids([c.event_id for c in out.counts]) if out.counts else set()
        counts = [c for c in out.counts if c.event_id not in written]
        for lot, items, time_ms, trigger, onchain in out.releases:
            bodies.append(self._release_body(lot, items, time_ms, trigger, onchain=onchain))
        for c in counts:
            bodies.append(self._body(c.event_id, c.kind, c.time_ms, c.payload, (), c.subject))

        def related(session: Session, receipts: list[Receipt]) -> None:
            for key, (alarm, receipt_id, pledge_id) in fresh.items():
                if self.state.raise_alarm(session, _alarm_row(alarm, pledge_id)):
                    summary.alarms.append(key)
                    fact = _fact_for_alarm(alarm, receipt_id, pledge_id)
                    if fact is not None and self.state.queue_fact(session, fact):
                        summary.facts.append(fact.key)
            for c in counts:
                summary.counts.append(c.event_id)
                if c.receipt_id is not None:
                    fact = FactRow(
                        key=f"quantity:{c.event_id}",
                        pledge_id=0,
                        receipt_id=c.receipt_id,
                        kind="quantity",
                        quantity=c.quantity,
                        observed_at=c.time_ms // 1000,
                        event_id=c.event_id,
                        created_ms=c.time_ms,
                    )
                    if self.state.queue_fact(session, fact):
                        summary.facts.append(fact.key)
            if last_position is not None:
                OracleState.advance(session, CURSOR, last_position)

        if bodies:
            submission = sign_submission(
                bodies, private_key=self.gateway.key, domain=self.intake.domain
            )
            self.intake.submit(submission, same_id_is_duplicate=True, related=related)
        elif last_position is not None or fresh:
            with self.store.session() as session:
                related(session, [])
                session.commit()
        for key in summary.alarms:
            log.info("alarm %s", key)
        return summary

    def _existing_alarms(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        with self.store.session() as session:
            return set(session.exec(select(AlarmRow.key).where(col(AlarmRow.key).in_(keys))))

    def _body(
        self,
        event_id: str,
        kind: str,
        time_ms: int,
        payload: dict[str, Any],
        evidence: Sequence[str],
        subject: str,
    ) -> EventBody:
        assets = [subject] if subject else []
        return EventBody(
            kind=kind,
            schema_version=1,
            stream=self.stream,
            event_id=event_id,
            asset_ids=assets or ["urn:fourflow:unassigned"],
            event_time=utc_text(time_ms),
            payload=payload,
            submitter=self.gateway.address,
        )


def _event_ms(event: dict[str, Any]) -> int:
    text = str(event["eventTime"]).replace("Z", "+00:00")
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _alarm_payload(alarm: Alarm) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        json.dumps(
            {
                "key": alarm.key,
                "rule": alarm.rule,
                "subject": alarm.subject,
                "severity": alarm.severity,
                "time": utc_text(alarm.time_ms),
                "message": alarm.message,
                "evidence": list(alarm.evidence),
                "details": alarm.details,
                "fact": alarm.fact,
            },
            default=str,
        )
    )
    return payload


def _refused(reading: Reading, event_id: str, device: Device, exc: InvalidInput) -> Alarm:
    """A stored reading its site's rules cannot take (a telemetry reading off its schema,
    a value out of its range): kept as evidence, and said."""
    return Alarm(
        key=f"reading_refused:{event_id}",
        rule="reading_refused",
        subject=device.subject,
        severity="warning",
        time_ms=reading.time_ms,
        message=f"{device.id}: reading {reading.seq} cannot be used: {exc.message}",
        evidence=(event_id,),
        details={"device": device.id, "code": exc.code, "field": exc.field},
    )


def _alarm_row(alarm: Alarm, pledge_id: int | None) -> AlarmRow:
    return AlarmRow(
        key=alarm.key,
        rule=alarm.rule,
        subject=alarm.subject,
        severity=alarm.severity,
        opened_ms=alarm.time_ms,
        message=alarm.message,
        evidence=json.dumps(list(alarm.evidence)),
        details=json.dumps(alarm.details, default=str),
        fact=alarm.fact,
        pledge_id=pledge_id,
        record_event_id=alarm_event_id(alarm.key),
    )


# facts about the goods behind a receipt, each citing the alarm's signed event; the
# contract freezes the receipt's pledge on each (oracles.facts.FACT_KINDS)
_ALARM_FACTS = frozenset({"unauthorized_movement", "tag_removal", "covenant_breach"})


def _invalid(event_id: str, subject: str, time_ms: int, reason: str, field: str | None) -> Alarm:
    """The warning that declaration ``event_id`` is not judged, and why (no fact)."""
    return Alarm(
        key=f"declaration_invalid:{event_id}",
        rule="declaration_invalid",
        subject=subject,
        severity="warning",
        time_ms=time_ms,
        message=f"declaration {event_id} {reason}",
        evidence=(event_id,),
        details={"field": field},
    )


def _fact_for_alarm(alarm: Alarm, receipt_id: int | None, pledge_id: int | None) -> FactRow | None:
    """The on-chain fact an alarm calls for; a count below the minimum is reported by
    the count itself (its quantity fact), so it needs none of its own. A broken
    performance covenant (low utilization, output or revenue, overstated books) is a
    ``covenant_breach`` fact about the site's receipt, like a movement or a removed tag."""
    if alarm.fact in _ALARM_FACTS and receipt_id is not None:
        return FactRow(
            key=f"{alarm.fact}:{alarm.key}",
            pledge_id=pledge_id or 0,
            receipt_id=receipt_id,
            kind=alarm.fact,
            quantity=0,
            observed_at=alarm.time_ms // 1000,
            event_id=alarm_event_id(alarm.key),
            created_ms=alarm.time_ms,
        )
    if alarm.fact == "stale_data" and pledge_id is not None:
        return FactRow(
            key=f"stale_data:{alarm.key}",
            pledge_id=pledge_id,
            receipt_id=receipt_id or 0,
            kind="stale_data",
            observed_at=alarm.time_ms // 1000,
            event_id=alarm_event_id(alarm.key),
            created_ms=alarm.time_ms,
        )
    return None
