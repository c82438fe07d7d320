"""Crash points: named places where a test can have this process killed (SIGKILL).

``FOURFLOW_CRASH_AT=<name>`` makes the process kill itself, with no clean-up, the first
time it reaches ``crashpoint(name)``. This is how the crash tests stop a real worker
process between two steps of the anchoring state machine, a fault that cannot be
caused from outside at a precise point. Unset (always, outside tests), it does nothing.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_POINTS", "crashpoint"]

CRASH_POINTS = ("after_seal", "after_send", "after_record_send")


def crashpoint(name: str) -> None:
    if os.environ.get("FOURFLOW_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
