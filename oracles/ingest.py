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

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import ValidationError

from ledger.canonical import event_digest
from ledger.errors import InvalidInput, TooLarge
from ledger.intake import Intake
from ledger.models import EventBody
from ledger.oracle_state import OracleState
from ledger.signing import sign_submission
from ledger.store import Store
from oracles.files import FileReading, SignedFile
from oracles.readings import Device, Reading, reading_event_id

__all__ = ["FILE_SIGNED", "IngestResult", "ReadingIngest", "assets_of", "reading_of_payload"]

# The ``signature`` a file-derived reading carries when rebuilt from its stored payload:
# its signature is the file's (payload["provenance"]), not a per-reading one.
FILE_SIGNED = "0x" + "00" * 65
MAX_FILE_BYTES = 8 * 1024 * 1024

MAX_READINGS = 5_000  # per call; a transport splits larger batches
MAX_KEPT = 100  # refusals kept in the quarantine per call (all are answered)
MAX_KEPT_BYTES = 16_384  # of each refused input
MAX_AHEAD_MS = 5 * 60_000  # a reading from later than the ledger's clock plus this is refused


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)  # event ids
    duplicates: list[str] = field(default_factory=list)
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    kept: list[tuple[str, str, str]] = field(default_factory=list, repr=False)  # to write


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def reading_of_payload(payload: dict[str, Any]) -> Reading:
    """The Reading a stored ``reading.*`` payload holds: device-signed as stored, or
    file-derived (its provenance names the signed file that vouches for it)."""
    if "provenance" in payload:
        fields = {k: payload[k] for k in ("device", "seq", "time", "kind", "data")}
        return Reading.model_validate({**fields, "signature": FILE_SIGNED})
    return Reading.model_validate(payload)


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
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or intake.registry.chain.now_ms  # unix ms
        self._now_ms = 0  # the clock at the start of the current ingest call
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
        self._now_ms = self.clock()
        if len(items) > MAX_READINGS:
            raise TooLarge(
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
        self._store(bodies, result, source=source)
        return result

    def _store(
        self,
        bodies: dict[str, tuple[int, EventBody]],
        result: IngestResult,
        *,
        source: str,
        first: EventBody | None = None,
    ) -> None:
        """Sign and store ``bodies`` (and ``first``) as one submission: a reading stored
        before with the same content is a duplicate, with other content a replayed seq
        (quarantined); then write the call's refusals."""
        stored = self.store.stored_ids(list(bodies))
        fresh = [] if first is None else [first]
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
            receipts = self.intake.submit(submission, same_id_is_duplicate=first is not None)
            for receipt in receipts[0 if first is None else 1 :]:
                (result.duplicates if receipt.duplicate else result.accepted).append(
                    receipt.event_id
                )
        self._keep_refusals(result, source)

    def ingest_file(
        self, file: SignedFile, readings: Sequence[FileReading], *, name: str
    ) -> IngestResult:
        """Store a signed file and the readings taken from it.

        The file's signer must be the registered key of every device its rows name (a
        reader exports and signs its own log); rows of other devices are quarantined.
        The file itself is stored as a ``file.signed`` event (bytes included, so an
        auditor can recompute the digest and the signature), each reading as a
        ``reading.<kind>`` event whose payload carries its provenance.
        """
        if len(file.data) > MAX_FILE_BYTES:
            raise InvalidInput(
                f"{name} is {len(file.data):,} bytes; the limit is {MAX_FILE_BYTES:,}",
                code="file_too_large",
            )
        result = IngestResult()
        bodies: dict[str, tuple[int, EventBody]] = {}
        for index, row in enumerate(readings):
            where = f"file:{name}:{row.line}"
            device = self.devices.get(str(row.reading["device"]))
            try:
                if device is None:
                    raise InvalidInput(f"{row.reading['device']} is not a registered device")
                if device.address != file.signer:
                    raise InvalidInput(
                        f"{name} is signed by {file.signer}, not by {device.id}'s key {device.address}"
                    )
                reading = reading_of_payload(row.to_json())
                if reading.kind not in device.kinds and reading.kind != "heartbeat":
                    raise InvalidInput(
                        f"{device.id} is not registered for {reading.kind!r} readings"
                    )
                body = self._wrap(reading, device, row.to_json())
            except (ValidationError, InvalidInput) as exc:
                self._refuse(result, index, where, _reason(exc), row.to_json())
                continue
            bodies.setdefault(body.event_id, (index, body))
        self._store(bodies, result, source=f"file:{name}", first=self._file_body(file, name))
        return result

    def _file_body(self, file: SignedFile, name: str) -> EventBody:
        return EventBody(
            kind="file.signed",
            schema_version=1,
            stream=f"{self.tenant}.files".lower().replace("_", "-"),
            event_id=f"urn:fourflow:file:{file.sha256.hex()}",
            asset_ids=[f"urn:fourflow:file:{file.sha256.hex()}"],
            event_time=_now_iso(),
            payload={
                "name": name[-200:],
                "sha256": file.sha256.hex(),
                "signer": file.signer,
                "signature": file.signature,
                "size": len(file.data),
                "content_base64": base64.b64encode(file.data).decode("ascii"),
            },
            submitter=self.gateway.address,
        )

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
        if reading.time_ms > self._now_ms + MAX_AHEAD_MS:
            raise InvalidInput(
                f"reading time {reading.time} is ahead of the ledger's clock; is the "
                f"device's clock set?",
                field="time",
                code="from_future",
            )
        return self._wrap(reading, device, reading.model_dump(mode="json"))

    def _wrap(self, reading: Reading, device: Device, payload: dict[str, Any]) -> EventBody:
        return EventBody(
            kind=f"reading.{reading.kind}",
            schema_version=1,
            stream=self.stream_for(device),
            event_id=reading_event_id(reading.device, reading.seq),
            asset_ids=assets_of(reading, device),
            event_time=reading.time,
            payload=payload,
            submitter=self.gateway.address,
        )

    def _refuse(self, result: IngestResult, index: int, source: str, reason: str, raw: Any) -> None:
        """Answer the refusal, and keep the first MAX_KEPT of a call's refusals (with a
        count of the rest), written together at the end of the call: a batch of garbage
        costs one transaction and a bounded amount of disk."""
        result.quarantined.append((index, reason))
        if len(result.quarantined) > MAX_KEPT:
            return
        try:
            text = json.dumps(raw, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = repr(raw)[:65_536]
        result.kept.append((f"{source}[{index}]", reason, text[:MAX_KEPT_BYTES]))

    def _keep_refusals(self, result: IngestResult, source: str) -> None:
        rows = list(result.kept)
        if len(result.quarantined) > MAX_KEPT:
            more = len(result.quarantined) - MAX_KEPT
            rows.append((source, f"and {more} more refused reading(s) like those above", ""))
        if rows:
            self.state.quarantine_many(rows)
        result.kept.clear()
