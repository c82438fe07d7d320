"""The demo's last act: the bank reads what it lent against, and checks it.

After the herd's pledge froze (api/oracle_scene.py), the indexer follows the chain into
the store; the bank signs in with Ethereum over real HTTP, reads the pledge's four-flow
history and its summary, lists its alarms, downloads the evidence package and checks it
against the chain with nothing else; an outsider asking for the same history learns
nothing. Returns what happened (for --json).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from api.oracle_scene import SceneResult
from api.siwe_client import sign_in
from ledger.audit import Auditor
from ledger.chain import new_account
from ledger.collateral import Contracts
from ledger.evidence import check_package, package_zip
from ledger.indexer import Indexer
from ledger.runtime import Runtime

__all__ = ["run_lender_scene"]

Say = Callable[..., None]
Serve = Callable[[Runtime], tuple[str, Any, Any]]


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:,.2f} {currency}"


def run_lender_scene(
    runtime: Runtime,
    contracts: Contracts,
    herd: SceneResult,
    *,
    serve: Serve,
    say: Say,
    out_dir: Path | None = None,
    step: int = 16,
) -> dict[str, Any]:
    runtime.deployment = replace(
        runtime.deployment,
        receipt_registry=contracts.receipts.address,
        price_feed=contracts.prices.address,
        pledge_registry=contracts.pledges.address,
    )
    passes = Indexer(runtime.store, runtime.chain, runtime.deployment).catch_up()
    logs = sum(p.logs for p in passes)
    say(f"{step:2d}. the indexer followed {logs} contract logs into the store")

    base, server, thread = serve(runtime)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            bank = herd.parties["bank"]
            client.headers["Authorization"] = f"Bearer {sign_in(client, bank)}"
            url = f"/v1/pledges/{herd.pledge_id}/history"
            first = client.get(url, params={"limit": 50}).json()
            alarms = client.get("/v1/alarms", params={"state": "open"}).json()["alarms"]
            package = client.get(f"/v1/pledges/{herd.pledge_id}/evidence").json()
            outsider = new_account()
            other = httpx.Client(base_url=base, timeout=60)
            with other:
                other.headers["Authorization"] = f"Bearer {sign_in(other, outsider)}"
                hidden = other.get(url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    summary = first["summary"]
    entries = package["entries"]  # the whole timeline, every page of it
    flows = Counter(e["flow"] for e in entries)
    proven = sum(
        1
        for e in entries
        if e["proof"]["type"] == "chain_log" or e["proof"]["status"] == "anchored"
    )
    say(
        f"{step + 1:2d}. the bank signed in with Ethereum and read pledge #{herd.pledge_id}'s "
        f"history over HTTP: {len(entries):,} entries "
        f"({', '.join(f'{n:,} {f}' for f, n in flows.most_common())}), "
        f"{proven:,} with a proof"
    )
    quantity = summary["quantity"]
    latest = quantity["latest"] or {}
    (money,) = summary["money"]
    (lien,) = summary["ownership"]["pledges"]
    (receipt,) = summary["ownership"]["receipts"]
    say(
        f"    how many: {latest.get('quantity')} {quantity['unit']} on {latest.get('time', '?')[:10]}"
        f" (covenant minimum {quantity['minimum']}, booked {quantity['booked']})"
        + (" — BELOW THE MINIMUM" if quantity["below_minimum"] else "")
    )
    say(
        f"    who owns them: {receipt['owner'][:10]}…, held by custodian "
        f"{receipt['custodian'][:10]}…; lien: pledge #{lien['pledge_id']} to "
        f"{lien['lender'][:10]}…, {lien['status']}, frozen: {', '.join(lien['frozen']) or 'no'}"
    )
    say(
        f"    where the money went: {_money(money['disbursed'], money['currency'])} disbursed, "
        f"all to the designated payee: {'yes' if money['all_to_designated_payee'] else 'NO'}; "
        f"{_money(money['outstanding'], money['currency'])} outstanding"
    )
    categories = Counter(a["category"] for a in alarms)
    say(
        f"    open alarms: {len(alarms)} ({', '.join(f'{n} {c}' for c, n in categories.most_common())})"
    )
    say(
        f"    an outsider asking for the same history → {hidden.status_code} "
        f"{hidden.json()['error']['code']}"
    )

    started = time.monotonic()
    check = check_package(package, chain=runtime.chain)
    say(
        f"{step + 2:2d}. evidence package ({len(package['entries']):,} entries) checked against "
        f"the chain alone in {time.monotonic() - started:.1f} s: {check.bundles_verified:,} "
        f"proof bundles and {check.logs_verified} chain logs verified, nothing left out, "
        f"summary consistent → {'VERIFIED' if check.ok else 'FAILED'}"
    )
    started = time.monotonic()
    audit = Auditor(runtime.chain, runtime.deployment, source=runtime.store, bytecode=False).run()
    counts = audit.counts
    say(
        f"{step + 3:2d}. the auditor replayed everything from the chain and the store in "
        f"{time.monotonic() - started:.1f} s: {counts.batches} batches, {counts.events:,} events, "
        f"{counts.signatures:,} signatures, {counts.facts} facts, {counts.pledges} pledges and "
        f"{counts.receipts} receipts against the contracts "
        f"→ {'no discrepancy' if audit.ok else f'{len(audit.findings)} findings'}"
        f" (`fourflow audit` also checks the bytecode against the sources)"
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"pledge-{herd.pledge_id}-evidence.zip"
        target.write_bytes(package_zip(package))
        say(f"    wrote {target} (evidence.json and an HTML report)")
    return {
        "pledge_id": herd.pledge_id,
        "entries": len(entries),
        "flows": dict(flows),
        "summary": summary,
        "open_alarms": len(alarms),
        "outsider_status": hidden.status_code,
        "package": check.to_json(),
        "audit": audit.to_json(),
    }
