"""The history summary's operations block: each industry's closed days as series with
their units, and the verdicts on borrowers' declarations, read from the flow entries of
sites simulated through the oracle service (tests/operations_scene.py), on SQLite and on
the PostgreSQL server, and through the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update
from sqlmodel import SQLModel, col, select

from api.app import create_app
from api.settings import Settings
from api.siwe_client import sign_in
from ledger.canonical import canonical_json
from ledger.flows import FlowEntryRow
from ledger.history import (
    CHECK_KIND,
    CHECK_SEVERITY,
    DAILY_KINDS,
    OPERATION_SERIES,
    HistoryFilter,
    Subject,
    _summary_of,
    _telemetry_series,
    _verdict,
    default_entries,
)
from ledger.models import EventBody, utc_text
from ledger.signing import sign_submission
from oracles.crosscheck import RULES, CrossCheck, Declaration
from oracles.vehicles import DealerDay, VehicleDay
from tests.conftest import fresh_pg_database
from tests.operations_scene import DAYS, Operations, build_operations

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operations]:
    path: Path = tmp_path_factory.mktemp("operations") / "store.sqlite"
    with build_operations(f"sqlite:///{path}") as built:
        yield built


def operations(ops: Operations, asset: str) -> dict[str, Any]:
    histories = ops.histories()
    block: dict[str, Any] = histories.summary(histories.asset_subject(asset))["operations"]
    return block


def site_of(ops: Operations, name: str) -> tuple[str, dict[str, Any]]:
    (subject, *_) = ops.subjects(name)
    (site,) = operations(ops, subject)["sites"]
    return subject, site


def series(site: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["metric"]: line for line in site["series"]}


# --- each industry's days ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "industry", "kind"),
    [
        ("plant", "manufacturing", "manufacturing.daily"),
        ("solar", "solar", "energy.daily"),
        ("charging", "charging", "energy.daily"),
    ],
)
def test_a_sites_series_are_its_closed_days_figures_with_their_units(
    ops: Operations, name: str, industry: str, kind: str
) -> None:
    subject, site = site_of(ops, name)
    days = ops.events(kind, subject)
    assert len(days) == DAYS
    assert (site["subject"], site["industry"], site["kind"]) == (subject, industry, kind)
    assert site["recorded_by"] == ops.keys.submitters[0].address  # the oracle's gateway
    assert site["days"] == [d["payload"]["day"] for d in days]
    assert site["event_ids"] == [d["event_id"] for d in days]
    assert site["latest"] == {
        "day": days[-1]["payload"]["day"],
        "time": utc_text(_ms(days[-1]["event_time"])),
        "event_id": days[-1]["event_id"],
    }
    lines = series(site)
    assert [(m, lines[m]["label"], lines[m]["unit"]) for m in lines] == list(
        OPERATION_SERIES[industry]
    )
    for metric, line in lines.items():
        if metric == "energy_per_unit_kwh":
            continue  # derived: below
        assert line["values"] == [d["payload"][metric] for d in days], metric
        assert line["latest"] == days[-1]["payload"][metric]
    assert any(v for line in lines.values() for v in line["values"])  # not all zero


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_manufacturing_shows_utilization_hours_output_energy_and_energy_per_piece(
    ops: Operations,
) -> None:
    subject, site = site_of(ops, "plant")
    lines = series(site)
    assert {m: lines[m]["unit"] for m in lines} == {
        "utilization_pct": "%",
        "running_h": "h",
        "output": "pieces",
        "energy_kwh": "kWh",
        "energy_per_unit_kwh": "kWh/piece",
    }
    expected = []
    for day in ops.events("manufacturing.daily", subject):
        counted = [m for m in day["payload"]["machines"].values() if (m["output"] or 0) > 0]
        # the machines without a counter use energy too: they must not be in it
        assert len(counted) < len(day["payload"]["machines"])
        pieces = sum(m["output"] for m in counted)
        expected.append(round(sum(m["energy_kwh"] for m in counted) / pieces, 4))
    assert lines["energy_per_unit_kwh"]["values"] == expected
    assert all(0 < v < 100 for v in lines["utilization_pct"]["values"])


def test_money_travels_in_fen_with_its_currency(ops: Operations) -> None:
    for name in ("solar", "charging"):
        _, site = site_of(ops, name)
        revenue = series(site)["revenue_fen"]
        assert (revenue["unit"], revenue["currency"]) == ("fen", "CNY")
        assert all(isinstance(v, int) and v > 0 for v in revenue["values"])
        assert all("currency" not in line for line in site["series"] if line is not revenue)


def test_solar_shows_insolation_and_performance_ratio(ops: Operations) -> None:
    _, site = site_of(ops, "solar")
    lines = series(site)
    assert lines["insolation_kwh_m2"]["unit"] == "kWh/m²"
    assert all(2 < v < 9 for v in lines["insolation_kwh_m2"]["values"])
    assert lines["pr_pct"]["unit"] == "%" and all(50 < v < 100 for v in lines["pr_pct"]["values"])


def test_telemetry_shows_each_fields_daily_aggregates_in_the_schemas_unit(
    ops: Operations,
) -> None:
    for subject in ops.subjects("telemetry"):
        (site,) = operations(ops, subject)["sites"]
        assert site["industry"] == "telemetry"
        days = [e["payload"] for e in ops.events("telemetry.daily", subject)]
        expected = {}
        for index, day in enumerate(days):
            for measured in day["series"]:
                for field, figures in measured["fields"].items():
                    for aggregate, value in figures.items():
                        if aggregate in ("unit", "readings"):
                            continue
                        key = (measured["subject"], measured["schema"], f"{field}.{aggregate}")
                        line = expected.setdefault(
                            key, {"unit": figures["unit"], "values": [None] * len(days)}
                        )
                        line["values"][index] = value
        got = {
            (line["measured"], line["schema"], line["metric"]): {
                "unit": line["unit"],
                "values": line["values"],
            }
            for line in site["series"]
        }
        assert got == expected and len(got) >= 3
    (cold_room,) = [s for s in ops.subjects("telemetry") if "coldstore" in s]
    (site,) = operations(ops, cold_room)["sites"]
    assert {line["unit"] for line in site["series"] if line["metric"].startswith("temp")} == {
        "degC"
    }


def test_vehicles_show_the_lot_the_releases_and_the_safe(ops: Operations) -> None:
    """A dealer's closed day, signed by the oracle's gateway as the rules worker does."""
    dealer = "urn:fourflow:dealer:test:ops"
    vehicles = {
        "VIN00000000000001": VehicleDay("on_lot", certificate="in", keys="in"),
        "VIN00000000000002": VehicleDay("on_lot", certificate="in", keys="out"),
        "VIN00000000000003": VehicleDay(
            "off_lot_released", released_ms=1, certificate="out", keys="out"
        ),
        "VIN00000000000004": VehicleDay("off_lot_unreleased", certificate="out", keys="out"),
    }
    day = DealerDay(
        dealer=dealer,
        day="2026-10-06",
        financed=3,
        released=("VIN00000000000003",),
        on_lot=2,
        off_lot_released=1,
        off_lot_unreleased=1,
        unseen=0,
        tracker_unplugged=0,
        certificates_in_safe=2,
        keys_in_safe=1,
        vehicles=vehicles,
        evidence=(),
    )
    payload = DealerDay.from_payload(day.to_payload()).to_payload()
    gateway = ops.keys.submitters[0]
    body = EventBody(
        kind="vehicles.daily",
        schema_version=1,
        stream="ops.findings",
        event_id=f"urn:fourflow:daily:vehicles:test:{day.day}",
        asset_ids=[dealer],
        event_time="2026-10-06T15:59:59.999Z",
        payload=payload,
        submitter=gateway.address,
    )
    domain = ops.runtime.intake.domain
    ops.runtime.intake.submit(sign_submission([body], private_key=gateway.key, domain=domain))
    (site,) = operations(ops, dealer)["sites"]
    assert site["industry"] == "vehicles" and site["days"] == ["2026-10-06"]
    assert {m: (line["unit"], line["latest"]) for m, line in series(site).items()} == {
        "financed": ("vehicles", 3),
        "on_lot": ("vehicles", 2),
        "released_count": ("vehicles", 1),
        "off_lot_released": ("vehicles", 1),
        "off_lot_unreleased": ("vehicles", 1),
        "certificates_in_safe": ("certificates", 2),
        "keys_in_safe": ("keys", 1),
    }


# --- the verdicts -----------------------------------------------------------------------


def test_the_verdicts_show_declared_against_observed_and_flag_the_breach(
    ops: Operations,
) -> None:
    subject, _ = site_of(ops, "plant")
    checks = operations(ops, subject)["checks"]
    results = {e["payload"]["declaration"]: e for e in ops.events(CHECK_KIND, subject)}
    assert (
        {c["declaration"] for c in checks}
        == set(results)
        == {
            "decl-output-honest",
            "decl-output-inflated",
        }
    )
    by_declaration = {c["declaration"]: c for c in checks}
    for declaration, check in by_declaration.items():
        payload = results[declaration]["payload"]
        assert check["event_id"] == results[declaration]["event_id"]
        assert (check["declared"], check["declared_unit"]) == (payload["value"], "pieces")
        assert (check["observed"], check["observed_unit"]) == (payload["observed"], "pieces")
        assert check["difference"] == payload["difference"]
        assert check["period"] == payload["period"]
        assert check["recorded_by"] == ops.keys.submitters[0].address
    honest, inflated = by_declaration["decl-output-honest"], by_declaration["decl-output-inflated"]
    assert (honest["status"], honest["breach"], honest["difference"]) == ("agrees", False, 0)
    assert (inflated["status"], inflated["severity"], inflated["breach"]) == (
        "overstated",
        "breach",
        True,
    )
    assert inflated["difference_pct"] == pytest.approx(30, abs=0.1)
    (solar_check,) = operations(ops, ops.subjects("solar")[0])["checks"]
    assert (solar_check["declared_unit"], solar_check["status"]) == ("CNY", "agrees")


def test_a_verdict_is_in_the_commercial_flow_next_to_the_declaration(ops: Operations) -> None:
    subject, _ = site_of(ops, "plant")
    histories = ops.histories()
    asset = histories.asset_subject(subject)
    commercial = histories.page(asset, where=HistoryFilter.parse(flows=["commercial"]))
    kinds = sorted(e.kind for e in commercial.entries)
    assert kinds == ["crosscheck.result"] * 2 + ["document.declaration"] * 2
    information = histories.page(asset, where=HistoryFilter.parse(flows=["information"]), limit=500)
    assert "crosscheck.result" not in {e.kind for e in information.entries}
    assert "manufacturing.daily" in {e.kind for e in information.entries}


def test_each_verdicts_severity_is_the_alarm_the_check_raises() -> None:
    declaration = Declaration.from_payload(
        {
            "metric": "output",
            "subject": "urn:x",
            "period": {"from": "2026-10-05", "to": "2026-10-05"},
            "value": 10,
            "unit": "pieces",
        }
    )
    for status in ("agrees", "overstated", "understated", "incomparable", "unverifiable"):
        check = CrossCheck(
            declaration, "d", status, 5.0, "pieces", 5.0, 100.0, 5.0, 1, (), ("d",), 0
        )
        alarm = check.alarm()
        assert CHECK_SEVERITY.get(status) == (None if alarm is None else alarm.severity)
        if alarm is not None:
            assert RULES[alarm.rule][0] == alarm.severity


# --- bounds and old entries -------------------------------------------------------------


def test_the_block_holds_the_newest_365_days_and_20_verdicts(ops: Operations) -> None:
    asset = "urn:fourflow:plant:test:bounded"
    rows = []
    first = 1_780_000_000_000
    for n in range(400):
        payload = {"plant": asset, "day": f"day-{n:03d}", "utilization_pct": float(n)}
        for entry in default_entries("manufacturing.daily", [asset], payload):
            rows.append({"event_id": f"bounded-{n:03d}", "time_ms": first + n * DAY_MS, **entry})
    for n in range(25):
        payload = {"declaration": f"decl-{n:02d}", "status": "agrees", "value": n}
        for entry in default_entries(CHECK_KIND, [asset], payload):
            rows.append({"event_id": f"check-{n:02d}", "time_ms": first + n * DAY_MS, **entry})
    with ops.runtime.store.engine.begin() as connection:
        connection.execute(insert(SQLModel.metadata.tables["flow_entries"]), rows)
    subject = Subject(kind="asset", id=asset, assets=(asset,), receipts=(), pledges=())
    block = ops.histories().summary(subject)["operations"]
    (site,) = block["sites"]
    assert site["days"] == [f"day-{n:03d}" for n in range(35, 400)]
    assert series(site)["utilization_pct"]["values"] == [float(n) for n in range(35, 400)]
    assert [c["declaration"] for c in block["checks"]] == [f"decl-{n:02d}" for n in range(5, 25)]


def test_an_entry_catalogued_before_the_figures_reads_its_event(ops: Operations) -> None:
    """A store catalogued before these summaries carried figures: the block reads the
    event's payload instead, and shows the same."""
    subject, _ = site_of(ops, "plant")
    before = operations(ops, subject)
    old = {}
    for event in [*ops.events("manufacturing.daily", subject), *ops.events(CHECK_KIND, subject)]:
        old[event["event_id"]] = canonical_json(_summary_of(event["payload"])).decode()
    store = ops.runtime.store
    with store.session() as session:
        saved = dict(
            session.exec(
                select(FlowEntryRow.event_id, FlowEntryRow.summary).where(
                    col(FlowEntryRow.event_id).in_(list(old))
                )
            ).all()
        )
    assert set(saved) == set(old)
    with store.engine.begin() as connection:
        for event_id, text in old.items():
            connection.execute(
                update(FlowEntryRow)
                .where(col(FlowEntryRow.event_id) == event_id)
                .values(summary=text)
            )
    try:
        assert "utilization_pct" not in json.loads(next(iter(old.values())))
        assert operations(ops, subject) == before
    finally:
        with store.engine.begin() as connection:
            for event_id, text in saved.items():
                connection.execute(
                    update(FlowEntryRow)
                    .where(col(FlowEntryRow.event_id) == event_id)
                    .values(summary=text)
                )


def test_a_subject_without_sites_has_an_empty_block(ops: Operations) -> None:
    asset = "urn:fourflow:lot:nothing-daily"
    subject = Subject(kind="asset", id=asset, assets=(asset,), receipts=(), pledges=())
    assert ops.histories().summary(subject)["operations"] == {
        "days": 365,
        "sites": [],
        "checks": [],
    }


# --- who recorded it; what any submitter may store -------------------------------------

FIRST_DAY_MS = 1_790_000_000_000  # days of the sites below, well after the simulated ones


def record(
    ops: Operations, submitter: int, kind: str, asset: str, payload: dict[str, Any], n: int
) -> str:
    """A ``kind`` event about ``asset`` on day ``n``, signed by submitter key ``submitter``
    (0: the oracle's gateway; 2: another admitted party): as any submitter may."""
    key = ops.keys.submitters[submitter]
    event_id = f"urn:test:{kind}:{submitter}:{asset}:{n}"
    body = EventBody(
        kind=kind,
        schema_version=1,
        stream=f"test.{submitter}",
        event_id=event_id,
        asset_ids=[asset],
        event_time=utc_text(FIRST_DAY_MS + n * DAY_MS),
        payload=payload,
        submitter=key.address,
    )
    domain = ops.runtime.intake.domain
    ops.runtime.intake.submit(sign_submission([body], private_key=key.key, domain=domain))
    return event_id


def test_the_same_days_recorded_by_another_submitter_are_another_site(ops: Operations) -> None:
    """A lender sees who recorded each series: the oracle's gateway's days and another
    submitter's days of the same subject are never merged into one series."""
    (plant,) = ops.subjects("plant")
    asset = "urn:fourflow:plant:test:two-recorders"
    days = [e["payload"] | {"plant": asset} for e in ops.events("manufacturing.daily", plant)]
    gateway = [record(ops, 0, "manufacturing.daily", asset, d, n) for n, d in enumerate(days)]
    other_days = [d | {"output": 2 * d["output"]} for d in days[:2]]  # what it claims
    other = [record(ops, 2, "manufacturing.daily", asset, d, n) for n, d in enumerate(other_days)]
    sites = operations(ops, asset)["sites"]
    by = {s["recorded_by"]: s for s in sites}
    assert len(sites) == 2 and set(by) == {
        ops.keys.submitters[0].address,
        ops.keys.submitters[2].address,
    }
    ours, theirs = by[ops.keys.submitters[0].address], by[ops.keys.submitters[2].address]
    assert (ours["subject"], theirs["subject"]) == (asset, asset)
    assert (ours["event_ids"], theirs["event_ids"]) == (gateway, other)
    assert series(ours)["output"]["values"] == [d["output"] for d in days]
    assert series(theirs)["output"]["values"] == [d["output"] for d in other_days]
    assert ours["days"] == [d["day"] for d in days]


# each industry's day with what does not belong where it is: strings, lists and objects
# where numbers are, lists where objects are, numbers where texts are, figures too large
# to add up (the largest a JSON number here may be; larger ones are not accepted at all)
MALFORMED: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "manufacturing": [
        (
            "manufacturing.daily",
            {
                "day": "2026-10-05",
                "utilization_pct": "abc",
                "running_h": [1, 2],
                "output": {"pieces": 1},
                "energy_kwh": True,
                "machines": {
                    "m": {"output": 1, "energy_kwh": "abc"},
                    "n": {"output": 2, "energy_kwh": [1]},
                    "o": {"output": 3, "energy_kwh": {"kwh": 1}},
                    "p": {"output": True, "energy_kwh": 1},
                    "q": [1],
                    "r": {"output": "5", "energy_kwh": 1},
                    "big": {"output": 1, "energy_kwh": 1e308},
                    "bigger": {"output": 9_007_199_254_740_991, "energy_kwh": 1e308},
                },
            },
        ),
        ("manufacturing.daily", {"day": "2026-10-06", "machines": [1, 2], "output": "7"}),
    ],
    "solar": [
        (
            "energy.daily",
            {
                "day": "2026-10-05",
                "generation_kwh": "lots",
                "pr_pct": [1],
                "revenue_fen": {"fen": 1},
                "period": "2026-10",
                "inverters": "abc",
            },
        ),
        ("energy.daily", {"day": ["2026-10-06"], "generation_kwh": 5.0}),  # not a day
    ],
    "charging": [
        (
            "energy.daily",
            {"station": 7, "day": "2026-10-05", "sessions": "9", "revenue_fen": [100]},
        ),
    ],
    "vehicles": [
        (
            "vehicles.daily",
            {
                "day": "2026-10-05",
                "financed": "3",
                "on_lot": [1],
                "released": "VIN00000000000001",
                "vehicles": [1],
                "keys_in_safe": 9_007_199_254_740_991,
            },
        ),
    ],
    "telemetry": [
        (
            "telemetry.daily",
            {
                "day": "2026-10-05",
                "series": [
                    {"subject": 5, "schema": "pump", "fields": {"flow": {"mean": 1.0}}},
                    {"subject": "s", "schema": "pump", "fields": [1, 2]},
                    {"subject": "t", "schema": ["pump"], "fields": {"flow": {"mean": 1.0}}},
                    "not a series",
                    {
                        "subject": "u",
                        "schema": "pump",
                        "fields": {"flow": [1], "temp": {"mean": "hot", "max": 3.5, "unit": 7}},
                    },
                ],
            },
        ),
        ("telemetry.daily", {"day": "2026-10-06", "series": {"subject": "u"}}),
    ],
}
# a good day after them, and the figure it shows
GOOD: dict[str, tuple[str, dict[str, Any], str, float]] = {
    "manufacturing": (
        "manufacturing.daily",
        {
            "day": "2026-10-07",
            "utilization_pct": 80.5,
            "output": 100,
            "machines": {"m": {"output": 100, "energy_kwh": 25.0}},
        },
        "energy_per_unit_kwh",
        0.25,
    ),
    "solar": ("energy.daily", {"day": "2026-10-07", "pr_pct": 81.5}, "pr_pct", 81.5),
    "charging": (
        "energy.daily",
        {"station": "st", "day": "2026-10-07", "sessions": 12},
        "sessions",
        12,
    ),
    "vehicles": ("vehicles.daily", {"day": "2026-10-07", "on_lot": 4}, "on_lot", 4),
    "telemetry": (
        "telemetry.daily",
        {
            "day": "2026-10-07",
            "series": [
                {
                    "subject": "u",
                    "schema": "pump",
                    "fields": {"temp": {"unit": "degC", "mean": 2.5, "max": 4.0}},
                }
            ],
        },
        "temp.max",
        4.0,
    ),
}
NAMES = {"manufacturing": "plant", "solar": "plant", "charging": "station", "vehicles": "dealer"}


def test_malformed_days_of_any_submitter_never_stop_the_histories(
    ops: Operations, client: TestClient
) -> None:
    """Before the figures kept to their shapes, one such day stopped the catalog (a
    ValueError, TypeError or AttributeError on every later history request)."""
    histories = ops.histories()
    histories.catalog.catch_up()
    recorded: dict[str, list[str]] = {}
    for industry, days in MALFORMED.items():
        asset = f"urn:fourflow:{industry}:test:malformed"
        for n, (kind, payload) in enumerate(days):
            if industry in NAMES:
                payload = {NAMES[industry]: asset} | payload
            recorded.setdefault(industry, []).append(record(ops, 2, kind, asset, payload, n))
    checks = [
        {"declaration": 5, "status": ["overstated"], "period": "2026-10", "declared": "lots"},
        {"declaration": "d", "status": "overstated", "period": {"from": 1, "to": "2026-10-07"}},
    ]
    check_asset = "urn:fourflow:manufacturing:test:malformed"
    check_ids = [record(ops, 2, CHECK_KIND, check_asset, c, 10 + n) for n, c in enumerate(checks)]
    # the catalog passes them all
    assert histories.catalog.catch_up() == sum(map(len, MALFORMED.values())) + len(checks)
    assert histories.catalog.catch_up() == 0
    # the other subjects' histories still answer, and show the same
    (plant,) = ops.subjects("plant")
    assert operations(ops, plant)["sites"][0]["days"] == [
        e["payload"]["day"] for e in ops.events("manufacturing.daily", plant)
    ]
    path = f"/v1/assets/{quote(plant, safe='')}/history"
    auditor = {"Authorization": f"Bearer {sign_in(client, ops.auditor)}"}
    assert client.get(path, headers=auditor).status_code == 200
    # each malformed site: its days without the figures that are not numbers
    other = ops.keys.submitters[2].address
    for industry in MALFORMED:
        asset = f"urn:fourflow:{industry}:test:malformed"
        answer = client.get(f"/v1/assets/{quote(asset, safe='')}/history", headers=auditor)
        assert answer.status_code == 200, answer.text
        block = answer.json()["summary"]["operations"]
        (site,) = block["sites"]
        assert (site["industry"], site["recorded_by"]) == (industry, other)
        good = [d for _, d in MALFORMED[industry] if isinstance(d.get("day"), str)]
        assert site["days"] == [d["day"] for d in good]
        if industry == "telemetry":  # only the one well-formed aggregate of the series
            assert [(s["measured"], s["metric"], s["unit"]) for s in site["series"]] == [
                ("u", "temp.max", "")
            ]
            assert site["series"][0]["values"] == [3.5, None]
        else:
            for line in site["series"]:
                if line["metric"] != "keys_in_safe":
                    assert set(line["values"]) == {None}, (industry, line)
        # a later good day is shown
        kind, payload, metric, value = GOOD[industry]
        if industry in NAMES and NAMES[industry] not in payload:
            payload = {NAMES[industry]: asset} | payload
        event_id = record(ops, 2, kind, asset, payload, 3)
        after = operations(ops, asset)["sites"]
        shown = next(s for s in after if s["latest"]["event_id"] == event_id)
        assert shown["latest"]["day"] == "2026-10-07"
        assert series(shown)[metric]["latest"] == value
    (vehicles,) = operations(ops, "urn:fourflow:vehicles:test:malformed")["sites"]
    assert series(vehicles)["keys_in_safe"]["values"] == [9_007_199_254_740_991, None]
    # the verdicts: the texts that are texts, the rest null; a breach is still one
    block = operations(ops, check_asset)
    verdicts = {c["event_id"]: c for c in block["checks"]}
    assert set(verdicts) == set(check_ids)
    first, second = verdicts[check_ids[0]], verdicts[check_ids[1]]
    assert (first["declaration"], first["status"], first["declared"]) == (None, None, None)
    assert first["period"] == {"from": None, "to": None} and not first["breach"]
    assert second["period"] == {"from": None, "to": "2026-10-07"} and second["breach"]
    assert {c["recorded_by"] for c in block["checks"]} == {other}


def test_no_payload_shape_makes_the_figures_fail() -> None:
    """The summaries of these kinds, and the block's pieces, on any JSON value."""
    shapes: list[Any] = [None, True, 0, -1.5, 1e308, "x", [], [1, "a"], {}, {"a": [1]}]
    names = ("day", "machines", "series", "period", "plant", "station", "status", "declared")
    for kind in (*DAILY_KINDS, CHECK_KIND):
        for name in names:
            for value in shapes:
                payload = {name: value, "machines": {"m": {"output": 1, "energy_kwh": value}}}
                (entry,) = default_entries(kind, ["urn:x"], payload)
                figures = json.loads(entry["summary"])
                _verdict("e", 0, figures)
                _telemetry_series(
                    [figures, {"series": [{"subject": "s", "schema": "p", "fields": {"f": value}}]}]
                )


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.mark.postgres
def test_on_postgresql_the_block_is_the_one_sqlite_gives(ops: Operations) -> None:
    names = ("plant", "charging")
    with fresh_pg_database() as url, build_operations(url, names) as pg:
        for name in names:
            (subject, *_) = pg.subjects(name)
            # each store has its own dev keys: who recorded it compares as which key it was
            assert by_key(pg, operations(pg, subject)) == by_key(ops, operations(ops, subject)), (
                name
            )
        plant = pg.subjects("plant")[0]
        assert [c["status"] for c in operations(pg, plant)["checks"]] == [
            c["status"] for c in operations(ops, plant)["checks"]
        ]


def by_key(ops: Operations, block: dict[str, Any]) -> dict[str, Any]:
    """``block`` with each ``recorded_by`` as the number of the submitter key it is."""
    keys = [k.address for k in ops.keys.submitters]
    return {
        **block,
        **{
            part: [item | {"recorded_by": keys.index(item["recorded_by"])} for item in block[part]]
            for part in ("sites", "checks")
        },
    }


# --- the API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(ops: Operations) -> Iterator[TestClient]:
    app = create_app(ops.runtime, settings=Settings())
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def test_the_api_answers_the_block_and_the_commercial_verdicts(
    ops: Operations, client: TestClient
) -> None:
    subject, _ = site_of(ops, "plant")
    path = f"/v1/assets/{quote(subject, safe='')}/history"
    auditor = {"Authorization": f"Bearer {sign_in(client, ops.auditor)}"}
    answer = client.get(path, headers=auditor)
    assert answer.status_code == 200, answer.text
    block = answer.json()["summary"]["operations"]
    assert block == operations(ops, subject)
    (site,) = block["sites"]
    assert series(site)["output"]["unit"] == "pieces"
    assert {c["status"]: c["breach"] for c in block["checks"]} == {
        "agrees": False,
        "overstated": True,
    }
    verdicts = client.get(path, headers=auditor, params={"kind": CHECK_KIND}).json()["entries"]
    assert [e["flow"] for e in verdicts] == ["commercial", "commercial"]
    assert {e["summary"]["status"] for e in verdicts} == {"agrees", "overstated"}
    outsider = {"Authorization": f"Bearer {sign_in(client, ops.outsider)}"}
    hidden = client.get(path, headers=outsider)
    assert hidden.status_code == 403
    assert hidden.json()["error"]["code"] == "not_found_or_forbidden"
