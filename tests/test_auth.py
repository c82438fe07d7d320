"""Sign-In with Ethereum (EIP-4361) for reads, on an in-process chain with the real
contracts: nonces, every refusal code from a real bad input, tokens, on-chain roles and
their revocation, concurrency on one nonce, and `fourflow sign-in` as a real process
against an in-thread server and against `fourflow serve` on anvil.

Time is injected (a settable clock for the nonces, the tokens and the role cache);
nothing sleeps for it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from api.app import create_app
from api.auth import (
    ROLES,
    ChainRoles,
    Identity,
    Nonces,
    OptionalCallerDep,
    TokenSigner,
    parse_authority,
)
from api.cli import app as cli_app
from api.settings import Settings, parse_auth_secret
from api.siwe_client import SignInFailed, compose_sign_in, request_token, sign_in
from ledger.chain import Chain, new_account
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    Contracts,
    deploy_collateral,
    deploy_contracts,
)
from ledger.errors import Unauthenticated
from ledger.runtime import DevKeys, Runtime
from ledger.store import Store
from tests.conftest import ANVIL_DEV_KEY, AnvilNode, ServeProcess, fourflow_bin, free_port

SECRET = bytes(range(32))


class Clock:
    """A settable clock (unix seconds), injected where the code reads time."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def utc(self, offset_s: float = 0.0) -> datetime:
        return datetime.fromtimestamp(self.now + offset_s, tz=UTC)


@dataclass
class World:
    runtime: Runtime  # attached to the deployment with the collateral contracts
    keys: DevKeys
    contracts: Contracts
    lender: LocalAccount
    auditor: LocalAccount
    custodian: LocalAccount
    outsider: LocalAccount


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("auth")
    dev, keys = Runtime.dev(db_url=f"sqlite:///{tmp}/store.sqlite", submitters=1)
    contracts, deployment = deploy_collateral(dev.registry, dev.deployment, admin=keys.admin)
    runtime = Runtime.attach(store=dev.store, chain=dev.chain, deployment=deployment)
    lender, auditor, custodian = new_account(), new_account(), new_account()
    contracts.pledges.grant(LENDER_ROLE, lender.address, admin=keys.admin)
    contracts.pledges.grant(AUDITOR_ROLE, auditor.address, admin=keys.admin)
    contracts.receipts.grant(CUSTODIAN_ROLE, custodian.address, admin=keys.admin)
    yield World(runtime, keys, contracts, lender, auditor, custodian, new_account())
    runtime.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_app(world: World, clock: Clock, settings: Settings | None = None) -> FastAPI:
    """The real app, with the clock injected into its nonces, tokens and role cache."""
    runtime = world.runtime
    roles = ChainRoles(world.contracts, runtime.registry, clock=clock)
    app = create_app(runtime, settings=settings or Settings(auth_secret=SECRET), roles=roles)
    app.state.nonces = Nonces(runtime.store, clock=clock)
    app.state.tokens = TokenSigner(
        app.state.settings.auth_secret or SECRET,
        chain_id=runtime.chain.chain_id,
        ttl_s=app.state.settings.token_ttl_seconds,
        clock=clock,
    )
    return app


@pytest.fixture
def client(world: World, clock: Clock) -> Iterator[TestClient]:
    with TestClient(make_app(world, clock)) as c:
        yield c


def new_offer(client: TestClient) -> dict[str, Any]:
    answer = client.post("/v1/auth/nonce")
    assert answer.status_code == 201, answer.text
    offer: dict[str, Any] = answer.json()
    return offer


def refused(answer: Any, code: str) -> dict[str, Any]:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- signing in and roles -------------------------------------------------------------


def test_the_nonce_offer_has_what_a_client_needs(client: TestClient, clock: Clock) -> None:
    assert client.post("/v1/auth/nonce").headers["cache-control"] == "no-store"
    offer = new_offer(client)
    assert set(offer) == {
        "nonce",
        "expires_at",
        "domain",
        "uri",
        "chain_id",
        "statement",
        "version",
    }
    assert offer["nonce"].isalnum() and len(offer["nonce"]) == 32  # 128 bits
    assert offer["nonce"] != new_offer(client)["nonce"]
    assert offer["expires_at"] == clock.utc(300).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert (offer["domain"], offer["uri"]) == ("testserver", "http://testserver/")
    assert offer["chain_id"] == client.app.state.runtime.chain.chain_id  # type: ignore[attr-defined]
    assert offer["statement"] == (
        "Sign in to fourflow to read the histories and proofs you are entitled to."
    )
    assert offer["version"] == "1"


@pytest.mark.parametrize(
    ("party", "roles"),
    [
        ("lender", ["lender"]),
        ("auditor", ["auditor"]),
        ("custodian", ["custodian"]),
        ("outsider", []),
        ("admin", ["admin"]),
        ("oracle", ["oracle"]),
        ("submitter", ["submitter"]),
    ],
)
def test_signing_in_proves_an_address_and_reads_its_roles(
    client: TestClient, world: World, clock: Clock, party: str, roles: list[str]
) -> None:
    account = {
        "admin": world.keys.admin,
        "oracle": world.keys.oracle,
        "submitter": world.keys.submitters[0],
    }.get(party) or getattr(world, party)
    answer = request_token(client, account, issued_at=clock.utc())
    assert answer["address"] == account.address
    assert answer["roles"] == roles and set(roles) <= ROLES
    assert answer["token_type"] == "bearer"
    assert answer["expires_at"] == clock.utc(900).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert answer["token"].startswith("ff1.")
    me = client.get("/v1/auth/me", headers=bearer(answer["token"]))
    assert me.status_code == 200
    assert me.json() == {
        "address": account.address,
        "roles": roles,
        "expires_at": answer["expires_at"],
    }


def test_a_message_expiring_before_the_token_caps_its_lifetime(
    client: TestClient, world: World, clock: Clock
) -> None:
    signed = compose_sign_in(
        new_offer(client),
        account=world.lender,
        issued_at=clock.utc(),
        expiration_time=clock.utc(120),
    )
    answer = client.post("/v1/auth/token", json=signed.to_json())
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json()["expires_at"] == clock.utc(120).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_configured_domain_replaces_the_host_header(world: World, clock: Clock) -> None:
    settings = Settings(auth_secret=SECRET, siwe_domain="fourflow.example.com")
    with TestClient(make_app(world, clock, settings)) as client:
        offer = new_offer(client)
        assert (offer["domain"], offer["uri"]) == (
            "fourflow.example.com",
            "http://fourflow.example.com/",
        )
        as_host = compose_sign_in(
            offer | {"domain": "testserver", "uri": "http://testserver/"},
            account=world.lender,
            issued_at=clock.utc(),
        )
        refused(client.post("/v1/auth/token", json=as_host.to_json()), "siwe_domain")
        signed = compose_sign_in(offer, account=world.lender, issued_at=clock.utc())
        assert client.post("/v1/auth/token", json=signed.to_json()).status_code == 200


def test_the_client_refuses_to_sign_in_to_another_domain(world: World, clock: Clock) -> None:
    """A look-alike API relaying the real one's nonce offer gets no signature: the offer
    must name the domain the client is talking to."""
    settings = Settings(auth_secret=SECRET, siwe_domain="fourflow.example.com")
    with TestClient(make_app(world, clock, settings)) as client:  # we talk to "testserver"
        with pytest.raises(SignInFailed) as refused_here:
            sign_in(client, world.lender)
        assert refused_here.value.code == "siwe_domain_mismatch"
        token = sign_in(client, world.lender, expected_domain="fourflow.example.com")
        assert token.startswith("ff1.")


def test_serve_on_a_public_address_needs_the_sign_in_domain(tmp_path: Path) -> None:
    manifest = tmp_path / "none.json"
    manifest.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "FOURFLOW_SIWE_DOMAIN"}
    answer = subprocess.run(
        [fourflow_bin(), "serve", "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path}/s.db",
         "--rpc", "http://127.0.0.1:9", "--manifest", str(manifest)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert answer.returncode == 2
    assert "set FOURFLOW_SIWE_DOMAIN" in answer.stderr  # before anything else is opened


def test_roles_without_collateral_contracts_are_the_anchor_registrys(
    dev: tuple[Runtime, DevKeys],
) -> None:
    runtime, keys = dev  # a deployment with only the anchor registry
    assert runtime.deployment.pledge_registry is None
    with TestClient(create_app(runtime, settings=Settings(auth_secret=SECRET))) as client:
        answer = request_token(client, keys.submitters[0])
        assert answer["roles"] == ["submitter"]
        assert request_token(client, keys.oracle)["roles"] == ["oracle"]
        assert request_token(client, Account.create())["roles"] == []


def test_the_default_roles_read_every_contract_of_the_manifest(world: World) -> None:
    with TestClient(create_app(world.runtime, settings=Settings(auth_secret=SECRET))) as client:
        assert request_token(client, world.custodian)["roles"] == ["custodian"]
        assert request_token(client, world.keys.admin)["roles"] == ["admin"]


def test_a_revoked_role_stops_working_once_the_cache_expires(
    client: TestClient, world: World, clock: Clock
) -> None:
    lender = new_account()
    world.contracts.pledges.grant(LENDER_ROLE, lender.address, admin=world.keys.admin)
    token = sign_in(client, lender, issued_at=clock.utc())

    def roles() -> list[str]:
        answer = client.get("/v1/auth/me", headers=bearer(token))
        assert answer.status_code == 200
        found: list[str] = answer.json()["roles"]
        return found

    assert roles() == ["lender"]
    world.contracts.pledges.revoke(LENDER_ROLE, lender.address, admin=world.keys.admin)
    clock.advance(4.9)
    assert roles() == ["lender"]  # cached for 5 s
    clock.advance(0.1)
    assert roles() == []  # the token still holds, the role does not


# --- every refusal, from a real bad input ---------------------------------------------


@dataclass
class Attempt:
    """A sign-in with one offered nonce, composed and signed as a client would."""

    world: World
    clock: Clock
    offer: dict[str, Any]

    def signed(
        self, account: LocalAccount | None = None, offer: dict[str, Any] | None = None, **times: Any
    ) -> dict[str, str]:
        issued = times.pop("issued_at", self.clock.utc())
        signed = compose_sign_in(
            {**self.offer, **(offer or {})},
            account=account or self.world.lender,
            issued_at=issued,
            **times,
        )
        return signed.to_json()


def _other_key(a: Attempt) -> dict[str, str]:
    body = a.signed()
    forger = Account.create()
    body["signature"] = forger.sign_message(
        encode_defunct(text=body["message"])
    ).signature.to_0x_hex()
    return body


def _tampered(a: Attempt) -> dict[str, str]:
    body = a.signed()
    body["message"] = body["message"].replace("Sign in to fourflow", "Sign in to fourfl0w")
    return body


def _lowercase_address(a: Attempt) -> dict[str, str]:
    body = a.signed()
    return body | {
        "message": body["message"].replace(a.world.lender.address, a.world.lender.address.lower())
    }


# (code, attempt, whether the offered nonce is spent by the refusal)
REFUSALS: dict[str, tuple[str, Callable[[Attempt], dict[str, str]], bool]] = {
    "malformed": ("siwe_malformed", lambda a: a.signed() | {"message": "hello fourflow"}, False),
    "address not EIP-55": ("siwe_malformed", _lowercase_address, False),
    "wrong domain": (
        "siwe_domain",
        lambda a: a.signed(offer={"domain": "evil.example", "uri": "http://evil.example/"}),
        False,
    ),
    "wrong port": (
        "siwe_domain",
        lambda a: a.signed(offer={"domain": "testserver:8443", "uri": "http://testserver:8443/"}),
        False,
    ),
    "uri on another host": (
        "siwe_uri",
        lambda a: a.signed(offer={"uri": "http://evil.example/login"}),
        False,
    ),
    "uri on another port": (
        "siwe_uri",
        lambda a: a.signed(offer={"uri": "http://testserver:8443/"}),
        False,
    ),
    "wrong chain": ("siwe_chain", lambda a: a.signed(offer={"chain_id": 1}), False),
    "issued in the future": (
        "siwe_issued_at",
        lambda a: a.signed(issued_at=a.clock.utc(61)),
        False,
    ),
    "issued too long ago": (
        "siwe_issued_at",
        lambda a: a.signed(issued_at=a.clock.utc(-301)),
        False,
    ),
    "expired message": (
        "siwe_expired",
        lambda a: a.signed(issued_at=a.clock.utc(-60), expiration_time=a.clock.utc(0)),
        False,
    ),
    "not yet valid": (
        "siwe_not_yet_valid",
        lambda a: a.signed(not_before=a.clock.utc(30)),
        False,
    ),
    "unknown nonce": (
        "siwe_nonce_unknown",
        lambda a: a.signed(offer={"nonce": "0123456789abcdef0123456789abcdef"}),
        False,
    ),
    "signature by another key": ("siwe_signature", _other_key, True),
    "tampered message": ("siwe_signature", _tampered, True),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_sign_in_is_refused_with_its_code(
    client: TestClient, world: World, clock: Clock, case: str
) -> None:
    code, attempt, spends_nonce = REFUSALS[case]
    a = Attempt(world, clock, new_offer(client))
    refused(client.post("/v1/auth/token", json=attempt(a)), code)
    retry = client.post("/v1/auth/token", json=a.signed())
    if spends_nonce:  # each nonce buys one signature check
        refused(retry, "siwe_nonce_used")
    else:  # cheap checks leave the nonce for a corrected message
        assert retry.status_code == 200, retry.text


def test_a_nonce_signs_in_once(client: TestClient, world: World, clock: Clock) -> None:
    body = Attempt(world, clock, new_offer(client)).signed()
    assert client.post("/v1/auth/token", json=body).status_code == 200
    error = refused(client.post("/v1/auth/token", json=body), "siwe_nonce_used")
    assert "already used" in error["message"]


def test_an_expired_nonce_is_refused_and_later_purged(
    client: TestClient, world: World, clock: Clock
) -> None:
    a = Attempt(world, clock, new_offer(client))
    clock.advance(300)
    error = refused(client.post("/v1/auth/token", json=a.signed()), "siwe_nonce_unknown")
    assert "expired" in error["message"]
    clock.advance(60)
    new_offer(client)  # issuing purges the expired nonces now and then
    error = refused(client.post("/v1/auth/token", json=a.signed()), "siwe_nonce_unknown")
    assert "was not issued here" in error["message"]


def test_clock_skew_within_a_minute_is_accepted(
    client: TestClient, world: World, clock: Clock
) -> None:
    a = Attempt(world, clock, new_offer(client))
    answer = client.post("/v1/auth/token", json=a.signed(issued_at=clock.utc(60)))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "body",
    [
        {"message": "x"},
        {"message": "x", "signature": "0x1234"},
        {"message": "x", "signature": "ab" * 65},
        {"message": "", "signature": "0x" + "ab" * 65},
    ],
)
def test_a_malformed_token_request_is_a_validation_error(
    client: TestClient, body: dict[str, str]
) -> None:
    answer = client.post("/v1/auth/token", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_failed"


# --- tokens ---------------------------------------------------------------------------


def _flip(text: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _with_claims(token: str, **changes: Any) -> str:
    prefix, body, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = json.dumps(claims | changes, separators=(",", ":")).encode()
    return f"{prefix}.{base64.urlsafe_b64encode(forged).rstrip(b'=').decode()}.{mac}"


def test_the_token_is_compact_hmac_signed_json(
    client: TestClient, world: World, clock: Clock
) -> None:
    token = sign_in(client, world.lender, issued_at=clock.utc())
    prefix, body, mac = token.split(".")
    assert prefix == "ff1" and len(base64.urlsafe_b64decode(mac + "=")) == 32
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert set(claims) == {"sub", "iat", "exp", "chain_id", "jti"}
    assert claims["sub"] == world.lender.address
    assert claims["exp"] - claims["iat"] == 900
    assert claims["chain_id"] == world.runtime.chain.chain_id
    signer = TokenSigner(SECRET, chain_id=claims["chain_id"], clock=clock)
    assert signer.claims_of(token).to_json() == claims


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "token_missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "token_missing"),
        ({"Authorization": "Bearer "}, "token_missing"),
        ({"Authorization": "Bearer garbage"}, "token_invalid"),
        ({"Authorization": "Bearer ff1.e30.AAAA"}, "token_invalid"),
        ({"Authorization": "Bearer ff1.!!!.???"}, "token_invalid"),
        ({"Authorization": "Bearer " + "ff1." + "A" * 2000}, "token_invalid"),
    ],
)
def test_requests_without_a_good_token_are_refused(
    client: TestClient, headers: dict[str, str], code: str
) -> None:
    refused(client.get("/v1/auth/me", headers=headers), code)


def test_an_expired_token_is_refused(client: TestClient, world: World, clock: Clock) -> None:
    token = sign_in(client, world.auditor, issued_at=clock.utc())
    clock.advance(899)
    assert client.get("/v1/auth/me", headers=bearer(token)).status_code == 200
    clock.advance(1)
    refused(client.get("/v1/auth/me", headers=bearer(token)), "token_expired")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda t: t[: t.rindex(".") + 1] + _flip(t.split(".")[2], 5), id="flipped MAC byte"
        ),
        pytest.param(
            lambda t: t[: t.rindex(".") + 1] + _flip(t.split(".")[2], 31), id="last MAC byte"
        ),
        pytest.param(lambda t: _with_claims(t, exp=4_102_444_800), id="extended expiry"),
        pytest.param(lambda t: _with_claims(t, sub=Account.create().address), id="another address"),
        pytest.param(lambda t: "ff2" + t[3:], id="another format"),
        pytest.param(lambda t: t + "=", id="padded"),
    ],
)
def test_an_altered_token_is_refused(
    client: TestClient, world: World, clock: Clock, forge: Callable[[str], str]
) -> None:
    token = sign_in(client, world.lender, issued_at=clock.utc())
    refused(client.get("/v1/auth/me", headers=bearer(forge(token))), "token_invalid")


def test_a_token_for_another_chain_or_secret_is_refused(
    client: TestClient, world: World, clock: Clock
) -> None:
    chain_id = world.runtime.chain.chain_id
    other_chain = TokenSigner(SECRET, chain_id=1, clock=clock).issue(world.lender.address)
    error = refused(client.get("/v1/auth/me", headers=bearer(other_chain.token)), "token_invalid")
    assert "chain 1" in error["message"]
    other_secret = TokenSigner(b"\x07" * 32, chain_id=chain_id, clock=clock).issue(
        world.lender.address
    )
    refused(client.get("/v1/auth/me", headers=bearer(other_secret.token)), "token_invalid")
    ours = TokenSigner(SECRET, chain_id=chain_id, clock=clock).issue(world.lender.address)
    assert client.get("/v1/auth/me", headers=bearer(ours.token)).status_code == 200


def test_api_processes_sharing_the_secret_accept_each_others_tokens(world: World) -> None:
    shared = Settings(auth_secret=SECRET)
    with (
        TestClient(create_app(world.runtime, settings=shared)) as one,
        TestClient(create_app(world.runtime, settings=shared)) as two,
        TestClient(create_app(world.runtime, settings=Settings())) as unshared,
    ):
        token = sign_in(one, world.lender)
        assert two.get("/v1/auth/me", headers=bearer(token)).status_code == 200
        refused(unshared.get("/v1/auth/me", headers=bearer(token)), "token_invalid")
        # and the nonce table is shared: a nonce from one is spent for all
        body = compose_sign_in(new_offer(one), account=world.lender).to_json()
        assert two.post("/v1/auth/token", json=body).status_code == 200
        refused(one.post("/v1/auth/token", json=body), "siwe_nonce_used")


def test_the_optional_caller_is_none_without_a_token_and_checked_with_one(
    world: World, clock: Clock
) -> None:
    app = make_app(world, clock)

    @app.get("/probe")
    def probe(caller: OptionalCallerDep) -> dict[str, Any]:
        return {"address": None if caller is None else caller.address}

    with TestClient(app) as client:
        assert client.get("/probe").json() == {"address": None}
        token = sign_in(client, world.custodian, issued_at=clock.utc())
        assert client.get("/probe", headers=bearer(token)).json() == {
            "address": world.custodian.address
        }
        refused(client.get("/probe", headers=bearer("ff1.x.y")), "token_invalid")


# --- concurrency ----------------------------------------------------------------------


def test_one_nonce_used_concurrently_signs_in_once(any_db_url: str) -> None:
    store = Store.open(any_db_url)
    try:
        nonces = Nonces(store)
        nonce = nonces.issue().nonce
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def race() -> None:
            barrier.wait()
            try:
                nonces.consume(nonce)
                outcomes.append("won")
            except Unauthenticated as exc:
                outcomes.append(exc.code)

        threads = [threading.Thread(target=race) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) == ["siwe_nonce_used"] * 7 + ["won"]
    finally:
        store.close()


@dataclass
class Server:
    url: str
    app: FastAPI


@pytest.fixture
def server(world: World, clock: Clock) -> Iterator[Server]:
    """The app on a real HTTP server on loopback, in a thread."""
    import uvicorn

    app = make_app(world, clock)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="auth-test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield Server(f"http://127.0.0.1:{port}", app)
    uv.should_exit = True
    thread.join(timeout=10)


def test_two_sign_ins_racing_with_one_nonce_over_http_get_one_token(
    server: Server, world: World, clock: Clock
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        offer = http.post("/v1/auth/nonce").json()
        body = compose_sign_in(offer, account=world.lender, issued_at=clock.utc()).to_json()
        barrier = threading.Barrier(2)
        answers: list[httpx.Response] = []

        def post() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as mine:
                barrier.wait()
                answers.append(mine.post("/v1/auth/token", json=body))

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert sorted(a.status_code for a in answers) == [200, 401]
    loser = next(a for a in answers if a.status_code == 401)
    assert loser.json()["error"]["code"] == "siwe_nonce_used"


# --- the command ----------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`fourflow` as a real process."""
    return subprocess.run(
        [fourflow_bin(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FOURFLOW_")}
    return base | extra


def invoke(*args: str, env: dict[str, str | None]) -> Result:
    """`fourflow` in this process (the same command, without a 3 s interpreter start)."""
    return CliRunner().invoke(cli_app, list(args), env={"FOURFLOW_KEY": None} | env)


def test_sign_in_command_prints_a_token_and_names_a_refusal(
    server: Server, world: World, clock: Clock
) -> None:
    ok = invoke("sign-in", "--api", server.url, env={"FOURFLOW_KEY": world.lender.key.hex()})
    assert ok.exit_code == 0, ok.stderr
    token = ok.stdout.strip()
    claims = server.app.state.tokens.claims_of(token)
    assert claims.sub == world.lender.address
    clock.advance(600)  # the server's clock runs ten minutes ahead of the client's
    late = invoke(
        "sign-in", "--api", server.url, "--key-env", "LENDER_KEY",
        env={"LENDER_KEY": world.lender.key.hex()},
    )  # fmt: skip
    assert late.exit_code == 1
    assert "401 siwe_issued_at" in late.stderr
    assert not late.stdout


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--key-env", "NO_SUCH_KEY"], {}, 2, "set NO_SUCH_KEY (hex) or NO_SUCH_KEY_FILE"),
        ([], {"FOURFLOW_KEY": "0xnothex"}, 2, "cannot load the key from $FOURFLOW_KEY"),
        (
            ["--api", "http://127.0.0.1:{port}"],
            {"FOURFLOW_KEY": "0x" + "11" * 32},
            1,
            "cannot reach the API at http://127.0.0.1:",
        ),
        (["--api", "http://[::1"], {"FOURFLOW_KEY": "0x" + "11" * 32}, 2, "--api"),
    ],
)
def test_sign_in_command_errors_say_why(
    args: list[str], env: dict[str, str | None], code: int, message: str
) -> None:
    port = str(free_port())  # nothing listens there
    result = invoke("sign-in", *[a.format(port=port) for a in args], env=env)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert not result.stdout


def test_sign_in_command_without_a_key_exits_non_zero_as_a_process() -> None:
    result = run_cli("sign-in", "--api", "http://127.0.0.1:9", env=_env())
    assert result.returncode == 2
    assert "set FOURFLOW_KEY (hex) or FOURFLOW_KEY_FILE" in result.stderr


@pytest.mark.anvil
def test_sign_in_command_against_fourflow_serve_on_anvil(anvil: AnvilNode, tmp_path: Path) -> None:
    chain = Chain.connect(anvil.url)
    contracts, deployment = deploy_contracts(chain, admin=Account.from_key(ANVIL_DEV_KEY))
    lender = new_account()
    contracts.pledges.grant(LENDER_ROLE, lender.address, admin=Account.from_key(ANVIL_DEV_KEY))
    deployment.write(tmp_path / "deployment.json")
    env = _env(
        FOURFLOW_RPC_URL=anvil.url,
        FOURFLOW_MANIFEST=str(tmp_path / "deployment.json"),
        FOURFLOW_DB_URL=f"sqlite:///{tmp_path}/store.sqlite",
        FOURFLOW_AUTH_SECRET=SECRET.hex(),
        FOURFLOW_TOKEN_TTL_SECONDS="600",
    )
    with ServeProcess.start(env, log=tmp_path / "serve.log", wait=30) as serve:
        api = serve.url
        result = invoke("sign-in", "--api", api, "--json", env={"FOURFLOW_KEY": lender.key.hex()})
        assert result.exit_code == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["address"] == lender.address and answer["roles"] == ["lender"]
        me = httpx.get(f"{api}/v1/auth/me", headers=bearer(answer["token"]), timeout=10)
        assert me.status_code == 200 and me.json()["roles"] == ["lender"]
        # the secret is the setting: this process can check the server's token
        signer = TokenSigner(SECRET, chain_id=deployment.chain_id)
        claims = signer.claims_of(answer["token"])
        assert claims.exp - claims.iat == 600


# --- settings and small parts ---------------------------------------------------------


def test_settings_read_the_auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURFLOW_AUTH_SECRET", "0x" + "ab" * 32)
    monkeypatch.setenv("FOURFLOW_TOKEN_TTL_SECONDS", "120")
    monkeypatch.setenv("FOURFLOW_SIWE_DOMAIN", "fourflow.example.com:8443")
    settings = Settings.from_env()
    assert settings.auth_secret == b"\xab" * 32
    assert settings.token_ttl_seconds == 120
    assert settings.siwe_domain == "fourflow.example.com:8443"
    assert "auth_secret" not in repr(settings)  # a secret stays out of logs
    monkeypatch.delenv("FOURFLOW_AUTH_SECRET")
    monkeypatch.delenv("FOURFLOW_TOKEN_TTL_SECONDS")
    monkeypatch.delenv("FOURFLOW_SIWE_DOMAIN")
    default = Settings.from_env()
    assert (default.auth_secret, default.token_ttl_seconds, default.siwe_domain) == (
        None,
        900,
        None,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FOURFLOW_AUTH_SECRET", "short", "FOURFLOW_AUTH_SECRET: 5 bytes is too short"),
        ("FOURFLOW_TOKEN_TTL_SECONDS", "59", "outside 60..3600"),
        ("FOURFLOW_TOKEN_TTL_SECONDS", "3601", "outside 60..3600"),
        ("FOURFLOW_TOKEN_TTL_SECONDS", "15m", "not a whole number of seconds"),
        ("FOURFLOW_SIWE_DOMAIN", "https://fourflow.example.com", "is not host[:port]"),
    ],
)
def test_bad_auth_settings_say_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        Settings.from_env()
    assert message in str(info.value)


def test_secrets_are_hex_or_long_text() -> None:
    assert parse_auth_secret("") is None
    assert parse_auth_secret("00" * 40) == bytes(40)
    assert parse_auth_secret("ab" * 16) == b"ab" * 16  # too few hex digits: taken as text
    assert (
        parse_auth_secret("a fourflow secret of 32+ bytes!!") == b"a fourflow secret of 32+ bytes!!"
    )
    with pytest.raises(ValueError, match="31 bytes is too short"):
        parse_auth_secret("x" * 31)


def test_authorities_are_host_and_port() -> None:
    assert parse_authority("Fourflow.Example.com") == ("fourflow.example.com", None)
    assert parse_authority("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_authority("[::1]:8000") == ("::1", 8000)
    for bad in ("", "https://x", "x/y", "user@host"):
        with pytest.raises(ValueError):
            parse_authority(bad)


def test_an_identity_is_an_address_and_roles() -> None:
    caller = Identity(address="0x" + "11" * 20, roles=frozenset({"lender"}))
    assert "lender" in caller.roles
    with pytest.raises(AttributeError):
        caller.roles = frozenset()  # type: ignore[misc]


def test_the_client_maps_an_unreachable_api_to_its_error() -> None:
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=5) as client,
        pytest.raises(SignInFailed) as info,
    ):
        sign_in(client, Account.create())
    assert info.value.code == "api_unreachable" and info.value.status is None


def test_the_public_names_are_pinned() -> None:
    import api.auth
    import api.siwe_client

    assert set(api.auth.__all__) == {
        "NONCE_TTL_S", "ROLES", "SIGN_IN_STATEMENT", "CallerDep", "ChainRoles", "ClaimsDep",
        "Clock", "Identity", "IssuedNonce", "IssuedToken", "NonceRow", "Nonces",
        "OptionalCallerDep", "RoleResolver", "SignIn", "TokenClaims", "TokenSigner",
        "accept_sign_in", "current_caller", "optional_caller", "parse_authority",
        "request_domain", "token_claims",
    }  # fmt: skip
    assert set(api.siwe_client.__all__) == {
        "HttpClient", "SignInFailed", "SignedSignIn", "compose_sign_in", "request_token",
        "sign_in",
    }  # fmt: skip
    for module in (api.auth, api.siwe_client):
        assert all(hasattr(module, name) for name in module.__all__)


def test_the_client_refuses_an_api_that_is_not_fourflow() -> None:
    other = FastAPI()

    @other.post("/v1/auth/nonce", status_code=201)
    def nonce() -> dict[str, str]:
        return {"hello": "world"}

    with TestClient(other) as client, pytest.raises(SignInFailed) as info:
        sign_in(client, Account.create())
    assert info.value.code == "bad_answer"
    assert "not a fourflow sign-in offer" in info.value.message
