"""The collateral contracts wired to the rest of fourflow.

- A covenant fact cites a real event: signed by a registered submitter, accepted by the
  intake, sealed and anchored by the worker, its proof bundle built by the ledger. The
  pledge contract checks that bundle's citation against the anchor registry.
- ``fourflow deploy`` on anvil deploys the whole set, grants the configured roles and
  writes a manifest ``contracts_from`` reopens; a pledge runs on that real node, with
  custom errors decoded from its JSON-RPC revert data.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, Chain, Deployment, new_account
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PLEDGE_REGISTRY_ROLE,
    PRICE_SCALE,
    Contracts,
    Fact,
    FactKind,
    Freeze,
    Mode,
    PledgeStatus,
    Terms,
    contracts_from,
    deploy_collateral,
    evidence_from_bundle,
    identifier_key,
)
from ledger.errors import ChainError, ContractReverted
from ledger.models import EventBody
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.verify import verify_bundle
from tests.conftest import ANVIL_DEV_KEY, AnvilNode, fourflow_bin

DAY = 86_400
HERD = "cattle.dairy"
COUNT_TIME = "2026-11-26T06:00:00.000+08:00"


def head_count(submitter: str, *, head: int, event_id: str, at: str = COUNT_TIME) -> EventBody:
    return EventBody(
        kind="livestock.HeadCount",
        schema_version=1,
        stream="ranch-17.counts",
        event_id=event_id,
        asset_ids=["urn:fourflow:herd:ranch-17:H1"],
        event_time=at,
        payload={"head": head, "method": "camera", "pen": "A"},
        submitter=submitter,
    )


def unix_seconds(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).astimezone(UTC).timestamp())


def parties(runtime: Runtime, keys: DevKeys) -> dict[str, Any]:
    chain = runtime.chain
    accounts = {name: new_account() for name in ("custodian", "lender", "borrower", "payee")}
    for account in accounts.values():
        chain.fund(account.address)
    return accounts


def herd_pledge(
    contracts: Contracts, keys: DevKeys, p: dict[str, Any], *, now: int
) -> tuple[int, int]:
    """A 120-head herd pledged with a minimum of 100 head; returns (receipt id, pledge id)."""
    admin = keys.admin
    contracts.receipts.grant(CUSTODIAN_ROLE, p["custodian"].address, admin=admin)
    contracts.pledges.grant(LENDER_ROLE, p["lender"].address, admin=admin)
    contracts.pledges.grant(ORACLE_ROLE, keys.oracle.address, admin=admin)
    contracts.prices.grant(ORACLE_ROLE, keys.oracle.address, admin=admin)
    contracts.pledges.set_pledge_rate(HERD, 5000, lender=p["lender"])
    contracts.prices.report(
        asset_class=HERD, currency="CNY", price=1_800_000 * PRICE_SCALE, observed_at=now - 60,
        oracle=keys.oracle,
    )  # fmt: skip
    receipt_id, _ = contracts.receipts.issue(
        owner=p["borrower"].address, asset_class=HERD, unit="head", quantity=120,
        keys=[identifier_key(f"urn:fourflow:eartag:CN:ranch-17:{i:06d}") for i in range(120)],
        location="urn:epc:id:sgln:6909999.00002.0", custodian=p["custodian"],
    )  # fmt: skip
    terms = Terms(
        receipt_id=receipt_id, lender=p["lender"].address, payee=p["payee"].address,
        currency="CNY", principal=500_000_00, pledge_rate_bps=5000, warning_ltv_bps=6000,
        liquidation_ltv_bps=7500, min_quantity=100, min_value=0, max_data_age=30 * DAY,
        cure_period=3 * DAY, maturity=now + 365 * DAY, mode=Mode.STATIC,
    )  # fmt: skip
    signature, nonce = contracts.pledges.sign_consent(
        terms, borrower=p["borrower"], deadline=now + DAY
    )
    pledge_id, _ = contracts.pledges.open(
        terms, nonce=nonce, deadline=now + DAY, signature=signature, lender=p["lender"]
    )
    return receipt_id, pledge_id


def test_a_head_count_fact_cites_an_event_anchored_by_the_worker(dev: Any) -> None:
    runtime, keys = dev
    contracts, _ = deploy_collateral(runtime.registry, runtime.deployment, admin=keys.admin)
    p = parties(runtime, keys)
    now = int(runtime.chain.w3.eth.get_block("latest")["timestamp"])
    receipt_id, pledge_id = herd_pledge(contracts, keys, p, now=now)

    submitter = keys.submitters[0]
    counts = [
        head_count(submitter.address, head=96, event_id="count-1"),
        head_count(submitter.address, head=118, event_id="count-0", at="2026-11-26T05:00:00.000+08:00"),
    ]  # fmt: skip
    runtime.intake.submit(
        sign_submission(counts, private_key=submitter.key, domain=runtime.intake.domain)
    )
    runtime.anchorer(keys.oracle).run_once(force=True)
    bundle = runtime.bundles.bundle("count-1")
    verify_bundle(bundle.to_json_dict(), chain=runtime.chain)  # the same bundle an auditor checks
    evidence = evidence_from_bundle(bundle)
    fact = Fact(receipt_id, FactKind.QUANTITY, 96, unix_seconds(COUNT_TIME))

    # evidence that is not the anchored event is refused, whatever part is wrong
    forged = [
        replace(evidence, leaf=bytes(32 - 1) + b"\x01"),
        replace(evidence, leaf_index=evidence.leaf_index ^ 1),
        replace(evidence, seq=evidence.seq + 1),
        replace(evidence, siblings=evidence.siblings + evidence.siblings),
    ]
    for bad in forged:
        with pytest.raises(ContractReverted) as caught:
            contracts.pledges.report_fact(fact, bad, oracle=keys.oracle)
        assert caught.value.error == "PledgeRegistryEvidenceNotAnchored"
    # a claimed time outside the anchored batch's range is refused too
    with pytest.raises(ContractReverted) as caught:
        contracts.pledges.report_fact(
            replace(fact, observed_at=fact.observed_at + DAY), evidence, oracle=keys.oracle
        )
    assert caught.value.error == "PledgeRegistryEvidenceOutsideBatch"
    assert contracts.pledges.pledge_of(pledge_id).frozen == Freeze(0)

    receipt = contracts.pledges.report_fact(fact, evidence, oracle=keys.oracle)
    (reported,) = contracts.pledges.events(receipt.tx_hash, "FactReported")
    assert (reported["leaf"], reported["seq"]) == (evidence.leaf, bundle.batch.seq)
    assert "0x" + reported["streamId"].hex() == bundle.batch.stream_id
    (frozen,) = contracts.pledges.events(receipt.tx_hash, "PledgeFrozen")
    assert frozen["reasons"] == Freeze.BELOW_MINIMUM and frozen["ref"] == evidence.leaf
    pledge = contracts.pledges.pledge_of(pledge_id)
    assert pledge.frozen == Freeze.BELOW_MINIMUM and pledge.status == PledgeStatus.ACTIVE
    assert contracts.pledges.valuation_of(pledge_id).quantity == 96  # min(booked 120, seen 96)
    with pytest.raises(ContractReverted) as caught:
        contracts.pledges.report_fact(fact, evidence, oracle=keys.oracle)
    assert caught.value.error == "PledgeRegistryEvidenceReplayed"
    with pytest.raises(ContractReverted) as caught:
        contracts.pledges.disburse(
            pledge_id, 1, payee=p["payee"].address, ref=b"\x01" * 32, lender=p["lender"]
        )
    assert caught.value.error == "PledgeRegistryFrozen"


def test_manifest_without_collateral_contracts_is_refused(dev: Any) -> None:
    runtime, _ = dev
    with pytest.raises(ChainError, match="names no collateral contracts"):
        contracts_from(runtime.chain, runtime.deployment)


@pytest.mark.anvil
def test_fourflow_deploy_on_anvil_grants_roles_and_runs_a_pledge(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    chain = Chain.connect(anvil.url)
    oracle, submitter, custodian, lender, auditor, borrower, payee = (
        new_account() for _ in range(7)
    )
    for account in (oracle, custodian, lender, borrower):
        chain.fund(account.address)
    manifest = tmp_path / "deployment.json"
    env = os.environ | {
        "FOURFLOW_ADMIN_KEY": ANVIL_DEV_KEY,
        "FOURFLOW_ORACLE_ADDRESS": oracle.address,
        "FOURFLOW_SUBMITTERS": submitter.address,
        "FOURFLOW_CUSTODIANS": custodian.address,
        "FOURFLOW_LENDERS": lender.address,
        "FOURFLOW_AUDITORS": auditor.address,
    }
    done = subprocess.run(
        [fourflow_bin(), "deploy", "--rpc", anvil.url, "--manifest", str(manifest)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deployment = Deployment.read(manifest)
    contracts = contracts_from(chain, deployment)
    assert "PledgeRegistry" in done.stdout and deployment.pledge_registry in done.stdout
    expected = [
        (contracts.anchors, ORACLE_ROLE, oracle),
        (contracts.prices, ORACLE_ROLE, oracle),
        (contracts.pledges, ORACLE_ROLE, oracle),
        (contracts.anchors, SUBMITTER_ROLE, submitter),
        (contracts.receipts, CUSTODIAN_ROLE, custodian),
        (contracts.pledges, LENDER_ROLE, lender),
        (contracts.pledges, AUDITOR_ROLE, auditor),
        (contracts.receipts, PLEDGE_REGISTRY_ROLE, contracts.pledges),
    ]
    for client, role, holder in expected:
        assert client.has_role(role, holder.address)
    assert not contracts.pledges.has_role(LENDER_ROLE, custodian.address)

    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    keys = DevKeys(admin=Account.from_key(ANVIL_DEV_KEY), oracle=oracle)
    receipt_id, pledge_id = herd_pledge(
        contracts, keys, {"custodian": custodian, "lender": lender, "borrower": borrower,
                          "payee": payee}, now=now,
    )  # fmt: skip
    with pytest.raises(ContractReverted) as caught:  # decoded from anvil's revert data
        contracts.pledges.disburse(
            pledge_id, 1_000_00, payee=borrower.address, ref=b"\x02" * 32, lender=lender
        )
    assert caught.value.error == "PledgeRegistryWrongPayee"
    assert caught.value.error_args == (pledge_id, payee.address.lower(), borrower.address.lower())
    contracts.pledges.disburse(
        pledge_id, 1_000_00, payee=payee.address, ref=b"\x02" * 32, lender=lender
    )
    with pytest.raises(ContractReverted) as caught:
        contracts.receipts.transfer(receipt_id, lender.address, owner=borrower)
    assert caught.value.error == "ReceiptRegistryPledged"
    assert contracts.pledges.pledge_of(pledge_id).outstanding == 1_000_00
