"""Signing in to a fourflow API from Python (the CLI, the demo, tests).

    token = sign_in(client, private_key)              # a bearer token
    answer = request_token(client, private_key)       # the whole /v1/auth/token answer
    signed = compose_sign_in(offer, account=account)  # the message and its signature

``client`` is anything with httpx's ``post(url, json=...)``: an ``httpx.Client`` with a
``base_url``, or FastAPI's ``TestClient``. An API that refuses raises ``SignInFailed``
with the status and the API's ``error.code``; an httpx transport failure becomes
``SignInFailed`` with code ``api_unreachable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from siwe import ISO8601Datetime, SiweMessage

from ledger.errors import LedgerError

__all__ = [
    "HttpClient",
    "SignInFailed",
    "SignedSignIn",
    "compose_sign_in",
    "request_token",
    "sign_in",
]


class SignInFailed(LedgerError):
    """The API refused the sign-in (``status``, its ``code``) or could not be reached."""

    code = "sign_in_failed"

    def __init__(self, message: str, *, status: int | None, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class HttpClient(Protocol):
    def post(self, url: str, *, json: Any = None) -> _Response: ...


@dataclass(frozen=True)
class SignedSignIn:
    message: str
    signature: str  # 0x-hex, 65 bytes

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "signature": self.signature}


def _account(private_key: str | bytes | LocalAccount) -> LocalAccount:
    if isinstance(private_key, LocalAccount):
        return private_key
    account: LocalAccount = Account.from_key(private_key)
    return account


def compose_sign_in(
    offer: Mapping[str, Any],
    *,
    account: LocalAccount,
    issued_at: datetime | None = None,
    expiration_time: datetime | None = None,
    not_before: datetime | None = None,
) -> SignedSignIn:
    """The EIP-4361 message for a nonce offer (POST /v1/auth/nonce), signed with
    EIP-191 personal_sign. ``issued_at`` defaults to now."""
    message = SiweMessage(
        domain=offer["domain"],
        address=account.address,
        uri=offer["uri"],
        version=offer.get("version", "1"),
        chain_id=offer["chain_id"],
        issued_at=ISO8601Datetime.from_datetime(issued_at or datetime.now(UTC)),
        nonce=offer["nonce"],
        statement=offer.get("statement"),
        expiration_time=ISO8601Datetime.from_datetime(expiration_time) if expiration_time else None,
        not_before=ISO8601Datetime.from_datetime(not_before) if not_before else None,
    )
    text = message.prepare_message()
    signature = account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
    return SignedSignIn(message=text, signature=signature)


def _refused(answer: _Response, step: str) -> SignInFailed:
    try:
        error = answer.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", answer.text[:200] or "no body"
    return SignInFailed(
        f"{step}: {answer.status_code} {code}: {message}", status=answer.status_code, code=code
    )


def _post(client: HttpClient, url: str, body: dict[str, Any] | None) -> _Response:
    try:
        return client.post(url, json=body)
    except httpx.HTTPError as exc:
        base = str(getattr(client, "base_url", "")).rstrip("/")
        raise SignInFailed(
            f"cannot reach the API at {base}{url}: {exc}", status=None, code="api_unreachable"
        ) from exc


def request_token(
    client: HttpClient,
    private_key: str | bytes | LocalAccount,
    *,
    issued_at: datetime | None = None,
    expected_domain: str | None = None,
) -> dict[str, Any]:
    """Nonce, message, signature, token: the API's answer ``{token, token_type,
    expires_at, address, roles}``. The offer must name the domain we are talking to
    (``expected_domain``, default the client's base URL host[:port]): a look-alike API
    relaying the real one's offer would otherwise get a token for our key."""
    account = _account(private_key)
    offer = _post(client, "/v1/auth/nonce", None)
    if offer.status_code != 201:
        raise _refused(offer, "asking for a nonce")
    expected = expected_domain or urlsplit(str(getattr(client, "base_url", ""))).netloc
    body = offer.json()
    offered = body.get("domain") if isinstance(body, dict) else None
    if expected and isinstance(offered, str) and offered != expected:  # else: malformed, below
        raise SignInFailed(
            f"the API at {expected} asks us to sign in to {offered!r}: refusing to sign a "
            "message for another domain",
            status=None,
            code="siwe_domain_mismatch",
        )
    try:
        signed = compose_sign_in(offer.json(), account=account, issued_at=issued_at)
    except (ValueError, KeyError, TypeError) as exc:  # pydantic's errors are ValueErrors
        raise SignInFailed(
            f"the nonce answer is not a fourflow sign-in offer: {exc}",
            status=201,
            code="bad_answer",
        ) from exc
    answer = _post(client, "/v1/auth/token", signed.to_json())
    if answer.status_code != 200:
        raise _refused(answer, "signing in")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise SignInFailed(
            f"the token answer has no token: {answer.text[:200]}", status=200, code="bad_answer"
        )
    return body


def sign_in(
    client: HttpClient,
    private_key: str | bytes | LocalAccount,
    *,
    issued_at: datetime | None = None,
    expected_domain: str | None = None,
) -> str:
    """A bearer token for ``private_key``'s address: send ``Authorization: Bearer …``."""
    token: str = request_token(
        client, private_key, issued_at=issued_at, expected_domain=expected_domain
    )["token"]
    return token
