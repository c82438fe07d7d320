"""oracles.mqtt against the real Mosquitto broker at 127.0.0.1:1883.

Every test has its own tenant and client ids (uuid), waits at most a few seconds for
anything, and removes the persistent sessions and retained messages it made.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion

import oracles.mqtt
from oracles.mqtt import (
    MqttError,
    MqttPublisher,
    MqttSettings,
    MqttSubscriber,
    TopicParts,
    parse_topic,
    topic_for,
)
from oracles.readings import Reading, sign_reading
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
DEVICE_KEY = "0x" + "11" * 32  # a throwaway test key
WAIT = 5.0  # seconds; any single wait in these tests


def _reading(device: str, seq: int) -> Reading:
    return sign_reading(
        {
            "device": device,
            "seq": seq,
            "time": "2026-11-20T06:00:00.000+08:00",
            "kind": "climate",
            "data": {"zone": "bay-3", "temperature": 4.5, "humidity": 61},
        },
        private_key=DEVICE_KEY,
    )


def _until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (the handler returns before the subscriber counts its ack)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _forget(settings: MqttSettings, client_id: str) -> None:
    """End the broker's session for ``client_id``: connect once with a clean session."""
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(settings.host, settings.port)
    client.loop_start()
    deadline = time.monotonic() + WAIT
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def _retained(settings: MqttSettings, topic: str) -> bytes | None:
    """The message retained on ``topic`` (None if there is none)."""
    got: queue.Queue[bytes] = queue.Queue()
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex}")

    def on_message(_c: Client, _u: Any, message: MQTTMessage) -> None:
        got.put(bytes(message.payload))

    client.on_message = on_message
    client.connect(settings.host, settings.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        return got.get(timeout=1.0)
    except queue.Empty:
        return None
    finally:
        client.disconnect()
        client.loop_stop()


class Recorder:
    """A handler that records what it got; ``fail_first`` raises on the first delivery."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: list[tuple[str, bytes]] = []
        self.quarantined: list[tuple[str, str]] = []
        self._got: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.calls.append((topic, payload))
        if len(self.calls) <= self.fail_first:
            raise RuntimeError("the store is down (test)")
        try:
            json.loads(payload)
        except ValueError as exc:  # bad content: quarantined, and the message is acked
            self.quarantined.append((topic, str(exc)))
        self._got.put((topic, payload))

    def next(self) -> tuple[str, bytes]:
        return self._got.get(timeout=WAIT)


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    """A tenant of its own, subscriber settings, and cleanup of sessions and retained
    messages afterwards."""
    tag = uuid.uuid4().hex[:12]
    settings = MqttSettings(client_id=f"fourflow-test-{tag}", tenant=f"t{tag}", timeout_s=WAIT)
    made: list[MqttSubscriber] = []
    retained: list[str] = []

    def subscriber(handler: Callable[[str, bytes], None], **kw: Any) -> MqttSubscriber:
        sub = MqttSubscriber(settings, handler, retry_initial_s=0.1, retry_max_s=0.5, **kw)
        made.append(sub)
        sub.start()
        assert sub.wait_subscribed(WAIT), "the subscriber did not get subscribed"
        return sub

    yield {
        "settings": settings,
        "tenant": settings.tenant,
        "subscriber": subscriber,
        "retained": retained,
    }
    for sub in made:
        sub.stop(WAIT)
    _forget(settings, settings.client_id)
    if retained:
        with MqttPublisher(settings) as publisher:
            for topic in retained:
                publisher.publish(topic, b"", retain=True)  # an empty retained message clears it


# --- topics ------------------------------------------------------------------------------


def test_topics_round_trip_through_odd_device_ids() -> None:
    for device in ("urn:fourflow:device:ranch-7:collar-0042", "a:b/c+d#e%f", "x:%25%2F", "x:~!"):
        for channel in ("readings", "status"):
            topic = topic_for(tenant="acme", site="ranch-7", channel=channel, device=device)
            assert topic.count("/") == 4 and not set("+#") & set(topic)
            assert parse_topic(topic) == TopicParts("acme", "ranch-7", channel, device)
    assert topic_for(tenant="acme", site="wh_3", channel="epcis") == "fourflow/acme/wh_3/epcis"
    assert parse_topic("fourflow/acme/wh_3/epcis") == TopicParts("acme", "wh_3", "epcis")
    assert topic_for(tenant="a", site="b", channel="readings", device="a:b/c+d#e%f") == (
        "fourflow/a/b/a:b%2Fc%2Bd%23e%25f/readings"
    )


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("other/acme/s/d:1/readings", "does not start with fourflow/"),
        ("fourflow/acme/s/d:1", "is neither"),
        ("fourflow/acme/s/d:1/readings/extra", "is neither"),
        ("fourflow/acme/s/d:1/telemetry", "is neither"),
        ("fourflow/acme/s/+/readings", "wildcard"),
        ("fourflow/#", "wildcard"),
        ("fourflow/Acme/s/d:1/readings", "tenant 'Acme'"),
        ("fourflow//s/d:1/readings", "tenant ''"),
        ("fourflow/acme/s.1/epcis", "site 's.1'"),
        ("fourflow/acme/s//readings", "device level is empty"),
        ("fourflow/acme/s/d:%41/readings", "not one of %25"),
        ("fourflow/acme/s/d:%2/readings", "not one of %25"),
        ("fourflow/acme/s/d:%2f/readings", "not one of %25"),  # one spelling per device
        ("fourflow/acme/s/d 1/status", "printable ASCII"),
        ("", "does not start with fourflow/"),
    ],
)
def test_parse_topic_refuses(topic: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^topic") as caught:
        parse_topic(topic)
    assert message in str(caught.value)


def test_topic_for_refuses() -> None:
    with pytest.raises(ValueError, match="needs a device"):
        topic_for(tenant="a", site="b", channel="readings")
    with pytest.raises(ValueError, match="takes no device"):
        topic_for(tenant="a", site="b", channel="epcis", device="d:1")
    with pytest.raises(ValueError, match="printable ASCII"):
        topic_for(tenant="a", site="b", channel="status", device="")
    with pytest.raises(ValueError, match="site"):
        topic_for(tenant="a", site="B", channel="epcis")


# --- settings ----------------------------------------------------------------------------


def test_settings_from_env() -> None:
    assert MqttSettings.from_env({}) == MqttSettings()
    assert not MqttSettings().tls
    env = {
        "FOURFLOW_MQTT_HOST": "broker.example",
        "FOURFLOW_MQTT_USERNAME": "oracle",
        "FOURFLOW_MQTT_PASSWORD": "s3cret",
        "FOURFLOW_MQTT_TLS_CA": "/etc/ca.pem",
        "FOURFLOW_MQTT_CLIENT_ID": "oracle-1",
        "FOURFLOW_MQTT_TENANT": "acme",
        "FOURFLOW_MQTT_TLS_CERT": "",  # empty is unset
    }
    settings = MqttSettings.from_env(env)
    assert (settings.host, settings.port, settings.tls) == ("broker.example", 8883, True)
    assert (settings.username, settings.password, settings.tls_cert) == ("oracle", "s3cret", None)
    assert (settings.client_id, settings.tenant) == ("oracle-1", "acme")
    assert "s3cret" not in repr(settings)
    assert MqttSettings.from_env({**env, "FOURFLOW_MQTT_PORT": "1884"}).port == 1884
    with pytest.raises(ValueError, match="FOURFLOW_MQTT_PORT must be a number"):
        MqttSettings.from_env({"FOURFLOW_MQTT_PORT": "mqtt"})
    with pytest.raises(ValueError, match="password needs a username"):
        MqttSettings(password="x")
    with pytest.raises(ValueError, match="key needs its certificate"):
        MqttSettings(tls_key="/k.pem")
    with pytest.raises(ValueError, match="tenant"):
        MqttSettings(tenant="Acme")


def test_missing_tls_files_are_a_clear_error() -> None:
    publisher = MqttPublisher(MqttSettings(tls_ca="/nonexistent/ca.pem", timeout_s=1))
    with pytest.raises(MqttError, match="cannot load the MQTT TLS files"):
        publisher.connect()


def test_public_names() -> None:
    assert sorted(oracles.mqtt.__all__) == [
        "DEFAULT_SUBSCRIPTIONS",
        "Handler",
        "MqttError",
        "MqttPublisher",
        "MqttSettings",
        "MqttSubscriber",
        "SubscriberCounts",
        "TopicParts",
        "parse_topic",
        "topic_for",
    ]


# --- against the broker -------------------------------------------------------------------


def test_round_trip_readings_and_documents(world: dict[str, Any]) -> None:
    tenant, settings = world["tenant"], world["settings"]
    recorder = Recorder()
    sub = world["subscriber"](recorder)
    device = "urn:fourflow:device:wh-3:climate/7"  # a '/' in a device id
    one, two, three = (_reading(device, seq) for seq in (1, 2, 3))
    document = {"type": "EPCISDocument", "schemaVersion": "2.0", "epcisBody": {"eventList": []}}
    with MqttPublisher(settings) as publisher:
        publisher.publish_reading(tenant=tenant, site="wh-3", reading=one)
        publisher.publish_reading(tenant=tenant, site="wh-3", reading=[two, three])
        publisher.publish_document(tenant=tenant, site="wh-3", document=document)
        with pytest.raises(ValueError, match="readings of one device"):
            publisher.publish_reading(
                tenant=tenant, site="wh-3", reading=[one, _reading("urn:x:other", 1)]
            )

    topic, payload = recorder.next()
    assert parse_topic(topic) == TopicParts(tenant, "wh-3", "readings", device)
    assert Reading.model_validate(json.loads(payload)) == one
    topic, payload = recorder.next()
    assert [Reading.model_validate(r) for r in json.loads(payload)] == [two, three]
    topic, payload = recorder.next()
    assert parse_topic(topic) == TopicParts(tenant, "wh-3", "epcis")
    assert json.loads(payload) == document
    _until(lambda: sub.counts.acked == 3)
    assert sub.counts.failed == 0


def test_a_failed_handler_gets_the_message_again(world: dict[str, Any]) -> None:
    """The handler raises on the first delivery: no PUBACK, the subscriber reconnects,
    the broker delivers again, the handler stores it, and it is acked exactly once."""
    tenant, settings = world["tenant"], world["settings"]
    recorder = Recorder(fail_first=1)
    sub = world["subscriber"](recorder)
    reading = _reading("urn:fourflow:device:ranch-7:collar-1", 7)
    with MqttPublisher(settings) as publisher:
        publisher.publish_reading(tenant=tenant, site="ranch-7", reading=reading)
    topic, payload = recorder.next()  # the second delivery
    assert len(recorder.calls) == 2 and recorder.calls[0] == recorder.calls[1] == (topic, payload)
    _until(lambda: sub.counts.acked == 1)
    assert (sub.counts.failed, sub.counts.connects) == (1, 2)

    # acked means gone: a new subscriber on the same session gets only what comes next
    sub.stop(WAIT)
    again = Recorder()
    world["subscriber"](again)
    with MqttPublisher(settings) as publisher:
        publisher.publish_reading(
            tenant=tenant, site="ranch-7", reading=_reading("urn:x:marker", 1)
        )
    topic, payload = again.next()
    assert json.loads(payload)["device"] == "urn:x:marker"
    assert len(again.calls) == 1


def test_messages_sent_while_the_oracle_is_down_arrive_when_it_returns(
    world: dict[str, Any],
) -> None:
    tenant, settings = world["tenant"], world["settings"]
    first = world["subscriber"](Recorder())
    first.stop(WAIT)  # the session stays with the broker
    device = "urn:fourflow:device:ranch-7:collar-2"
    with MqttPublisher(settings) as publisher:
        for seq in range(5):
            publisher.publish_reading(tenant=tenant, site="ranch-7", reading=_reading(device, seq))
    recorder = Recorder()
    world["subscriber"](recorder)
    seqs = [json.loads(recorder.next()[1])["seq"] for _ in range(5)]
    assert seqs == [0, 1, 2, 3, 4]


def test_a_malformed_payload_is_quarantined_and_the_loop_goes_on(world: dict[str, Any]) -> None:
    tenant, settings = world["tenant"], world["settings"]
    recorder = Recorder()
    sub = world["subscriber"](recorder)
    bad_topic = topic_for(tenant=tenant, site="s1", channel="readings", device="urn:x:d")
    with MqttPublisher(settings) as publisher:
        publisher.publish(bad_topic, b"\xff{not json")
        publisher.publish_reading(tenant=tenant, site="s1", reading=_reading("urn:x:d", 1))
    assert recorder.next() == (bad_topic, b"\xff{not json")
    assert json.loads(recorder.next()[1])["seq"] == 1
    assert len(recorder.quarantined) == 1
    _until(lambda: sub.counts.acked == 2)
    assert sub.counts.failed == 0


def test_the_subscriber_hears_only_its_tenant(world: dict[str, Any]) -> None:
    tenant, settings = world["tenant"], world["settings"]
    recorder = Recorder()
    world["subscriber"](recorder)
    other = f"x{uuid.uuid4().hex[:12]}"
    with MqttPublisher(settings) as publisher:
        publisher.publish_document(tenant=other, site="s1", document={"tenant": "other"})
        publisher.publish_document(tenant=tenant, site="s1", document={"tenant": "ours"})
    assert json.loads(recorder.next()[1]) == {"tenant": "ours"}
    assert len(recorder.calls) == 1


def test_device_status_is_retained_with_an_offline_last_will(world: dict[str, Any]) -> None:
    tenant, settings = world["tenant"], world["settings"]
    status = topic_for(tenant=tenant, site="s1", channel="status", device="urn:x:gate-1")
    world["retained"].append(status)
    with MqttPublisher(settings, status_topic=status):
        assert _retained(settings, status) == b"online"
    assert _retained(settings, status) == b"offline"

    # a device that dies without saying goodbye: the broker publishes its will
    script = (
        "import os, sys\n"
        "from oracles.mqtt import MqttPublisher, MqttSettings\n"
        "p = MqttPublisher(MqttSettings(timeout_s=5), status_topic=sys.argv[1])\n"
        "p.connect()\n"
        "print('up', flush=True)\n"
        "sys.stdin.read()\n"
        "os._exit(9)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, status],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as device:
        try:
            assert device.stdout is not None and device.stdin is not None
            assert device.stdout.readline() == b"up\n"
            assert _retained(settings, status) == b"online"
            device.stdin.close()
            assert device.wait(WAIT) == 9
        finally:
            device.kill()
    deadline = time.monotonic() + WAIT
    while _retained(settings, status) != b"offline":
        assert time.monotonic() < deadline, "the broker did not publish the last will"


def test_an_unreachable_broker_is_a_clear_error_and_the_subscriber_keeps_trying() -> None:
    settings = MqttSettings(
        port=free_port(), client_id=f"fourflow-test-{uuid.uuid4().hex}", timeout_s=1
    )
    with pytest.raises(MqttError, match=r"cannot connect to mqtt://127\.0\.0\.1:\d+"):
        MqttPublisher(settings).connect()
    with pytest.raises(MqttError, match="not connected"):
        MqttPublisher(settings).publish("fourflow/a/b/epcis", b"{}")

    sub = MqttSubscriber(settings, Recorder(), retry_initial_s=0.05, retry_max_s=0.2)
    stop = threading.Event()
    runner = threading.Thread(target=sub.run, args=(stop,))
    runner.start()
    time.sleep(0.5)
    stop.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert sub.counts.connects == 0
