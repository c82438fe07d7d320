"""Cross-verification (交叉验证): what a borrower declares against what the devices saw.

Borrowers send their own figures as signed commercial-flow documents: monthly revenue,
declared stock, a declared head count, declared output. Each is compared with the same
figure derived from device evidence for the same subject and period, the difference is
recorded, and past the configured tolerance an alarm is raised. It is the check that
catches a borrower whose books and whose warehouse disagree.

Pure, like the rule monitors: declarations and observations in, ``CrossCheck`` results
and ``Alarm`` out.

    rules = CrossCheckRules(tolerance_pct={"revenue": 5.0}, grace_days=3)
    book = ObservationBook(rules)
    book.add(Observation(subject, "revenue", time_ms, 18_250.0, "CNY", event_id))  # each day's
    check = book.check(declaration, declaration_event_id, now_ms=now)
    alarm = check.alarm()                                  # None unless it disagrees

A declaration (the payload of a ``document.declaration`` event, ``Declaration``)::

    {"metric": "revenue", "subject": "urn:fourflow:station:js-yancheng-6mw",
     "period": {"from": "2026-11-01", "to": "2026-11-30"},    local days, inclusive
     "value": 1184500.0, "unit": "CNY", "reference": "management accounts 2026-11"}

Metrics (``METRICS``)

| metric     | kind  | observed figure                                                          |
|------------|-------|--------------------------------------------------------------------------|
| head_count | point | the last observation on the period's last day (a herd's daily count)     |
| stock      | point | the last observation on the period's last day (a lot's stock level)      |
| output     | sum   | the sum of each day's last observation over the period (pieces made)     |
| generation | sum   | the same (kWh exported)                                                  |
| revenue    | sum   | the same (money at the contracted tariff or price: metered generation ×  |
|            |       | tariff, or utilization × capacity × price, ``revenue_from_utilization``) |

Verdicts (``CrossCheck.status``), with D the declared value, O the observed one and T
the metric's tolerance in percent:

| status       | condition                                                           | alarm                    | severity | fact            |
|--------------|---------------------------------------------------------------------|--------------------------|----------|-----------------|
| agrees       | 100 × abs(D − O) ≤ T × abs(O) (when O is 0: D is 0)                 | —                        |          | —               |
| overstated   | D > O past the tolerance: the books claim more than the devices saw | declaration_overstated   | breach   | covenant_breach |
| understated  | D < O past the tolerance                                            | declaration_understated  | warning  | —               |
| incomparable | the declared unit is not the observed one                           | declaration_unverifiable | warning  | —               |
| pending      | a sum metric with days not yet observed, before the period's end +  | —                        |          | —               |
|              | ``grace_days``; a point metric with no observation on its last day, |                          |          |                 |
|              | likewise; any metric before its last day is over (a later figure of |                          |          |                 |
|              | that day would replace the one at hand)                             |                          |          |                 |
| unverifiable | the same, after the grace days                                      | declaration_unverifiable | warning  | —               |

``RULES`` holds each alarm's severity and fact: an overstated declaration is a
``covenant_breach`` fact, which oracles.pipeline reports on-chain (it freezes the
borrower's pledge, FROZEN_COVENANT_BREACH); the warnings are alarms only. Since a
verdict can freeze a pledge, the pipeline judges a declaration only if its submitter is
one of the ``declarants`` the oracle config names for the watched subject; anyone
else's is a ``declaration_invalid`` warning, never a verdict (oracles.pipeline).

Thresholds are strict: a difference of exactly T % agrees. An alarm's key is
``<rule>:<declaration event id>``: checking a declaration again (the pipeline does, as
days are closed) raises nothing new, and a pending check becomes a verdict once.
Evidence: the declaration's event id, then the observations' event ids in time order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final, Literal

from ledger.errors import InvalidInput
from oracles.readings import Alarm
from oracles.rules import offset_ms, require

__all__ = [
    "METRICS",
    "RULES",
    "CrossCheck",
    "CrossCheckRules",
    "Declaration",
    "Observation",
    "ObservationBook",
    "revenue_from_utilization",
]

MetricKind = Literal["point", "sum"]
METRICS: Final[Mapping[str, MetricKind]] = {
    "head_count": "point",
    "stock": "point",
    "output": "sum",
    "generation": "sum",
    "revenue": "sum",
}
Status = Literal["agrees", "overstated", "understated", "incomparable", "pending", "unverifiable"]
RULES: Final[Mapping[str, tuple[Literal["warning", "breach"], str | None]]] = {
    "declaration_overstated": ("breach", "covenant_breach"),
    "declaration_understated": ("warning", None),
    "declaration_unverifiable": ("warning", None),
}
_RULE_OF: Final[Mapping[str, str]] = {
    "overstated": "declaration_overstated",
    "understated": "declaration_understated",
    "incomparable": "declaration_unverifiable",
    "unverifiable": "declaration_unverifiable",
}
_DAY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_MS: Final = 86_400_000
_EPOCH: Final = date(1970, 1, 1)
_MAX_PERIOD_DAYS: Final = 366


def _day(text: Any, name: str) -> date:
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        raise InvalidInput(f"{name} must be a date YYYY-MM-DD, got {text!r}", field=name)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{name}: no such date {text!r}", field=name) from exc


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value!r}", field=name)
    return float(value)


def _text(value: Any, name: str, *, limit: int = 200) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise InvalidInput(f"{name} must be text of 1 to {limit} characters", field=name)
    return value


@dataclass(frozen=True)
class Declaration:
    """A borrower's figure for a subject and a period of local days (inclusive)."""

    metric: str
    subject: str
    first_day: date
    last_day: date
    value: float
    unit: str
    reference: str | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Declaration:
        """A ``document.declaration`` payload, checked; InvalidInput names what is wrong."""
        if not isinstance(payload, Mapping):
            raise InvalidInput("a declaration must be a JSON object", field="payload")
        metric = payload.get("metric")
        if not isinstance(metric, str) or metric not in METRICS:
            raise InvalidInput(
                f"metric must be one of {', '.join(METRICS)}, got {metric!r}", field="metric"
            )
        period = payload.get("period")
        if not isinstance(period, Mapping):
            raise InvalidInput('period must be {"from": day, "to": day}', field="period")
        first, last = _day(period.get("from"), "period.from"), _day(period.get("to"), "period.to")
        require(last >= first, "period", "period.to must not be before period.from")
        require(
            (last - first).days < _MAX_PERIOD_DAYS,
            "period",
            f"a period is at most {_MAX_PERIOD_DAYS} days",
        )
        value = _number(payload.get("value"), "value")
        require(value >= 0, "value", f"value must be >= 0, got {value}")
        reference = payload.get("reference")
        return cls(
            metric=metric,
            subject=_text(payload.get("subject"), "subject"),
            first_day=first,
            last_day=last,
            value=value,
            unit=_text(payload.get("unit"), "unit", limit=32),
            reference=None if reference is None else _text(reference, "reference"),
        )

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "subject": self.subject,
            "period": {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()},
            "value": self.value,
            "unit": self.unit,
        }
        if self.reference is not None:
            out["reference"] = self.reference
        return out

    @property
    def days(self) -> list[date]:
        return [
            self.first_day + timedelta(days=n)
            for n in range((self.last_day - self.first_day).days + 1)
        ]


@dataclass(frozen=True)
class Observation:
    """A figure the devices gave: a daily result's value (its event id is the evidence)."""

    subject: str
    metric: str
    time_ms: int
    value: float
    unit: str
    event_id: str
    day: date | None = None  # the local day it is the figure of; else the day of time_ms


def revenue_from_utilization(
    utilization_pct: float, *, capacity_per_day: float, unit_price: float
) -> float:
    """A plant's revenue implied by a day's utilization: the share of its daily capacity
    (units it can make running all scheduled hours) it ran, at the contracted price.
    Utilization above 100 % (overtime, outside the scheduled hours) is worth more."""
    require(utilization_pct >= 0, "utilization_pct", "utilization must be >= 0 %")
    require(capacity_per_day >= 0, "capacity_per_day", "capacity_per_day must be >= 0")
    require(unit_price >= 0, "unit_price", "unit_price must be >= 0")
    return round(utilization_pct / 100 * capacity_per_day * unit_price, 2)


@dataclass(frozen=True)
class CrossCheckRules:
    """Tolerances in percent by metric (``default_tolerance_pct`` for the rest), the days
    after a period's end that its observations may still come in, and the local day."""

    tolerance_pct: Mapping[str, float] = field(default_factory=dict)
    default_tolerance_pct: float = 5.0
    grace_days: int = 3
    utc_offset: str = "+08:00"
    _offset_ms: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        for metric, tolerance in self.tolerance_pct.items():
            require(metric in METRICS, "tolerance_pct", f"no metric {metric!r}")
            require(
                0 <= tolerance < 100,
                "tolerance_pct",
                f"tolerance of {metric} must be in [0, 100), got {tolerance}",
            )
        require(
            0 <= self.default_tolerance_pct < 100,
            "default_tolerance_pct",
            "default_tolerance_pct must be in [0, 100)",
        )
        require(self.grace_days >= 0, "grace_days", "grace_days must be >= 0")
        object.__setattr__(self, "tolerance_pct", dict(self.tolerance_pct))
        object.__setattr__(self, "_offset_ms", offset_ms(self.utc_offset))

    def tolerance(self, metric: str) -> float:
        return self.tolerance_pct.get(metric, self.default_tolerance_pct)

    def day_of(self, time_ms: int) -> date:
        return _EPOCH + timedelta(days=(time_ms + self._offset_ms) // _DAY_MS)

    def day_end_ms(self, day: date) -> int:
        """The first moment after local ``day``."""
        return ((day - _EPOCH).days + 1) * _DAY_MS - self._offset_ms


@dataclass(frozen=True)
class CrossCheck:
    """One declaration against the devices (see the module docstring)."""

    declaration: Declaration
    declaration_event_id: str
    status: Status
    observed: float | None
    observed_unit: str | None
    difference: float | None  # declared − observed, in the unit
    difference_pct: float | None  # of the observed; None when it is 0
    tolerance_pct: float
    days_observed: int
    days_missing: tuple[str, ...]
    evidence: tuple[str, ...]  # the declaration's event id, then the observations'
    time_ms: int  # when the check was made

    def to_payload(self) -> dict[str, Any]:
        """The payload of the event that records the check in the subject's history."""
        return {
            "declaration": self.declaration_event_id,
            **self.declaration.to_payload(),
            "status": self.status,
            "declared": self.declaration.value,
            "observed": self.observed,
            "observed_unit": self.observed_unit,
            "difference": self.difference,
            "difference_pct": self.difference_pct,
            "tolerance_pct": self.tolerance_pct,
            "days_observed": self.days_observed,
            "days_missing": list(self.days_missing),
            "evidence": list(self.evidence),
        }

    def alarm(self) -> Alarm | None:
        """The alarm this verdict raises, if any."""
        rule = _RULE_OF.get(self.status)
        if rule is None:
            return None
        d = self.declaration
        period = f"{d.first_day}..{d.last_day}" if d.first_day != d.last_day else str(d.last_day)
        if self.status in ("overstated", "understated"):
            message = (
                f"{d.subject}: declared {d.metric} {d.value:g} {d.unit} for {period}, the "
                f"devices saw {self.observed:g} ({self.difference_pct:+.1f} %, tolerance "
                f"{self.tolerance_pct:g} %)"
                if self.difference_pct is not None
                else f"{d.subject}: declared {d.metric} {d.value:g} {d.unit} for {period}, "
                f"the devices saw none"
            )
        elif self.status == "incomparable":
            message = (
                f"{d.subject}: declared {d.metric} in {d.unit}, the devices measure it in "
                f"{self.observed_unit}"
            )
        else:
            message = (
                f"{d.subject}: declared {d.metric} for {period} cannot be checked: no device "
                f"figure for {', '.join(self.days_missing[:5])}"
                + (" …" if len(self.days_missing) > 5 else "")
            )
        severity, fact = RULES[rule]
        return Alarm(
            key=f"{rule}:{self.declaration_event_id}",
            rule=rule,
            subject=d.subject,
            severity=severity,
            time_ms=self.time_ms,
            message=message,
            evidence=self.evidence,
            details={
                "metric": d.metric,
                "declared": d.value,
                "observed": self.observed,
                "unit": d.unit,
                "difference_pct": self.difference_pct,
                "tolerance_pct": self.tolerance_pct,
            },
            fact=fact,
        )


class ObservationBook:
    """The device figures of every subject, by metric and local day; checks declarations."""

    def __init__(self, rules: CrossCheckRules) -> None:
        self.rules = rules
        # (subject, metric) -> day -> the day's last observation
        self._days: dict[tuple[str, str], dict[date, Observation]] = {}

    def add(self, observation: Observation) -> None:
        """Record a figure; a later one of the same day replaces an earlier one."""
        if observation.metric not in METRICS:
            raise InvalidInput(f"no metric {observation.metric!r}", field="metric")
        _number(observation.value, "value")
        days = self._days.setdefault((observation.subject, observation.metric), {})
        day = observation.day or self.rules.day_of(observation.time_ms)
        held = days.get(day)
        if held is None or (observation.time_ms, observation.event_id) >= (
            held.time_ms,
            held.event_id,
        ):
            days[day] = observation

    def check(self, declaration: Declaration, event_id: str, *, now_ms: int) -> CrossCheck:
        """The verdict on ``declaration`` (its event's id ``event_id``) at ``now_ms``."""
        days = self._days.get((declaration.subject, declaration.metric), {})
        wanted = (
            declaration.days if METRICS[declaration.metric] == "sum" else [declaration.last_day]
        )
        seen = [days[d] for d in wanted if d in days]
        missing = tuple(d.isoformat() for d in wanted if d not in days)
        units = {o.unit for o in seen}
        tolerance = self.rules.tolerance(declaration.metric)
        evidence = (event_id, *(o.event_id for o in sorted(seen, key=lambda o: o.time_ms)))

        def verdict(
            status: Status,
            observed: float | None = None,
            unit: str | None = None,
            difference: float | None = None,
            percent: float | None = None,
        ) -> CrossCheck:
            return CrossCheck(
                declaration=declaration,
                declaration_event_id=event_id,
                status=status,
                observed=observed,
                observed_unit=unit,
                difference=difference,
                difference_pct=percent,
                tolerance_pct=tolerance,
                days_observed=len(seen),
                days_missing=missing,
                evidence=evidence,
                time_ms=now_ms,
            )

        if len(units) > 1 or (units and declaration.unit not in units):
            return verdict("incomparable", unit=", ".join(sorted(units)))
        day_over = now_ms >= self.rules.day_end_ms(declaration.last_day)
        if missing or not day_over:  # a point figure: the day's last, once the day is over
            deadline = self.rules.day_end_ms(declaration.last_day) + (
                self.rules.grace_days * _DAY_MS
            )
            return verdict("unverifiable" if missing and now_ms >= deadline else "pending")
        observed = math.fsum(o.value for o in seen)
        difference = declaration.value - observed  # judged unrounded; reported rounded
        if observed == 0:
            percent = None
            within = declaration.value == 0
        else:
            percent = round(100 * difference / abs(observed), 4)
            within = 100 * abs(difference) <= tolerance * abs(observed)
        status: Status = "agrees" if within else "overstated" if difference > 0 else "understated"
        return verdict(status, round(observed, 6), declaration.unit, round(difference, 6), percent)
