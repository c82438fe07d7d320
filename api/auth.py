"""Sign-In with Ethereum (EIP-4361) for reads: nonces, sign-in checks, bearer tokens,
and the caller's on-chain roles.

    POST /v1/auth/nonce  ──▶ Nonces.issue()           a single-use nonce, 5 minutes
    POST /v1/auth/token  ──▶ accept_sign_in(...)       the numbered checks below
                         ──▶ TokenSigner.issue(...)    ``ff1.<claims>.<mac>``, stateless
    any read             ──▶ CallerDep                 token → Identity(address, roles)

Roles are read from the chain (``ChainRoles``) on each request through a few-second
cache, never stored in the token: a revoked role stops working within the cache's TTL.

Every refusal is ``ledger.errors.Unauthenticated`` with one of these codes (HTTP 401
with ``WWW-Authenticate: Bearer``; api/errors.py): ``token_missing``, ``token_invalid``,
``token_expired``, ``siwe_malformed``, ``siwe_domain``, ``siwe_uri``, ``siwe_chain``,
``siwe_nonce_unknown``, ``siwe_nonce_used``, ``siwe_expired``, ``siwe_not_yet_valid``,
``siwe_issued_at``, ``siwe_signature``.

Only externally owned accounts sign in (EIP-191 ``personal_sign``); EIP-1271 contract
wallets are out of scope: siwe's ``verify`` gets no web3 provider.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Protocol
from urllib.parse import urlsplit

import siwe
from eth_utils.address import is_checksum_address, to_checksum_address
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import BigInteger, Integer, delete, update
from sqlmodel import Field, SQLModel, col

from api.settings import Settings
from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, AnchorRegistry, ContractClient
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    Contracts,
    contracts_from,
)
from ledger.errors import Unauthenticated
from ledger.runtime import Runtime
from ledger.store import Store

__all__ = [
    "NONCE_TTL_S",
    "ROLES",
    "SIGN_IN_STATEMENT",
    "CallerDep",
    "ChainRoles",
    "ClaimsDep",
    "Clock",
    "Identity",
    "IssuedNonce",
    "IssuedToken",
    "NonceRow",
    "Nonces",
    "OptionalCallerDep",
    "RoleResolver",
    "SignIn",
    "TokenClaims",
    "TokenSigner",
    "accept_sign_in",
    "current_caller",
    "optional_caller",
    "parse_authority",
    "request_domain",
    "token_claims",
]

Clock = Callable[[], float]  # seconds

ROLES: Final = frozenset({"admin", "lender", "auditor", "oracle", "custodian", "submitter"})
SIGN_IN_STATEMENT: Final = (
    "Sign in to fourflow to read the histories and proofs you are entitled to."
)
NONCE_TTL_S: Final = 300  # a nonce, and a sign-in message's issued-at, are good this long
CLOCK_SKEW_S: Final = 60  # how far in the future a client's issued-at may be
PURGE_EVERY_S: Final = 60  # expired nonces are deleted at most this often, per process
TOKEN_PREFIX: Final = "ff1"
MAX_TOKEN_CHARS: Final = 1024
MAX_TOKEN_TTL_S: Final = 3600
_ADMIN_ROLE: Final = b"\x00" * 32  # OpenZeppelin AccessControl's DEFAULT_ADMIN_ROLE
_BIG = BigInteger().with_variant(Integer, "sqlite")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_log = logging.getLogger(__name__)


def _refused(code: str, message: str, *, field: str) -> Unauthenticated:
    return Unauthenticated(message, field=field, code=code)


# --- identities and roles -------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who is calling: an EIP-55 address and its on-chain roles (a subset of ROLES).
    No role is not no access: anyone may own receipts (a borrower)."""

    address: str
    roles: frozenset[str]


class RoleResolver(Protocol):
    def roles_of(self, address: str) -> frozenset[str]: ...


class ChainRoles:
    """Roles read with ``hasRole`` from the contracts, cached for ``ttl_s`` seconds.

    admin: DEFAULT_ADMIN_ROLE on any contract; oracle: ORACLE_ROLE on any contract that
    has one (AnchorRegistry, PriceFeed, PledgeRegistry); lender and auditor:
    PledgeRegistry; custodian: ReceiptRegistry; submitter: AnchorRegistry. Without the
    collateral contracts (``contracts`` None), only the anchor registry's roles apply.
    All of one address's roles are read at one block."""

    MAX_CACHED: Final = 10_000

    def __init__(
        self,
        contracts: Contracts | None,
        anchors: AnchorRegistry,
        *,
        ttl_s: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        checks: list[tuple[str, ContractClient, bytes]] = [
            ("admin", anchors, _ADMIN_ROLE),
            ("oracle", anchors, ORACLE_ROLE),
            ("submitter", anchors, SUBMITTER_ROLE),
        ]
        if contracts is not None:
            checks += [
                ("admin", contracts.receipts, _ADMIN_ROLE),
                ("admin", contracts.prices, _ADMIN_ROLE),
                ("admin", contracts.pledges, _ADMIN_ROLE),
                ("oracle", contracts.prices, ORACLE_ROLE),
                ("oracle", contracts.pledges, ORACLE_ROLE),
                ("lender", contracts.pledges, LENDER_ROLE),
                ("auditor", contracts.pledges, AUDITOR_ROLE),
                ("custodian", contracts.receipts, CUSTODIAN_ROLE),
            ]
        self._checks = checks
        self._chain = anchors.chain
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> ChainRoles:
        """Over the runtime's deployment: every contract its manifest names."""
        deployment = runtime.deployment
        contracts = (
            contracts_from(runtime.chain, deployment) if deployment.pledge_registry else None
        )
        return cls(contracts, runtime.registry)

    def roles_of(self, address: str) -> frozenset[str]:
        account = to_checksum_address(address)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(account)
        if cached is not None and cached[0] > now:
            return cached[1]
        roles = self._read(account)
        with self._lock:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache = {a: hit for a, hit in self._cache.items() if hit[0] > now}
                if len(self._cache) >= self.MAX_CACHED:
                    self._cache.clear()
            self._cache[account] = (now + self._ttl_s, roles)
        return roles

    def _read(self, account: str) -> frozenset[str]:
        block = self._chain.head
        found: set[str] = set()
        for name, client, role in self._checks:
            if name not in found and client.has_role(role, account, block=block):
                found.add(name)
        return frozenset(found)


# --- nonces ---------------------------------------------------------------------------


class NonceRow(SQLModel, table=True):
    """One sign-in nonce. Shared by every API process on the database."""

    __tablename__ = "siwe_nonces"

    nonce: str = Field(primary_key=True, max_length=64)
    issued_ms: int = Field(sa_type=_BIG)
    expires_ms: int = Field(sa_type=_BIG, index=True)
    used_ms: int | None = Field(default=None, sa_type=_BIG)


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    expires_ms: int


class Nonces:
    """Single-use sign-in nonces in the store: 128 random bits as 32 hex digits (EIP-4361
    wants 8 or more alphanumerics), valid ``ttl_s`` seconds. Consuming is one atomic
    UPDATE, so of two sign-ins with one nonce, on any number of processes, one wins."""

    def __init__(self, store: Store, *, ttl_s: int = NONCE_TTL_S, clock: Clock = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._purged_at: float | None = None

    def issue(self) -> IssuedNonce:
        now_ms = int(self.clock() * 1000)
        self._purge_now_and_then(now_ms)
        row = NonceRow(
            nonce=secrets.token_hex(16), issued_ms=now_ms, expires_ms=now_ms + self.ttl_s * 1000
        )
        with self.store.session() as session:
            session.add(row)
            session.commit()
        return IssuedNonce(nonce=row.nonce, expires_ms=row.expires_ms)

    def consume(self, nonce: str) -> None:
        """Mark ``nonce`` used, or raise ``siwe_nonce_unknown`` (never issued, expired,
        or purged) / ``siwe_nonce_used``."""
        now_ms = int(self.clock() * 1000)
        if len(nonce) > 64:
            raise _refused("siwe_nonce_unknown", "the nonce was not issued here", field="message")
        claim = (
            update(NonceRow)
            .where(col(NonceRow.nonce) == nonce)
            .where(col(NonceRow.used_ms).is_(None))
            .where(col(NonceRow.expires_ms) > now_ms)
            .values(used_ms=now_ms)
        )
        with self.store.session() as session:
            won = session.exec(claim).rowcount == 1
            session.commit()
            if won:
                return
            row = session.get(NonceRow, nonce)
        if row is None:
            raise _refused(
                "siwe_nonce_unknown",
                f"nonce {nonce!r} was not issued here (or expired and was purged); "
                "POST /v1/auth/nonce for a new one",
                field="message",
            )
        if row.used_ms is not None:
            raise _refused(
                "siwe_nonce_used",
                f"nonce {nonce!r} was already used to sign in; POST /v1/auth/nonce for a new one",
                field="message",
            )
        raise _refused(
            "siwe_nonce_unknown",
            f"nonce {nonce!r} expired at {_rfc3339(row.expires_ms / 1000)}; "
            "POST /v1/auth/nonce for a new one",
            field="message",
        )

    def purge(self) -> int:
        """Delete the expired nonces; returns how many."""
        now_ms = int(self.clock() * 1000)
        with self.store.session() as session:
            gone = session.exec(delete(NonceRow).where(col(NonceRow.expires_ms) <= now_ms))
            session.commit()
            return int(gone.rowcount)

    def _purge_now_and_then(self, now_ms: int) -> None:
        if self._purged_at is None or now_ms / 1000 - self._purged_at >= PURGE_EVERY_S:
            self._purged_at = now_ms / 1000
            self.purge()


# --- sign-in --------------------------------------------------------------------------


def parse_authority(text: str) -> tuple[str, int | None]:
    """``host[:port]`` as (lower-case host, port or None); ValueError if it is not one."""
    if not text or any(c in text for c in "/?#@ \t\r\n"):
        raise ValueError(f"{text!r} is not host[:port]")
    parts = urlsplit("//" + text)
    if not parts.hostname:
        raise ValueError(f"{text!r} is not host[:port]")
    return parts.hostname.lower(), parts.port


def request_domain(request: Request, settings: Settings) -> str:
    """The domain sign-in messages must name: the configured one, else the Host header."""
    if settings.siwe_domain:
        return settings.siwe_domain
    return request.headers.get("host") or request.url.netloc


def _instant(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise _refused(
            "siwe_malformed", f"{name} {text!r} is not RFC 3339", field="message"
        ) from exc
    if moment.tzinfo is None:
        raise _refused("siwe_malformed", f"{name} {text!r} has no time zone", field="message")
    return moment.timestamp()


def _rfc3339(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class SignIn:
    """An accepted sign-in: the proven address, and the message's expiration time (unix
    seconds) if it has one."""

    address: str
    expires_s: float | None
    message: siwe.SiweMessage


def accept_sign_in(
    text: str, *, signature: str, domain: str, chain_id: int, nonces: Nonces
) -> SignIn:
    """Check a signed EIP-4361 message and consume its nonce. Raises Unauthenticated at
    the first failing step:

    1. it parses as EIP-4361 (siwe's ABNF grammar), version 1     siwe_malformed
    2. its domain is ``domain`` (host[:port], host case-blind)    siwe_domain
    3. its URI names the same host (and the same port)             siwe_uri
    4. its chain id is ``chain_id``                                siwe_chain
    5. issued at most 60 s ahead of our clock, at most 5 min ago   siwe_issued_at
    6. its expiration time, if any, is still ahead                 siwe_expired
    7. its not-before, if any, has passed                          siwe_not_yet_valid
    8. its nonce was issued here and is unused: consumed now       siwe_nonce_unknown / _used
    9. the EIP-191 signature recovers its address                  siwe_signature

    Steps 1–7 cost nothing and leave the nonce unused, so a client can fix its clock or
    its message and retry. From step 8 on, the nonce is spent even if the signature
    fails: each nonce buys one signature check.
    """
    now = nonces.clock()
    try:  # 1
        message = siwe.SiweMessage.from_message(text)
    except ValueError as exc:
        raise _refused(
            "siwe_malformed",
            f"not an EIP-4361 sign-in message: {_first_line(exc)}",
            field="message",
        ) from exc
    if str(message.version) != "1":
        raise _refused("siwe_malformed", f"version {message.version} is not 1", field="message")
    try:  # 2
        want = parse_authority(domain)
        got = parse_authority(message.domain)
    except ValueError as exc:
        raise _refused("siwe_domain", f"domain {message.domain!r}: {exc}", field="message") from exc
    if got != want:
        raise _refused(
            "siwe_domain",
            f"the message is for domain {message.domain!r}; sign in to {domain!r}",
            field="message",
        )
    uri = urlsplit(str(message.uri))  # 3
    scheme_port = _DEFAULT_PORTS.get(uri.scheme.lower())
    try:
        uri_port = uri.port or scheme_port
    except ValueError:
        uri_port = -1
    if (uri.hostname or "").lower() != want[0] or uri_port != (want[1] or scheme_port):
        raise _refused(
            "siwe_uri", f"URI {message.uri!r} is not on the host {domain!r}", field="message"
        )
    if message.chain_id != chain_id:  # 4
        raise _refused(
            "siwe_chain",
            f"the message is for chain {message.chain_id}; this deployment is chain {chain_id}",
            field="message",
        )
    issued_at = _instant(message.issued_at, "issued-at") or 0.0  # 5: the grammar requires it
    if issued_at > now + CLOCK_SKEW_S:
        raise _refused(
            "siwe_issued_at",
            f"issued at {message.issued_at}, more than {CLOCK_SKEW_S} s after this server's "
            f"clock ({_rfc3339(now)}); check the client's clock",
            field="message",
        )
    if issued_at < now - NONCE_TTL_S:
        raise _refused(
            "siwe_issued_at",
            f"issued at {message.issued_at}, more than {NONCE_TTL_S // 60} minutes ago; "
            "sign a fresh message",
            field="message",
        )
    expires = _instant(message.expiration_time, "expiration-time")  # 6
    if expires is not None and now >= expires:
        raise _refused(
            "siwe_expired", f"the message expired at {message.expiration_time}", field="message"
        )
    not_before = _instant(message.not_before, "not-before")  # 7
    if not_before is not None and now < not_before:
        raise _refused(
            "siwe_not_yet_valid",
            f"the message is not valid before {message.not_before}",
            field="message",
        )
    nonces.consume(message.nonce)  # 8
    try:  # 9: signature only; no provider, so no EIP-1271
        message.verify(signature, timestamp=datetime.fromtimestamp(now, tz=UTC))
    except siwe.ExpiredMessage as exc:
        raise _refused("siwe_expired", "the message has expired", field="message") from exc
    except siwe.NotYetValidMessage as exc:
        raise _refused(
            "siwe_not_yet_valid", "the message is not valid yet", field="message"
        ) from exc
    except siwe.VerificationError as exc:
        raise _refused(
            "siwe_signature",
            f"the signature does not recover {message.address} over this message "
            "(EIP-191 personal_sign of the exact text)",
            field="signature",
        ) from exc
    return SignIn(address=message.address, expires_s=expires, message=message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or "it does not match the grammar"
    return text.splitlines()[0][:200]


# --- tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenClaims:
    sub: str  # EIP-55 address
    iat: int  # unix seconds
    exp: int
    chain_id: int
    jti: str

    def to_json(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "iat": self.iat,
            "exp": self.exp,
            "chain_id": self.chain_id,
            "jti": self.jti,
        }


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: TokenClaims


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict unpadded base64url: the canonical encoding only."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


class TokenSigner:
    """Stateless bearer tokens: ``ff1.<base64url(claims JSON)>.<base64url(HMAC-SHA256)>``,
    the MAC over ``ff1.<claims>``; claims ``{sub, iat, exp, chain_id, jti}``. Every API
    process that should accept another's tokens needs the same secret."""

    def __init__(
        self, secret: bytes, *, chain_id: int, ttl_s: int = 900, clock: Clock = time.time
    ) -> None:
        if len(secret) < 32:
            raise ValueError(f"a token secret needs at least 32 bytes, got {len(secret)}")
        if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
            raise ValueError(f"a token lifetime is 1..{MAX_TOKEN_TTL_S} s, got {ttl_s}")
        self._secret = secret
        self.chain_id = chain_id
        self.ttl_s = ttl_s
        self.clock = clock

    @classmethod
    def for_settings(cls, settings: Settings, *, chain_id: int) -> TokenSigner:
        """With the configured secret, or a random one that lives as long as this process
        (then tokens do not survive a restart and no other process accepts them)."""
        if settings.auth_secret is None:
            _log.warning(
                "FOURFLOW_AUTH_SECRET is not set: sign-in tokens use a random key of this "
                "process; other API processes will refuse them"
            )
        return cls(
            settings.auth_secret or secrets.token_bytes(32),
            chain_id=chain_id,
            ttl_s=settings.token_ttl_seconds,
        )

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._secret, signed.encode("ascii"), hashlib.sha256).digest()

    def issue(self, address: str, *, not_after: float | None = None) -> IssuedToken:
        """A token for ``address``, good for the lifetime or until ``not_after`` (unix s)."""
        now = int(self.clock())
        exp = now + self.ttl_s
        if not_after is not None:
            exp = min(exp, int(not_after))
        claims = TokenClaims(
            sub=to_checksum_address(address),
            iat=now,
            exp=exp,
            chain_id=self.chain_id,
            jti=secrets.token_hex(16),
        )
        body = json.dumps(claims.to_json(), separators=(",", ":"), sort_keys=True)
        signed = f"{TOKEN_PREFIX}.{_b64(body.encode('utf-8'))}"
        return IssuedToken(token=f"{signed}.{_b64(self._mac(signed))}", claims=claims)

    def claims_of(self, token: str) -> TokenClaims:
        """The claims of a valid token; raises ``token_invalid`` or ``token_expired``."""
        invalid = "token_invalid"
        parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise _refused(invalid, "not a fourflow token (ff1.…)", field="Authorization")
        try:
            mac = _unb64(parts[2])
            body = _unb64(parts[1])
        except ValueError as exc:
            raise _refused(invalid, f"malformed token: {exc}", field="Authorization") from exc
        if not hmac.compare_digest(mac, self._mac(f"{parts[0]}.{parts[1]}")):
            raise _refused(
                invalid,
                "the token's signature does not match (another server's secret, or altered)",
                field="Authorization",
            )
        claims = _claims(body)
        if claims is None:
            raise _refused(invalid, "the token's claims are malformed", field="Authorization")
        if claims.chain_id != self.chain_id:
            raise _refused(
                invalid,
                f"the token is for chain {claims.chain_id}; this API serves chain {self.chain_id}",
                field="Authorization",
            )
        now = self.clock()
        if claims.exp - claims.iat > MAX_TOKEN_TTL_S or claims.iat > now + CLOCK_SKEW_S:
            raise _refused(invalid, "the token's times are impossible", field="Authorization")
        if now >= claims.exp:
            raise _refused(
                "token_expired",
                f"the token expired at {_rfc3339(claims.exp)}; sign in again",
                field="Authorization",
            )
        return claims


def _claims(body: bytes) -> TokenClaims | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"sub", "iat", "exp", "chain_id", "jti"}:
        return None
    ints = [data["iat"], data["exp"], data["chain_id"]]
    if any(type(v) is not int for v in ints) or not isinstance(data["jti"], str):
        return None
    if not isinstance(data["sub"], str) or not is_checksum_address(data["sub"]):
        return None
    return TokenClaims(
        sub=data["sub"],
        iat=data["iat"],
        exp=data["exp"],
        chain_id=data["chain_id"],
        jti=data["jti"],
    )


# --- FastAPI dependencies -------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="ff1",
    description="A token from POST /v1/auth/token (Sign-In with Ethereum).",
)


def token_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims:
    """The claims of the request's bearer token; raises ``token_missing`` without one."""
    if credentials is None:
        raise _refused(
            "token_missing",
            "sign in first: send 'Authorization: Bearer <token>' (POST /v1/auth/nonce, "
            "then POST /v1/auth/token)",
            field="Authorization",
        )
    tokens: TokenSigner = request.app.state.tokens
    return tokens.claims_of(credentials.credentials)


def current_caller(
    request: Request, claims: Annotated[TokenClaims, Depends(token_claims)]
) -> Identity:
    roles: RoleResolver = request.app.state.roles
    return Identity(address=claims.sub, roles=roles.roles_of(claims.sub))


def optional_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity | None:
    """None without a bearer token; a token that is sent must be valid."""
    if credentials is None:
        return None
    return current_caller(request, token_claims(request, credentials))


CallerDep = Annotated[Identity, Depends(current_caller)]
OptionalCallerDep = Annotated[Identity | None, Depends(optional_caller)]
ClaimsDep = Annotated[TokenClaims, Depends(token_claims)]
