"""API settings, read from the environment once per process through get_settings()."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    max_events_per_submission: int = 10_000

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            max_body_bytes=int(os.environ.get("FOURFLOW_MAX_BODY_BYTES", cls.max_body_bytes)),
            max_events_per_submission=int(
                os.environ.get("FOURFLOW_MAX_EVENTS", cls.max_events_per_submission)
            ),
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()
