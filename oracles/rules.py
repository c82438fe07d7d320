"""What the rule monitors (oracles.livestock, oracles.warehouse) share: checking their
rules' values, local time from a fixed UTC offset, and raising each alarm key once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from ledger.errors import InvalidInput
from oracles.readings import Alarm

__all__ = ["first_time", "in_window", "offset_ms", "require", "rule_alarm"]

_OFFSET: Final = re.compile(r"^([+-])(\d{2}):(\d{2})$")


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
