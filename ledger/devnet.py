"""A local development chain: anvil from the pinned npm package, its state kept on disk,
every contract deployed once, and roles granted to keys of the devnet's own.

    Devnet(dir).up()       start anvil detached; deploy on the first run, else reuse
    Devnet(dir).down()     stop it (anvil writes its state on the way out)
    Devnet(dir).status()   the node, the contracts, the keys' roles, the anchoring backlog

Everything lives in one directory (``.fourflow/devnet`` by default):

    state.json        anvil's chain state, historical states included: loaded on start,
                      written on exit and every STATE_INTERVAL_S seconds
    state.json.bak    the state as ``up`` found it (anvil rewrites state.json in place,
                      so a kill during a write leaves it cut short)
    anvil.log         the node's output (the previous run's in anvil.log.1)
    anvil.pid         the running node's process id
    deployment.json   the deployment manifest (ledger.chain.Deployment), rpc_url set
    devnet.json       what ``up`` configured: chain id, port, block time, store, keys (0600)
    env               shell exports pointing the other commands at the devnet (0600)
    keys/             0700: generated keystores and their password file, each 0600
    store.sqlite      the default store

Keys, per role (ROLES): the eth-account keystore named by ``$FOURFLOW_<ROLE>_KEY_FILE``
(password in ``$FOURFLOW_<ROLE>_KEY_PASSWORD``), else one generated into ``keys/`` and
encrypted with ``$FOURFLOW_DEVNET_PASSWORD`` or, without it, a generated password kept
in ``keys/password``. Hex keys in the environment are never used here.

This is the only module that leans on a dev node's conveniences: the node's unlocked,
funded account (``Chain.fund``) pays for the keys. Nothing else in fourflow may.

Errors: ``DevnetError`` (a LedgerError) when the node cannot be started, reached or
trusted; ``NotRunning`` (a DevnetError) when there is no node to stop; ``InvalidInput``
for bad options, keys and addresses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import col, func, select

from ledger import keystore
from ledger.chain import (
    ORACLE_ROLE,
    SUBMITTER_ROLE,
    AnchorRegistry,
    Chain,
    ContractClient,
    Deployment,
)
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    Contracts,
    PledgeRegistry,
    PriceFeed,
    ReceiptRegistry,
    contracts_from,
    deploy_contracts,
)
from ledger.contracts import CONTRACTS_DIR, load_artifact
from ledger.errors import ChainError, InvalidInput, LedgerError
from ledger.store import BatchRow, Store

__all__ = [
    "DEFAULT_CHAIN_ID",
    "DEFAULT_DIR",
    "DEFAULT_PORT",
    "HOLDER_ROLES",
    "HOST",
    "ROLES",
    "STATE_INTERVAL_S",
    "Backlog",
    "ContractStatus",
    "Devnet",
    "DevnetError",
    "DevnetKey",
    "DownResult",
    "HolderStatus",
    "NotRunning",
    "StreamBacklog",
    "UpResult",
    "anvil_binary",
]

DEFAULT_DIR = Path(".fourflow/devnet")
# fourflow's devnet chain ("44": the four flows). Not anvil's 31337, so a manifest written
# against a bare anvil never passes for the devnet's, nor the other way round.
DEFAULT_CHAIN_ID = 44044
DEFAULT_PORT = 8545
HOST = "127.0.0.1"
STATE_INTERVAL_S = 5  # anvil dumps its state this often: a SIGKILL loses at most that much
PASSWORD_ENV = "FOURFLOW_DEVNET_PASSWORD"

ROLES = ("admin", "oracle", "gateway", "custodian", "lender", "auditor")
HOLDER_ROLES = ROLES[1:]  # roles extra addresses can be given (admin: the deployer only)

_ADMIN_ROLE = b"\x00" * 32
_ROLE_NAMES = {
    _ADMIN_ROLE: "DEFAULT_ADMIN_ROLE",
    ORACLE_ROLE: "ORACLE_ROLE",
    SUBMITTER_ROLE: "SUBMITTER_ROLE",
    CUSTODIAN_ROLE: "CUSTODIAN_ROLE",
    LENDER_ROLE: "LENDER_ROLE",
    AUDITOR_ROLE: "AUDITOR_ROLE",
}
# what each role is granted, on which contract (Contracts' field), as `fourflow deploy` does;
# the admin holds DEFAULT_ADMIN_ROLE everywhere from the deployment itself
_GRANTS: dict[str, tuple[tuple[str, bytes], ...]] = {
    "admin": (
        ("anchors", _ADMIN_ROLE),
        ("receipts", _ADMIN_ROLE),
        ("prices", _ADMIN_ROLE),
        ("pledges", _ADMIN_ROLE),
    ),
    "oracle": (("anchors", ORACLE_ROLE), ("prices", ORACLE_ROLE), ("pledges", ORACLE_ROLE)),
    "gateway": (("anchors", SUBMITTER_ROLE),),
    "custodian": (("receipts", CUSTODIAN_ROLE),),
    "lender": (("pledges", LENDER_ROLE),),
    "auditor": (("pledges", AUDITOR_ROLE),),
}
_CLIENTS: dict[str, type[ContractClient]] = {
    "anchors": AnchorRegistry,
    "receipts": ReceiptRegistry,
    "prices": PriceFeed,
    "pledges": PledgeRegistry,
}
_MIN_BALANCE_WEI = 10**18  # below 1 ether, a key is topped up from the node's dev account
_START_TIMEOUT_S = 30.0
_LOG_TAIL = 15


class DevnetError(LedgerError):
    """The devnet's node could not be started, reached, stopped or trusted."""

    code = "devnet_error"


class NotRunning(DevnetError):
    """No devnet node is running in the directory."""

    code = "devnet_not_running"


@dataclass(frozen=True)
class DevnetKey:
    """One role's key: its address and keystore; never the key itself."""

    role: str
    address: str
    keyfile: str  # absolute path of the eth-account keystore
    source: str  # "generated", or the environment variable that named the keystore

    @property
    def generated(self) -> bool:
        return self.source == "generated"


@dataclass(frozen=True)
class _Config:
    """What ``up`` configured, kept in devnet.json for ``status`` and later ``up``s."""

    chain_id: int
    port: int
    block_time: float | None
    db_url: str
    password_from_env: bool
    keys: tuple[DevnetKey, ...]
    holders: dict[str, tuple[str, ...]]

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "port": self.port,
            "block_time": self.block_time,
            "db_url": self.db_url,
            "password_from_env": self.password_from_env,
            "keys": {
                k.role: {"address": k.address, "keyfile": k.keyfile, "source": k.source}
                for k in self.keys
            },
            "holders": {role: list(addresses) for role, addresses in self.holders.items()},
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> _Config:
        return cls(
            chain_id=int(body["chain_id"]),
            port=int(body["port"]),
            block_time=None if body.get("block_time") is None else float(body["block_time"]),
            db_url=str(body["db_url"]),
            password_from_env=bool(body.get("password_from_env", False)),
            keys=tuple(
                DevnetKey(role=role, address=k["address"], keyfile=k["keyfile"], source=k["source"])
                for role, k in body.get("keys", {}).items()
            ),
            holders={role: tuple(addresses) for role, addresses in body.get("holders", {}).items()},
        )


@dataclass(frozen=True)
class UpResult:
    pid: int
    rpc_url: str
    chain_id: int
    deployment: Deployment
    deployed: bool  # False: the contracts came back with the saved state
    keys: tuple[DevnetKey, ...]
    granted: list[tuple[str, str, str]]  # (role, address, contract) granted by this run
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DownResult:
    pid: int
    killed: bool  # True: it ignored SIGTERM and was killed; its state is the last dump


@dataclass(frozen=True)
class ContractStatus:
    name: str
    address: str
    code: bool | None  # None: not checked (the node is down)
    code_sha256: str | None = None
    # the anchor registry: its code is the runtime code of the build the manifest names
    matches_manifest: bool | None = None
    detail: str = ""


@dataclass(frozen=True)
class HolderStatus:
    role: str
    address: str
    source: str  # "generated", the variable naming its keystore, or "address"
    keyfile: str | None
    holds: dict[str, list[str]] | None  # role name -> contracts; None: not read
    missing: list[str] = field(default_factory=list)  # "ORACLE_ROLE on PriceFeed"


@dataclass(frozen=True)
class StreamBacklog:
    stream: str
    pending: int
    oldest_age_s: float | None
    batches: dict[str, int]  # state -> count
    store_anchored_seq: int | None  # the last batch the store holds as anchored
    chain_next_seq: int | None  # the contract's next expected seq; None: not read


@dataclass(frozen=True)
class Backlog:
    store: str  # the store's URL, password hidden
    events: int
    pending: int
    batches: dict[str, int]
    streams: list[StreamBacklog]


@dataclass(frozen=True)
class DevnetStatus:
    directory: str
    running: bool
    pid: int | None
    rpc_url: str | None
    chain_id: int | None
    head: int | None
    manifest: str | None
    contracts: list[ContractStatus]
    holders: list[HolderStatus]
    backlog: Backlog | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return self.running and not self.problems

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def anvil_binary() -> Path:
    """anvil's native binary from the npm package in contracts/node_modules. Its own
    ``.bin/anvil`` is a Node wrapper that would outlive (or die before) the node; the
    binary itself gets the signals and writes the state."""
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    binary = CONTRACTS_DIR / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin"
    binary = binary / "anvil"
    if system is None or arch is None or not binary.is_file():
        raise DevnetError(
            f"anvil is not installed for {sys.platform}/{platform.machine()} at {binary}: "
            "run `make contracts-deps` (npm ci in contracts/)"
        )
    return binary


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    proc = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            state = proc.read_text(encoding="utf-8", errors="replace").rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # a port left in TIME_WAIT by the last node is free to take; a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _is_cut_short(path: Path) -> bool:
    """Whether anvil's state file ends mid-document (a write interrupted by a kill)."""
    size = path.stat().st_size
    if size == 0:
        return True
    with path.open("rb") as f:
        f.seek(max(0, size - 64))
        return not f.read().rstrip().endswith(b"}")


def _addresses(role: str, given: Sequence[str]) -> tuple[str, ...]:
    out = []
    for raw in given:
        address = raw.strip()
        if not address:
            continue
        if not is_address(address):
            raise InvalidInput(f"{role}: {address!r} is not an address", code="invalid_address")
        out.append(to_checksum_address(address))
    return tuple(out)


class Devnet:
    """The devnet kept in one directory."""

    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self.directory = directory.absolute()
        self.state_path = self.directory / "state.json"
        self.backup_path = self.directory / "state.json.bak"
        self.log_path = self.directory / "anvil.log"
        self.pid_path = self.directory / "anvil.pid"
        self.manifest_path = self.directory / "deployment.json"
        self.config_path = self.directory / "devnet.json"
        self.env_path = self.directory / "env"
        self.keys_dir = self.directory / "keys"
        self.password_path = self.keys_dir / "password"
        self.default_db_url = f"sqlite:///{self.directory / 'store.sqlite'}"

    # --- the node process -----------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of this devnet's running anvil; None if there is none (a pidfile
        naming a dead process, or another program, does not count)."""
        try:
            pid = int(self.pid_path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():  # the pid may have been reused: it must be our node
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                return None
            return pid if os.fsencode(str(self.state_path)) in args else None
        return pid

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time on this directory."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise DevnetError(
                    f"another `fourflow devnet` command is working on {self.directory}"
                ) from exc
            yield
        finally:
            os.close(fd)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"  | {line}" for line in lines[-_LOG_TAIL:] if line.strip())

    def _start(self, config: _Config) -> int:
        """Start anvil in a session of its own (it outlives this process), output to the
        log; returns its pid once it answers on the configured port."""
        binary = anvil_binary()
        if _port_taken(config.port):
            raise DevnetError(
                f"port {config.port} on {HOST} is in use by another program; "
                "stop it or choose another port with --port"
            )
        if self.state_path.exists():
            if _is_cut_short(self.state_path):
                raise DevnetError(
                    f"{self.state_path} is cut short (anvil was killed while writing it). "
                    f"`cp {self.backup_path} {self.state_path}` restores the state as of the "
                    f"last `up`; or remove {self.state_path} and {self.manifest_path} to "
                    "start a fresh chain"
                )
            copy = self.backup_path.with_name(f".{self.backup_path.name}.tmp")
            shutil.copyfile(self.state_path, copy)
            os.replace(copy, self.backup_path)
        if self.log_path.exists():
            os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        args = [
            str(binary),
            "--host",
            HOST,
            "--port",
            str(config.port),
            "--chain-id",
            str(config.chain_id),
            "--state",
            str(self.state_path),
            "--state-interval",
            str(STATE_INTERVAL_S),
            # fourflow verify reads roles at the anchor's block: keep old blocks' states
            "--preserve-historical-states",
        ]
        if config.block_time is not None:
            args += ["--block-time", f"{config.block_time:g}"]
        started = datetime.now(UTC).isoformat(timespec="seconds")
        header = f"# fourflow devnet up {started}: {shlex.join(args)}\n"
        keystore.write_private(self.log_path, header.encode("utf-8"))
        # sh starts anvil in the background and says its pid: the node is nobody's child
        # once sh exits, so it survives this process and leaves no zombie in it
        launch = subprocess.run(
            ["/bin/sh", "-c", '"$@" >>"$0" 2>&1 </dev/null & echo $!', str(self.log_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
            check=False,
        )
        try:
            pid = int(launch.stdout.strip())
        except ValueError as exc:
            raise DevnetError(f"could not start anvil: {launch.stderr.strip()}") from exc
        keystore.write_private(self.pid_path, f"{pid}\n".encode(), replace=True)
        try:
            self._await_node(pid, config)
        except BaseException:
            self._stop(pid, timeout=10.0)
            self.pid_path.unlink(missing_ok=True)
            raise
        return pid

    def _await_node(self, pid: int, config: _Config) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if not _alive(pid):
                raise DevnetError(f"anvil exited while starting; its log says:\n{self._log_tail()}")
            try:
                chain = Chain.connect(config.rpc_url, timeout=2)
            except ChainError:
                if time.monotonic() > deadline:
                    raise DevnetError(
                        f"anvil did not answer on {config.rpc_url} within {_START_TIMEOUT_S:.0f} s; "
                        f"its log says:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.1)
                continue
            if not _alive(pid):  # something else answered on the port
                raise DevnetError(f"anvil exited while starting; its log says:\n{self._log_tail()}")
            if chain.chain_id != config.chain_id:
                raise DevnetError(
                    f"the node on {config.rpc_url} is chain {chain.chain_id}, not {config.chain_id}"
                )
            return

    def _stop(self, pid: int, *, timeout: float) -> bool:
        """SIGTERM (anvil writes its state), then SIGKILL after ``timeout``; True if killed."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    return False
                end = time.monotonic() + 10
                while _alive(pid) and time.monotonic() < end:
                    time.sleep(0.05)
                return True
            time.sleep(0.05)
        return False

    # --- configuration and keys -------------------------------------------------------

    def _read_config(self) -> _Config | None:
        try:
            body = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DevnetError(f"cannot read {self.config_path}: {exc}") from exc
        try:
            return _Config.from_json(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DevnetError(f"{self.config_path} is not a devnet record: {exc}") from exc

    def _password(self, environ: Mapping[str, str]) -> tuple[str, bool]:
        """The password of the generated keystores, and whether it came from the
        environment; generated (and kept in keys/password, 0600) on first need."""
        given = environ.get(PASSWORD_ENV)
        if given:
            return given, True
        if self.password_path.exists():
            keystore.verify_private(self.password_path)
            return self.password_path.read_text(encoding="utf-8").rstrip("\r\n"), False
        password = secrets.token_urlsafe(32)
        keystore.write_private(self.password_path, password.encode("utf-8"))
        return password, False

    def _keys(
        self, environ: Mapping[str, str]
    ) -> tuple[dict[str, LocalAccount], list[DevnetKey], bool]:
        """Every role's key, decrypted (which proves each password), with its record."""
        keystore.private_dir(self.keys_dir)
        accounts: dict[str, LocalAccount] = {}
        records: list[DevnetKey] = []
        password: tuple[str, bool] | None = None
        for role in ROLES:
            env = f"FOURFLOW_{role.upper()}_KEY_FILE"
            given = environ.get(env)
            if given:
                path = Path(given).absolute()
                secret = environ.get(f"FOURFLOW_{role.upper()}_KEY_PASSWORD", "")
                try:
                    account = keystore.read_keystore(path, secret)
                except InvalidInput as exc:
                    raise InvalidInput(f"${env}: {exc.message}", code="bad_key") from exc
                source = env
            else:
                path = self.keys_dir / f"{role}.json"
                password = password or self._password(environ)
                if path.exists():
                    keystore.verify_private(path)
                    try:
                        account = keystore.read_keystore(path, password[0])
                    except InvalidInput as exc:
                        hint = (
                            f"${PASSWORD_ENV} is not the password these keys were made with"
                            if password[1]
                            else f"{self.password_path} does not open it (set ${PASSWORD_ENV}?)"
                        )
                        raise InvalidInput(f"{exc.message}: {hint}", code="bad_key") from exc
                else:
                    created: LocalAccount = Account.create()
                    keystore.write_keystore(path, created, password[0])
                    account = created
                source = "generated"
            accounts[role] = account
            records.append(
                DevnetKey(role=role, address=account.address, keyfile=str(path), source=source)
            )
        return accounts, records, bool(password and password[1])

    def _resolve(
        self,
        recorded: _Config | None,
        *,
        chain_id: int | None,
        port: int | None,
        block_time: float | None,
        db_url: str | None,
    ) -> tuple[int, int, float | None, str]:
        if (
            recorded is not None
            and chain_id is not None
            and chain_id != recorded.chain_id
            and self.state_path.exists()
        ):
            raise InvalidInput(
                f"the devnet in {self.directory} is chain {recorded.chain_id}; to start "
                f"chain {chain_id}, use another --dir (or remove this one)",
                code="chain_id_mismatch",
            )
        chosen_chain = chain_id or (recorded.chain_id if recorded else DEFAULT_CHAIN_ID)
        chosen_port = port or (recorded.port if recorded else DEFAULT_PORT)
        chosen_block_time = (
            block_time if block_time is not None else (recorded.block_time if recorded else None)
        )
        if not 0 < chosen_port < 65536:
            raise InvalidInput(f"port {chosen_port} is out of range", code="invalid_port")
        if chosen_block_time is not None and chosen_block_time <= 0:
            chosen_block_time = None  # --block-time 0: mine on every transaction again
        chosen_db = db_url or (recorded.db_url if recorded else self.default_db_url)
        return chosen_chain, chosen_port, chosen_block_time, chosen_db

    # --- up ------------------------------------------------------------------------

    def up(
        self,
        *,
        chain_id: int | None = None,
        port: int | None = None,
        block_time: float | None = None,
        db_url: str | None = None,
        holders: Mapping[str, Sequence[str]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> UpResult:
        """Start the node; deploy every contract on the first run (or when the saved
        state lost them), else check the manifest's contracts are there; grant each
        role to its key and to ``holders`` (role -> addresses) where missing; write the
        manifest, devnet.json and env. Options left out keep their last values."""
        environ = os.environ if environ is None else environ
        extra = {role: _addresses(role, addrs) for role, addrs in (holders or {}).items()}
        unknown = sorted(set(extra) - set(HOLDER_ROLES))
        if unknown:
            raise InvalidInput(f"unknown role {unknown[0]!r}", code="invalid_role")
        with self._locked():
            running = self.running_pid()
            if running is not None:
                raise DevnetError(
                    f"the devnet in {self.directory} is already running (anvil pid {running}); "
                    "`fourflow devnet down` first"
                )
            self.pid_path.unlink(missing_ok=True)
            recorded = self._read_config()
            chosen_chain, chosen_port, chosen_block_time, chosen_db = self._resolve(
                recorded, chain_id=chain_id, port=port, block_time=block_time, db_url=db_url
            )
            accounts, records, password_from_env = self._keys(environ)
            all_holders = {
                role: tuple(addrs) for role, addrs in (recorded.holders if recorded else {}).items()
            }
            for role, addrs in extra.items():
                all_holders[role] = tuple(dict.fromkeys(all_holders.get(role, ()) + addrs))
            config = _Config(
                chain_id=chosen_chain,
                port=chosen_port,
                block_time=chosen_block_time,
                db_url=chosen_db,
                password_from_env=password_from_env,
                keys=tuple(records),
                holders=all_holders,
            )
            pid = self._start(config)
            try:
                return self._provision(pid, config, accounts)
            except BaseException:
                self._stop(pid, timeout=30.0)
                self.pid_path.unlink(missing_ok=True)
                raise

    def _provision(self, pid: int, config: _Config, accounts: dict[str, LocalAccount]) -> UpResult:
        chain = Chain.connect(config.rpc_url)
        notes: list[str] = []
        funded = [k.address for k in config.keys] + [
            a for addrs in config.holders.values() for a in addrs
        ]
        for address in dict.fromkeys(funded):
            if _balance(chain, address) < _MIN_BALANCE_WEI:
                chain.fund(address)
        contracts, deployment, deployed = self._contracts(chain, accounts["admin"], notes)
        granted = self._grant(contracts, config, accounts["admin"])
        deployment = replace(deployment, rpc_url=config.rpc_url)
        deployment.write(self.manifest_path)
        keystore.write_private(
            self.config_path, (json.dumps(config.to_json(), indent=2) + "\n").encode(), replace=True
        )
        keystore.write_private(self.env_path, self._env_file(config).encode(), replace=True)
        return UpResult(
            pid=pid,
            rpc_url=config.rpc_url,
            chain_id=chain.chain_id,
            deployment=deployment,
            deployed=deployed,
            keys=config.keys,
            granted=granted,
            notes=notes,
        )

    def _contracts(
        self, chain: Chain, admin: LocalAccount, notes: list[str]
    ) -> tuple[Contracts, Deployment, bool]:
        """The manifest's contracts if the node holds them all; a fresh deployment if
        there is no manifest or the node holds none of them."""
        if self.manifest_path.exists():
            saved = Deployment.read(self.manifest_path)
            if saved.chain_id != chain.chain_id:
                raise DevnetError(
                    f"{self.manifest_path} is for chain {saved.chain_id}, the devnet is chain "
                    f"{chain.chain_id}"
                )
            named = _named_contracts(saved)
            present = {name: bool(chain.code_at(address)) for name, address in named}
            if len(named) == len(_CLIENTS) and all(present.values()):
                return contracts_from(chain, saved), saved, False
            if any(present.values()):
                missing = ", ".join(name for name, there in present.items() if not there)
                raise DevnetError(
                    f"the devnet's state holds only some of {self.manifest_path}'s contracts "
                    f"(missing: {missing}); remove {self.directory} to start over"
                )
            notes.append(
                f"the node's state holds none of the contracts in {self.manifest_path} "
                "(state.json lost?): deployed them anew"
            )
        contracts, deployment = deploy_contracts(chain, admin=admin)
        return contracts, deployment, True

    def _grant(
        self, contracts: Contracts, config: _Config, admin: LocalAccount
    ) -> list[tuple[str, str, str]]:
        holders = [(k.role, k.address) for k in config.keys] + [
            (role, address) for role, addrs in config.holders.items() for address in addrs
        ]
        granted = []
        checked_admin = False
        for role, address in dict.fromkeys(holders):
            for field_name, role_id in _GRANTS[role]:
                client: ContractClient = getattr(contracts, field_name)
                if client.has_role(role_id, address):
                    continue
                if not checked_admin:
                    if not contracts.anchors.has_role(_ADMIN_ROLE, admin.address):
                        raise DevnetError(
                            f"the admin key {admin.address} does not administer this "
                            f"deployment (deployed by another key); give that key's keystore "
                            "in FOURFLOW_ADMIN_KEY_FILE"
                        )
                    checked_admin = True
                client.grant(role_id, address, admin=admin)
                granted.append((_ROLE_NAMES[role_id], address, client.NAME))
        return granted

    def _env_file(self, config: _Config) -> str:
        q = shlex.quote
        lines = [
            f"# the fourflow devnet in {self.directory}; in a shell: . {q(str(self.env_path))}",
            f"export FOURFLOW_RPC_URL={q(config.rpc_url)}",
            f"export FOURFLOW_MANIFEST={q(str(self.manifest_path))}",
            f"export FOURFLOW_DB_URL={q(config.db_url)}",
        ]
        for key in config.keys:
            name = f"FOURFLOW_{key.role.upper()}_KEY"
            lines += [f"unset {name}", f"export {name}_FILE={q(key.keyfile)}"]
            if not key.generated:
                lines.append(f"# {name}_PASSWORD: yours, from your environment")
            elif config.password_from_env:
                lines.append(f'export {name}_PASSWORD="${{{PASSWORD_ENV}}}"')
            else:
                lines.append(f'export {name}_PASSWORD="$(cat {q(str(self.password_path))})"')
        return "\n".join(lines) + "\n"

    def environment(self) -> dict[str, str]:
        """What sourcing the env file sets, passwords included (for a child process)."""
        config = self._read_config()
        if config is None:
            raise DevnetError(f"no devnet in {self.directory}: run `fourflow devnet up`")
        env = {
            "FOURFLOW_RPC_URL": config.rpc_url,
            "FOURFLOW_MANIFEST": str(self.manifest_path),
            "FOURFLOW_DB_URL": config.db_url,
        }
        for key in config.keys:
            name = f"FOURFLOW_{key.role.upper()}_KEY"
            env[f"{name}_FILE"] = key.keyfile
            if key.generated:
                env[f"{name}_PASSWORD"] = (
                    os.environ.get(PASSWORD_ENV, "")
                    if config.password_from_env
                    else self.password_path.read_text(encoding="utf-8").rstrip("\r\n")
                )
        return env

    # --- down -----------------------------------------------------------------------

    def down(self, *, timeout: float = 30.0) -> DownResult:
        """Stop the node: SIGTERM (anvil writes its state), SIGKILL after ``timeout``."""
        if not self.directory.is_dir():
            raise NotRunning(f"no devnet is running in {self.directory} (no such directory)")
        with self._locked():
            pid = self.running_pid()
            if pid is None:
                stale = self.pid_path.exists()
                self.pid_path.unlink(missing_ok=True)
                raise NotRunning(
                    f"no devnet is running in {self.directory}"
                    + (" (removed a pidfile naming a process that is gone)" if stale else "")
                )
            killed = self._stop(pid, timeout=timeout)
            self.pid_path.unlink(missing_ok=True)
            return DownResult(pid=pid, killed=killed)

    # --- status ---------------------------------------------------------------------

    def status(self, *, db_url: str | None = None) -> DevnetStatus:
        """The node, the manifest's contracts, who holds which role, and (from the store
        given, or the devnet's own if it exists) the anchoring backlog."""
        config = self._read_config()
        deployment = Deployment.read(self.manifest_path) if self.manifest_path.exists() else None
        if config is None and deployment is None:
            raise DevnetError(f"no devnet in {self.directory}: run `fourflow devnet up`")
        problems: list[str] = []
        pid = self.running_pid()
        rpc_url = (deployment.rpc_url if deployment else None) or (
            config.rpc_url if config else None
        )
        chain: Chain | None = None
        if pid is None:
            problems.append("the node is not running: `fourflow devnet up`")
        elif rpc_url:
            try:
                chain = Chain.connect(rpc_url, timeout=5)
            except ChainError as exc:
                problems.append(f"the node does not answer on {rpc_url}: {exc.message}")
        if deployment is None:
            problems.append(f"no manifest at {self.manifest_path}")
        elif chain is not None and deployment.chain_id != chain.chain_id:
            problems.append(
                f"the manifest is for chain {deployment.chain_id}, the node is chain "
                f"{chain.chain_id}"
            )
            chain = None
        head = chain.head if chain is not None else None
        contracts = self._contract_status(chain, deployment, problems)
        clients = {
            _FIELD_OF[c.name]: _CLIENTS[_FIELD_OF[c.name]](chain, c.address)
            for c in contracts
            if chain is not None and c.code
        }
        holders = self._holder_status(config, clients, problems)
        backlog = self._backlog(db_url, config, clients.get("anchors"), problems)
        return DevnetStatus(
            directory=str(self.directory),
            running=pid is not None,
            pid=pid,
            rpc_url=rpc_url,
            chain_id=chain.chain_id if chain else (deployment.chain_id if deployment else None),
            head=head,
            manifest=str(self.manifest_path) if deployment else None,
            contracts=contracts,
            holders=holders,
            backlog=backlog,
            problems=problems,
        )

    def _contract_status(
        self, chain: Chain | None, deployment: Deployment | None, problems: list[str]
    ) -> list[ContractStatus]:
        if deployment is None:
            return []
        named = _named_contracts(deployment)
        if len(named) < len(_CLIENTS):
            problems.append("the manifest names no collateral contracts")
        out = []
        for name, address in named:
            if chain is None:
                out.append(ContractStatus(name=name, address=address, code=None))
                continue
            code = chain.code_at(address)
            if not code:
                problems.append(f"no {name} code at {address}")
                out.append(ContractStatus(name=name, address=address, code=False))
                continue
            digest = hashlib.sha256(code).hexdigest()
            matches: bool | None = None
            detail = ""
            if name == "AnchorRegistry":
                # the manifest records sha256 of the creation code it deployed; the node
                # holds the runtime code, so compare it with that build's runtime code
                artifact = load_artifact(name)
                if artifact.sha256 != deployment.artifact_sha256:
                    matches = False
                    detail = (
                        f"the manifest names build {deployment.artifact_sha256[:12]}…, "
                        f"contracts/artifacts holds {artifact.sha256[:12]}…"
                    )
                elif code != artifact.deployed_bytecode:
                    matches = False
                    detail = "the code is not the runtime code of the build the manifest names"
                else:
                    matches = True
                    detail = f"the build the manifest names ({deployment.artifact_sha256[:12]}…)"
                if not matches:
                    problems.append(f"AnchorRegistry at {address}: {detail}")
            out.append(
                ContractStatus(
                    name=name,
                    address=address,
                    code=True,
                    code_sha256=digest,
                    matches_manifest=matches,
                    detail=detail,
                )
            )
        return out

    def _holder_status(
        self,
        config: _Config | None,
        clients: Mapping[str, ContractClient],
        problems: list[str],
    ) -> list[HolderStatus]:
        if config is None:
            return []
        rows: list[tuple[str, str, str, str | None]] = [
            (k.role, k.address, k.source, k.keyfile) for k in config.keys
        ]
        rows += [
            (role, address, "address", None)
            for role, addresses in config.holders.items()
            for address in addresses
        ]
        out = []
        for role, address, source, keyfile in rows:
            holds: dict[str, list[str]] | None = None
            missing: list[str] = []
            if clients:
                holds = {}
                for role_id, role_name in _ROLE_NAMES.items():
                    for field_name, client in clients.items():
                        if (field_name, role_id) in _CHECKED and client.has_role(role_id, address):
                            holds.setdefault(role_name, []).append(client.NAME)
                for field_name, role_id in _GRANTS[role]:
                    client_name = _CLIENTS[field_name].NAME
                    if client_name not in holds.get(_ROLE_NAMES[role_id], []):
                        missing.append(f"{_ROLE_NAMES[role_id]} on {client_name}")
                if missing:
                    problems.append(f"{role} {address} lacks {', '.join(missing)}")
            out.append(
                HolderStatus(
                    role=role,
                    address=address,
                    source=source,
                    keyfile=keyfile,
                    holds=holds,
                    missing=missing,
                )
            )
        return out

    def _backlog(
        self,
        db_url: str | None,
        config: _Config | None,
        anchors: ContractClient | None,
        problems: list[str],
    ) -> Backlog | None:
        url = db_url or (config.db_url if config else self.default_db_url)
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            if db_url:
                problems.append(f"no SQLite store at {url}")
            return None
        try:
            store = Store.open(url)
        except LedgerError as exc:
            problems.append(f"the store: {exc.message}")
            return None
        try:
            counts = store.counts()
            pending = store.backlog()
            with store.session() as session:
                rows = session.exec(
                    select(
                        BatchRow.stream, BatchRow.state, func.count(), func.max(BatchRow.seq)
                    ).group_by(col(BatchRow.stream), col(BatchRow.state))
                ).all()
        except LedgerError as exc:
            problems.append(f"the store: {exc.message}")
            return None
        finally:
            store.close()
        by_stream: dict[str, dict[str, int]] = {}
        anchored: dict[str, int] = {}
        for stream, state, n, last in rows:
            by_stream.setdefault(stream, {})[state] = int(n)
            if state == "anchored":
                anchored[stream] = int(last)
        now_ms = time.time() * 1000
        streams = []
        for stream in sorted(set(by_stream) | set(pending)):
            count, oldest = pending.get(stream, (0, None))
            next_seq = None
            if isinstance(anchors, AnchorRegistry):
                try:
                    next_seq = anchors.head_of(stream).next_seq
                except ChainError as exc:
                    problems.append(f"reading the head of {stream!r}: {exc.message}")
            through = anchored.get(stream)
            if through is not None and next_seq is not None and through >= next_seq:
                problems.append(
                    f"the store holds {stream!r} anchored through seq {through}, the chain only "
                    f"{next_seq} batches (a state older than the store's?): the anchoring "
                    "worker anchors the rest again"
                )
            streams.append(
                StreamBacklog(
                    stream=stream,
                    pending=count,
                    oldest_age_s=None if oldest is None else max(0.0, (now_ms - oldest) / 1000),
                    batches=by_stream.get(stream, {}),
                    store_anchored_seq=through,
                    chain_next_seq=next_seq,
                )
            )
        return Backlog(
            store=_redact(url),
            events=counts["events"],
            pending=counts["pending"],
            batches={
                k.removeprefix("batches_"): v for k, v in counts.items() if k.startswith("batches_")
            },
            streams=streams,
        )


_CHECKED = {(field_name, role_id) for grants in _GRANTS.values() for field_name, role_id in grants}
_FIELD_OF = {client.NAME: field_name for field_name, client in _CLIENTS.items()}


def _named_contracts(deployment: Deployment) -> list[tuple[str, str]]:
    """(contract name, address) for each contract the manifest names, in _CLIENTS order."""
    addresses = (
        deployment.anchor_registry,
        deployment.receipt_registry,
        deployment.price_feed,
        deployment.pledge_registry,
    )
    return [
        (client.NAME, address)
        for client, address in zip(_CLIENTS.values(), addresses, strict=True)
        if address
    ]


def _balance(chain: Chain, address: str) -> int:
    checksummed = to_checksum_address(address)
    return chain.call("reading a balance", lambda: int(chain.w3.eth.get_balance(checksummed)))
