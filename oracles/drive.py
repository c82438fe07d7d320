"""Driving a simulated scenario into an oracle, in the order things happened.

``steps`` merges a scenario's readings, EPCIS documents and on-chain releases into one
time-ordered sequence of chunks. Two ways to deliver them:

    feed_in_process   straight into an OracleService's ingest and capture, running the
                      rules after each chunk on the simulated clock (the demo, tests)
    publish           as real devices would: readings over MQTT to each device's topic,
                      EPCIS documents over HTTP to a server's /v1/epcis/capture
                      (`fourflow simulate … --mqtt`, load and fault tests)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import JsonValue

from ledger.errors import InvalidInput
from oracles.mqtt import MqttPublisher
from oracles.readings import Reading
from oracles.service import OracleService
from oracles.simulate import Scenario

__all__ = ["DriveSummary", "Release", "Step", "feed_in_process", "publish", "steps"]

Progress = Callable[[int, int], None]  # (readings done, readings in all)
# the lender's on-chain release of (items, simulated time): what the record cites of it
Release = Callable[[list[str], int], Mapping[str, JsonValue]]


@dataclass(frozen=True)
class Step:
    time_ms: int
    readings: list[Reading] = field(default_factory=list)
    document: dict[str, Any] | None = None
    release: list[str] | None = None


@dataclass
class DriveSummary:
    readings: int = 0
    documents: int = 0
    releases: int = 0
    quarantined: int = 0
    alarms: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


def _document_ms(document: dict[str, Any]) -> int:
    times = [str(e["eventTime"]) for e in document["epcisBody"]["eventList"]]
    return max(
        int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000) for t in times
    )


def steps(scenario: Scenario, *, chunk: int = 500) -> Iterator[Step]:
    """Readings in chunks of at most ``chunk``, cut wherever a document or release falls."""
    marks: list[Step] = [Step(_document_ms(d), document=d) for d in scenario.documents]
    marks += [Step(ms, release=list(items)) for ms, items in scenario.releases]
    marks.sort(key=lambda s: s.time_ms)
    pending: list[Reading] = []
    for reading in scenario.readings:
        while marks and marks[0].time_ms <= reading.time_ms:
            if pending:
                yield Step(pending[-1].time_ms, readings=pending)
                pending = []
            yield marks.pop(0)
        pending.append(reading)
        if len(pending) >= chunk:
            yield Step(reading.time_ms, readings=pending)
            pending = []
    if pending:
        yield Step(pending[-1].time_ms, readings=pending)
    yield from marks


def feed_in_process(
    scenario: Scenario,
    service: OracleService,
    *,
    chunk: int = 500,
    progress: Progress | None = None,
    record_releases: bool = True,
    release: Release | None = None,
) -> DriveSummary:
    """Deliver ``scenario`` to ``service`` and run its rules as the simulated clock moves;
    ends with a rules pass at the scenario's end (days close, silences are noticed).
    ``record_releases``: tell the rules of the scenario's releases directly; without it
    they learn of them from the chain (a lot's booked quantity, a vehicle's receipt no
    longer under its pledge). ``release``: make each release on-chain first (the
    lender's part); its record, if any, cites what it returns."""
    summary = DriveSummary()
    lot = scenario.subject.get("dealer") or scenario.subject.get("lot")  # who releases
    total = len(scenario.readings)
    for step in steps(scenario, chunk=chunk):
        if step.readings:
            result = service.ingest.ingest(
                [r.model_dump(mode="json") for r in step.readings], source=f"sim:{scenario.name}"
            )
            summary.readings += len(step.readings)
            summary.quarantined += len(result.quarantined)
        elif step.document is not None:
            raw = json.dumps(step.document).encode()
            service.capture.capture(
                step.document,
                document_sha256=hashlib.sha256(raw).hexdigest(),
                now_ms=step.time_ms,
                captured_by=f"sim:{scenario.name}",
            )
            summary.documents += 1
        elif step.release is not None and lot is not None:
            onchain = release(step.release, step.time_ms) if release is not None else None
            if record_releases:
                service.rules.record_release(
                    lot=lot, items=step.release, time_ms=step.time_ms, onchain=onchain
                )
            summary.releases += 1
        _rules(service, summary, now_ms=None)
        if progress is not None and step.readings:
            progress(summary.readings, total)
    _rules(service, summary, now_ms=scenario.end_ms)
    return summary


def _rules(service: OracleService, summary: DriveSummary, *, now_ms: int | None) -> None:
    while True:
        found = service.rules.run_once(now_ms=now_ms)
        summary.alarms += found.alarms
        summary.counts += found.counts
        summary.facts += found.facts
        if found.events == 0:
            return


def publish(
    scenario: Scenario,
    *,
    publisher: MqttPublisher,
    tenant: str,
    api: str,
    token: str,
    progress: Progress | None = None,
    chunk: int = 100,
) -> DriveSummary:
    """Send ``scenario`` as devices would: each device's readings over MQTT (QoS 1, in
    arrays of up to ``chunk``), EPCIS documents over HTTP to ``api`` with the capture
    client's ``token``. Releases are the
    lender's business on-chain; they are counted, not sent."""
    summary = DriveSummary()
    sites = {sim.device.id: sim.device.site for sim in scenario.devices}
    total = len(scenario.readings)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api, timeout=30.0, headers=headers) as http:
        for step in steps(scenario, chunk=chunk):
            if step.readings:
                by_device: dict[str, list[Reading]] = {}
                for reading in step.readings:
                    by_device.setdefault(reading.device, []).append(reading)
                for device, readings in by_device.items():
                    publisher.publish_reading(tenant=tenant, site=sites[device], reading=readings)
                summary.readings += len(step.readings)
                if progress is not None:
                    progress(summary.readings, total)
            elif step.document is not None:
                answer = http.post("/v1/epcis/capture", json=step.document)
                if answer.status_code != 202:
                    raise InvalidInput(
                        f"capture refused ({answer.status_code}): {answer.text[:300]}"
                    )
                summary.documents += 1
            elif step.release is not None:
                summary.releases += 1
    return summary
