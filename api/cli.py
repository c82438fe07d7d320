"""The `fourflow` command.

fourflow demo                 the whole path on an in-process chain and SQLite
fourflow verify FILE          check a proof bundle, or a pledge's evidence package, against a node
fourflow audit                replay the deployment from the chain and the evidence, trusting nobody
fourflow deploy               deploy the registry on a node and write a manifest
fourflow serve                the HTTP API and dashboard, following the chain (and anchoring, with an oracle key)
fourflow index                follow the contracts' logs into the store (--rebuild: from the chain alone)
fourflow oracle run           ingestion, rules, covenant facts and anchoring, as a service
fourflow simulate KIND        simulated farm or warehouse devices, in-process or over MQTT
fourflow sign-in              Sign-In with Ethereum: a bearer token for the API's reads
fourflow db upgrade           migrate the store's schema (db current, db history)
fourflow contracts compile    rebuild contracts/artifacts from the sources
fourflow contracts check      fail if an artifact is stale
"""

from __future__ import annotations

import copy
import gc
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from api.devnet_cli import devnet_app
from api.loadtest import load_command
from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, Chain, Deployment, new_account
from ledger.collateral import AUDITOR_ROLE, CUSTODIAN_ROLE, LENDER_ROLE, deploy_contracts
from ledger.errors import LedgerError, VerificationFailed
from ledger.logs import configure_logging
from ledger.runtime import Runtime, load_key
from ledger.verify import STEPS, verify_bundle

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
oracle_app = typer.Typer(no_args_is_help=True, help="Oracle services.")
contracts_app = typer.Typer(no_args_is_help=True, help="Solidity sources and artifacts.")
db_app = typer.Typer(no_args_is_help=True, help="The store's schema (Alembic migrations).")
app.add_typer(oracle_app, name="oracle")
app.add_typer(contracts_app, name="contracts")
app.add_typer(devnet_app, name="devnet")
app.add_typer(db_app, name="db")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DbOpt = Annotated[
    str, typer.Option("--db", envvar="FOURFLOW_DB_URL", help="SQLAlchemy URL of the store.")
]
RpcOpt = Annotated[
    str, typer.Option("--rpc", envvar="FOURFLOW_RPC_URL", help="JSON-RPC URL of the node.")
]
ManifestOpt = Annotated[
    Path,
    typer.Option(
        "--manifest",
        envvar="FOURFLOW_MANIFEST",
        help="Deployment manifest (written by `fourflow deploy`).",
    ),
]


def _die(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _writable(path: Path | None, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: its directory is
    made if missing; a directory in its place or an unwritable one is a usage error."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _die(f"{option} {path}: cannot make its directory ({exc.strerror})") from exc
    if path.is_dir():
        raise _die(f"{option} {path}: is a directory")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise _die(f"{option} {path}: not writable")


# --- verify ------------------------------------------------------------------------------


def _verify_one(bundle: dict[str, Any], chain: Chain, confirmations: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []

    def record(step: int, name: str, detail: str) -> None:
        steps.append({"step": step, "name": name, "ok": True, "detail": detail})

    try:
        verify_bundle(bundle, chain=chain, confirmations=confirmations, on_step=record)
    except VerificationFailed as exc:
        steps.append({"step": exc.step, "name": exc.name, "ok": False, "detail": exc.reason})
        return {
            "ok": False,
            "failed_step": exc.step,
            "failed_name": exc.name,
            "message": exc.reason,
            "steps": steps,
        }
    return {"ok": True, "steps": steps}


def _print_result(result: dict[str, Any]) -> None:
    for s in result["steps"]:
        mark = "[green]✓[/green]" if s["ok"] else "[red]✗[/red]"
        out.print(f"  {mark} {s['step']}. {s['name']:<17} {s['detail']}")
    if result["ok"]:
        out.print(f"  [bold green]VERIFIED[/bold green] in {len(STEPS)} steps")
    else:
        out.print(
            f"  [bold red]FAILED[/bold red] at step {result['failed_step']} ({result['failed_name']})"
        )


def _verify_package(
    package: dict[str, Any],
    chain: Chain,
    confirmations: int,
    *,
    as_json: bool,
    deployment: Deployment | None,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ledger.evidence import CHECKS, check_package

    with Progress(
        TextColumn("checking entries"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as bar:
        task = bar.add_task("entries", total=len(package.get("entries") or []))
        result = check_package(
            package,
            chain=chain,
            confirmations=confirmations,
            progress=lambda done, _total: bar.update(task, completed=done),
            deployment=deployment,
        )
    if as_json:
        out.print_json(data=result.to_json())
    else:
        subject = package.get("subject") or {}
        out.print(
            f"evidence package for {subject.get('type')} {subject.get('id')}: "
            f"{result.entries} entries, {result.bundles_verified} proof bundles and "
            f"{result.logs_verified} chain logs verified"
        )
        for finding in result.findings:
            mark = "[yellow]![/yellow]" if finding.severity == "warning" else "[red]✗[/red]"
            where = f" {finding.entry}" if finding.entry else ""
            out.print(f"  {mark} {finding.check}{where}: {finding.message}")
        failed = {f.check for f in result.findings if f.severity == "error"}
        checks = "  ".join(
            f"{'[red]✗[/red]' if c in failed else '[green]✓[/green]'} {c}" for c in CHECKS
        )
        out.print(f"  {checks}")
        verdict = (
            "[bold green]VERIFIED[/bold green]" if result.ok else "[bold red]FAILED[/bold red]"
        )
        out.print(f"  {verdict}")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def verify(
    bundle_path: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="A proof bundle or an evidence package (JSON), or - for stdin."
        ),
    ],
    rpc: RpcOpt,
    confirmations: Annotated[
        int, typer.Option(min=0, help="Read the anchor this many blocks below the head.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    trusted: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="For a package: the deployment you trust; its contracts must be the package's.",
        ),
    ] = None,
) -> None:
    """Verify a proof bundle, or a pledge's whole evidence package, against a node: exit
    0 if it holds, 1 if anything fails, 2 for bad input."""
    try:
        text = (
            sys.stdin.read()
            if bundle_path == "-"
            else Path(bundle_path).read_text(encoding="utf-8")
        )
        bundle = json.loads(text)
    except (OSError, ValueError) as exc:
        raise _die(f"cannot read bundle {bundle_path}: {exc}") from exc
    if not isinstance(bundle, dict):
        raise _die(f"{bundle_path} is not a JSON object")
    try:
        chain = Chain.connect(rpc)
    except LedgerError as exc:
        raise _die(f"cannot reach the node at {rpc}: {exc.message}") from exc
    if bundle.get("format") == "fourflow/evidence-package":
        try:
            deployment = Deployment.read(trusted) if trusted is not None else None
        except LedgerError as exc:
            raise _die(exc.message) from exc
        _verify_package(bundle, chain, confirmations, as_json=as_json, deployment=deployment)
    result = _verify_one(bundle, chain, confirmations)
    if as_json:
        out.print_json(data=result)
    else:
        _print_result(result)
    raise typer.Exit(0 if result["ok"] else 1)


# --- audit -------------------------------------------------------------------------------

_AUDIT_LONG_RUN = 10_000  # events: off a terminal, such a run reports progress in lines


def _audit_progress(stack: Any) -> Any:
    """Progress on stderr: a transient bar on a terminal; off one, for a long run, a line
    per stage and per tenth of the events (a log keeps those)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    state: dict[str, Any] = {"stage": None, "tenth": -1}

    def update(stage: str, done: int, total: int) -> None:
        if err.is_terminal:
            if "bar" not in state:
                bar = Progress(
                    TextColumn("{task.description:<22}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=err,
                    transient=True,
                )
                state["bar"] = stack.enter_context(bar)
                state["task"] = bar.add_task(stage, total=max(total, 1))
            state["bar"].update(
                state["task"], description=stage, completed=done, total=max(total, 1)
            )
            return
        if stage == "events" and total >= _AUDIT_LONG_RUN:
            state["long"] = True
        if not state.get("long"):
            return
        tenth = 10 * done // max(total, 1)
        if stage != state["stage"] or (stage == "events" and tenth > state["tenth"]):
            state["stage"], state["tenth"] = stage, tenth
            err.print(f"audit: {stage} {done:,}/{total:,}")

    return update


def _print_audit(report: Any) -> None:
    from rich.markup import escape

    c = report.counts
    out.print(f"audit of chain {report.chain_id} at block {report.head}, from the {report.source}")
    out.print(
        f"  {c.contracts} contracts · {c.logs} logs · {c.streams} streams · {c.batches} batches "
        f"({c.leaves} leaves, {c.batches_recomputed} roots recomputed) · {c.events} events "
        f"({c.events_pending} not anchored yet) · {c.signatures} signatures · {c.facts} facts · "
        f"{c.pledges} pledges · {c.receipts} receipts"
    )
    for finding in report.findings:
        mark = "[red]✗[/red]" if finding.severity == "error" else "[yellow]![/yellow]"
        out.print(f"  {mark} {finding.code}: {escape(finding.message)}")
    for note in report.skipped:
        out.print(f"  – not checked: {escape(note)}")
    errors = sum(1 for f in report.findings if f.severity == "error")
    if report.ok:
        out.print("  [bold green]CLEAN[/bold green]: no discrepancy")
    else:
        out.print(f"  [bold red]{errors} DISCREPANCIES[/bold red]")


@app.command()
def audit(
    rpc: RpcOpt,
    manifest: ManifestOpt,
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL of the operator's store to audit.")
    ] = None,
    package: Annotated[
        Path | None,
        typer.Option(
            "--package",
            help="An evidence package (JSON) to audit instead: nothing from the operator's database.",
        ),
    ] = None,
    skip_bytecode: Annotated[
        bool,
        typer.Option(
            "--skip-bytecode",
            help="Do not compile the sources (solc-js, ~10 s); the report says the deployed "
            "code was not compared.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Every finding, machine-readable.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            help="Processes that read and decode a store's envelopes (default: one per "
            "core; 1: none). Used from 20,000 events.",
        ),
    ] = None,
) -> None:
    """Replay the deployment from the chain and the evidence, trusting nobody: exit 0 if
    everything checks out, 1 on any discrepancy, 2 if the audit cannot run."""
    from contextlib import ExitStack

    from ledger.audit import Auditor
    from ledger.chain import Deployment
    from ledger.store import Store

    if (db is None) == (package is None):
        raise _die("say what to audit: --db URL (the operator's store) or --package FILE")
    try:
        deployment = Deployment.read(manifest)
    except LedgerError as exc:
        raise _die(exc.message) from exc
    source: Any
    if package is not None:
        try:
            source = json.loads(package.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _die(f"cannot read package {package}: {exc}") from exc
        if not isinstance(source, dict):
            raise _die(f"{package} is not a JSON object")
    else:
        assert db is not None
        if db.startswith("sqlite:///") and not Path(db.removeprefix("sqlite:///")).is_file():
            raise _die(f"no SQLite store at {db}")
        try:
            source = Store.open(db)
        except LedgerError as exc:
            raise _die(exc.message) from exc
    try:
        chain = Chain.connect(rpc)
        auditor = Auditor(chain, deployment, source=source, bytecode=not skip_bytecode, jobs=jobs)
        with ExitStack() as stack:
            report = auditor.run(progress=_audit_progress(stack))
    except LedgerError as exc:
        raise _die(f"the audit could not run against {rpc}: {exc.message}") from exc
    finally:
        if isinstance(source, Store):
            source.close()
    if as_json:
        out.print_json(data=report.to_json())
    else:
        _print_audit(report)
    raise typer.Exit(0 if report.ok else 1)


# --- demo --------------------------------------------------------------------------------


def _tampered(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with one byte of one payload value changed."""
    forged = copy.deepcopy(bundle)
    payload = forged["envelope"]["event"]["payload"]
    payload["bizStep"] = payload["bizStep"][:-1] + ("X" if payload["bizStep"][-1] != "X" else "Y")
    return forged


def _serve_in_thread(runtime: Runtime) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    # one process signs and checks the demo's sign-in tokens: a fresh secret will do
    settings = Settings(auth_secret=secrets.token_bytes(32))
    config = uvicorn.Config(
        create_app(runtime, settings=settings),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fourflow-demo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise LedgerError("the demo API server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", server, thread


@app.command()
def demo(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print bundles and results as JSON.")
    ] = False,
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc", help="Run against this node (e.g. anvil) instead of the in-process chain."
        ),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the bundles here.")] = None,
    coils: Annotated[int, typer.Option(min=1, max=500, help="Steel coils on the demo pallet.")] = 8,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write what --json prints to this file."),
    ] = None,
) -> None:
    """Deploy, register a logistics firm and an oracle, submit signed RFID custody events
    over HTTP, anchor them, then verify a proof bundle and show a tampered one fail; then
    pledge the coils to a bank and run the pledge's rules on-chain; then watch a pledged
    dairy herd for three simulated days until a theft freezes its pledge; then let the
    bank read the pledge's four-flow history and check its evidence package; last, watch
    a small pledged plant for two days until a machine trucked away freezes its pledge."""
    import httpx

    from api.industry_scene import run_industry_scene
    from api.lender_scene import run_lender_scene  # the scenes load siwe's grammar: slow
    from api.oracle_scene import run_oracle_scene
    from api.pledge_demo import run_pledge_scene
    from api.siwe_client import sign_in as siwe_sign_in
    from ledger.signing import sign_submission
    from oracles.custody import steel_coil_journey

    say = (lambda *a: None) if as_json else out.print
    with tempfile.TemporaryDirectory(prefix="fourflow-demo-") as tmp:
        try:
            chain = Chain.connect(rpc) if rpc else Chain.in_process()
            runtime, keys = Runtime.dev(db_url=f"sqlite:///{tmp}/store.sqlite", chain=chain)
        except LedgerError as exc:
            raise _die(exc.message) from exc
        dep = runtime.deployment
        firm = keys.submitters[0]
        where = rpc or "in-process chain (eth-tester + py-evm)"
        say(
            f"[bold]fourflow demo[/bold] on {where}, chain id {dep.chain_id}, SQLite store in {tmp}"
        )
        say(f" 1. deployed AnchorRegistry at {dep.anchor_registry} (block {dep.block_number})")
        say(f" 2. granted SUBMITTER_ROLE to the logistics firm {firm.address}")
        say(f"    granted ORACLE_ROLE to the anchoring oracle  {keys.oracle.address}")

        events = steel_coil_journey(submitter=firm.address, coils=coils)
        submission = sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
        base, server, thread = _serve_in_thread(runtime)
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                answer = client.post("/v1/events", json=submission.model_dump(mode="json"))
                if answer.status_code != 202:
                    raise _die(f"submission refused: {answer.status_code} {answer.text}")
                say(
                    f" 3. POST {base}/v1/events: {len(events)} EPCIS custody events for a pallet of "
                    f"{coils} steel coils, one EIP-712 signature → {answer.status_code}, "
                    f"{answer.json()['accepted']} stored"
                )
                token = siwe_sign_in(client, firm)  # EIP-4361: reads need a sign-in
                client.headers["Authorization"] = f"Bearer {token}"
                pending = client.get(f"/v1/events/{events[3].event_id}/proof")
                say(
                    f"    signed in with Ethereum (EIP-4361) as the firm; proof before anchoring "
                    f"→ {pending.status_code} {pending.json()['error']['code']}"
                )

                summary = runtime.anchorer(keys.oracle).run_once(force=True)
                stream, seq, gas = summary.anchored[0]
                batch = client.get(f"/v1/batches/{stream}/{seq}").json()
                say(
                    f" 4. anchored {stream}/{seq}: {batch['leaf_count']} leaves, root {batch['root'][:18]}…, "
                    f"block {batch['block_number']}, {gas:,} gas ({gas // batch['leaf_count']:,} gas/event)"
                )

                bundles = [client.get(f"/v1/events/{e.event_id}/proof").json() for e in events]
        finally:
            server.should_exit = True
            thread.join(timeout=10)

        receiving = bundles[3]
        result = _verify_one(receiving, chain, 0)
        say(
            f" 5. proof bundle of the warehouse's receiving event {receiving['envelope']['event']['event_id']}:"
        )
        if not as_json:
            _print_result(result)
        forged = _tampered(receiving)
        forged_result = _verify_one(forged, chain, 0)
        say(" 6. the same bundle with one byte of its payload changed (bizStep):")
        if not as_json:
            _print_result(forged_result)
        all_ok = all(_verify_one(b, chain, 0)["ok"] for b in bundles)
        say(f"    all {len(bundles)} bundles verify: {'yes' if all_ok else 'NO'}")
        try:
            pledge, contracts = run_pledge_scene(runtime, keys, receiving, say=say)
            herd = run_oracle_scene(
                runtime, keys, contracts, kind="dairy", days=3, seed=1, size=40, say=say
            )
            lender = run_lender_scene(
                runtime, contracts, herd, serve=_serve_in_thread, say=say, out_dir=out_dir
            )
            # a second industry on the same rails: a small plant, a machine trucked away
            plant = run_industry_scene(
                runtime, keys, contracts, kind="factory", days=2, seed=1, size=4, say=say,
                step=20, incidents=("moved",), parties=herd.parties | {"owner": new_account()},
            )  # fmt: skip
        except LedgerError as exc:
            raise _die(exc.message) from exc

        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            for b in bundles:
                name = f"{b['batch']['stream']}-{b['batch']['seq']}-{b['batch']['leaf_index']}.json"
                (out_dir / name).write_text(json.dumps(b, indent=2) + "\n", encoding="utf-8")
            (out_dir / "deployment.json").write_text(
                json.dumps(dep.__dict__, indent=2) + "\n", encoding="utf-8"
            )
            say(
                f"    wrote {len(bundles)} bundles to {out_dir}/"
                + (f"; check one with: fourflow verify {out_dir}/<file> --rpc {rpc}" if rpc else "")
            )
        data = {
            "deployment": dep.__dict__,
            "bundles": bundles,
            "verification": result,
            "tampered": {"bundle": forged, "verification": forged_result},
            "all_verified": all_ok,
            "pledge": pledge,
            "herd": herd.to_json(),
            "lender": lender,
            "plant": plant.to_json(),
        }
        if as_json:
            out.print_json(data=data)
        if report is not None:
            report.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        runtime.close()
        herd_ok = all(herd.detected.values()) and "BELOW_MINIMUM" in herd.frozen
        lender_ok = (
            lender["package"]["ok"] and lender["audit"]["ok"] and lender["outsider_status"] == 403
        )
        plant_ok = all(plant.detected.values()) and "UNAUTHORIZED_MOVEMENT" in plant.frozen
        ok = (
            result["ok"]
            and not forged_result["ok"]
            and all_ok
            and herd_ok
            and lender_ok
            and plant_ok
        )
        raise typer.Exit(0 if ok else 1)


@app.command()
def simulate(
    kind: Annotated[
        str,
        typer.Argument(
            help="dairy, warehouse, factory, solar, charging, dealer or telemetry",
            show_default=False,
        ),
    ],
    days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=60,
            help="Simulated days (default 3; solar 6, charging 10, telemetry 2: the "
            "shortest runs that show their incidents).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same devices, readings and incidents.")] = 1,
    start: Annotated[
        str | None,
        typer.Option(
            help="First day, YYYY-MM-DD, with --mqtt or --write-config (default: so the "
            "run ends yesterday, as in-process runs always do)."
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Animals (dairy 20-2000), coils (warehouse 8-500), machines (factory "
            "4-60), inverters (solar 2-100), piles (charging 2-200) or vehicles (dealer "
            "10-200).",
            show_default=False,
        ),
    ] = None,
    mqtt: Annotated[
        bool,
        typer.Option(
            "--mqtt",
            help="Publish as devices do: readings to the MQTT broker ($FOURFLOW_MQTT_*), "
            "EPCIS documents to --api. Otherwise run everything in-process.",
        ),
    ] = False,
    api: Annotated[
        str, typer.Option(help="The fourflow API for EPCIS documents (--mqtt).")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str, typer.Option(envvar="FOURFLOW_CAPTURE_TOKEN", help="Capture client token (--mqtt).")
    ] = "",
    tenant: Annotated[str, typer.Option(help="Tenant in the MQTT topics and the config.")] = "sim",
    write_config: Annotated[
        Path | None,
        typer.Option(
            "--write-config", help="Write the oracle config (devices, rules) for this scenario."
        ),
    ] = None,
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="In-process mode on this node instead (e.g. anvil).")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="Write the headline figure over time as SVG.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Drive realistic devices with injected incidents, deterministic for a seed: a dairy
    herd (collars, ear tags, cameras: theft, tag removal, sensor drift, a silent gateway),
    a steel warehouse (RFID readers: unauthorized outbound), a plant (current clamps: a
    slowdown, a machine trucked away, a removed clamp), a solar plant or a charging
    station (meters, inverters, piles: underperformance, revenue shortfall), a car
    dealer's floor plan (trackers, the safe's reader: a vehicle sold unpaid) or telemetry
    assets (a pump's vibration, a warm cold room). In-process, the oracle watches them
    against live pledges and the outcome is printed, with a chart."""
    from rich.progress import Progress

    from api.industry_scene import DEFAULT_DAYS, build_scenario, check_options, run_scene
    from api.oracle_scene import svg_chart
    from ledger.collateral import deploy_collateral
    from oracles.drive import publish
    from oracles.mqtt import MqttPublisher, MqttSettings
    from oracles.simulate import oracle_config

    days = days if days is not None else DEFAULT_DAYS.get(kind, 3)
    try:
        check_options(kind, days=days, size=size)
    except ValueError as exc:
        raise _die(str(exc)) from exc
    _writable(chart, "--chart")
    _writable(write_config, "--write-config")
    say = (lambda *a: None) if as_json else out.print
    if mqtt or write_config:
        try:
            first = (
                datetime.fromisoformat(start).replace(tzinfo=UTC)
                if start
                else datetime.now(UTC) - timedelta(days=days + 1)
            )
        except ValueError as exc:
            raise _die(f"--start {start!r}: expected YYYY-MM-DD ({exc})") from exc
        try:
            scenario = build_scenario(kind, days=days, seed=seed, start=first, size=size)
        except LedgerError as exc:
            raise _die(exc.message) from exc
        if write_config:
            write_config.parent.mkdir(parents=True, exist_ok=True)
            config = oracle_config(scenario, tenant=tenant)
            write_config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            say(
                f"wrote the oracle config for {kind} (seed {seed}, {len(config['devices'])} devices) to {write_config}"
            )
        if not mqtt:
            return
        if scenario.documents and not token:
            raise _die(
                "--mqtt sends EPCIS documents to the API: set --token or $FOURFLOW_CAPTURE_TOKEN"
            )
        try:
            with (
                MqttPublisher(
                    MqttSettings.from_env(), client_id=f"fourflow-sim-{os.getpid()}"
                ) as publisher,
                Progress(transient=True, disable=as_json) as bar,
            ):
                task = bar.add_task(f"{kind}: publishing", total=len(scenario.readings))
                sent = publish(
                    scenario, publisher=publisher, tenant=tenant, api=api, token=token,
                    progress=lambda done, _total: bar.update(task, completed=done),
                )  # fmt: skip
        except LedgerError as exc:
            raise _die(exc.message, code=1) from exc
        say(
            f"published {sent.readings:,} readings over MQTT"
            + (f" and {sent.documents} EPCIS documents to {api}" if sent.documents else "")
            + (
                f" (not sent: {sent.releases} release{'' if sent.releases == 1 else 's'}, the "
                "lender's, on-chain)"
                if sent.releases
                else ""
            )
        )
        return
    if start is not None:
        raise _die("--start needs --mqtt or --write-config: in-process runs end yesterday")
    with tempfile.TemporaryDirectory(prefix="fourflow-sim-") as tmp:
        try:
            chain = Chain.connect(rpc) if rpc else Chain.in_process()
            runtime, keys = Runtime.dev(db_url=f"sqlite:///{tmp}/store.sqlite", chain=chain)
            contracts, _ = deploy_collateral(runtime.registry, runtime.deployment, admin=keys.admin)
            with Progress(transient=True, disable=as_json) as bar:
                task = bar.add_task(f"{kind}: readings", total=None)
                result = run_scene(
                    runtime, keys, contracts, kind=kind, days=days, seed=seed, size=size, say=say,
                    progress=lambda done, total: bar.update(task, completed=done, total=total), step=1,
                )  # fmt: skip
        except LedgerError as exc:
            raise _die(exc.message, code=1) from exc
        if chart is not None:
            chart.parent.mkdir(parents=True, exist_ok=True)
            svg_chart(result, chart)
            say(f"    wrote the chart to {chart}")
        if as_json:
            out.print_json(data=result.to_json())
        runtime.close()


@app.command("capture-token")
def capture_token(name: Annotated[str, typer.Argument(help="The capture client's name.")]) -> None:
    """Make a bearer token for an EPCIS capture client. Give the client the token; add
    the printed entry to $FOURFLOW_CAPTURE_TOKENS on the server (only its hash is kept)."""
    import hashlib
    import secrets

    if not name or "," in name or ":" in name:
        raise _die("a client name has no ',' or ':'")
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    out.print(f"token for {name}: {token}")
    out.print(f"server entry:    {name}:{digest}")


@app.command("index")
def index(
    db: DbOpt,
    rpc: RpcOpt,
    manifest: ManifestOpt,
    confirmations: Annotated[
        int, typer.Option(min=0, help="Index only blocks this many below the head.")
    ] = 0,
    rebuild: Annotated[
        bool, typer.Option(help="Forget the index and read the chain again from the deployment.")
    ] = False,
    follow: Annotated[bool, typer.Option(help="Keep following new blocks until stopped.")] = False,
) -> None:
    """Follow the contracts' logs into the store (`fourflow serve` does this itself)."""
    from ledger.indexer import ChainIndex, Indexer

    runtime = _open_runtime(db, rpc, manifest)
    try:
        indexer = Indexer(
            runtime.store, runtime.chain, runtime.deployment, confirmations=confirmations
        )
        passes = indexer.rebuild() if rebuild else indexer.catch_up()
        for done in passes:
            if done.rewound_to is not None:
                err.print(f"blocks after {done.rewound_to} disappeared: rewound and re-indexed")
        if passes[-1].busy:
            err.print(
                "another process is indexing this store (fourflow serve?): it keeps it current"
            )
        logs = sum(p.logs for p in passes)
        state = ChainIndex(runtime.store, runtime.deployment).describe()
        out.print(
            f"indexed to block {state['indexed_to']} ({logs} new logs, {state['logs']} in all; "
            f"head {passes[-1].head}, {confirmations} confirmations)"
        )
        if follow:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                indexer.run_forever(stop)
            except KeyboardInterrupt:
                stop.set()
    except LedgerError as exc:
        raise _die(exc.message, 1) from exc
    finally:
        runtime.close()


@app.command("sign-in")
def sign_in(
    api: Annotated[str, typer.Option(help="The fourflow API to sign in to.")] = (
        "http://127.0.0.1:8000"
    ),
    key_env: Annotated[
        str,
        typer.Option(
            "--key-env",
            help="Environment variable with the private key (hex), or NAME_FILE (+ NAME_PASSWORD) "
            "naming a keyfile.",
        ),
    ] = "FOURFLOW_KEY",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole answer: token, expiry, address, roles.")
    ] = False,
) -> None:
    """Sign in with Ethereum (EIP-4361): ask the API for a nonce, sign the message with
    the key, and print the bearer token (send it as 'Authorization: Bearer TOKEN')."""
    import httpx

    from api.siwe_client import SignInFailed, request_token

    try:
        account = load_key(env=key_env)
    except LedgerError as exc:
        raise _die(exc.message) from exc
    if account is None:
        raise _die(f"set {key_env} (hex) or {key_env}_FILE to the key to sign in with")
    try:
        with httpx.Client(base_url=api, timeout=30) as client:
            answer = request_token(client, account)
    except httpx.InvalidURL as exc:
        raise _die(f"--api {api!r}: {exc}") from exc
    except SignInFailed as exc:
        raise _die(exc.message, code=1) from exc
    if as_json:
        out.print_json(data=answer)
    else:
        out.print(answer["token"], markup=False)


# --- deploy, serve, oracle ----------------------------------------------------------------


@app.command()
def deploy(rpc: RpcOpt, manifest: ManifestOpt = Path(".fourflow/deployment.json")) -> None:
    """Deploy every contract (anchor registry, receipts, price feed, pledges).

    The admin key comes from $FOURFLOW_ADMIN_KEY (or _FILE + _PASSWORD). Roles go to
    comma-separated addresses: $FOURFLOW_ORACLE_ADDRESS (anchors, prices, facts),
    $FOURFLOW_SUBMITTERS, $FOURFLOW_CUSTODIANS, $FOURFLOW_LENDERS, $FOURFLOW_AUDITORS.
    """
    try:
        admin = load_key(env="FOURFLOW_ADMIN_KEY")
        if admin is None:
            raise _die("set FOURFLOW_ADMIN_KEY (hex) or FOURFLOW_ADMIN_KEY_FILE to a funded key")
        chain = Chain.connect(rpc)
        contracts, deployment = deploy_contracts(chain, admin=admin)
        grants = [
            ("FOURFLOW_ORACLE_ADDRESS", contracts.anchors, ORACLE_ROLE),
            ("FOURFLOW_ORACLE_ADDRESS", contracts.prices, ORACLE_ROLE),
            ("FOURFLOW_ORACLE_ADDRESS", contracts.pledges, ORACLE_ROLE),
            ("FOURFLOW_SUBMITTERS", contracts.anchors, SUBMITTER_ROLE),
            ("FOURFLOW_CUSTODIANS", contracts.receipts, CUSTODIAN_ROLE),
            ("FOURFLOW_LENDERS", contracts.pledges, LENDER_ROLE),
            ("FOURFLOW_AUDITORS", contracts.pledges, AUDITOR_ROLE),
        ]
        for env, client, role in grants:
            for address in filter(None, os.environ.get(env, "").split(",")):
                client.grant(role, address.strip(), admin=admin)
        deployment.write(manifest)
    except LedgerError as exc:
        raise _die(exc.message) from exc
    out.print(
        f"deployed on chain {deployment.chain_id}: AnchorRegistry {deployment.anchor_registry}, "
        f"ReceiptRegistry {deployment.receipt_registry}, PriceFeed {deployment.price_feed}, "
        f"PledgeRegistry {deployment.pledge_registry}; manifest {manifest}"
    )


def _open_runtime(db: str, rpc: str, manifest: Path) -> Runtime:
    try:
        return Runtime.open(db_url=db, rpc_url=rpc, manifest=manifest)
    except LedgerError as exc:
        raise _die(exc.message) from exc


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--oracle-config",
        envvar="FOURFLOW_ORACLE_CONFIG",
        help="Oracle config (tenant, devices, herds, lots); docs/oracles.md.",
    ),
]


def _freeze_start_up_heap() -> None:
    """Move every object made so far (modules, the app, contract ABIs, the runtime) out
    of the cycle collector's reach, in a long-running process about to start work.

    They live as long as the process, yet each full collection walked them all again:
    a quarter of a million objects, a tenth of a second each time. A submission of
    1,000 events makes tens of thousands of containers that outlive the young
    collections while it is answered, so full collections came every few submissions.
    Frozen, the API spends a sixth less CPU per event taken in (docs/performance.md).
    A full collection now walks only what was made since; collection itself stays on,
    with its default thresholds, so the work's own reference cycles are still freed."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()


def _gateway() -> Any:
    try:
        return load_key(env="FOURFLOW_GATEWAY_KEY")
    except LedgerError as exc:
        raise _die(exc.message) from exc


@app.command()
def serve(
    db: DbOpt,
    rpc: RpcOpt,
    manifest: ManifestOpt,
    oracle_config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    confirmations: Annotated[
        int, typer.Option(min=0, help="Index contract logs only this many blocks deep.")
    ] = 0,
    max_batch: Annotated[
        int,
        typer.Option(min=1, max=1_000_000, help="In-process anchoring: seal at this many events."),
    ] = 1000,
    max_age: Annotated[
        float,
        typer.Option(min=0.0, help="In-process anchoring: seal when the oldest is this old (s)."),
    ] = 5.0,
) -> None:
    """Serve the HTTP API and the lender dashboard, following the contracts' logs into
    the store (histories, pledges, alarms). With $FOURFLOW_ORACLE_KEY set, anchor in the
    same process; with $FOURFLOW_GATEWAY_KEY, take EPCIS 2.0 captures at /v1/epcis, and
    with an oracle config as well, signed device readings at /v1/readings."""
    try:
        configure_logging()
    except LedgerError as exc:
        raise _die(exc.message) from exc
    from api.app import create_app, run_server
    from api.settings import get_settings
    from ledger.indexer import Indexer
    from oracles.config import OracleConfig
    from oracles.service import OracleService

    try:
        settings = get_settings()
    except ValueError as exc:
        raise _die(str(exc)) from exc
    if settings.siwe_domain is None and host not in ("127.0.0.1", "localhost", "::1"):
        raise _die(
            f"serving on {host}: set FOURFLOW_SIWE_DOMAIN to the host name clients use "
            "(sign-in messages must name it; the Host header can be forged)"
        )
    runtime = _open_runtime(db, rpc, manifest)
    indexer = Indexer(runtime.store, runtime.chain, runtime.deployment, confirmations=confirmations)
    oracle = load_key()
    anchorer = runtime.anchorer(oracle, max_batch=max_batch, max_age_s=max_age) if oracle else None
    gateway = _gateway()
    capture = ingest = None
    if gateway is not None:
        try:
            config = (
                OracleConfig.load(oracle_config)
                if oracle_config
                else OracleConfig(tenant="default")
            )
        except LedgerError as exc:
            raise _die(exc.message) from exc
        service = OracleService.build(runtime, config, gateway=gateway)
        capture = service.capture
        ingest = service.ingest if oracle_config else None
    elif oracle_config:
        raise _die("an oracle config needs the gateway key: set FOURFLOW_GATEWAY_KEY")
    try:  # reads the deployment's contracts for the callers' roles
        app_ = create_app(
            runtime,
            settings=settings,
            anchorer=anchorer,
            capture=capture,
            ingest=ingest,
            indexer=indexer,
        )
    except LedgerError as exc:
        raise _die(exc.message) from exc
    _freeze_start_up_heap()
    run_server(app_, host=host, port=port)


@oracle_app.command("run")
def oracle_run(
    db: DbOpt,
    rpc: RpcOpt,
    manifest: ManifestOpt,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="FOURFLOW_ORACLE_CONFIG",
            help="Oracle config (tenant, devices, herds, lots); without it, anchor only.",
        ),
    ] = None,
    only: Annotated[
        str,
        typer.Option(help="Comma-separated workers to run: ingest, rules, facts, anchor."),
    ] = "ingest,rules,facts,anchor",
    max_batch: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Seal at this many events.")
    ] = 1000,
    max_age: Annotated[
        float, typer.Option(min=0.0, help="Seal when the oldest pending event is this old (s).")
    ] = 5.0,
    poll: Annotated[float, typer.Option(min=0.01, help="Seconds between passes.")] = 0.5,
    recheck: Annotated[
        float,
        typer.Option(min=0.0, help="Re-read an idle stream's anchors on the chain this often (s)."),
    ] = 10.0,
    once: Annotated[
        bool, typer.Option("--once", help="Anchor only: seal everything pending, anchor, exit.")
    ] = False,
) -> None:
    """Run the oracle services until SIGINT/SIGTERM: MQTT ingestion, rules and alarms,
    covenant facts, and anchoring, in one process or split with --only. The oracle key
    (anchors, facts) comes from $FOURFLOW_ORACLE_KEY, the gateway key (signs what
    devices and EPCIS clients send) from $FOURFLOW_GATEWAY_KEY (or _FILE + _PASSWORD)."""
    from oracles.config import OracleConfig
    from oracles.service import WORKERS, OracleService
    from oracles.worker import run_worker

    try:
        configure_logging()
    except LedgerError as exc:
        raise _die(exc.message) from exc
    workers = [w.strip() for w in only.split(",") if w.strip()]
    unknown = sorted(set(workers) - set(WORKERS))
    if unknown:
        raise _die(f"unknown worker {unknown[0]!r}; choose from {', '.join(WORKERS)}")
    runtime = _open_runtime(db, rpc, manifest)
    try:
        oracle = load_key()
    except LedgerError as exc:
        raise _die(exc.message) from exc
    if config is None or once:
        if oracle is None:
            raise _die("set FOURFLOW_ORACLE_KEY (hex) or FOURFLOW_ORACLE_KEY_FILE")
        _freeze_start_up_heap()
        try:
            anchored = run_worker(
                runtime.anchorer(oracle, max_batch=max_batch, max_age_s=max_age, recheck_s=recheck),
                poll_s=poll,
                once=once,
            )
        except LedgerError as exc:
            raise _die(exc.message, code=1) from exc
        if once:
            out.print(f"anchored {anchored} batch(es)")
        return
    gateway = _gateway()
    if gateway is None and {"ingest", "rules"} & set(workers):
        raise _die("ingest and rules sign what they store: set FOURFLOW_GATEWAY_KEY")
    if oracle is None and {"facts", "anchor"} & set(workers):
        raise _die("facts and anchor send transactions: set FOURFLOW_ORACLE_KEY")
    try:
        service = OracleService.build(
            runtime, OracleConfig.load(config), gateway=gateway or oracle, oracle=oracle
        )
    except LedgerError as exc:
        raise _die(exc.message) from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _freeze_start_up_heap()
    service.run(stop, workers=workers, poll_s=poll, max_batch=max_batch, max_age_s=max_age)


@oracle_app.command("import")
def oracle_import(
    path: Annotated[
        Path, typer.Argument(help="A reader log, a readings CSV or a JSON Lines file.")
    ],
    db: DbOpt,
    rpc: RpcOpt,
    manifest: ManifestOpt,
    config: Annotated[
        Path, typer.Option("--config", envvar="FOURFLOW_ORACLE_CONFIG", help="Oracle config.")
    ],
    kind: Annotated[
        str,
        typer.Option("--format", help="rfid-csv, readings-csv or jsonl (default: by extension)."),
    ] = "",
    signer: Annotated[
        str | None,
        typer.Option(
            help="The device whose key signed FILE.sig (default: the only device the file names)."
        ),
    ] = None,
    reader: Annotated[
        list[str] | None,
        typer.Option(help="For rfid-csv: READER=DEVICE_ID@ZONE, once per reader in the log."),
    ] = None,
) -> None:
    """Import device readings from a file: RFID reader logs and CSV exports need the
    device's detached signature in FILE.sig; JSON Lines of signed readings need none.
    Bad rows are listed (and quarantined), never fatal."""
    from oracles.config import OracleConfig
    from oracles.files import (
        RfidReader,
        SignedFile,
        import_jsonl,
        import_readings_csv,
        import_rfid_csv,
    )
    from oracles.service import OracleService

    fmt = kind or {".jsonl": "jsonl", ".csv": "readings-csv", ".log": "rfid-csv"}.get(
        path.suffix, ""
    )
    if fmt not in ("rfid-csv", "readings-csv", "jsonl"):
        raise _die(f"cannot tell the format of {path}; pass --format rfid-csv|readings-csv|jsonl")
    gateway = _gateway()
    if gateway is None:
        raise _die("importing signs what it stores: set FOURFLOW_GATEWAY_KEY")
    runtime = _open_runtime(db, rpc, manifest)
    try:
        service = OracleService.build(runtime, OracleConfig.load(config), gateway=gateway)
        devices = service.ingest.devices
        if fmt == "jsonl":
            readings, rejects = import_jsonl(path.read_bytes())
            result = service.ingest.ingest(
                [r.model_dump(mode="json") for r in readings], source=f"file:{path.name}"
            )
        else:
            readers = {}
            for spec in reader or []:
                name, _, where = spec.partition("=")
                device_id, _, zone = where.partition("@")
                if not (name and device_id and zone):
                    raise _die(f"--reader {spec!r}: expected READER=DEVICE_ID@ZONE")
                readers[name] = RfidReader(device=device_id, zone=zone)
            named = sorted({r.device for r in readers.values()})
            device_id = signer or (named[0] if len(named) == 1 else None)
            if fmt == "readings-csv" and device_id is None and len(devices) == 1:
                device_id = next(iter(devices))
            if device_id is None or device_id not in devices:
                raise _die(
                    "name the device that signed the file with --signer (a registered device)"
                )
            signed = SignedFile.read(path, signer=devices[device_id].address)
            if fmt == "rfid-csv":
                rows, rejects = import_rfid_csv(signed, readers=readers)
            else:
                rows, rejects = import_readings_csv(signed)
            result = service.ingest.ingest_file(signed, rows, name=path.name)
        for line, reason, raw in rejects:
            service.state.quarantine(source=f"file:{path.name}:{line}", reason=reason, raw=raw)
    except LedgerError as exc:
        raise _die(exc.message) from exc
    out.print(
        f"{path.name}: {len(result.accepted)} readings stored, {len(result.duplicates)} duplicates, "
        f"{len(result.quarantined) + len(rejects)} refused"
    )
    for line, reason, _ in rejects[:20]:
        out.print(f"  line {line}: {reason}")
    for index, reason in result.quarantined[:20]:
        out.print(f"  reading {index}: {reason}")


# --- contracts ----------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(db: DbOpt) -> None:
    """Bring the store's schema to this fourflow's newest revision (every process does
    this when it opens the store, unless FOURFLOW_DB_AUTO_MIGRATE=0)."""
    from sqlalchemy import create_engine

    from ledger import schema

    try:
        engine = create_engine(db)
        before = schema.current(engine)
        applied = schema.migrate(engine)
    except LedgerError as exc:
        raise _die(exc.message, code=1) from exc
    except Exception as exc:  # a malformed URL, a missing driver
        raise _die(f"--db {db!r}: {exc}") from exc
    if applied:
        out.print(
            f"migrated from {before or 'an empty store'} to {schema.HEAD}: {', '.join(applied)}"
        )
    else:
        out.print(f"already at {schema.HEAD}")


@db_app.command("current")
def db_current(db: DbOpt) -> None:
    """Print the store's schema revision and whether it is this fourflow's newest."""
    from sqlalchemy import create_engine

    from ledger import schema

    try:
        found = schema.current(create_engine(db))
    except LedgerError as exc:
        raise _die(exc.message, code=1) from exc
    except Exception as exc:
        raise _die(f"--db {db!r}: {exc}") from exc
    state = (
        "up to date"
        if found == schema.HEAD
        else f"behind: run `fourflow db upgrade` ({schema.HEAD})"
    )
    out.print(f"{found or 'none'} ({state})")
    if found != schema.HEAD:
        raise typer.Exit(1)


@db_app.command("history")
def db_history() -> None:
    """List the schema revisions, oldest first."""
    from ledger import schema

    for revision, message in schema.history():
        out.print(f"{revision}  {message}")


@contracts_app.command("compile")
def contracts_compile() -> None:
    """Compile contracts/*.sol and rewrite contracts/artifacts."""
    from ledger.contracts import compile_contracts, write_artifacts

    try:
        artifacts = compile_contracts()
    except LedgerError as exc:
        raise _die(exc.message) from exc
    write_artifacts(artifacts)
    for a in artifacts.values():
        out.print(f"{a.name}: {len(a.deployed_bytecode):,} bytes runtime, compiler {a.compiler}")


@contracts_app.command("check")
def contracts_check() -> None:
    """Exit 1 if a committed artifact was not built from the current sources."""
    from ledger.contracts import stale_artifacts

    try:
        stale = stale_artifacts()
    except LedgerError as exc:
        raise _die(exc.message) from exc
    if stale:
        raise _die(f"stale artifacts: {', '.join(stale)}; run `fourflow contracts compile`", code=1)
    out.print("artifacts match the sources")


app.command("load")(load_command)


def main() -> None:
    app()
