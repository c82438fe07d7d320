"""`fourflow devnet up|down|status` with real anvil processes in temporary directories:
the chain, the contracts and an anchored batch survive a down/up; keys stay in 0600
files and out of the manifest and the log; a keystore given through the environment is
used; a taken port or a broken state fails cleanly and leaves no node behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger import keystore
from ledger.chain import AnchorRegistry, Chain, Deployment
from ledger.devnet import DEFAULT_CHAIN_ID, Devnet, DevnetError
from ledger.errors import InvalidInput
from ledger.runtime import Runtime, load_key
from ledger.signing import sign_submission
from ledger.verify import verify_bundle
from tests.conftest import ANVIL, fourflow_bin, free_port, make_events

pytestmark = pytest.mark.anvil

STREAM = "acme.custody"


def _nodes_of(directory: Path) -> list[int]:
    """Live (not zombie) processes whose command line names this devnet's state file."""
    state = os.fsencode(str(directory.absolute() / "state.json"))
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in args and status not in ("Z", "X"):
            found.append(int(proc.name))
    return found


@pytest.fixture
def devnet_dir(tmp_path: Path) -> Iterator[Path]:
    """A devnet directory; whatever node it started is stopped afterwards, pass or fail."""
    if not ANVIL.exists():
        pytest.fail(f"{ANVIL} missing: run `make contracts-deps`")
    directory = tmp_path / "devnet"
    try:
        yield directory
    finally:
        with contextlib.suppress(DevnetError):  # NotRunning is one
            Devnet(directory).down(timeout=10)
        for pid in _nodes_of(directory):  # a node the pidfile lost track of
            os.kill(pid, signal.SIGKILL)


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any FOURFLOW_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOURFLOW_")}
    return env | extra


def _fourflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [fourflow_bin(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _secrets_of(directory: Path, *accounts: LocalAccount) -> list[str]:
    """Every private key the devnet holds or was given, as hex, and its password."""
    password = (directory / "keys" / "password").read_text()
    keys = [
        keystore.read_keystore(path, password)
        for path in sorted((directory / "keys").glob("*.json"))
    ]
    found = [a.key.hex() for a in [*keys, *accounts]]
    return [*found, *(f"0x{k}" for k in found), password]


def test_up_status_anchor_down_up_keeps_the_chain(devnet_dir: Path, tmp_path: Path) -> None:
    oracle: LocalAccount = Account.create()
    oracle_file = tmp_path / "oracle-keystore.json"
    keystore.write_keystore(oracle_file, oracle, "the oracle's own password")
    extra_lender = Account.create().address
    env = _env(
        FOURFLOW_ORACLE_KEY_FILE=str(oracle_file),
        FOURFLOW_ORACLE_KEY_PASSWORD="the oracle's own password",
        FOURFLOW_LENDERS=extra_lender,
    )
    d = str(devnet_dir)

    up = _fourflow("devnet", "up", "--dir", d, "--port", str(free_port()), env=env)
    assert up.returncode == 0, up.stderr
    assert "deployed" in up.stdout

    shown = _fourflow("devnet", "status", "--dir", d, "--json", env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    status = json.loads(shown.stdout)
    assert status["running"] and status["ok"] and status["chain_id"] == DEFAULT_CHAIN_ID
    assert [c["name"] for c in status["contracts"]] == [
        "AnchorRegistry",
        "ReceiptRegistry",
        "PriceFeed",
        "PledgeRegistry",
    ]
    assert all(c["code"] for c in status["contracts"])
    assert status["contracts"][0]["matches_manifest"] is True
    holders = {(h["role"], h["address"]): h for h in status["holders"]}
    mine = holders["oracle", oracle.address]  # the keystore from the environment is used
    assert mine["source"] == "FOURFLOW_ORACLE_KEY_FILE"
    assert mine["holds"] == {"ORACLE_ROLE": ["AnchorRegistry", "PriceFeed", "PledgeRegistry"]}
    assert holders["lender", extra_lender]["holds"] == {"LENDER_ROLE": ["PledgeRegistry"]}
    admin = next(h for h in status["holders"] if h["role"] == "admin")
    assert admin["holds"]["DEFAULT_ADMIN_ROLE"] == [c["name"] for c in status["contracts"]]
    assert status["backlog"] is None  # no store yet

    # keys: 0600 files in a 0700 directory, the env file too; none in the manifest or log
    keys_dir = devnet_dir / "keys"
    assert _mode(keys_dir) == 0o700
    assert sorted(p.name for p in keys_dir.iterdir()) == [
        "admin.json",
        "auditor.json",
        "custodian.json",
        "gateway.json",
        "lender.json",
        "password",
    ]
    for path in [*keys_dir.iterdir(), devnet_dir / "env", devnet_dir / "devnet.json"]:
        assert _mode(path) == 0o600, path
    public = [devnet_dir / "deployment.json", devnet_dir / "anvil.log"]
    for secret in _secrets_of(devnet_dir, oracle):
        for path in [*public, devnet_dir / "devnet.json", devnet_dir / "env"]:
            assert secret not in path.read_text(), f"a secret in {path.name}"

    # sourcing the env file points a shell at the devnet's keys (the password is read, not copied)
    sourced = subprocess.run(
        [
            "sh",
            "-c",
            '. "$0" && printf "%s\n%s\n%s" "$FOURFLOW_ORACLE_KEY_FILE" '
            '"$FOURFLOW_GATEWAY_KEY_PASSWORD" "$FOURFLOW_RPC_URL"',
            str(devnet_dir / "env"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert sourced[:2] == [str(oracle_file), (keys_dir / "password").read_text()]
    assert sourced[2] == status["rpc_url"]

    # submit five events with the gateway key and anchor them with the oracle's keystore
    devnet = Devnet(devnet_dir)
    exports = devnet.environment()
    runtime = Runtime.open(
        db_url=exports["FOURFLOW_DB_URL"],
        rpc_url=exports["FOURFLOW_RPC_URL"],
        manifest=Path(exports["FOURFLOW_MANIFEST"]),
    )
    gateway = keystore.read_keystore(
        Path(exports["FOURFLOW_GATEWAY_KEY_FILE"]), exports["FOURFLOW_GATEWAY_KEY_PASSWORD"]
    )
    events = make_events(gateway.address, 5, stream=STREAM)
    domain = runtime.intake.domain
    runtime.intake.submit(sign_submission(events, private_key=gateway.key, domain=domain))
    summary = runtime.anchorer(oracle).run_once(force=True)
    assert [(s, seq) for s, seq, _ in summary.anchored] == [(STREAM, 0)]
    late = make_events(gateway.address, 2, stream=STREAM, prefix="late")
    runtime.intake.submit(sign_submission(late, private_key=gateway.key, domain=domain))
    bundle = runtime.bundles.bundle(events[2].event_id).to_json_dict()
    root = runtime.registry.batch_of(stream=STREAM, seq=0)
    head = runtime.chain.head
    manifest = Deployment.read(devnet_dir / "deployment.json")
    runtime.close()

    down = _fourflow("devnet", "down", "--dir", d, env=env)
    assert down.returncode == 0, down.stderr
    assert _nodes_of(devnet_dir) == [] and not devnet.pid_path.exists()

    again = devnet.up(environ=env)  # the saved state comes back: nothing deployed
    assert not again.deployed and again.granted == []
    assert again.deployment == manifest
    chain = Chain.connect(again.rpc_url)
    assert chain.head >= head
    assert AnchorRegistry(chain, manifest.anchor_registry).batch_of(stream=STREAM, seq=0) == root
    verify_bundle(bundle, chain=chain)  # reads the role at the anchor's (pre-restart) block

    status_after = devnet.status()
    assert status_after.ok, status_after.problems
    assert status_after.backlog is not None
    (stream,) = status_after.backlog.streams
    assert (stream.stream, stream.pending) == (STREAM, 2)
    assert stream.oldest_age_s is not None and stream.oldest_age_s >= 0
    assert stream.batches == {"anchored": 1}
    assert (stream.store_anchored_seq, stream.chain_next_seq) == (0, 1)

    devnet.down()
    assert _nodes_of(devnet_dir) == []
    twice = _fourflow("devnet", "down", "--dir", d, env=env)
    assert twice.returncode == 1
    assert "no devnet is running" in twice.stderr and "Traceback" not in twice.stderr


def test_a_taken_port_is_a_clear_error_and_leaves_no_node(devnet_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = _fourflow("devnet", "up", "--dir", str(devnet_dir), "--port", str(port), env=_env())
    assert up.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in up.stderr
    assert "Traceback" not in up.stderr
    assert _nodes_of(devnet_dir) == []
    assert not (devnet_dir / "anvil.pid").exists()


def test_a_node_that_dies_at_start_is_reported_with_its_log(devnet_dir: Path) -> None:
    devnet_dir.mkdir()
    devnet = Devnet(devnet_dir)
    devnet.state_path.write_text('{"nonsense": true}\n')
    with pytest.raises(DevnetError, match="anvil exited while starting") as failed:
        devnet.up(port=free_port(), environ=_env())
    assert "missing field `block`" in failed.value.message  # anvil's own words, from the log
    assert _nodes_of(devnet_dir) == [] and not devnet.pid_path.exists()

    devnet.state_path.write_text('{"block": {"number": "0x1"')  # a dump cut short by a kill
    with pytest.raises(DevnetError, match="cut short") as cut:
        devnet.up(port=free_port(), environ=_env())
    assert "state.json.bak" in cut.value.message
    assert _nodes_of(devnet_dir) == []


def test_keys_the_devnet_generates_need_its_password(devnet_dir: Path) -> None:
    env = _env(FOURFLOW_DEVNET_PASSWORD="first")
    devnet = Devnet(devnet_dir)
    devnet.state_path.parent.mkdir(parents=True)
    devnet.state_path.write_text("{")  # stops `up` right after the keys, before anvil
    with pytest.raises(DevnetError, match="cut short"):
        devnet.up(port=free_port(), environ=env)
    assert not (devnet_dir / "keys" / "password").exists()  # the password came from env
    assert all(_mode(p) == 0o600 for p in (devnet_dir / "keys").iterdir())
    with pytest.raises(InvalidInput, match="FOURFLOW_DEVNET_PASSWORD"):
        devnet.up(port=free_port(), environ=_env(FOURFLOW_DEVNET_PASSWORD="second"))


def test_load_key_takes_hex_or_a_keystore_and_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account: LocalAccount = Account.create()
    path = tmp_path / "oracle.json"
    keystore.write_keystore(path, account, "pw")
    assert _mode(path) == 0o600
    assert keystore.keystore_address(path) == account.address
    for name in ("T_KEY", "T_KEY_FILE", "T_KEY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert load_key(env="T_KEY") is None
    monkeypatch.setenv("T_KEY_FILE", str(path))
    monkeypatch.setenv("T_KEY_PASSWORD", "pw")
    assert load_key(env="T_KEY").address == account.address  # type: ignore[union-attr]
    monkeypatch.setenv("T_KEY_PASSWORD", "wrong")
    with pytest.raises(InvalidInput, match=r"\$T_KEY") as bad:
        load_key(env="T_KEY")
    assert bad.value.code == "bad_key"
    monkeypatch.setenv("T_KEY", "0x" + account.key.hex())  # hex wins over the file
    assert load_key(env="T_KEY").address == account.address  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="not overwriting"):
        keystore.write_keystore(path, Account.create(), "pw")  # a key is never replaced
