"""Simulated sites of the other industries under one oracle, for the operations block of
the history summary (tests/test_history_operations.py, tests/test_dashboard_operations.py).

One store, one oracle config watching them all, their readings merged in time order as
one feed: three days of a plant (4 machines), a solar plant (2 inverters), a charging
station (2 piles) and the two telemetry assets, all clean. Then the plant's borrower
declares its output twice (the counters' total, and 30 % more) and the solar plant's
revenue once (the config names the borrower, the second submitter key, as the
declarant of both), and the worker judges them. The oracle's gateway is the first
submitter key; a third is another admitted party. The collateral contracts are
deployed and an auditor (who may read every history) is registered. Real parts: device
signatures, the intake, the store (SQLite or PostgreSQL), the in-process chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlmodel import select

from ledger.canonical import loads_canonical
from ledger.chain import new_account
from ledger.collateral import AUDITOR_ROLE, deploy_collateral
from ledger.history import Histories
from ledger.indexer import ChainIndex, Indexer
from ledger.models import EventBody, utc_text
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import EventRow
from oracles.config import OracleConfig
from oracles.drive import feed_in_process
from oracles.service import OracleService
from oracles.sim_energy import charging, solar
from oracles.sim_machines import factory
from oracles.sim_telemetry import telemetry
from oracles.simulate import Scenario, oracle_config

DAY_MS = 86_400_000
START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday, in the past

DAYS = 3
# the simulated sites, each for DAYS days from START, clean (no incidents)
SITES: dict[str, Callable[[], Scenario]] = {
    "plant": lambda: factory(
        days=DAYS, seed=1, machines=4, interval_min=15, incidents=[], start=START
    ),
    "solar": lambda: solar(days=DAYS, seed=1, inverters=2, incidents=[], start=START),
    "charging": lambda: charging(days=DAYS, seed=1, piles=2, incidents=[], start=START),
    "telemetry": lambda: telemetry(days=DAYS, seed=1, incidents=[], start=START, interval_min=30),
}


@dataclass
class Operations:
    runtime: Runtime
    keys: DevKeys
    service: OracleService
    scenarios: dict[str, Scenario]
    auditor: LocalAccount
    outsider: LocalAccount
    end_ms: int

    def subjects(self, name: str) -> list[str]:
        """The watched subjects of one simulated site (two for telemetry)."""
        devices = {sim.device.id for sim in self.scenarios[name].devices}
        config = self.service.config
        return sorted(
            {
                d.subject
                for d in config.devices_by_id().values()
                if d.id in devices and d.subject in self.watched()
            }
        )

    def watched(self) -> set[str]:
        return {w.subject for w in self.service.config.site_watches()}

    def events(self, kind: str, asset: str | None = None) -> list[dict[str, Any]]:
        """The signed events of ``kind`` (about ``asset``), in arrival order."""
        with self.runtime.store.session() as session:
            rows = session.exec(
                select(EventRow.envelope).where(EventRow.kind == kind).order_by(EventRow.position)
            ).all()
        found = [loads_canonical(e)["event"] for e in rows]
        return [e for e in found if asset is None or asset in e["asset_ids"]]

    def histories(self) -> Histories:
        return Histories(
            self.runtime.store,
            ChainIndex(self.runtime.store, self.runtime.deployment),
            self.runtime.bundles,
            self.runtime.deployment,
        )


def declare(ops: Operations, event_id: str, payload: dict[str, Any], time_ms: int) -> None:
    """A borrower's signed ``document.declaration`` about ``payload["subject"]``."""
    borrower = ops.keys.submitters[1]
    body = EventBody(
        kind="document.declaration",
        schema_version=1,
        stream="borrower.documents",
        event_id=event_id,
        asset_ids=[str(payload["subject"])],
        event_time=utc_text(time_ms),
        payload=payload,
        submitter=borrower.address,
    )
    domain = ops.runtime.intake.domain
    ops.runtime.intake.submit(sign_submission([body], private_key=borrower.key, domain=domain))


@contextmanager
def build_operations(db_url: str, names: tuple[str, ...] = tuple(SITES)) -> Iterator[Operations]:
    # submitters: the oracle's gateway, the borrower, another admitted party
    runtime, keys = Runtime.dev(db_url=db_url, submitters=3)
    try:
        contracts, deployment = deploy_collateral(
            runtime.registry, runtime.deployment, admin=keys.admin
        )
        runtime.deployment = deployment
        auditor, outsider = new_account(), new_account()
        contracts.pledges.grant(AUDITOR_ROLE, auditor.address, admin=keys.admin)
        scenarios = {name: SITES[name]() for name in names}
        config: dict[str, Any] = {"tenant": "ops", "devices": [], "herds": [], "lots": []}
        for scenario in scenarios.values():
            for key, value in oracle_config(scenario, tenant="ops").items():
                if isinstance(value, list):
                    config[key] = [*config.get(key, []), *value]
        for section in ("plants", "solar"):  # the borrower declares for its sites
            for watch in config.get(section, []):
                watch["declarants"] = [keys.submitters[1].address]
        service = OracleService.build(
            runtime, OracleConfig.parse(config), gateway=keys.submitters[0]
        )
        first = next(iter(scenarios.values()))
        together = replace(
            first,
            name="operations",
            devices=[d for s in scenarios.values() for d in s.devices],
            readings=sorted(
                (r for s in scenarios.values() for r in s.readings), key=lambda r: r.time_ms
            ),
            documents=[],
            releases=[],
            incidents=[],
        )
        assert feed_in_process(together, service).quarantined == 0
        end_ms = together.end_ms
        service.rules.run_once(now_ms=end_ms + 600_000)  # past the piles' upload grace
        ops = Operations(runtime, keys, service, scenarios, auditor, outsider, end_ms)
        if "plant" in names:
            _declare_output(ops)
        if "solar" in names:
            _declare_revenue(ops)
        service.rules.run_once(now_ms=end_ms + 700_000)  # the verdicts, no day more
        Indexer(runtime.store, runtime.chain, deployment).catch_up()
        yield ops
    finally:
        runtime.close()


def _declare_output(ops: Operations) -> None:
    (plant,) = ops.subjects("plant")
    days = [d["payload"] for d in ops.events("manufacturing.daily", plant)]
    made = sum(d["output"] or 0 for d in days)
    assert made > 0
    base = {
        "metric": "output",
        "subject": plant,
        "period": {"from": days[0]["day"], "to": days[-1]["day"]},
        "unit": "pieces",
    }
    declare(ops, "decl-output-honest", base | {"value": made}, ops.end_ms)
    declare(ops, "decl-output-inflated", base | {"value": round(made * 1.3)}, ops.end_ms + 1)


def _declare_revenue(ops: Operations) -> None:
    (plant,) = ops.subjects("solar")
    days = [d["payload"] for d in ops.events("energy.daily", plant)]
    earned = sum(d["revenue_fen"] for d in days) / 100  # declared in CNY
    payload = {
        "metric": "revenue",
        "subject": plant,
        "period": {"from": days[0]["day"], "to": days[-1]["day"]},
        "unit": "CNY",
        "value": earned,
    }
    declare(ops, "decl-revenue-solar", payload, ops.end_ms + 2)
