"""Crash points: named places where a test can have this process killed (SIGKILL).

``FOURFLOW_CRASH_AT=<name>`` makes the process kill itself, with no clean-up, the first
time it reaches ``crashpoint(name)``; ``<name>#<k>`` the k-th time (so a schedule can stop
a worker at the same step of its third batch). This is how the crash tests stop a real
worker process between two steps of the anchoring state machine, a fault that cannot be
caused from outside at a precise point. Unset (always, outside tests), it does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["CRASH_POINTS", "crashpoint"]

# in the order a batch meets them (ledger/anchoring.py)
CRASH_POINTS = (
    "after_claim",  # a stream's claim taken, nothing done yet
    "after_seal",  # batch row and event stamps committed
    "after_send",  # anchoring transaction sent, its hash not yet recorded
    "after_record_send",  # batch marked sent
    "after_anchored",  # batch marked anchored, the claim not yet released
)

_hits: Counter[str] = Counter()


def crashpoint(name: str) -> None:
    target = os.environ.get("FOURFLOW_CRASH_AT")
    if not target:
        return
    point, _, nth = target.partition("#")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
