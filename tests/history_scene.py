"""A watched warehouse against a live pledge, served by the API, for the history, evidence,
alarm and permission tests: in-process chain, SQLite, the four contracts, two simulated
days of RFID cycle counts, climate and door sensors and EPCIS custody documents (with a
theft that freezes the pledge), the oracle's alarms and facts, a disbursement and a
repayment, and the indexer caught up.

``scene`` (SQLite) and ``pg_scene`` (the PostgreSQL server) are module-scoped: build
once, read many times. ``Scene.token(role)``
signs in (EIP-4361) as one of: auditor, lender, borrower, custodian, gateway (the key
that signed the warehouse's events), lender2 (a lender with no part in this pledge),
outsider (no role at all).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from api.app import create_app
from api.oracle_scene import SceneResult, run_oracle_scene
from api.settings import Settings
from api.siwe_client import sign_in
from ledger.alarms import sign_change
from ledger.chain import new_account
from ledger.collateral import AUDITOR_ROLE, LENDER_ROLE, Contracts, deploy_collateral
from ledger.indexer import Indexer
from ledger.models import utc_text
from ledger.runtime import DevKeys, Runtime
from tests.conftest import fresh_pg_database


@dataclass
class Scene:
    runtime: Runtime
    keys: DevKeys
    contracts: Contracts
    result: SceneResult
    client: TestClient
    indexer: Indexer
    accounts: dict[str, LocalAccount]
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def pledge_id(self) -> int:
        return self.result.pledge_id

    def token(self, role: str) -> str:
        if role not in self._tokens:
            self._tokens[role] = sign_in(self.client, self.accounts[role])
        return self._tokens[role]

    def get(self, url: str, role: str | None, **params: Any) -> Any:
        headers = {} if role is None else {"Authorization": f"Bearer {self.token(role)}"}
        return self.client.get(url, headers=headers, params=params or None)

    def post(self, url: str, role: str | None, body: Any = None) -> Any:
        headers = {} if role is None else {"Authorization": f"Bearer {self.token(role)}"}
        return self.client.post(url, headers=headers, json=body)

    def change_alarm(
        self,
        alarm_id: str,
        state: str,
        role: str,
        *,
        signer: LocalAccount | None = None,
        at: str | None = None,
    ) -> Any:
        """POST /v1/alarms/{id}/acknowledge|clear with the signed statement of it."""
        at = at or utc_text(int(time.time() * 1000))
        signature = sign_change(
            signer or self.accounts[role],
            alarm_id=alarm_id,
            state=state,
            at=at,
            chain_id=self.runtime.deployment.chain_id,
        )
        action = "acknowledge" if state == "acknowledged" else "clear"
        body = {"at": at, "signature": signature}
        return self.post(f"/v1/alarms/{quote(alarm_id, safe=':')}/{action}", role, body)

    def repay(self, amount: int, memo: str) -> None:
        self.contracts.pledges.repay(
            self.pledge_id,
            amount,
            ref=hashlib.sha256(memo.encode()).digest(),
            lender=self.accounts["lender"],
        )
        self.indexer.catch_up()


def _quiet(*_: Any, **__: Any) -> None:
    pass


@contextmanager
def build_scene(db_url: str) -> Iterator[Scene]:
    runtime, keys = Runtime.dev(db_url=db_url)
    contracts, deployment = deploy_collateral(
        runtime.registry, runtime.deployment, admin=keys.admin
    )
    runtime.deployment = deployment
    result = run_oracle_scene(
        runtime, keys, contracts, kind="warehouse", days=2, seed=11, say=_quiet
    )
    auditor, lender2, outsider = new_account(), new_account(), new_account()
    contracts.pledges.grant(AUDITOR_ROLE, auditor.address, admin=keys.admin)
    contracts.pledges.grant(LENDER_ROLE, lender2.address, admin=keys.admin)
    indexer = Indexer(runtime.store, runtime.chain, deployment)
    indexer.catch_up()
    accounts = {
        "auditor": auditor,
        "lender": result.parties["bank"],
        "borrower": result.parties["owner"],
        "custodian": result.parties["custodian"],
        "gateway": result.parties["gateway"],
        "lender2": lender2,
        "outsider": outsider,
    }
    app = create_app(runtime, settings=Settings())
    try:
        with TestClient(app, base_url="http://testserver") as client:
            yield Scene(runtime, keys, contracts, result, client, indexer, accounts)
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """The scene on SQLite."""
    path: Path = tmp_path_factory.mktemp("history") / "store.sqlite"
    with build_scene(f"sqlite:///{path}") as built:
        yield built


@pytest.fixture(scope="module")
def pg_scene() -> Iterator[Scene]:
    """The scene on the PostgreSQL server, in a database of its own."""
    with fresh_pg_database() as url, build_scene(url) as built:
        yield built
