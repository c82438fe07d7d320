"""`fourflow oracle run`: ingestion, rules, fact reporting and anchoring, as one service
or as separate workers (``--only``), each a loop that stops on SIGINT/SIGTERM.

    ingest   subscribe to the MQTT broker; readings → ReadingIngest, EPCIS → capture
    rules    the rules worker: readings and custody events → alarms, counts, facts
    facts    report covenant facts on-chain once their evidence is anchored
    anchor   seal batches and anchor their roots (ledger.anchoring)

Workers share nothing but the store and the chain, so any of them can run in its own
process (or on its own machine) against the same database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from eth_account.signers.local import LocalAccount

from ledger.anchoring import Anchorer
from ledger.collateral import PledgeRegistry, ReceiptRegistry, contracts_from
from ledger.errors import ChainError, LedgerError, StoreError, summary_of
from ledger.ops import default_worker_id, heartbeat
from ledger.oracle_state import OracleState
from ledger.runtime import Runtime
from ledger.store import Store
from oracles.config import OracleConfig
from oracles.epcis.capture import EpcisCapture
from oracles.facts import FactReporter
from oracles.inbox import mqtt_handler
from oracles.ingest import ReadingIngest
from oracles.mqtt import MqttSettings, MqttSubscriber
from oracles.pipeline import RulesWorker

__all__ = ["WORKERS", "OracleService"]

log = logging.getLogger("fourflow.oracle")

WORKERS: Final = ("ingest", "rules", "facts", "anchor")


@dataclass
class OracleService:
    runtime: Runtime
    config: OracleConfig
    gateway: LocalAccount
    oracle: LocalAccount | None
    state: OracleState
    ingest: ReadingIngest
    capture: EpcisCapture
    rules: RulesWorker
    pledges: PledgeRegistry | None = None  # None: found through the deployment manifest

    @classmethod
    def build(
        cls,
        runtime: Runtime,
        config: OracleConfig,
        *,
        gateway: LocalAccount,
        oracle: LocalAccount | None = None,
        epcis_stream: str = "epcis",
        pledges: PledgeRegistry | None = None,
        receipts: ReceiptRegistry | None = None,
    ) -> OracleService:
        """``receipts`` (or the manifest's) lets the rules see on-chain releases: a
        pledged lot's booked quantity falling means goods may leave; a financed vehicle
        whose receipt is no longer under its pledge may leave the dealer's lot."""
        state = OracleState(runtime.store)
        devices = config.devices_by_id()
        store, intake = runtime.store, runtime.intake
        if receipts is None and runtime.deployment.receipt_registry:
            receipts = ReceiptRegistry(runtime.chain, runtime.deployment.receipt_registry)
        booked = None if receipts is None else _booked(receipts)
        pledge_of = None if receipts is None else _pledge_of(receipts)
        return cls(
            runtime=runtime,
            config=config,
            gateway=gateway,
            oracle=oracle,
            state=state,
            ingest=ReadingIngest(
                store=store,
                intake=intake,
                gateway=gateway,
                devices=devices,
                tenant=config.tenant,
                state=state,
            ),
            capture=EpcisCapture(store=store, intake=intake, gateway=gateway, stream=epcis_stream),
            rules=RulesWorker(
                store=store,
                intake=intake,
                gateway=gateway,
                devices=devices,
                tenant=config.tenant,
                herds=config.herd_watches(),
                lots=config.lot_watches(),
                sites=config.site_watches(),
                crosscheck=config.crosscheck_rules(),
                state=state,
                booked=booked,
                pledge_of=pledge_of,
            ),
            pledges=pledges,
        )

    def facts(self) -> FactReporter:
        if self.oracle is None:
            raise LedgerError("reporting facts needs the oracle key ($FOURFLOW_ORACLE_KEY)")
        pledges = self.pledges
        if pledges is None:
            pledges = contracts_from(self.runtime.chain, self.runtime.deployment).pledges
        return FactReporter(
            state=self.state, bundles=self.runtime.bundles, pledges=pledges, oracle=self.oracle
        )

    def anchorer(self, *, max_batch: int, max_age_s: float) -> Anchorer:
        if self.oracle is None:
            raise LedgerError("anchoring needs the oracle key ($FOURFLOW_ORACLE_KEY)")
        return self.runtime.anchorer(self.oracle, max_batch=max_batch, max_age_s=max_age_s)

    def run(
        self,
        stop: threading.Event,
        *,
        workers: Iterable[str] = WORKERS,
        mqtt: MqttSettings | None = None,
        poll_s: float = 1.0,
        max_batch: int = 1000,
        max_age_s: float = 5.0,
    ) -> None:
        """Run ``workers`` until ``stop`` is set."""
        chosen = set(workers)
        threads: list[threading.Thread] = []
        if "ingest" in chosen:
            subscriber = MqttSubscriber(
                mqtt or MqttSettings.from_env(),
                mqtt_handler(ingest=self.ingest, capture=self.capture, state=self.state),
            )
            threads.append(threading.Thread(target=subscriber.run, args=(stop,), name="ingest"))
        if "rules" in chosen:
            threads.append(
                _loop(
                    "rules",
                    lambda: self.rules.run_once(wall_clock=True),
                    stop,
                    poll_s,
                    self.runtime.store,
                )
            )
        if "facts" in chosen:
            reporter = self.facts()
            threads.append(_loop("facts", reporter.run_once, stop, poll_s, self.runtime.store))
        if "anchor" in chosen:
            anchorer = self.anchorer(max_batch=max_batch, max_age_s=max_age_s)
            threads.append(
                threading.Thread(
                    target=anchorer.run_forever,
                    args=(stop,),
                    kwargs={"poll_s": poll_s},
                    name="anchor",
                )
            )
        for thread in threads:
            thread.start()
        log.info("oracle running: %s", ", ".join(t.name for t in threads))
        for thread in threads:
            thread.join()


def _pledge_of(receipts: ReceiptRegistry) -> Callable[[int], int]:
    def pledge_of(receipt_id: int) -> int:
        return receipts.collateral_of(receipt_id).pledge_id

    return pledge_of


def _booked(receipts: ReceiptRegistry) -> Callable[[int], int]:
    def booked(receipt_id: int) -> int:
        return receipts.receipt_of(receipt_id).quantity

    return booked


def _loop(
    name: str, step: Callable[[], object], stop: threading.Event, poll_s: float, store: Store
) -> threading.Thread:
    """A worker's pass every ``poll_s``, under the store's ``oracle:<name>`` claim: with
    several oracle processes on one database, one runs each kind of pass at a time (the
    rules' cursor and the facts' sends are not for sharing), the others stand by."""

    def run() -> None:
        worker_id, started_ms = default_worker_id(name), int(time.time() * 1000)
        while not stop.is_set():
            error: str | None = None
            try:
                with store.claim(f"oracle:{name}") as mine:
                    if mine:
                        step()
            except (StoreError, ChainError) as exc:
                log.warning("%s: %s; retrying", name, exc.message)
                error = summary_of(exc)
            except Exception as exc:  # a bug must not stop the other workers silently
                log.exception("%s failed; retrying", name)
                error = f"unexpected {exc.__class__.__name__} (see the worker's log)"
            try:
                heartbeat(store, worker_id, kind=name, started_at_ms=started_ms, error=error)
            except StoreError as exc:
                log.warning("%s: heartbeat not recorded: %s", name, exc.message)
            stop.wait(poll_s)

    return threading.Thread(target=run, name=name)
