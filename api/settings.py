"""API settings, read from the environment once per process through get_settings()."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    max_events_per_submission: int = 10_000
    # EPCIS capture clients: sha256 (hex) of each client's bearer token -> its name
    capture_tokens: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            max_body_bytes=int(os.environ.get("FOURFLOW_MAX_BODY_BYTES", cls.max_body_bytes)),
            max_events_per_submission=int(
                os.environ.get("FOURFLOW_MAX_EVENTS", cls.max_events_per_submission)
            ),
            capture_tokens=parse_capture_tokens(os.environ.get("FOURFLOW_CAPTURE_TOKENS", "")),
        )


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
