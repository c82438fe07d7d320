"""Device readings and EPCIS documents over MQTT (paho-mqtt 2.x, MQTT 3.1.1).

Topics (``{device}`` is the device id with ``%``, ``/``, ``+`` and ``#`` percent-encoded
as ``%25``, ``%2F``, ``%2B`` and ``%23``, so any device id fits in one topic level):

    fourflow/{tenant}/{site}/{device}/readings   one Reading JSON object, or a JSON array
                                                 of them (oracles.readings), QoS 1
    fourflow/{tenant}/{site}/{device}/status     "online" / "offline", retained; a device
                                                 sets "offline" as its last will
    fourflow/{tenant}/{site}/epcis               one EPCIS 2.0 document from a site gateway

``tenant`` and ``site`` are lower-case letters, digits, ``-`` and ``_``. ``topic_for``
builds a topic, ``parse_topic`` takes one apart and raises ValueError on anything else.

Delivery. Publishers send with QoS 1 and wait for the broker's PUBACK. The oracle's
``MqttSubscriber`` keeps a persistent session (fixed client id, ``clean_session=False``),
so QoS 1 messages published while it is down are queued by the broker and delivered
when it returns, and it acknowledges by hand: a message is PUBACKed only after
``handler(topic, payload)`` returns, that is after the handler stored it durably or
quarantined it as bad input. If the handler raises (the store or the chain is down),
the message is not acknowledged; the subscriber logs, drops the connection without
acknowledging anything after it (PUBACKs stay in order) and reconnects with backoff, and
the broker delivers the message again. This is at-least-once delivery; the store
deduplicates readings by their event identity (``reading_event_id``: device and seq)
and EPCIS events by their event hash ID, so what is stored is effectively once.

A handler must therefore tell bad messages from broken infrastructure: bad content is
quarantined and the handler returns (the message is acked and never comes back); only
an infrastructure failure raises. A message whose handler raises every time is retried
until it succeeds, so a handler must not raise for content.

Errors: ``MqttError`` (a ``LedgerError``, code ``mqtt_unavailable``) when the broker
cannot be reached, refuses the connection, or does not acknowledge a publish in time;
``ValueError`` for a malformed topic or setting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from paho.mqtt.client import (
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
    MQTTMessageInfo,
    error_string,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ledger.errors import LedgerError
from oracles.readings import Reading

__all__ = [
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

log = logging.getLogger(__name__)

ROOT: Final = "fourflow"
DEFAULT_SUBSCRIPTIONS: Final = ("fourflow/+/+/+/readings", "fourflow/+/+/epcis")
Channel = Literal["readings", "status", "epcis"]
Handler = Callable[[str, bytes], None]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DEVICE = re.compile(r"^[!-~]{1,200}$")  # printable ASCII, as device ids are
_ENCODE: Final = {"%": "%25", "/": "%2F", "+": "%2B", "#": "%23"}
_DECODE: Final = {v: k for k, v in _ENCODE.items()}
_ESCAPE = re.compile(r"%(?:25|2F|2B|23)")


class MqttError(LedgerError):
    """The broker could not be reached, refused us, or did not acknowledge in time."""

    code = "mqtt_unavailable"


# --- topics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicParts:
    tenant: str
    site: str
    channel: Channel
    device: str | None = None  # decoded; None on the epcis channel


def _check_name(what: str, value: str) -> None:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )


def _encode_device(device: str) -> str:
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"device id {device!r} must be 1-200 printable ASCII characters")
    return "".join(_ENCODE.get(c, c) for c in device)


def _decode_device(level: str) -> str:
    if not level:
        raise ValueError("the device level is empty")
    stray = _ESCAPE.sub("", level)
    if "%" in stray:
        raise ValueError(f"device level {level!r} has a '%' that is not one of %25, %2F, %2B, %23")
    device = _ESCAPE.sub(lambda m: _DECODE[m.group(0)], level)
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"device id {device!r} must be 1-200 printable ASCII characters")
    return device


def topic_for(*, tenant: str, site: str, channel: Channel, device: str | None = None) -> str:
    """The topic of ``device``'s readings or status, or of a site's EPCIS documents."""
    _check_name("tenant", tenant)
    _check_name("site", site)
    if channel == "epcis":
        if device is not None:
            raise ValueError("the epcis channel is per site; it takes no device")
        return f"{ROOT}/{tenant}/{site}/epcis"
    if channel not in ("readings", "status"):
        raise ValueError(f"channel must be readings, status or epcis, not {channel!r}")
    if device is None:
        raise ValueError(f"the {channel} channel needs a device")
    return f"{ROOT}/{tenant}/{site}/{_encode_device(device)}/{channel}"


def parse_topic(topic: str) -> TopicParts:
    """Take a fourflow topic apart; ValueError says what is wrong with any other."""
    levels = topic.split("/")
    if levels[0] != ROOT:
        raise ValueError(f"topic {topic!r} does not start with {ROOT}/")
    if any(c in topic for c in "+#"):
        raise ValueError(f"topic {topic!r} has a wildcard; a message topic has none")
    try:
        if len(levels) == 4 and levels[3] == "epcis":
            _, tenant, site, _ = levels
            _check_name("tenant", tenant)
            _check_name("site", site)
            return TopicParts(tenant=tenant, site=site, channel="epcis")
        if len(levels) == 5 and levels[4] in ("readings", "status"):
            _, tenant, site, device, name = levels
            _check_name("tenant", tenant)
            _check_name("site", site)
            kind: Channel = "readings" if name == "readings" else "status"
            return TopicParts(tenant=tenant, site=site, channel=kind, device=_decode_device(device))
    except ValueError as exc:
        raise ValueError(f"topic {topic!r}: {exc}") from exc
    raise ValueError(
        f"topic {topic!r} is neither {ROOT}/{{tenant}}/{{site}}/{{device}}/readings|status "
        f"nor {ROOT}/{{tenant}}/{{site}}/epcis"
    )


# --- settings and clients ---------------------------------------------------------------


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to log in. TLS is on when any TLS_* file is given."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None  # CA bundle that signed the broker's certificate
    tls_cert: str | None = None  # client certificate (mutual TLS)
    tls_key: str | None = None  # its private key
    client_id: str = "fourflow-oracle"  # the subscriber's persistent session
    tenant: str | None = None  # subscribe to this tenant only; None: every tenant
    keepalive_s: int = 60
    timeout_s: float = 10.0  # connecting, subscribing, waiting for a PUBACK

    def __post_init__(self) -> None:
        if self.password is not None and self.username is None:
            raise ValueError("an MQTT password needs a username")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("an MQTT TLS key needs its certificate (FOURFLOW_MQTT_TLS_CERT)")
        if not 0 < self.port < 65536:
            raise ValueError(f"MQTT port must be 1-65535, not {self.port}")
        if not self.client_id or len(self.client_id.encode()) > 65535:
            raise ValueError("MQTT client id must be 1-65535 bytes")
        if self.tenant is not None:
            _check_name("tenant", self.tenant)

    @property
    def tls(self) -> bool:
        return any(v is not None for v in (self.tls_ca, self.tls_cert, self.tls_key))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MqttSettings:
        """Read FOURFLOW_MQTT_{HOST,PORT,USERNAME,PASSWORD,TLS_CA,TLS_CERT,TLS_KEY,
        CLIENT_ID,TENANT}; unset or empty means the default. PORT defaults to 8883
        when TLS is configured, else 1883."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(f"FOURFLOW_MQTT_{name}") or None

        tls = any(get(n) for n in ("TLS_CA", "TLS_CERT", "TLS_KEY"))
        port_text = get("PORT")
        try:
            port = int(port_text) if port_text else (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"FOURFLOW_MQTT_PORT must be a number, not {port_text!r}") from None
        return cls(
            host=get("HOST") or "127.0.0.1",
            port=port,
            username=get("USERNAME"),
            password=get("PASSWORD"),
            tls_ca=get("TLS_CA"),
            tls_cert=get("TLS_CERT"),
            tls_key=get("TLS_KEY"),
            client_id=get("CLIENT_ID") or "fourflow-oracle",
            tenant=get("TENANT"),
        )


def _client(settings: MqttSettings, *, client_id: str, persistent: bool) -> Client:
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent,
        protocol=MQTTProtocolVersion.MQTTv311,
        manual_ack=persistent,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        try:
            client.tls_set(
                ca_certs=settings.tls_ca, certfile=settings.tls_cert, keyfile=settings.tls_key
            )
        except (OSError, ValueError) as exc:
            raise MqttError(f"cannot load the MQTT TLS files: {exc}") from exc
    return client


def _where(settings: MqttSettings) -> str:
    return f"{'mqtts' if settings.tls else 'mqtt'}://{settings.host}:{settings.port}"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- publishing --------------------------------------------------------------------------


class MqttPublisher:
    """Publishes with QoS 1 and returns only once the broker acknowledged (PUBACK).

    With ``status_topic`` (a device's ``.../status``), it publishes a retained
    "online" there on connect and "offline" on close, and leaves "offline" as its last
    will for the broker to publish if the connection dies.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str | None = None,
        status_topic: str | None = None,
    ) -> None:
        if status_topic is not None and parse_topic(status_topic).channel != "status":
            raise ValueError(f"{status_topic!r} is not a .../status topic")
        self.settings = settings
        self.client_id = client_id or f"{settings.client_id}-pub-{uuid.uuid4().hex[:12]}"
        self.status_topic = status_topic
        self._client: Client | None = None
        self._connected = threading.Event()
        self._refusal: str | None = None

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and wait for the broker's CONNACK; MqttError if it does not come."""
        if self._client is not None:
            return
        self._connected.clear()
        self._refusal = None
        client = _client(self.settings, client_id=self.client_id, persistent=False)
        if self.status_topic is not None:
            client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except OSError as exc:
            raise MqttError(f"cannot connect to {_where(self.settings)}: {exc}") from exc
        client.loop_start()
        if not self._connected.wait(self.settings.timeout_s) or self._refusal is not None:
            client.loop_stop()
            client.disconnect()
            reason = self._refusal or f"no CONNACK within {self.settings.timeout_s} s"
            raise MqttError(f"cannot connect to {_where(self.settings)}: {reason}")
        self._client = client
        if self.status_topic is not None:
            self.publish(self.status_topic, b"online", retain=True)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self.status_topic is not None:
                self._send(client, self.status_topic, b"offline", retain=True)
        finally:
            client.disconnect()
            client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1; return once the broker has the message (PUBACK)."""
        if self._client is None:
            raise MqttError("the publisher is not connected; call connect() or use `with`")
        self._send(self._client, topic, payload, retain=retain)

    def publish_reading(
        self, *, tenant: str, site: str, reading: Reading | Sequence[Reading]
    ) -> None:
        """Publish one reading, or several of one device as a JSON array."""
        readings = [reading] if isinstance(reading, Reading) else list(reading)
        devices = {r.device for r in readings}
        if len(devices) != 1:
            raise ValueError(
                f"one readings message holds readings of one device, not {len(devices)}"
            )
        topic = topic_for(tenant=tenant, site=site, channel="readings", device=devices.pop())
        dumped = [r.model_dump(mode="json") for r in readings]
        self.publish(topic, _json_bytes(dumped[0] if isinstance(reading, Reading) else dumped))

    def publish_document(self, *, tenant: str, site: str, document: Mapping[str, Any]) -> None:
        """Publish an EPCIS 2.0 document to the site's epcis topic."""
        self.publish(topic_for(tenant=tenant, site=site, channel="epcis"), _json_bytes(document))

    def _send(self, client: Client, topic: str, payload: bytes, *, retain: bool) -> None:
        info: MQTTMessageInfo = client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(self.settings.timeout_s)
            published = info.is_published()
        except (ValueError, RuntimeError) as exc:
            raise MqttError(f"publish to {topic} on {_where(self.settings)} failed: {exc}") from exc
        if not published:
            raise MqttError(
                f"no PUBACK for {topic} from {_where(self.settings)} within "
                f"{self.settings.timeout_s} s; the message may or may not have arrived, "
                "publish it again (readings are deduplicated)"
            )

    def _on_connect(
        self,
        _client: Client,
        _userdata: Any,
        _flags: ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refusal = f"broker refused the connection: {reason}"
        self._connected.set()

    def _on_disconnect(
        self,
        _client: Client,
        _userdata: Any,
        _flags: DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._client is not None:
            log.warning(
                "MQTT publisher %s disconnected (%s); paho reconnects", self.client_id, reason
            )


# --- subscribing ------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberCounts:
    """What a subscriber did since it was made. received - acked - failed messages were
    received after a failure on the same connection and left for the broker to resend."""

    received: int = 0  # handed to the handler, or left for redelivery after a failure
    acked: int = 0  # the handler returned; PUBACK sent
    failed: int = 0  # the handler raised; not acked, the broker resends
    connects: int = 0  # successful CONNACKs


class MqttSubscriber:
    """Hands each QoS 1 message to ``handler`` and acknowledges it only when the
    handler returns (see the module docs).

    One subscriber per ``settings.client_id``: the broker keeps one session per client
    id and a second connection with the same id takes the session over.
    """

    def __init__(
        self,
        settings: MqttSettings,
        handler: Handler,
        *,
        subscriptions: Sequence[str] | None = None,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        tenant = settings.tenant or "+"
        self.settings = settings
        self.handler = handler
        self.subscriptions = tuple(
            subscriptions
            if subscriptions is not None
            else (f"fourflow/{tenant}/+/+/readings", f"fourflow/{tenant}/+/epcis")
        )
        if not self.subscriptions:
            raise ValueError("a subscriber needs at least one subscription")
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._lock = threading.Lock()
        self._counts = SubscriberCounts()
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # state of the current connection, touched only by the thread in run()
        self._connack: ReasonCode | None = None
        self._suback_error: str | None = None
        self._failed = False  # the handler raised on this connection: ack nothing more

    # public ---------------------------------------------------------------------------

    @property
    def counts(self) -> SubscriberCounts:
        with self._lock:
            return self._counts

    def wait_subscribed(self, timeout: float) -> bool:
        """True once connected and subscribed (again, after a reconnect)."""
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        """Run in a background thread until ``stop()``."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the subscriber is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name=f"mqtt-{self.settings.client_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread; unacknowledged messages stay with the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise MqttError(f"the MQTT subscriber did not stop within {timeout} s")
            self._thread = None

    def run(self, stop: threading.Event) -> None:
        """Receive until ``stop`` is set, reconnecting with exponential backoff."""
        client = _client(self.settings, client_id=self.settings.client_id, persistent=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        delay = self.retry_initial_s
        while not stop.is_set():
            healthy = self._connection(client, stop)
            if stop.is_set():
                break
            delay = self.retry_initial_s if healthy else delay
            log.info("MQTT subscriber %s reconnects in %.1f s", self.settings.client_id, delay)
            stop.wait(delay)
            if not healthy:
                delay = min(delay * 2, self.retry_max_s)

    # one connection -----------------------------------------------------------------------

    def _connection(self, client: Client, stop: threading.Event) -> bool:
        """Connect, subscribe, receive until stop, a lost connection or a handler failure.
        True if it got subscribed and no handler failed."""
        self._connack, self._suback_error, self._failed = None, None, False
        self._subscribed.clear()
        where = _where(self.settings)
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except OSError as exc:
            log.warning("MQTT subscriber cannot connect to %s: %s", where, exc)
            return False
        try:
            if not self._await(client, stop, lambda: self._connack is not None):
                log.warning("MQTT subscriber: no CONNACK from %s", where)
                return False
            if self._connack is not None and self._connack.is_failure:
                log.error("MQTT broker %s refused the subscriber: %s", where, self._connack)
                return False
            if not self._await(
                client, stop, lambda: self._subscribed.is_set() or self._suback_error is not None
            ):
                log.warning("MQTT subscriber: no SUBACK from %s", where)
                return False
            if self._suback_error is not None:
                log.error("MQTT broker %s refused a subscription: %s", where, self._suback_error)
                return False
            while not stop.is_set() and not self._failed:
                rc = client.loop(0.2)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    log.warning("MQTT subscriber lost %s: %s", where, error_string(rc))
                    return False
            return not self._failed
        finally:
            self._subscribed.clear()
            client.disconnect()  # a clean DISCONNECT keeps the persistent session
            client.loop(0.1)

    def _await(self, client: Client, stop: threading.Event, done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.settings.timeout_s
        while not done():
            if stop.is_set() or time.monotonic() > deadline:
                return False
            if client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
        return True

    def _count(self, **add: int) -> None:
        with self._lock:
            c = self._counts
            self._counts = SubscriberCounts(
                received=c.received + add.get("received", 0),
                acked=c.acked + add.get("acked", 0),
                failed=c.failed + add.get("failed", 0),
                connects=c.connects + add.get("connects", 0),
            )

    # paho callbacks (run on the thread in run()) --------------------------------------------

    def _on_connect(
        self,
        client: Client,
        _userdata: Any,
        flags: ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._connack = reason
        if reason.is_failure:
            return
        self._count(connects=1)
        if not flags.session_present and self.counts.connects > 1:
            log.warning(
                "MQTT broker has no session for %s: messages published while it was "
                "disconnected were not kept",
                self.settings.client_id,
            )
        client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _on_subscribe(
        self,
        _client: Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [
            f"{topic}: {reason}"
            for topic, reason in zip(self.subscriptions, reasons, strict=False)
            if reason.is_failure
        ]
        if refused:
            self._suback_error = "; ".join(refused)
        else:
            self._subscribed.set()

    def _on_message(self, client: Client, _userdata: Any, message: MQTTMessage) -> None:
        self._count(received=1)
        if self._failed:
            return  # left unacknowledged for redelivery, behind the one that failed
        topic = message.topic
        try:
            self.handler(topic, bytes(message.payload))
        except Exception:
            self._failed = True
            self._count(failed=1)
            log.exception(
                "MQTT handler failed on %s (mid %d, %d bytes%s); not acknowledged, the "
                "broker delivers it again after the reconnect",
                topic,
                message.mid,
                len(message.payload),
                ", a redelivery" if message.dup else "",
            )
            return
        client.ack(message.mid, message.qos)
        self._count(acked=1)
