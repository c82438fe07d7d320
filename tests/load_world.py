"""A deployment to load: all four contracts on a node, submitters, an auditor, and one
pledge on a receipt that binds the load's assets, so pledge histories grow under the
load. Shared by tests/test_load.py and the API memory benchmark (bench/ingest.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from api.siwe_client import sign_in
from ledger.chain import ORACLE_ROLE, Chain, new_account
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PRICE_SCALE,
    Mode,
    Terms,
    deploy_collateral,
    identifier_key,
)
from ledger.runtime import Runtime

__all__ = ["ASSETS", "Deployed", "deploy_load_world", "wait_indexed"]

ASSETS = [f"urn:epc:id:sgtin:0614141.107346.{serial}" for serial in range(4001, 4009)]
DAY = 86_400


@dataclass
class Deployed:
    manifest: Path
    oracle_key: str
    submitters: list[LocalAccount]
    auditor: LocalAccount
    pledge_id: int


def deploy_load_world(rpc_url: str, tmp_path: Path, db_url: str, submitters: int) -> Deployed:
    """All four contracts on anvil; submitters, an auditor, and one pledge on a
    receipt that binds the load's assets, so pledge histories grow under the load."""
    runtime, keys = Runtime.dev(db_url=db_url, chain=Chain.connect(rpc_url), submitters=submitters)
    chain, admin = runtime.chain, keys.admin
    contracts, deployment = deploy_collateral(runtime.registry, runtime.deployment, admin=admin)
    auditor, warehouse, bank, trader = (new_account() for _ in range(4))
    for account in (warehouse, bank):
        chain.fund(account.address)
    contracts.pledges.grant(AUDITOR_ROLE, auditor.address, admin=admin)
    contracts.receipts.grant(CUSTODIAN_ROLE, warehouse.address, admin=admin)
    contracts.pledges.grant(LENDER_ROLE, bank.address, admin=admin)
    contracts.prices.grant(ORACLE_ROLE, keys.oracle.address, admin=admin)
    receipt_id, _ = contracts.receipts.issue(
        owner=trader.address, asset_class="steel.hrc", unit="kg", quantity=len(ASSETS) * 24_600,
        keys=[identifier_key(a) for a in ASSETS], location="urn:epc:id:sgln:0614141.00777.0",
        custodian=warehouse,
    )  # fmt: skip
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    contracts.prices.report(
        asset_class="steel.hrc", currency="CNY", price=405 * PRICE_SCALE, observed_at=now - 5,
        oracle=keys.oracle,
    )  # fmt: skip
    contracts.pledges.set_pledge_rate("steel.hrc", 6000, lender=bank)
    terms = Terms(
        receipt_id=receipt_id, lender=bank.address, payee=trader.address, currency="CNY",
        principal=400_000_00, pledge_rate_bps=6000, warning_ltv_bps=7000,
        liquidation_ltv_bps=8500, min_quantity=100_000, min_value=0, max_data_age=30 * DAY,
        cure_period=3 * DAY, maturity=now + 180 * DAY, mode=Mode.STATIC,
    )  # fmt: skip
    signature, nonce = contracts.pledges.sign_consent(terms, borrower=trader, deadline=now + DAY)
    pledge_id, _ = contracts.pledges.open(
        terms, nonce=nonce, deadline=now + DAY, signature=signature, lender=bank
    )
    manifest = tmp_path / "deployment.json"
    deployment.write(manifest)
    runtime.close()
    return Deployed(manifest, keys.oracle.key.hex(), keys.submitters, auditor, pledge_id)


def wait_indexed(api: str, auditor: LocalAccount, pledge_id: int) -> None:
    """The server's indexer has caught up with the pledge (readers ask for its history)."""
    with httpx.Client(base_url=api, timeout=10) as client:
        headers = {"Authorization": f"Bearer {sign_in(client, auditor)}"}
        deadline = time.monotonic() + 30
        while client.get(f"/v1/pledges/{pledge_id}", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the indexer never showed the pledge"
            time.sleep(0.2)
