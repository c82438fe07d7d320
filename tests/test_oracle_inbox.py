"""Devices → Mosquitto → the oracle's inbox → the store, with the real broker and chain.

Each test has its own tenant and subscriber client id; every wait is bounded.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account import Account

from ledger.oracle_state import OracleState
from ledger.runtime import DevKeys, Runtime
from oracles.custody import steel_coil_document
from oracles.epcis.capture import EpcisCapture
from oracles.inbox import mqtt_handler
from oracles.ingest import ReadingIngest
from oracles.mqtt import MqttPublisher, MqttSettings, MqttSubscriber, topic_for
from oracles.readings import Device, Reading, reading_event_id, sign_reading

WAIT = 8.0
SENSOR_KEY = Account.from_key(b"\x44" * 32)
SITE = "wh-shanghai-3"
SENSOR = Device(
    id="urn:fourflow:device:wh-shanghai-3:climate-bay-3",
    address=SENSOR_KEY.address,
    kinds=frozenset({"climate"}),
    site=SITE,
    subject="bay-3",
    heartbeat_s=900,
)


def climate(seq: int, temperature: float = 18.5) -> Reading:
    return sign_reading(
        {
            "device": SENSOR.id,
            "seq": seq,
            "time": f"2026-11-20T06:{seq % 60:02d}:00.000+08:00",
            "kind": "climate",
            "data": {"zone": "bay-3", "temperature": temperature, "humidity": 55},
        },
        private_key=SENSOR_KEY.key,
    )


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def oracle(dev: tuple[Runtime, DevKeys]) -> Iterator[dict[str, Any]]:
    runtime, keys = dev
    tenant = f"t{uuid.uuid4().hex[:10]}"
    state = OracleState(runtime.store)
    ingest = ReadingIngest(
        store=runtime.store,
        intake=runtime.intake,
        gateway=keys.submitters[0],
        devices={SENSOR.id: SENSOR},
        tenant=tenant,
        state=state,
    )
    capture = EpcisCapture(store=runtime.store, intake=runtime.intake, gateway=keys.submitters[0])
    settings = MqttSettings(client_id=f"oracle-{tenant}", tenant=tenant)
    subscriber = MqttSubscriber(settings, mqtt_handler(ingest=ingest, capture=capture, state=state))
    subscriber.start()
    assert subscriber.wait_subscribed(WAIT)
    with MqttPublisher(MqttSettings(client_id=f"device-{tenant}")) as publisher:
        yield {
            "tenant": tenant,
            "publisher": publisher,
            "subscriber": subscriber,
            "state": state,
            "runtime": runtime,
        }
    subscriber.stop()
    from tests.test_mqtt import _forget

    _forget(settings, settings.client_id)


def test_readings_and_documents_published_by_devices_are_stored(oracle: dict[str, Any]) -> None:
    runtime, publisher, tenant = oracle["runtime"], oracle["publisher"], oracle["tenant"]
    publisher.publish_reading(tenant=tenant, site=SITE, reading=[climate(1), climate(2)])
    publisher.publish_reading(tenant=tenant, site=SITE, reading=climate(1))  # redelivered
    publisher.publish_document(tenant=tenant, site=SITE, document=steel_coil_document(coils=2))
    until(lambda: runtime.store.counts()["events"] == 7)
    row = runtime.store.event(reading_event_id(SENSOR.id, 2))
    assert row.kind == "reading.climate" and row.stream == f"{tenant}.{SITE}.readings"
    assert json.loads(row.envelope)["event"]["payload"]["data"]["temperature"] == 18.5
    until(lambda: oracle["subscriber"].counts.acked == 3)
    assert oracle["state"].quarantined() == []


def test_bad_messages_are_quarantined_and_the_good_ones_still_land(oracle: dict[str, Any]) -> None:
    runtime, publisher, tenant = oracle["runtime"], oracle["publisher"], oracle["tenant"]
    topic = topic_for(tenant=tenant, site=SITE, channel="readings", device=SENSOR.id)
    publisher.publish(topic, b"{not json")
    forged = {
        **climate(3).model_dump(mode="json"),
        "data": {"zone": "bay-3", "temperature": 4.0, "humidity": 55},
    }
    publisher.publish(topic, json.dumps([forged, climate(4).model_dump(mode="json")]).encode())
    other = topic_for(
        tenant=tenant, site=SITE, channel="readings", device="urn:fourflow:device:x:y"
    )
    publisher.publish(other, json.dumps(climate(5).model_dump(mode="json")).encode())
    publisher.publish(
        topic_for(tenant=tenant, site=SITE, channel="epcis"),
        json.dumps({"type": "EPCISDocument"}).encode(),
    )
    until(lambda: len(oracle["state"].quarantined()) == 4)
    until(lambda: oracle["subscriber"].counts.acked == 4)
    reasons = sorted(q.reason for q in oracle["state"].quarantined())
    assert any(r.startswith("unreadable message") for r in reasons)
    assert any("not by the device's registered key" in r for r in reasons)
    assert any("not from urn:fourflow:device:x:y" in r for r in reasons)
    assert any("eventList" in r for r in reasons)
    assert runtime.store.counts()["events"] == 1  # climate(4) only
    assert runtime.store.stored_ids([reading_event_id(SENSOR.id, 4)])
