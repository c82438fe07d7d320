"""Cross-verification: a borrower's declared figures against the devices' (oracles.crosscheck)."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from oracles.crosscheck import (
    CrossCheckRules,
    Declaration,
    Observation,
    ObservationBook,
    revenue_from_utilization,
)

STATION = "urn:fourflow:station:js-yancheng-6mw"
HERD = "urn:fourflow:herd:CN-NM-0007"
RULES = CrossCheckRules(tolerance_pct={"revenue": 5.0, "head_count": 2.0}, grace_days=3)
DAY_MS = 86_400_000


def noon(day: str) -> int:
    """Local noon (UTC+08:00) of ``day``, in ms."""
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * DAY_MS + 4 * 3_600_000


def declaration(**change: Any) -> Declaration:
    payload = {
        "metric": "revenue",
        "subject": STATION,
        "period": {"from": "2026-11-01", "to": "2026-11-03"},
        "value": 3_000.0,
        "unit": "CNY",
        "reference": "management accounts 2026-11",
        **change,
    }
    return Declaration.from_payload(payload)


def book_with(
    values: dict[str, float], *, metric: str = "revenue", unit: str = "CNY"
) -> ObservationBook:
    book = ObservationBook(RULES)
    for day, value in values.items():
        book.add(Observation(STATION, metric, noon(day), value, unit, f"daily:{day}"))
    return book


NOV = {"2026-11-01": 1_000.0, "2026-11-02": 1_000.0, "2026-11-03": 1_000.0}
AFTER = noon("2026-11-04")


def test_a_declaration_within_tolerance_agrees_and_raises_nothing() -> None:
    check = book_with(NOV).check(declaration(value=3_150.0), "decl-1", now_ms=AFTER)
    assert check.status == "agrees"  # +5 % exactly: strict thresholds
    assert (check.observed, check.difference, check.difference_pct) == (3_000.0, 150.0, 5.0)
    assert check.evidence == ("decl-1", "daily:2026-11-01", "daily:2026-11-02", "daily:2026-11-03")
    assert check.alarm() is None


def test_books_that_claim_more_than_the_devices_saw_are_a_breach() -> None:
    check = book_with(NOV).check(declaration(value=3_150.01), "decl-1", now_ms=AFTER)
    assert check.status == "overstated"
    alarm = check.alarm()
    assert alarm is not None
    assert (alarm.rule, alarm.severity, alarm.key) == (
        "declaration_overstated",
        "breach",
        "declaration_overstated:decl-1",
    )
    assert "declared revenue 3150.01 CNY for 2026-11-01..2026-11-03" in alarm.message
    assert "+5.0 %" in alarm.message and alarm.evidence[0] == "decl-1"


def test_books_that_claim_less_are_a_warning() -> None:
    check = book_with(NOV).check(declaration(value=2_000.0), "decl-2", now_ms=AFTER)
    assert check.status == "understated" and check.difference_pct == pytest.approx(-33.3333)
    alarm = check.alarm()
    assert alarm is not None and (alarm.rule, alarm.severity) == (
        "declaration_understated",
        "warning",
    )


def test_a_point_metric_compares_the_last_days_last_figure() -> None:
    book = ObservationBook(RULES)
    for time_ms, count, event in [
        (noon("2026-11-02"), 480, "count-02"),
        (noon("2026-11-03") - 3_600_000, 470, "count-03a"),
        (noon("2026-11-03"), 450, "count-03b"),  # the day's last: this one counts
    ]:
        book.add(Observation(HERD, "head_count", time_ms, count, "head", event))
    declared = declaration(
        metric="head_count",
        subject=HERD,
        period={"from": "2026-11-03", "to": "2026-11-03"},
        value=500,
        unit="head",
    )
    check = book.check(declared, "decl-3", now_ms=AFTER)
    assert (check.status, check.observed, check.evidence) == (
        "overstated",
        450.0,
        ("decl-3", "count-03b"),
    )
    assert check.tolerance_pct == 2.0
    assert (
        book.check(
            declaration(
                metric="head_count",
                subject=HERD,
                period={"from": "2026-11-03", "to": "2026-11-03"},
                value=459,  # +2.0 %: agrees
                unit="head",
            ),
            "decl-4",
            now_ms=AFTER,
        ).status
        == "agrees"
    )


def test_missing_days_wait_for_the_grace_days_then_say_so() -> None:
    book = book_with({"2026-11-01": 1_000.0, "2026-11-03": 1_000.0})
    deadline = noon("2026-11-03") + 12 * 3_600_000 + 3 * DAY_MS  # end of the 3rd + 3 days
    early = book.check(declaration(), "decl-5", now_ms=deadline - 1)
    assert early.status == "pending" and early.days_missing == ("2026-11-02",)
    assert early.alarm() is None
    late = book.check(declaration(), "decl-5", now_ms=deadline)
    assert late.status == "unverifiable"
    alarm = late.alarm()
    assert alarm is not None and alarm.rule == "declaration_unverifiable"
    assert "no device figure for 2026-11-02" in alarm.message
    book.add(Observation(STATION, "revenue", noon("2026-11-02"), 1_000.0, "CNY", "daily:late"))
    assert book.check(declaration(), "decl-5", now_ms=deadline).status == "agrees"


def test_a_declaration_in_another_unit_is_not_compared() -> None:
    check = book_with(NOV).check(declaration(unit="USD"), "decl-6", now_ms=AFTER)
    assert (check.status, check.observed_unit) == ("incomparable", "CNY")
    alarm = check.alarm()
    assert alarm is not None and "declared revenue in USD" in alarm.message


def test_nothing_observed_is_zero_only_when_nothing_was_declared() -> None:
    zero = {"2026-11-01": 0.0, "2026-11-02": 0.0, "2026-11-03": 0.0}
    assert book_with(zero).check(declaration(value=0), "d", now_ms=AFTER).status == "agrees"
    check = book_with(zero).check(declaration(value=10), "d", now_ms=AFTER)
    assert check.status == "overstated" and check.difference_pct is None
    alarm = check.alarm()
    assert alarm is not None and "the devices saw none" in alarm.message


def test_a_figure_counts_for_the_day_it_names_and_waits_for_that_day_to_end() -> None:
    book = ObservationBook(RULES)  # a site on UTC: its day ends at 08:00 the next day here
    end_of_day_utc = noon("2026-11-03") + 20 * 3_600_000 - 1  # 2026-11-03T23:59:59.999Z
    book.add(
        Observation(
            HERD, "head_count", end_of_day_utc, 450, "head", "count-03", day=date(2026, 11, 3)
        )
    )
    declared = declaration(
        metric="head_count", subject=HERD, period={"from": "2026-11-03", "to": "2026-11-03"},
        value=450, unit="head",
    )  # fmt: skip
    assert book.check(declared, "d", now_ms=noon("2026-11-03")).status == "pending"
    assert book.check(declared, "d", now_ms=AFTER).status == "agrees"


def test_a_later_figure_of_the_same_day_replaces_the_earlier() -> None:
    book = book_with(NOV)
    book.add(Observation(STATION, "revenue", noon("2026-11-02") + 1, 1_200.0, "CNY", "recount"))
    check = book.check(declaration(value=3_200.0), "d", now_ms=AFTER)
    assert check.observed == 3_200.0 and "recount" in check.evidence
    book.add(Observation(STATION, "revenue", noon("2026-11-02") - 1, 9_999.0, "CNY", "stale"))
    assert book.check(declaration(value=3_200.0), "d", now_ms=AFTER).observed == 3_200.0


def test_checks_of_other_subjects_and_metrics_see_nothing() -> None:
    book = book_with(NOV, metric="generation", unit="kWh")
    check = book.check(declaration(), "d", now_ms=AFTER)
    assert (check.status, check.days_missing, check.evidence) == ("pending", tuple(NOV), ("d",))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "profit"}, "metric"),
        ({"period": {"from": "2026-11-03", "to": "2026-11-01"}}, "period"),
        ({"period": {"from": "2026-11-31", "to": "2026-12-01"}}, "period.from"),
        ({"period": {"from": "2025-01-01", "to": "2026-12-31"}}, "period"),
        ({"period": "2026-11"}, "period"),
        ({"value": "3000"}, "value"),
        ({"value": -1}, "value"),
        ({"value": float("nan")}, "value"),
        ({"value": True}, "value"),
        ({"unit": ""}, "unit"),
        ({"subject": None}, "subject"),
    ],
)
def test_a_malformed_declaration_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        declaration(**change)
    assert caught.value.field == field


def test_bad_rules_are_refused() -> None:
    with pytest.raises(InvalidInput, match="no metric"):
        CrossCheckRules(tolerance_pct={"profit": 1.0})
    with pytest.raises(InvalidInput, match=r"in \[0, 100\)"):
        CrossCheckRules(tolerance_pct={"revenue": 100.0})
    with pytest.raises(InvalidInput, match="grace_days"):
        CrossCheckRules(grace_days=-1)
    with pytest.raises(InvalidInput, match="utc_offset"):
        CrossCheckRules(utc_offset="8")


def test_revenue_from_utilization() -> None:
    # 62.5 % of 4,000 parts a day at 12.80 CNY
    assert revenue_from_utilization(62.5, capacity_per_day=4_000, unit_price=12.8) == 32_000.0
    # overtime: more than the scheduled hours' capacity, worth more
    assert revenue_from_utilization(125, capacity_per_day=100, unit_price=2) == 250.0
    with pytest.raises(InvalidInput):
        revenue_from_utilization(-1, capacity_per_day=1, unit_price=1)


def test_a_declaration_round_trips() -> None:
    d = declaration()
    assert Declaration.from_payload(d.to_payload()) == d


@given(
    declared=st.floats(0, 1e9, allow_nan=False),
    observed=st.lists(st.floats(0, 1e8, allow_nan=False), min_size=3, max_size=3),
    tolerance=st.floats(0, 99.9),
)
def test_the_verdict_follows_the_tolerance(
    declared: float, observed: list[float], tolerance: float
) -> None:
    rules = CrossCheckRules(tolerance_pct={"revenue": tolerance})
    book = ObservationBook(rules)
    for day, value in zip(NOV, observed, strict=True):
        book.add(Observation(STATION, "revenue", noon(day), value, "CNY", day))
    check = book.check(declaration(value=declared), "d", now_ms=AFTER)
    total = math.fsum(observed)
    assert check.observed == round(total, 6)
    if check.status == "agrees":
        assert abs(declared - total) <= tolerance / 100 * total + 1e-6 * max(1.0, total)
    else:
        assert check.status == ("overstated" if declared > total else "understated")
        assert abs(declared - total) >= tolerance / 100 * total - 1e-6 * max(1.0, total)
