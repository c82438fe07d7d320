"""What the rule monitors (oracles.livestock, oracles.warehouse, oracles.machines,
oracles.energy, oracles.vehicles) share: checking their rules' values, local time from a
fixed UTC offset (a local day, its bounds, a checked ISO day), a (lat, lon) fence from
config, an alarm's key and severity, raising each alarm key once, the devices
they hear from with their silence rule (``Heartbeats``, used by the livestock, machine,
vehicle and energy monitors; the monitors name the rule, stale_device, sensor_silent, …,
and the details of their own; the warehouse and telemetry monitors still keep their own
clocks), and capping a day's evidence.

    heartbeats = Heartbeats(subject=rules.herd, what="herd", devices=devices)
    event_id, time_ms = heartbeats.admit(reading)   # unknown_device for another device
    if day is not None and not first_delivery(day.seen, event_id): ...   # a redelivery
    for silence in heartbeats.silences(now_ms): ...   # silence.message, .evidence, .details
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final, Literal

from ledger.errors import InvalidInput
from oracles.readings import Alarm, Device, Reading, reading_event_id

__all__ = [
    "Heartbeats",
    "Silence",
    "check_day",
    "day_bounds",
    "first_delivery",
    "first_time",
    "in_window",
    "local_day",
    "offset_ms",
    "polygon",
    "require",
    "rule_alarm",
    "select_evidence",
]

Polygon = tuple[tuple[float, float], ...]  # (lat, lon) vertices

_OFFSET: Final = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_DAY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_MS: Final = 86_400_000
_EPOCH: Final = date(1970, 1, 1)


def require(ok: bool, name: str, message: str) -> None:
    """Raise InvalidInput naming the field ``name`` unless ``ok``."""
    if not ok:
        raise InvalidInput(message, field=name)


def offset_ms(text: str) -> int:
    """A ``±HH:MM`` UTC offset in milliseconds."""
    match = _OFFSET.fullmatch(text)
    if match is None:
        raise InvalidInput(f"utc_offset must be ±HH:MM, got {text!r}", field="utc_offset")
    sign, hours, minutes = match.groups()
    require(int(hours) <= 14 and int(minutes) < 60, "utc_offset", f"no such offset {text!r}")
    return (1 if sign == "+" else -1) * (int(hours) * 60 + int(minutes)) * 60_000


def check_day(day: object) -> str:
    """``day`` if it is an ISO date (YYYY-MM-DD), else InvalidInput naming "day"."""
    try:
        if isinstance(day, str) and _DAY.fullmatch(day):
            return date.fromisoformat(day).isoformat()
    except ValueError:
        pass
    raise InvalidInput(f"expected an ISO date like 2026-11-23, got {day!r}", field="day")


def local_day(time_ms: int, offset: int) -> str:
    """The local date (ISO) of a moment, at a UTC offset of ``offset`` ms."""
    return (_EPOCH + timedelta(days=(time_ms + offset) // _DAY_MS)).isoformat()


def day_bounds(day: str, offset: int) -> tuple[int, int]:
    """[start, end) of a local day, in unix milliseconds, at a UTC offset of ``offset`` ms."""
    start = (date.fromisoformat(check_day(day)) - _EPOCH).days * _DAY_MS - offset
    return start, start + _DAY_MS


def polygon(value: Iterable[Sequence[float]] | None, name: str) -> Polygon | None:
    """(lat, lon) points, at least three, from a config's list of pairs; None stays None."""
    if value is None:
        return None
    try:
        points = tuple((float(p[0]), float(p[1])) for p in value)
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidInput(f"{name} must be (lat, lon) points: {exc}", field=name) from exc
    require(len(points) >= 3, name, f"{name} needs at least 3 (lat, lon) points")
    return points


def in_window(hour: int, window: tuple[int, int]) -> bool:
    """Whether local ``hour`` falls in [start, end), wrapping midnight when start > end."""
    start, end = window
    return start <= hour < end if start < end else hour >= start or hour < end


def rule_alarm(
    rules: Mapping[str, tuple[Literal["info", "warning", "breach"], str | None]],
    rule: str,
    subject: str,
    start: int | str,
    time_ms: int,
    message: str,
    evidence: Iterable[str],
    details: Mapping[str, Any],
) -> Alarm:
    """An alarm of ``rule`` (its severity and fact from the module's ``rules`` table),
    keyed ``<rule>:<subject>:<start>``: the episode's start makes the key stable."""
    severity, fact = rules[rule]
    return Alarm(
        key=f"{rule}:{subject}:{start}",
        rule=rule,
        subject=subject,
        severity=severity,
        time_ms=time_ms,
        message=message,
        evidence=tuple(evidence),
        details=dict(details),
        fact=fact,
    )


def first_time(alarms: Iterable[Alarm], raised: set[str]) -> list[Alarm]:
    """The alarms whose key is not in ``raised`` yet (and adds them): each key once."""
    fresh = []
    for alarm in alarms:
        if alarm.key not in raised:
            raised.add(alarm.key)
            fresh.append(alarm)
    return fresh


def select_evidence(
    evidence: list[tuple[int, str]], essential: set[str], cap: int
) -> tuple[tuple[str, ...], int]:
    """At most ``cap`` of the (time, event id) ``evidence`` as ids in time order: the
    ``essential`` ones first, then the earliest others; and how many were left out."""
    ordered = sorted(evidence)
    keep = [e for e in ordered if e[1] in essential][:cap]
    keep += [e for e in ordered if e[1] not in essential][: cap - len(keep)]
    keep.sort()
    return tuple(event_id for _, event_id in keep), len(ordered) - len(keep)


def first_delivery(seen: set[str], event_id: str) -> bool:
    """Whether ``event_id`` is not in its day's ``seen`` yet (and adds it): a reading
    redelivered (same device and seq) is not."""
    if event_id in seen:
        return False
    seen.add(event_id)
    return True


@dataclass(frozen=True)
class Silence:
    """A device silent for more than its ``heartbeat_s`` at ``now_ms``. The episode is its
    last reading (``last_id``); a device never heard from counts from the monitor's first
    reading (``last_ms``) and has no ``last_id``."""

    device: Device
    now_ms: int
    last_ms: int
    last_id: str | None

    @property
    def message(self) -> str:
        return (
            f"{self.device.id} silent for {(self.now_ms - self.last_ms) // 1000} s "
            f"(heartbeat {self.device.heartbeat_s} s)"
        )

    @property
    def evidence(self) -> list[str]:
        return [] if self.last_id is None else [self.last_id]

    @property
    def details(self) -> dict[str, Any]:
        last_ms = None if self.last_id is None else self.last_ms
        return {"last_ms": last_ms, "heartbeat_s": self.device.heartbeat_s}


class Heartbeats:
    """The devices of one monitored subject (a herd, plant, dealer, station) and when
    each was last heard from: what every monitor's ``observe`` does first, and its
    silence rule.

    Any reading of a device is a sign of life; one not newer than the device's last is
    late and moves nothing. The silence clock starts at the first reading admitted.
    """

    def __init__(self, *, subject: str, what: str, devices: Mapping[str, Device]) -> None:
        self.subject, self.what = subject, what
        self.devices = {d.id: d for d in devices.values() if d.subject == subject}
        self.origin_ms: int | None = None  # the first reading admitted
        self._last: dict[str, tuple[int, str]] = {}  # device -> its last (time, event id)

    def admit(self, reading: Reading) -> tuple[str, int]:
        """(event id, time) of a reading of one of the subject's devices, recorded as its
        sign of life; InvalidInput ``unknown_device`` for any other device."""
        if reading.device not in self.devices:
            raise InvalidInput(
                f"{reading.device} is not a device of {self.what} {self.subject}",
                field="device",
                code="unknown_device",
            )
        event_id, time_ms = reading_event_id(reading.device, reading.seq), reading.time_ms
        if self.origin_ms is None:
            self.origin_ms = time_ms
        last = self._last.get(reading.device)
        if last is None or time_ms > last[0]:
            self._last[reading.device] = (time_ms, event_id)
        return event_id, time_ms

    def silences(self, now_ms: int) -> list[Silence]:
        """The devices silent for more than their ``heartbeat_s`` at ``now_ms`` (exactly
        ``heartbeat_s`` is not), by device id; none before the first reading."""
        if self.origin_ms is None:
            return []
        found = []
        for device_id in sorted(self.devices):
            device = self.devices[device_id]
            last_ms, last_id = self._last.get(device_id, (self.origin_ms, None))
            if now_ms - last_ms > device.heartbeat_s * 1000:
                found.append(Silence(device, now_ms, last_ms, last_id))
        return found
