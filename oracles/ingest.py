"""Taking device readings in, from any transport (HTTP, MQTT, files).

Each reading is checked (shape, registered device, kind allowed, device signature),
then wrapped in a fourflow event signed by the gateway key and stored durably:

    kind       reading.<kind>                  e.g. reading.collar
    stream     <tenant>.<site>.readings        one anchoring stream per site
    event_id   <device>;seq=<seq>              (oracles.readings.reading_event_id)
    asset_ids  the device's subject (herd, warehouse) and every tag / lot it names
    payload    the reading exactly as the device signed it, signature included
    submitter  the gateway

A reading that fails a check is quarantined with the reason and the raw input, and the
rest of the batch goes on: one bad collar never stops a farm. A redelivered reading
(same device and seq, same content) is a duplicate; the same seq with other content is
quarantined as a replay. Only a store or chain failure raises, so a transport that
acknowledges after ``ingest`` returns never loses a reading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import ValidationError

from ledger.canonical import event_digest
from ledger.errors import InvalidInput
from ledger.intake import Intake
from ledger.models import EventBody
from ledger.oracle_state import OracleState
from ledger.signing import sign_submission
from ledger.store import Store
from oracles.readings import Device, Reading, reading_event_id

__all__ = ["IngestResult", "ReadingIngest", "assets_of"]

MAX_READINGS = 5_000  # per call; a transport splits larger batches


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)  # event ids
    duplicates: list[str] = field(default_factory=list)
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)


def assets_of(reading: Reading, device: Device) -> list[str]:
    """The subject and every tag or lot a reading names, each once, at most 1,000."""
    data = reading.data
    named: list[Any] = [device.subject]
    for key in ("tag", "lot", "zone", "pen"):
        if isinstance(data.get(key), str):
            named.append(data[key])
    tags = data.get("tags")
    if isinstance(tags, list):
        named.extend(tags)
    return list(dict.fromkeys(v for v in named if isinstance(v, str) and v))[:1_000]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reading"
        return f"{where}: {first['msg']}"
    if isinstance(exc, InvalidInput):
        return exc.message
    return str(exc)


class ReadingIngest:
    def __init__(
        self,
        *,
        store: Store,
        intake: Intake,
        gateway: LocalAccount,
        devices: Mapping[str, Device],
        tenant: str,
        state: OracleState | None = None,
    ) -> None:
        self.store = store
        self.intake = intake
        self.gateway = gateway
        self.devices = dict(devices)
        self.tenant = tenant
        self.state = state or OracleState(store)

    def stream_for(self, device: Device) -> str:
        return f"{self.tenant}.{device.site}.readings".lower().replace("_", "-")

    def ingest(self, raw: Any, *, source: str) -> IngestResult:
        """Check, sign and store a reading or a list of readings (see module docs)."""
        items = raw if isinstance(raw, list) else [raw]
        result = IngestResult()
        if len(items) > MAX_READINGS:
            raise InvalidInput(
                f"{len(items)} readings in one batch; the limit is {MAX_READINGS}",
                code="too_many_readings",
            )
        bodies: dict[str, tuple[int, EventBody]] = {}
        for index, item in enumerate(items):
            try:
                body = self._body(item)
            except (ValidationError, InvalidInput) as exc:
                self._refuse(result, index, source, _reason(exc), item)
                continue
            if body.event_id in bodies:
                continue  # the same reading twice in one batch
            bodies[body.event_id] = (index, body)
        stored = self.store.stored_ids(list(bodies))
        fresh = []
        for event_id, (index, body) in bodies.items():
            if event_id not in stored:
                fresh.append(body)
            elif (
                self.store.event(event_id).digest
                == event_digest(body.model_dump(mode="json")).hex()
            ):
                result.duplicates.append(event_id)
            else:
                reason = f"{event_id} was already stored with other content (a replayed seq)"
                self._refuse(result, index, source, reason, body.payload)
        if fresh:
            submission = sign_submission(
                fresh, private_key=self.gateway.key, domain=self.intake.domain
            )
            for receipt in self.intake.submit(submission):
                (result.duplicates if receipt.duplicate else result.accepted).append(
                    receipt.event_id
                )
        return result

    def _body(self, item: Any) -> EventBody:
        if not isinstance(item, dict):
            raise InvalidInput("a reading is a JSON object")
        reading = Reading.model_validate(item)
        device = self.devices.get(reading.device)
        if device is None:
            raise InvalidInput(
                f"{reading.device} is not a registered device",
                field="device",
                code="unknown_device",
            )
        device.check(reading)
        return EventBody(
            kind=f"reading.{reading.kind}",
            schema_version=1,
            stream=self.stream_for(device),
            event_id=reading_event_id(reading.device, reading.seq),
            asset_ids=assets_of(reading, device),
            event_time=reading.time,
            payload=reading.model_dump(mode="json"),
            submitter=self.gateway.address,
        )

    def _refuse(self, result: IngestResult, index: int, source: str, reason: str, raw: Any) -> None:
        result.quarantined.append((index, reason))
        try:
            text = json.dumps(raw, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(raw)
        self.state.quarantine(source=f"{source}[{index}]", reason=reason, raw=text)
