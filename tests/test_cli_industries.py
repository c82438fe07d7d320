"""`fourflow simulate` for the other industries, run in this process (typer's CliRunner)
at the smallest sizes on one anvil node: receipts and pledges on-chain, the devices
reporting, the oracle closing the days, its alarms, facts and freezes; the dealer's
per-VIN pledges, a sale released on-chain and cited by the oracle, a vehicle driven off
unpaid freezing its own pledge; bad arguments refused; configs the oracle accepts."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner, Result

from api.cli import app as cli_app
from api.industry_scene import run_industry_scene
from ledger.chain import Chain
from ledger.collateral import deploy_collateral
from ledger.errors import InvalidInput
from ledger.runtime import Runtime
from oracles.config import OracleConfig
from oracles.mqtt import MqttSettings, MqttSubscriber, parse_topic
from oracles.readings import Alarm
from oracles.service import OracleService
from oracles.sim_vehicles import dealer
from oracles.simulate import oracle_config
from tests.conftest import AnvilNode

pytestmark = pytest.mark.anvil

# the smallest runs that show every incident (energy judges runs of days: its defaults)
RUNS: dict[str, list[str]] = {
    "solar": ["--size", "2"],
    "charging": ["--size", "2"],
    "dealer": ["--days", "1", "--size", "10"],
    "telemetry": ["--days", "1"],
}
DAYS = {"solar": 6, "charging": 10, "dealer": 1, "telemetry": 1}
FIGURES = {
    "solar": {"export_kwh", "pr_pct", "revenue_fen", "revenue_cny"},
    "charging": {"sessions", "energy_kwh", "revenue_cny", "utilization_pct"},
    "dealer": {"financed", "on_lot", "released", "off_lot_unreleased"},
    "telemetry": {"subject", "readings", "fields"},
}
Outcome = Callable[[str], dict[str, Any]]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli_app, list(args))


@pytest.fixture(scope="module")
def outcome(anvil: AnvilNode) -> Outcome:
    """Each kind's `simulate … --json` outcome, run once on the session's anvil node."""
    runs: dict[str, dict[str, Any]] = {}

    def run(kind: str) -> dict[str, Any]:
        if kind not in runs:
            result = invoke("simulate", kind, *RUNS[kind], "--rpc", anvil.url, "--json")
            assert result.exit_code == 0, result.output
            runs[kind] = json.loads(result.stdout)
        return runs[kind]

    return run


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_each_industry_records_its_days_and_detects_its_incidents(
    kind: str, outcome: Outcome
) -> None:
    found = outcome(kind)
    assert found["scenario"]["scenario"] == kind and found["readings"] > 0
    assert found["days_recorded"] == DAYS[kind]
    for day in found["days"]:
        assert FIGURES[kind] <= set(day)
    assert len(found["headline"]["series"]) == len(found["days"])
    incidents = found["incidents"]
    assert incidents and all(i["detected"] for i in incidents)
    assert found["incidents_detected"] == {i["kind"]: True for i in incidents}
    assert {i["rule"] for i in incidents} <= set(found["alarms"])
    assert all(p["status"] == "ACTIVE" or kind == "dealer" for p in found["pledges"])


def test_revenue_is_in_yuan_from_the_fen_the_day_recorded(outcome: Outcome) -> None:
    for day in outcome("charging")["days"]:
        assert day["revenue_cny"] == day["revenue_fen"] / 100


def test_an_energy_covenant_breach_freezes_the_plants_pledge(outcome: Outcome) -> None:
    found = outcome("solar")
    [pledge] = found["pledges"]
    assert pledge["unit"] == "plant" and pledge["quantity"] == 1
    assert "low_performance" in found["alarms"]
    assert pledge["frozen"] == found["frozen"] and pledge["frozen"]


def test_each_financed_vehicle_is_a_receipt_and_its_own_pledge(outcome: Outcome) -> None:
    found = outcome("dealer")
    pledges = {p["subject"]: p for p in found["pledges"]}
    assert len(pledges) == 10 and len({p["pledge_id"] for p in pledges.values()}) == 10
    assert all((p["unit"], p["quantity"]) == ("vehicle", 1) for p in pledges.values())
    # sold unpaid: driven off the lot with no release, its own pledge (only) frozen
    [unpaid] = [i for i in found["incidents"] if i["kind"] == "sold_unpaid"]
    vin = unpaid["subject"]
    assert "unauthorized_movement" in found["alarms_by_subject"][vin]
    assert "UNAUTHORIZED_MOVEMENT" in pledges[vin]["frozen"]
    breaches = {"unauthorized_movement", "certificate_out", "tracker_unplugged"}  # facts
    alarmed = {s for s, rules in found["alarms_by_subject"].items() if breaches & set(rules)}
    for subject, pledge in pledges.items():
        assert bool(pledge["frozen"]) == (subject in alarmed), subject


def test_a_sold_vehicle_is_released_on_chain_and_raises_nothing(
    outcome: Outcome, anvil: AnvilNode
) -> None:
    found = outcome("dealer")
    [sale] = found["releases"]
    vin = sale["vin"]
    pledge = next(p for p in found["pledges"] if p["subject"] == vin)
    assert (pledge["status"], pledge["frozen"]) == ("RELEASED", [])
    assert vin not in found["alarms_by_subject"]
    # the oracle's release record cites the release transaction, which is on the chain
    assert sale["record"]["items"] == [vin]
    assert sale["record"]["onchain"] == {
        "pledge_ids": [sale["pledge_id"]],
        "receipt_ids": [sale["receipt_id"]],
        "tx_hashes": [sale["tx_hash"]],
    }
    receipt = Chain.connect(anvil.url).w3.eth.get_transaction_receipt(sale["tx_hash"])
    assert receipt["status"] == 1


def test_a_vehicle_released_on_chain_may_leave_though_nobody_told_the_oracle(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    """The bank releases a sold vehicle's pledge on chain and nobody records it for the
    oracle: when the vehicle leaves the lot, the rules find its receipt no longer under
    its pledge, release it there and record why (the event that found it, the receipt and
    pledge), so it raises nothing; the unpaid one still freezes its pledge."""
    runtime, keys = Runtime.dev(
        db_url=f"sqlite:///{tmp_path}/store.sqlite", chain=Chain.connect(anvil.url)
    )
    try:
        contracts, _ = deploy_collateral(runtime.registry, runtime.deployment, admin=keys.admin)
        result = run_industry_scene(
            runtime, keys, contracts, kind="dealer", days=1, seed=1, size=10,
            say=lambda *_: None, chain_releases=True,
        )  # fmt: skip
        found = result.to_json()
        [sale] = found["releases"]
        vin = sale["vin"]
        assert vin not in found["alarms_by_subject"]
        record = sale["record"]  # the oracle's own, found on chain
        assert record["items"] == [vin] and "trigger" in record
        assert record["onchain"] == {
            "receipt_ids": [sale["receipt_id"]],
            "pledge_ids": [sale["pledge_id"]],
            "state": "receipt no longer under the pledge",
            "dropped": [f"certificate_out:{vin}:{record['onchain']['dropped'][0].split(':')[-1]}"],
        }
        frozen = {p["subject"] for p in found["pledges"] if p["frozen"]}
        assert frozen and vin not in frozen
        # a restarted worker replays it all, in small passes (checks at other moments),
        # without the chain: it raises nothing the live one dropped, records nothing twice
        stored = runtime.store.counts()["events"]
        assert result.config is not None
        again = OracleService.build(
            runtime, result.config, gateway=result.parties["gateway"], receipts=None
        )
        for _ in range(10_000):  # 40 events a pass until the store is replayed
            fed = again.rules._position
            again.rules.run_once(limit=40)
            if again.rules._position == fed:
                break
        again.rules.run_once(now_ms=result.scenario.end_ms + 600_000)
        assert runtime.store.counts()["events"] == stored
    finally:
        runtime.close()


def test_the_story_and_the_chart(anvil: AnvilNode, tmp_path: Path) -> None:
    chart = tmp_path / "plant.svg"
    result = invoke(
        "simulate", "factory", "--days", "1", "--size", "4", "--rpc", anvil.url,
        "--chart", str(chart),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    story = result.stdout
    for line in (
        "receipt #1 for 4 machines of plant",
        "recorded 1 closed day (manufacturing.daily)",
        "✓ moved",
        "✓ slowdown",
        "utilization % per day (minimum 60)",
        "machine-hours run",
        "unauthorized_movement reported",
        "is FROZEN: UNAUTHORIZED_MOVEMENT",
    ):
        assert line in story
    assert "✗" not in story
    svg = chart.read_text()
    assert svg.startswith("<svg") and "utilization %" in svg and "covenant minimum 60" in svg


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "mill"], "unknown scenario 'mill'"),
        (["simulate", "solar", "--days", "5"], "--days 5: solar needs at least 6 days"),
        (["simulate", "charging", "--days", "9"], "--days 9: charging needs at least 10 days"),
        (["simulate", "factory", "--size", "3"], "--size 3: factory takes 4 to 60 machines"),
        (["simulate", "dealer", "--size", "201"], "--size 201: dealer takes 10 to 200 vehicles"),
        (["simulate", "telemetry", "--size", "5"], "--size: telemetry has no size to choose"),
        (["simulate", "factory", "--days", "0"], "--days"),
        (["simulate", "solar", "--start", "soon", "--write-config", "x.json"], "--start 'soon'"),
        (
            ["simulate", "factory", "--start", "2026-11-02"],
            "--start needs --mqtt or --write-config",
        ),
    ],
)
def test_bad_arguments_exit_non_zero_saying_why(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_output_file_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_text("a file, not a directory")
    (tmp_path / "chart.svg").mkdir()
    for option, path, message in [
        ("--chart", "plain/chart.svg", "--chart plain/chart.svg: cannot make its directory"),
        ("--chart", "chart.svg", "--chart chart.svg: is a directory"),
        ("--write-config", "plain/c.json", "--write-config plain/c.json: cannot make"),
    ]:
        result = invoke("simulate", "factory", "--days", "1", "--size", "4", option, path)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.svg", "plain"]


@pytest.mark.parametrize("kind", sorted({"factory", *RUNS}))
def test_write_config_writes_what_the_oracle_accepts(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "conf" / f"{kind}.json"
    smallest = RUNS.get(kind, ["--days", "1", "--size", "4"])
    result = invoke(
        "simulate", kind, *smallest, "--start", "2026-11-02", "--tenant", "site-7",
        "--write-config", str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote the oracle config for {kind}" in result.stdout
    config = OracleConfig.load(path)
    assert config.tenant == "site-7" and config.devices
    watched = {w.subject for w in config.site_watches()}
    assert watched and watched <= {d.subject for d in config.devices_by_id().values()}


def test_mqtt_publishes_each_devices_readings_to_its_topic(tmp_path: Path) -> None:
    """The dealer as its devices would send it, to the Mosquitto broker: every reading
    on its device's topic; the sale is the lender's, on-chain, and is not sent."""
    tag = uuid.uuid4().hex[:12]
    tenant = f"t{tag}"
    settings = MqttSettings(client_id=f"fourflow-test-{tag}", tenant=tenant, timeout_s=10)
    got: dict[str, int] = {}
    lock = threading.Lock()

    def handler(topic: str, payload: bytes) -> None:
        body = json.loads(payload)
        with lock:
            device = parse_topic(topic).device or ""
            got[device] = got.get(device, 0) + (len(body) if isinstance(body, list) else 1)

    subscriber = MqttSubscriber(settings, handler, retry_initial_s=0.1, retry_max_s=0.5)
    subscriber.start()
    try:
        assert subscriber.wait_subscribed(10)
        config = tmp_path / "dealer.json"
        args = ["simulate", "dealer", "--days", "1", "--size", "10", "--tenant", tenant]
        result = invoke(*args, "--mqtt", "--write-config", str(config))
        assert result.exit_code == 0, result.output
        sent = int(result.stdout.split("published ")[1].split(" readings")[0].replace(",", ""))
        assert "1 release" in result.stdout and "the lender's" in result.stdout
        deadline = time.monotonic() + 20
        while sum(got.values()) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscriber.stop(10)
        # connecting once with a clean session ends the broker's session for the id
        forget = Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, clean_session=True
        )
        forget.connect(settings.host, settings.port)
        forget.loop_start()
        deadline = time.monotonic() + 10
        while not forget.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        forget.disconnect()
        forget.loop_stop()
    devices = {d.id for d in OracleConfig.load(config).devices}
    assert sum(got.values()) == sent > 1_000
    assert set(got) == devices  # every tracker and the safe's reader, on its own topic


def test_a_dealer_config_naming_a_vehicle_it_does_not_finance_is_refused() -> None:
    scenario = dealer(days=1, seed=1, vehicles=10, incidents=[])
    raw = oracle_config(scenario)
    vin = scenario.subject["vehicles"][0]
    raw["dealers"][0]["vehicles"] = {vin: {"receipt_id": 7, "pledge_id": 7}}
    [watch] = OracleConfig.parse(raw).site_watches()
    assert watch.pledged(vin) == (7, 7) and watch.pledged("urn:other") == (None, None)
    # an alarm about a device on the vehicle (its silent tracker) is the vehicle's
    tracker = Alarm(
        key="tracker_silent:urn:dev:t1:0", rule="tracker_silent", subject="urn:dev:t1",
        severity="warning", time_ms=0, message="silent", evidence=(),
        details={"device": "urn:dev:t1", "vin": vin}, fact="stale_data",
    )  # fmt: skip
    assert watch.pledged_for(tracker) == (7, 7)
    reader = replace(tracker, subject="urn:dev:safe", details={"vin": None})
    assert watch.pledged_for(reader) == (None, None)
    raw["dealers"][0]["vehicles"]["LSVAU2A33T0000000"] = {"receipt_id": 8}
    with pytest.raises(InvalidInput) as caught:
        OracleConfig.parse(raw)
    assert caught.value.field == "dealers[0].vehicles"
    assert "not financed vehicles of the dealer: LSVAU2A33T0000000" in caught.value.message
