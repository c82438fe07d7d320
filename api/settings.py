"""API settings, read from the environment once per process through get_settings()."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    max_events_per_submission: int = 10_000
    # EPCIS capture clients: sha256 (hex) of each client's bearer token -> its name
    capture_tokens: Mapping[str, str] = field(default_factory=dict)
    # Sign-In with Ethereum read tokens (api/auth.py): the HMAC key (None: a random one
    # per process), the tokens' lifetime, and the domain sign-in messages must name
    # (None: the request's Host header)
    auth_secret: bytes | None = field(default=None, repr=False)
    token_ttl_seconds: int = 900
    siwe_domain: str | None = None
    # a bearer token /metrics asks for (None: /metrics is open; bind to loopback or
    # protect it at the proxy)
    metrics_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.auth_secret is not None and len(self.auth_secret) < 32:
            raise ValueError(
                f"FOURFLOW_AUTH_SECRET: {len(self.auth_secret)} bytes is too short; use at least "
                "32 (64 hex digits from `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        if not 60 <= self.token_ttl_seconds <= 3600:
            raise ValueError(
                f"FOURFLOW_TOKEN_TTL_SECONDS: {self.token_ttl_seconds} is outside 60..3600"
            )
        if self.siwe_domain is not None and not _AUTHORITY.fullmatch(self.siwe_domain):
            raise ValueError(
                f"FOURFLOW_SIWE_DOMAIN: {self.siwe_domain!r} is not host[:port] "
                "(no scheme, no path), e.g. fourflow.example.com"
            )

    @classmethod
    def from_env(cls) -> Settings:
        ttl = os.environ.get("FOURFLOW_TOKEN_TTL_SECONDS", "").strip()
        if ttl and not ttl.isdigit():
            raise ValueError(
                f"FOURFLOW_TOKEN_TTL_SECONDS: {ttl!r} is not a whole number of seconds"
            )
        return cls(
            max_body_bytes=int(os.environ.get("FOURFLOW_MAX_BODY_BYTES", cls.max_body_bytes)),
            max_events_per_submission=int(
                os.environ.get("FOURFLOW_MAX_EVENTS", cls.max_events_per_submission)
            ),
            capture_tokens=parse_capture_tokens(os.environ.get("FOURFLOW_CAPTURE_TOKENS", "")),
            auth_secret=parse_auth_secret(os.environ.get("FOURFLOW_AUTH_SECRET", "")),
            token_ttl_seconds=int(ttl) if ttl else cls.token_ttl_seconds,
            siwe_domain=os.environ.get("FOURFLOW_SIWE_DOMAIN", "").strip() or None,
            metrics_token=os.environ.get("FOURFLOW_METRICS_TOKEN", "").strip() or None,
        )


_AUTHORITY = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_HEX = re.compile(r"(?:0x)?((?:[0-9A-Fa-f]{2}){32,})")


def parse_auth_secret(text: str) -> bytes | None:
    """64 or more hex digits (optionally 0x-prefixed) are the key's bytes; any other
    string is taken as UTF-8 and must be at least 32 bytes; empty is None."""
    text = text.strip()
    if not text:
        return None
    match = _HEX.fullmatch(text)
    secret = bytes.fromhex(match.group(1)) if match else text.encode("utf-8")
    if len(secret) < 32:
        raise ValueError(
            f"FOURFLOW_AUTH_SECRET: {len(secret)} bytes is too short; use at least 32 "
            "(64 hex digits from `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return secret


def parse_capture_tokens(text: str) -> dict[str, str]:
    """``name:sha256hex,name:sha256hex`` (as `fourflow capture-token NAME` prints)."""
    tokens: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, _, digest = entry.partition(":")
        if not name or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"FOURFLOW_CAPTURE_TOKENS: {entry!r} is not name:<sha256 hex>")
        tokens[digest] = name
    return tokens


@cache
def get_settings() -> Settings:
    return Settings.from_env()
