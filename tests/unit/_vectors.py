"""Loading the committed golden vectors (tests/vectors/*.json, see generate.py there)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


@cache
def _load_text(name: str) -> str:
    return (VECTORS / name).read_text(encoding="utf-8")


def load(name: str) -> Any:
    """A fresh parse of ``tests/vectors/<name>`` (callers may mutate what they get)."""
    return json.loads(_load_text(name))
