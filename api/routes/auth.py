"""Sign-In with Ethereum (EIP-4361): a nonce, a signed message for a token, who am I.

POST /v1/auth/nonce  → 201 what a client needs to compose the message
POST /v1/auth/token  {message, signature} → a bearer token for the reads
GET  /v1/auth/me     the token's address, its roles now, and when it expires
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, Request, Response, status
from pydantic import BaseModel, Field

from api.auth import (
    SIGN_IN_STATEMENT,
    CallerDep,
    ClaimsDep,
    Nonces,
    RoleResolver,
    TokenSigner,
    accept_sign_in,
    request_domain,
)
from api.deps import SettingsDep
from api.limits import ParsedJsonRoute
from api.schemas import ErrorBody
from ledger.errors import Unauthenticated
from ledger.models import utc_text

router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=ParsedJsonRoute)

# siwe's ABNF parser takes about 2 ms a character on text off its grammar, and more than
# linear time on long fields, all of it holding the GIL: 8 KB of junk stalled the server
# for half a minute. fourflow's own messages are about 400 characters.
MAX_SIGN_IN_CHARS: Final = 1024
_SIGN_IN_HEAD: Final = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^\s/?#]{1,255} wants you to sign in with your "
    r"Ethereum account:\n0x[0-9a-fA-F]{40}\n"
)

_401: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "sign-in refused or token not accepted; `error.code` says why "
        "(token_missing, token_invalid, token_expired, siwe_*)",
    }
}


class NonceOffer(BaseModel):
    """Everything to compose the EIP-4361 message: sign it with personal_sign."""

    nonce: str = Field(description="single use; 32 hex digits")
    expires_at: str = Field(description="RFC 3339 UTC; sign in before it")
    domain: str = Field(examples=["fourflow.example.com"])
    uri: str = Field(examples=["https://fourflow.example.com/"])
    chain_id: int
    statement: str = SIGN_IN_STATEMENT
    version: Literal["1"] = "1"


class TokenRequest(BaseModel):
    message: str = Field(
        min_length=1,
        max_length=MAX_SIGN_IN_CHARS,
        description="the EIP-4361 message, exactly as signed",
    )
    signature: str = Field(
        pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte EIP-191 personal_sign signature"
    )


class TokenIssued(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: str = Field(description="RFC 3339 UTC")
    address: str = Field(description="EIP-55")
    roles: list[str] = Field(description="on-chain roles now, sorted; re-read on each request")


class Me(BaseModel):
    address: str
    roles: list[str]
    expires_at: str


def _utc(seconds: int) -> str:
    return utc_text(seconds * 1000)


@router.post(
    "/nonce",
    status_code=status.HTTP_201_CREATED,
    response_model=NonceOffer,
    summary="A single-use nonce for a sign-in message",
)
def new_nonce(request: Request, response: Response, settings: SettingsDep) -> NonceOffer:
    """A fresh nonce (valid 5 minutes) with the domain, URI, chain id and statement the
    message must carry."""
    response.headers["Cache-Control"] = "no-store"
    nonces: Nonces = request.app.state.nonces
    tokens: TokenSigner = request.app.state.tokens
    issued = nonces.issue()
    domain = request_domain(request, settings)
    return NonceOffer(
        nonce=issued.nonce,
        expires_at=utc_text(issued.expires_ms),
        domain=domain,
        uri=f"{request.url.scheme}://{domain}/",
        chain_id=tokens.chain_id,
    )


@router.post(
    "/token",
    response_model=TokenIssued,
    responses=_401,
    summary="Exchange a signed EIP-4361 message for a bearer token",
)
def new_token(
    request: Request,
    response: Response,
    settings: SettingsDep,
    sign_in: Annotated[TokenRequest, Body()],
) -> TokenIssued:
    """Checks the message (domain, URI, chain id, times, nonce) and its signature; the
    nonce is spent once the message passes the other checks, even if the signature
    then fails."""
    response.headers["Cache-Control"] = "no-store"
    tokens: TokenSigner = request.app.state.tokens
    roles: RoleResolver = request.app.state.roles
    verify_sign_in_head(sign_in.message)
    accepted = accept_sign_in(
        sign_in.message,
        signature=sign_in.signature,
        domain=request_domain(request, settings),
        chain_id=tokens.chain_id,
        nonces=request.app.state.nonces,
    )
    issued = tokens.issue(accepted.address, not_after=accepted.expires_s)
    return TokenIssued(
        token=issued.token,
        expires_at=_utc(issued.claims.exp),
        address=issued.claims.sub,
        roles=sorted(roles.roles_of(issued.claims.sub)),
    )


def verify_sign_in_head(message: str) -> None:
    """Refuse at once (``siwe_malformed``) a text whose first two lines are not an
    EIP-4361 header and an address, before siwe's slow parser sees it."""
    if not _SIGN_IN_HEAD.match(message):
        raise Unauthenticated(
            "not an EIP-4361 sign-in message: it must begin with '<domain> wants you to "
            "sign in with your Ethereum account:' and the address on the next line",
            field="message",
            code="siwe_malformed",
        )


@router.get("/me", response_model=Me, responses=_401, summary="Who the token speaks for")
def me(caller: CallerDep, claims: ClaimsDep) -> Me:
    return Me(address=caller.address, roles=sorted(caller.roles), expires_at=_utc(claims.exp))
