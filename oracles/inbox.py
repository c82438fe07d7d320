"""The oracle's MQTT inbox: every message from the broker lands in exactly one place.

    fourflow/{tenant}/{site}/{device}/readings  → ReadingIngest (readings of that device)
    fourflow/{tenant}/{site}/epcis              → EpcisCapture
    anything unreadable                         → quarantine, with the reason

The handler returns normally for anything about the message's content (stored,
duplicate or quarantined), so the subscriber acknowledges it and it never comes back;
it raises only when the store or the chain is unavailable or the gateway key has lost
its role (the operator's problem, not the message's), so the message stays
unacknowledged and the broker delivers it again (docs/transport.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic_core import from_json

from ledger.errors import ChainError, LedgerError, StoreError, UnregisteredSigner
from ledger.oracle_state import OracleState
from oracles.epcis.capture import EpcisCapture
from oracles.ingest import ReadingIngest
from oracles.mqtt import parse_topic

__all__ = ["MAX_MESSAGE_BYTES", "mqtt_handler"]

log = logging.getLogger("fourflow.inbox")
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def mqtt_handler(
    *, ingest: ReadingIngest, capture: EpcisCapture | None, state: OracleState
) -> Callable[[str, bytes], None]:
    def quarantine(topic: str, reason: str, payload: bytes) -> None:
        state.quarantine(source=f"mqtt:{topic}", reason=reason, raw=payload)

    def handle(topic: str, payload: bytes) -> None:
        if len(payload) > MAX_MESSAGE_BYTES:
            quarantine(
                topic,
                f"message of {len(payload):,} bytes; the limit is {MAX_MESSAGE_BYTES:,}",
                payload[:65_536],
            )
            return
        try:
            parts = parse_topic(topic)
            body: Any = from_json(payload, allow_inf_nan=False)  # bounded nesting
        except ValueError as exc:
            quarantine(topic, f"unreadable message: {exc}", payload)
            return
        try:
            if parts.channel == "readings":
                items = body if isinstance(body, list) else [body]
                mine = [i for i in items if isinstance(i, dict) and i.get("device") == parts.device]
                if len(mine) != len(items):
                    quarantine(
                        topic,
                        f"{len(items) - len(mine)} reading(s) not from {parts.device}, "
                        "the device this topic belongs to",
                        payload,
                    )
                if mine:
                    ingest.ingest(mine, source=f"mqtt:{topic}")
            elif parts.channel == "epcis" and capture is not None:
                capture.capture(
                    body,
                    captured_by=f"mqtt:{parts.tenant}/{parts.site}",
                    document_sha256=hashlib.sha256(payload).hexdigest(),
                    now_ms=int(time.time() * 1000),
                )
            elif parts.channel == "epcis":
                quarantine(topic, "EPCIS capture is not enabled on this oracle", payload)
        except (StoreError, ChainError, UnregisteredSigner):
            raise  # not acknowledged: the broker delivers it again once fixed
        except LedgerError as exc:
            quarantine(topic, exc.message, payload)
        except Exception as exc:  # content no check foresaw: never block the broker's queue
            log.exception("message on %s quarantined", topic)
            quarantine(topic, f"could not be processed: {exc.__class__.__name__}: {exc}", payload)

    return handle
