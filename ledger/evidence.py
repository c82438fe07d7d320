"""Evidence packages: one pledge's whole four-flow history in one self-contained file.

A package (``fourflow/evidence-package``, version 1) holds the deployment (chain id and
contract addresses), the history's subject and summary, and every entry with its proof:
a proof bundle (docs/proof-format.md) for off-chain evidence, or the raw log (contract,
block number and hash, transaction, log index, topics, data) for on-chain records.

``check_package`` verifies one with nothing but the package and a JSON-RPC endpoint:

1. format        the package parses as version 1
2. chain         the node is the package's chain, and its contracts have code there
3. bundles       every off-chain entry's bundle passes all eight steps of
                 ``ledger.verify`` and is the entry's event (id, time, assets)
4. chain logs    every on-chain entry's log is in its transaction's receipt on the node,
                 byte for byte, in the block the package names
5. completeness  the node's logs about the pledge and its receipt are all in the package
6. summary       the money figures replay from those logs, and every count in the trend
                 is the count its (verified) event says

Each problem is a ``Finding`` naming the check and the entry; an unanchored entry is a
warning (it cannot be proven yet), everything else an error.
"""

from __future__ import annotations

import html
import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hexbytes import HexBytes

from ledger.chain import Chain, Deployment
from ledger.chainlog import ChainLog, LogReader, watched_contracts
from ledger.collateral import identifier_key
from ledger.errors import ChainError, LedgerError, VerificationFailed
from ledger.history import SKIPPED_EVENTS, Histories, Subject, freeze_reasons
from ledger.models import utc_text
from ledger.replay import replay
from ledger.verify import AnchorReads, verify_bundle

__all__ = [
    "PACKAGE_FORMAT",
    "Finding",
    "PackageCheck",
    "build_package",
    "check_package",
    "package_html",
    "package_zip",
]

PACKAGE_FORMAT = "fourflow/evidence-package"
PACKAGE_VERSION = 1
CHECKS = ("format", "chain", "bundles", "chain logs", "completeness", "summary")


def build_package(histories: Histories, subject: Subject) -> dict[str, Any]:
    """The evidence package of ``subject`` (a pledge) as a JSON-ready dict."""
    deployment = histories.deployment
    entries = histories.entries(subject)
    return {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "generated_at": utc_text(int(time.time() * 1000)),
        "chain": {
            "chain_id": deployment.chain_id,
            "contracts": watched_contracts(deployment),
            "deployment_block": deployment.block_number,
        },
        "subject": subject.to_json(),
        "summary": histories.summary(subject),
        "entries": [entry.to_json() for entry in entries],
    }


# --- checking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str  # "error" | "warning"
    message: str
    entry: str | None = None


@dataclass
class PackageCheck:
    entries: int = 0
    bundles_verified: int = 0
    logs_verified: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "bundles_verified": self.bundles_verified,
            "logs_verified": self.logs_verified,
            "findings": [asdict(f) for f in self.findings],
        }


Progress = Callable[[int, int], None]


def check_package(
    package: Mapping[str, Any],
    *,
    chain: Chain,
    confirmations: int = 0,
    progress: Progress | None = None,
    deployment: Deployment | None = None,
) -> PackageCheck:
    """Check ``package`` against the node behind ``chain`` (see the module docstring).
    With ``deployment`` (the manifest the checker trusts), the package's contracts must
    be its contracts: a package built on a look-alike deployment fails."""
    result = PackageCheck()

    def fail(check: str, message: str, entry: str | None = None, *, warn: bool = False) -> None:
        severity = "warning" if warn else "error"
        result.findings.append(Finding(check, severity, message, entry))

    # 1. format
    if package.get("format") != PACKAGE_FORMAT or package.get("version") != PACKAGE_VERSION:
        fail("format", f"expected {PACKAGE_FORMAT} version {PACKAGE_VERSION}")
        return result
    try:
        chain_info = package["chain"]
        contracts = {str(k): str(v) for k, v in chain_info["contracts"].items()}
        entries: list[dict[str, Any]] = list(package["entries"])
        subject = package["subject"]
        summary = package["summary"]
    except (KeyError, TypeError, AttributeError) as exc:
        fail("format", f"missing or malformed field: {exc}")
        return result
    result.entries = len(entries)
    ids = [str(e.get("id")) for e in entries]
    for twice in sorted({i for i in ids if ids.count(i) > 1}):
        fail("format", "the entry appears more than once", twice)
    if (
        subject.get("type") != "pledge"
        or not isinstance(subject.get("id"), int)
        or subject.get("pledges") != [subject["id"]]
    ):
        fail("format", "the subject is not one pledge (type pledge, pledges [its id])")
        return result
    if not result.ok:
        return result

    # 2. chain
    if chain.chain_id != chain_info.get("chain_id"):
        fail(
            "chain", f"package is for chain {chain_info.get('chain_id')}, node is {chain.chain_id}"
        )
        return result
    if deployment is not None and contracts != watched_contracts(deployment):
        fail("chain", "the package's contracts are not the trusted manifest's")
    if "AnchorRegistry" not in contracts or "PledgeRegistry" not in contracts:
        fail("chain", "the package names no AnchorRegistry or PledgeRegistry")
    for name, address in contracts.items():
        if not chain.code_at(address):
            fail("chain", f"{name} {address} has no code on this chain")
    if not result.ok:
        return result

    reader = LogReader(chain, contracts)
    reads = AnchorReads(chain)
    proven_logs: list[ChainLog] = []
    counts: dict[str, Any] = {}  # event id -> verified payload
    # event id -> (event, entry id, leaf), of the verified bundles
    events: dict[str, tuple[dict[str, Any], str, str]] = {}
    for done, entry in enumerate(entries, 1):
        entry_id = str(entry.get("id"))
        proof = entry.get("proof") or {}
        if proof.get("type") == "merkle":
            bundle = proof.get("bundle") or {}
            registry = (bundle.get("anchor") or {}).get("contract")
            if proof.get("status") == "anchored" and registry != contracts["AnchorRegistry"]:
                fail("bundles", f"anchored in {registry}, not the package's registry", entry_id)
                continue
            payload = _check_bundle(entry, proof, reads, confirmations, fail)
            if payload is not None:
                result.bundles_verified += 1
                counts[str(entry.get("event_id"))] = payload
                events[str(entry.get("event_id"))] = (
                    bundle["envelope"]["event"],
                    entry_id,
                    str(bundle["leaf"]),
                )
        elif proof.get("type") == "chain_log":
            log = _check_log(entry_id, proof, reader, chain, confirmations, fail)
            if log is not None:
                result.logs_verified += 1
                proven_logs.append(log)
        else:
            fail("format", f"unknown proof type {proof.get('type')!r}", entry_id)
        if progress is not None:
            progress(done, len(entries))

    proven_logs = _about_subject(subject, proven_logs, fail)
    _check_related(subject, proven_logs, events, fail)
    # 5. completeness: everything the chain says about the pledge and its receipt
    _check_complete(subject, proven_logs, reader, chain_info, fail)
    # 6. the summary's money and counts
    _check_summary(summary, subject, proven_logs, counts, fail)
    return result


def _about_subject(
    subject: Mapping[str, Any], logs: Sequence[ChainLog], fail: Callable[..., None]
) -> list[ChainLog]:
    """The logs about the pledge and its receipt; the receipt is the one the pledge's
    PledgeOpened names, whatever the package says."""
    pledge_id = subject["id"]
    opened = [g for g in logs if g.event == "PledgeOpened" and g.args["pledgeId"] == pledge_id]
    receipt = opened[0].args["terms"]["receiptId"] if opened else None
    if subject.get("receipts") != ([receipt] if receipt is not None else []):
        fail("format", f"the subject's receipts are not the pledge's receipt ({receipt})")
    kept = []
    for log in logs:
        a = log.args
        if a.get("pledgeId") not in (None, 0, pledge_id):
            fail(
                "chain logs",
                f"{log.event} in block {log.block_number} is about pledge {a['pledgeId']}, not this one",
            )
            continue
        about = a.get("receiptId", a.get("tokenId"))
        if log.event == "PledgeOpened":
            about = a["terms"]["receiptId"]
        if about is not None and about != receipt and a.get("pledgeId") != pledge_id:
            fail(
                "chain logs",
                f"{log.event} in block {log.block_number} is about receipt {about}, not the pledge's",
            )
            continue
        kept.append(log)
    return kept


def _check_related(
    subject: Mapping[str, Any],
    logs: Sequence[ChainLog],
    events: Mapping[str, tuple[dict[str, Any], str, str]],
    fail: Callable[..., None],
) -> None:
    """Every off-chain entry is about the pledge's goods: one of its event's assets has an
    identifier key the receipt bound on-chain, or it is (or shares a subject with) an
    event a covenant fact about the receipt cites."""
    bound = {k for g in logs if g.event == "ReceiptKeysBound" for k in g.args["keys"]}
    cited = {g.args["leaf"] for g in logs if g.event == "FactReported"}
    cited_subjects: set[str] = set()
    for event, _, leaf in events.values():
        if leaf in cited:
            cited_subjects.update(event["asset_ids"])
    for event, entry_id, _ in events.values():
        assets = event["asset_ids"]
        keyed = any(
            a.strip() == a and a and "0x" + identifier_key(a).hex() in bound for a in assets
        )
        if not keyed and not cited_subjects & set(assets):
            fail("bundles", "the event is about none of the pledge's goods", entry_id)
    del subject


def _check_bundle(
    entry: Mapping[str, Any],
    proof: Mapping[str, Any],
    reads: AnchorReads,
    confirmations: int,
    fail: Callable[..., None],
) -> dict[str, Any] | None:
    entry_id = str(entry.get("id"))
    bundle = proof.get("bundle")
    if proof.get("status") != "anchored" or not isinstance(bundle, dict):
        fail("bundles", "not anchored yet: cannot be proven", entry_id, warn=True)
        return None
    try:
        verify_bundle(bundle, chain=reads.chain, confirmations=confirmations, reads=reads)
    except VerificationFailed as exc:
        fail("bundles", str(exc), entry_id)
        return None
    event = bundle["envelope"]["event"]
    if event["event_id"] != entry.get("event_id"):
        fail("bundles", f"bundle is for event {event['event_id']!r}", entry_id)
        return None
    missing = set(entry.get("assets") or []) - set(event["asset_ids"])
    if missing:
        fail("bundles", f"entry names assets the event does not: {sorted(missing)[:3]}", entry_id)
        return None
    from ledger.models import event_time_ms

    if event_time_ms(event["event_time"]) != entry.get("time_ms"):
        fail("bundles", "entry time is not the event's time", entry_id)
        return None
    payload: dict[str, Any] = event["payload"]
    return payload


def _check_log(
    entry_id: str,
    proof: Mapping[str, Any],
    reader: LogReader,
    chain: Chain,
    confirmations: int,
    fail: Callable[..., None],
) -> ChainLog | None:
    try:
        receipt = chain.call(
            "reading a transaction receipt",
            lambda: chain.w3.eth.get_transaction_receipt(HexBytes(str(proof["tx_hash"]))),
        )
    except (ChainError, KeyError, ValueError) as exc:
        fail("chain logs", f"transaction not found: {exc}", entry_id)
        return None
    found = [log for log in receipt["logs"] if int(log["logIndex"]) == proof.get("log_index")]
    if not found:
        fail("chain logs", f"no log {proof.get('log_index')} in that transaction", entry_id)
        return None
    raw = found[0]
    block_hash = "0x" + bytes(HexBytes(raw["blockHash"])).hex()
    same = (
        int(raw["blockNumber"]) == proof.get("block_number")
        and block_hash == proof.get("block_hash")
        and str(raw["address"]).lower() == str(proof.get("contract")).lower()
        and ["0x" + bytes(HexBytes(t)).hex() for t in raw["topics"]] == proof.get("topics")
        and "0x" + bytes(HexBytes(raw["data"])).hex() == proof.get("data")
    )
    if not same:
        fail("chain logs", "the node's log differs from the package's", entry_id)
        return None
    if chain.head - int(raw["blockNumber"]) < confirmations:
        fail("chain logs", f"fewer than {confirmations} confirmations", entry_id)
        return None
    log = reader.decode(raw)
    if log is None:
        fail("chain logs", "not a log of the package's contracts", entry_id)
    return log


def _check_complete(
    subject: Mapping[str, Any],
    proven: Sequence[ChainLog],
    reader: LogReader,
    chain_info: Mapping[str, Any],
    fail: Callable[..., None],
) -> None:
    pledges = set(subject.get("pledges") or [])
    receipts = set(subject.get("receipts") or [])
    have = {(g.block_number, g.log_index) for g in proven}
    start = int(chain_info.get("deployment_block", 0))
    try:
        logs = list(reader.read(start, reader.chain.head))
    except LedgerError as exc:
        fail("completeness", f"cannot read the chain's logs: {exc.message}")
        return
    for log in logs:
        if log.event in SKIPPED_EVENTS:
            continue
        a = log.args
        about = a.get("pledgeId") in pledges or a.get("receiptId") in receipts
        if log.event == "PledgeOpened":
            about = about or a["terms"]["receiptId"] in receipts
        if log.event == "Transfer":
            zero = "0x" + "00" * 20
            about = a.get("tokenId") in receipts and zero not in (
                a["from"].lower(),
                a["to"].lower(),
            )
        if about and log.position not in have:
            fail(
                "completeness",
                f"{log.event} in block {log.block_number} (log {log.log_index}, "
                f"tx {log.tx_hash}) is missing from the package",
            )


def _check_summary(
    summary: Mapping[str, Any],
    subject: Mapping[str, Any],
    proven: Sequence[ChainLog],
    counts: Mapping[str, Any],
    fail: Callable[..., None],
) -> None:
    """Everything the summary says that the verified records can say too."""
    ordered = sorted(proven, key=lambda g: g.position)
    try:
        state = replay(ordered)
    except KeyError as exc:  # e.g. a repayment with no PledgeOpened before it
        fail("summary", f"the package's logs do not replay: no record of {exc}")
        return

    def differs(what: str, said: Any, truth: Any) -> None:
        if said != truth:
            fail("summary", f"{what}: the package says {said!r}, the records say {truth!r}")

    pledge_id = subject["id"]
    pledge = state.pledge(pledge_id)
    if pledge is None:
        fail("summary", f"pledge {pledge_id} is not opened in the package's logs")
        return
    moneys = summary.get("money") or []
    if [m.get("pledge_id") for m in moneys] != [pledge_id]:
        fail("summary", "the money block is not the pledge's")
    for money in moneys:
        for name in ("disbursed", "repaid", "outstanding", "margin"):
            differs(f"money.{name}", money.get(name), getattr(pledge, name))
        differs("money.principal", money.get("principal"), pledge.terms.principal)
        differs("money.currency", money.get("currency"), pledge.terms.currency)
        differs("money.payee", money.get("payee"), pledge.terms.payee)
        paid = [
            (g.args["amount"], g.args["payee"])
            for g in ordered
            if g.event == "Disbursed" and g.args["pledgeId"] == pledge_id
        ]
        listed = [(d.get("amount"), d.get("payee")) for d in money.get("disbursements") or []]
        differs("money.disbursements", listed, paid)
        differs(
            "money.all_to_designated_payee",
            money.get("all_to_designated_payee"),
            all(payee == pledge.terms.payee for _, payee in paid),
        )
    ownership = summary.get("ownership") or {}
    for lien in ownership.get("pledges") or []:
        differs("ownership lender", lien.get("lender"), pledge.terms.lender)
        differs("ownership borrower", lien.get("borrower"), pledge.borrower)
        differs("ownership status", lien.get("status"), pledge.status.name.lower())
        differs("ownership frozen", lien.get("frozen"), freeze_reasons(int(pledge.frozen)))
    for owned in ownership.get("receipts") or []:
        receipt = state.receipts.get(owned.get("receipt_id"))
        if receipt is None:
            fail(
                "summary", f"receipt {owned.get('receipt_id')} is not issued in the package's logs"
            )
            continue
        for name in ("owner", "custodian", "quantity"):
            differs(f"ownership receipt {name}", owned.get(name), getattr(receipt, name))
    quantity = summary.get("quantity") or {}
    trend = quantity.get("trend") or []
    for point in trend:
        payload = counts.get(str(point.get("event_id")))
        if payload is None:
            fail("summary", f"count {point.get('event_id')!r} has no verified entry")
            continue
        said = payload.get("head_count", payload.get("quantity"))
        differs(f"count {point['event_id']!r}", point.get("quantity"), said)
    minimum = pledge.terms.min_quantity if pledge.status.name == "ACTIVE" else None
    differs("quantity.minimum", quantity.get("minimum"), minimum)
    latest = quantity.get("latest")
    if trend:
        differs("quantity.latest", (latest or {}).get("event_id"), trend[-1].get("event_id"))
    if latest is not None and minimum is not None:
        differs(
            "quantity.below_minimum", quantity.get("below_minimum"), latest["quantity"] < minimum
        )


# --- the human-readable report ---------------------------------------------------------------


def _svg_line(points: Sequence[tuple[int, int]], minimum: int | None) -> str:
    if len(points) < 2:
        return ""
    width, height, pad = 640, 180, 28
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + ([minimum] if minimum is not None else [])
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    y0, y1 = (y0 - 1, y1 + 1) if y0 == y1 else (y0, y1)

    def at(x: int, y: int) -> str:
        px = pad + (x - x0) / max(1, x1 - x0) * (width - 2 * pad)
        py = height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{px:.1f},{py:.1f}"

    line = " ".join(at(x, y) for x, y in points)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="count against the covenant minimum">',
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>',
        f'<text x="{pad}" y="14" font-size="11">max {max(p[1] for p in points)}</text>',
    ]
    if minimum is not None:
        left, right = at(x0, minimum), at(x1, minimum)
        parts.append(
            f'<polyline fill="none" stroke="#d73a49" stroke-dasharray="4 3" '
            f'points="{left} {right}"/><text x="{width - 150}" y="{right.split(",")[1]}" '
            f'font-size="11" fill="#d73a49">covenant minimum {minimum}</text>'
        )
    return "".join(parts) + "</svg>"


def package_html(package: Mapping[str, Any]) -> str:
    """A self-contained HTML report of a package, for people."""
    e = html.escape
    subject = package["subject"]
    summary = package["summary"]
    rows = []
    for entry in package["entries"]:
        proof = entry["proof"]
        if proof["type"] == "chain_log":
            where = f"block {proof['block_number']}, tx {proof['tx_hash'][:12]}…, log {proof['log_index']}"
        elif proof.get("status") == "anchored":
            batch = proof["bundle"]["batch"]
            where = f"batch {batch['stream']} #{batch['seq']}, leaf {batch['leaf_index']}"
        else:
            where = "pending anchoring"
        text = json.dumps(entry["summary"], ensure_ascii=False)[:160]
        rows.append(
            f"<tr><td>{e(entry['time'])}</td><td class='{e(entry['flow'])}'>{e(entry['flow'])}"
            f"</td><td>{e(entry['kind'])}</td><td><code>{e(text)}</code></td>"
            f"<td>{e(where)}</td></tr>"
        )
    money_rows = "".join(
        f"<tr><td>#{m['pledge_id']}</td><td>{m['currency']}</td><td>{m['principal']:,}</td>"
        f"<td>{m['disbursed']:,}</td><td>{m['repaid']:,}</td><td>{m['outstanding']:,}</td>"
        f"<td>{m['margin']:,}</td><td>{'yes' if m['all_to_designated_payee'] else 'NO'}</td></tr>"
        for m in summary.get("money", [])
    )
    quantity = summary.get("quantity") or {}
    trend = [(p["time_ms"], p["quantity"]) for p in quantity.get("trend") or []]
    owners = "".join(
        f"<li>receipt #{r['receipt_id']}: owner {e(str(r['owner']))}, custodian "
        f"{e(r['custodian'])}, {r['quantity']:,} {e(r['unit'])} {e(r['asset_class'])} "
        f"({e(r['status'])})</li>"
        for r in summary.get("ownership", {}).get("receipts", [])
    )
    liens = "".join(
        f"<li>pledge #{p['pledge_id']}: lender {e(p['lender'])}, borrower {e(p['borrower'])}, "
        f"{e(p['status'])}{', frozen: ' + e(', '.join(p['frozen'])) if p['frozen'] else ''}</li>"
        for p in summary.get("ownership", {}).get("pledges", [])
    )
    latest = quantity.get("latest") or {}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>fourflow evidence: {e(subject["type"])} {e(str(subject["id"]))}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1f2328; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #d0d7de;
padding: 4px 6px; text-align: left; vertical-align: top; }} code {{ font-size: 12px; }}
.information {{ color: #8250df }} .logistics {{ color: #0969da }}
.commercial {{ color: #1a7f37 }} .capital {{ color: #bc4c00 }}
</style></head><body>
<h1>Evidence package: {e(subject["type"])} {e(str(subject["id"]))}</h1>
<p>Chain {package["chain"]["chain_id"]}, generated {e(package["generated_at"])}.
{len(package["entries"])} entries, each with its proof. Check it with
<code>fourflow verify {e("<package.json>")} --rpc URL</code>: nothing in this report needs
to be trusted.</p>
<h2>Who owns the goods, who has a lien</h2><ul>{owners}{liens}</ul>
<h2>How many are there</h2>
<p>Latest count: {e(str(latest.get("quantity", "–")))} {e(str(quantity.get("unit") or ""))}
({e(str(latest.get("time", "none")))}); covenant minimum {e(str(quantity.get("minimum")))};
booked {e(str(quantity.get("booked")))}.</p>
{_svg_line(trend, quantity.get("minimum"))}
<h2>Where the money went</h2>
<table><tr><th>pledge</th><th>currency</th><th>principal</th><th>disbursed</th>
<th>repaid</th><th>outstanding</th><th>margin</th><th>all to the designated payee</th></tr>
{money_rows}</table>
<h2>Timeline</h2>
<table><tr><th>time</th><th>flow</th><th>kind</th><th>what</th><th>proof</th></tr>
{"".join(rows)}</table>
</body></html>
"""


def package_zip(package: Mapping[str, Any]) -> bytes:
    """The package as a zip: ``evidence.json`` and ``report.html``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("evidence.json", json.dumps(package, indent=1, ensure_ascii=False))
        archive.writestr("report.html", package_html(package))
    return buffer.getvalue()
