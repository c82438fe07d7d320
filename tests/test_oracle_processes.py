"""The oracle commands as real processes: `fourflow deploy` on anvil, `fourflow simulate
--write-config`, `fourflow oracle import` of a signed reader export, and `fourflow oracle
run` taking a simulated warehouse in over the Mosquitto broker while `fourflow simulate
--mqtt` publishes it. Every process is bounded in time and stopped by the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account import Account

from ledger.chain import Chain, new_account
from ledger.oracle_state import OracleState
from ledger.store import Store
from oracles.files import sign_file
from oracles.mqtt import MqttSettings, MqttSubscriber
from oracles.simulate import warehouse
from tests.conftest import ANVIL_DEV_KEY, AnvilNode, ServeProcess, fourflow_bin

pytestmark = pytest.mark.anvil
START = "2026-11-20"  # a past week: readings from the future are refused


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fourflow_bin(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def setup(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("oracle-cli")
    chain = Chain.connect(anvil.url)
    oracle, gateway = new_account(), new_account()
    for account in (oracle, gateway):
        chain.fund(account.address)
    tenant = f"t{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "FOURFLOW_ADMIN_KEY": ANVIL_DEV_KEY,
        "FOURFLOW_ORACLE_ADDRESS": oracle.address,
        "FOURFLOW_SUBMITTERS": gateway.address,
        "FOURFLOW_ORACLE_KEY": oracle.key.hex(),
        "FOURFLOW_GATEWAY_KEY": gateway.key.hex(),
        "FOURFLOW_RPC_URL": anvil.url,
        "FOURFLOW_MANIFEST": str(tmp / "deployment.json"),
        "FOURFLOW_DB_URL": f"sqlite:///{tmp}/oracle.sqlite",
        "FOURFLOW_MQTT_CLIENT_ID": f"oracle-{tenant}",
        "FOURFLOW_MQTT_TENANT": tenant,
        "FOURFLOW_CAPTURE_TOKEN": "simulated-site-gateway",
        "FOURFLOW_CAPTURE_TOKENS": "site-gateway:"
        + hashlib.sha256(b"simulated-site-gateway").hexdigest(),
    }
    deployed = run("deploy", env=env)
    assert deployed.returncode == 0, deployed.stderr
    written = run(
        "simulate", "warehouse", "--days", "1", "--seed", "3", "--tenant", tenant,
        "--start", START, "--write-config", str(tmp / "oracle.json"), env=env,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    return {"env": env, "tmp": tmp, "tenant": tenant, "db": env["FOURFLOW_DB_URL"]}


def test_a_signed_reader_export_is_imported_and_a_forged_one_refused(setup: dict[str, Any]) -> None:
    env, tmp = setup["env"], setup["tmp"]
    scenario = warehouse(days=1, seed=3, start=datetime.fromisoformat(START).replace(tzinfo=UTC))
    climate = next(d for d in scenario.devices if d.device.id.endswith("climate-a"))
    rows = [
        f"{climate.device.id},{9_000 + i},2026-11-23T0{i}:00:00.000+08:00,climate,"
        f'"{{""zone"":""{climate.device.subject}"",""temperature"":18.{i},""humidity"":50}}"'
        for i in range(5)
    ]
    data = ("device,seq,time,kind,data\n" + "\n".join(rows) + "\nnot,a,row\n").encode()
    export = tmp / "climate-a.csv"
    export.write_bytes(data)
    export.with_name("climate-a.csv.sig").write_text(
        sign_file(data, private_key=climate.private_key)
    )
    config = str(tmp / "oracle.json")
    done = run(
        "oracle", "import", str(export), "--config", config, "--signer", climate.device.id, env=env
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "5 readings stored, 0 duplicates, 1 refused" in done.stdout
    again = run(
        "oracle", "import", str(export), "--config", config, "--signer", climate.device.id, env=env
    )
    assert "0 readings stored, 5 duplicates" in again.stdout

    stranger = Account.create()
    export.with_name("climate-a.csv.sig").write_text(sign_file(data, private_key=stranger.key))
    forged = run(
        "oracle", "import", str(export), "--config", config, "--signer", climate.device.id, env=env
    )
    assert forged.returncode == 2
    assert f"is signed by {stranger.address}" in forged.stderr

    store = Store.open(setup["db"])
    stored = store.event(f"{climate.device.id};seq=9002")
    payload = json.loads(stored.envelope)["event"]["payload"]
    assert payload["provenance"]["line"] == 4 and payload["data"]["temperature"] == 18.2
    assert store.stored_ids([f"urn:fourflow:file:{payload['provenance']['file_sha256']}"])
    store.close()


def test_oracle_run_takes_a_simulated_warehouse_in_over_mqtt(setup: dict[str, Any]) -> None:
    env, tmp, tenant = setup["env"], setup["tmp"], setup["tenant"]
    serve_env = {k: v for k, v in env.items() if k != "FOURFLOW_ORACLE_KEY"}  # one anchorer
    oracle_log = tmp / "oracle.log"
    # the oracle's persistent MQTT session exists before anything is published: the broker
    # keeps what arrives for it until the oracle has connected, however slowly it starts
    session = MqttSubscriber(
        MqttSettings.from_env(env), lambda _topic, _body: None, retry_initial_s=0.1
    )
    session.start()
    try:
        assert session.wait_subscribed(30)
    finally:
        session.stop()
    with oracle_log.open("w") as log:
        oracle = subprocess.Popen(
            [fourflow_bin(), "oracle", "run", "--config", str(tmp / "oracle.json"), "--poll", "0.2",
             "--max-age", "0.5"],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        with ServeProcess.start(
            serve_env, "--oracle-config", str(tmp / "oracle.json"),
            log=tmp / "serve.log", wait=30, stderr_only=True,
        ) as server:  # fmt: skip
            published = run(
                "simulate", "warehouse", "--days", "1", "--seed", "3", "--mqtt", "--tenant", tenant,
                "--start", START,
                "--api", server.url, env=env, timeout=180,
            )  # fmt: skip
            assert published.returncode == 0, published.stderr
            expected = warehouse(
                days=1, seed=3, start=datetime.fromisoformat(START).replace(tzinfo=UTC)
            )
            store = Store.open(setup["db"])
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                counts = store.counts()
                if counts["events"] >= len(expected.readings) and counts["pending"] == 0:
                    break
                time.sleep(0.5)
            ids = [f"{r.device};seq={r.seq}" for r in expected.readings]
            assert store.stored_ids(ids) == set(ids)
            assert store.counts()["pending"] == 0  # all anchored by the anchor worker
            raised = {a.rule for a in OracleState(store).alarms()}
            assert {i.expected_rule for i in expected.incidents} <= raised
            store.close()
    finally:
        oracle.send_signal(signal.SIGTERM)
        try:
            oracle.wait(timeout=20)
        except subprocess.TimeoutExpired:
            oracle.kill()
            oracle.wait()
    assert oracle.returncode == 0, oracle_log.read_text()
    assert "oracle running: ingest, rules, facts, anchor" in oracle_log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "cows"], "unknown scenario 'cows'"),
        (["simulate", "dairy", "--days", "0"], "--days"),
        (["simulate", "dairy", "--size", "3"], "--size"),
        (["oracle", "run", "--config", "missing.json"], "cannot read the oracle config"),
        (
            ["oracle", "run", "--config", "{config}", "--only", "rules,dance"],
            "unknown worker 'dance'",
        ),
        (["oracle", "import", "nothing.txt", "--config", "{config}"], "cannot tell the format"),
    ],
)
def test_bad_oracle_commands_say_why_and_exit_2(
    setup: dict[str, Any], args: list[str], message: str
) -> None:
    config = str(setup["tmp"] / "oracle.json")
    done = run(*[a.replace("{config}", config) for a in args], env=setup["env"], timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr + done.stdout


def test_a_config_with_a_mistake_names_its_place(setup: dict[str, Any]) -> None:
    config = json.loads((setup["tmp"] / "oracle.json").read_text())
    config["lots"][0]["rules"]["minimum"] = -1
    bad = setup["tmp"] / "bad.json"
    bad.write_text(json.dumps(config))
    done = run("oracle", "run", "--config", str(bad), env=setup["env"], timeout=60)
    assert done.returncode == 2
    assert "lots[0].rules.minimum" in done.stderr
