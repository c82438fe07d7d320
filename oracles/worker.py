"""The anchoring worker as a long-running service: `fourflow oracle run`."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from ledger.anchoring import Anchorer
from ledger.errors import ChainError

log = logging.getLogger("fourflow.oracle")


def run_worker(anchorer: Anchorer, *, poll_s: float = 0.5, once: bool = False) -> int:
    """Anchor until SIGINT/SIGTERM (or one pass with ``once``, which raises ChainError
    when a stream could not be anchored); returns batches anchored.

    A signal lets the batch in flight finish its current step; anything cut short is
    picked up by the next start, which reads the chain before it sends anything.
    """
    if once:
        summary = anchorer.run_once(force=True)
        if summary.deferred:  # --once must not look done when the node refused
            raise ChainError(
                "anchoring did not finish: "
                + "; ".join(f"{stream}: {why}" for stream, why in summary.deferred)
            )
        return len(summary.anchored)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current step", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info(
            "anchoring to %s on chain %d",
            anchorer.registry.address,
            anchorer.registry.chain.chain_id,
        )
        anchorer.run_forever(stop, poll_s=poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
