"""`fourflow devnet up|down|status`: a local anvil chain with every contract deployed.

Exit codes: 0 done; 1 the devnet is not in the state asked for (already running, not
running, could not start, or `status` found it down or found a problem); 2 bad input
(an option, a key, a password, an address).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ledger.devnet import (
    DEFAULT_CHAIN_ID,
    DEFAULT_DIR,
    DEFAULT_PORT,
    STATE_INTERVAL_S,
    Devnet,
    DevnetStatus,
    NotRunning,
)
from ledger.errors import InvalidInput, LedgerError

devnet_app = typer.Typer(
    no_args_is_help=True,
    help="A local anvil chain with every contract deployed and roles granted: up, down, status.",
)

# own consoles: importing api.cli's would be circular (it registers this app)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DirOpt = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="FOURFLOW_DEVNET_DIR",
        help="The devnet's directory: state, log, manifest, keys, env.",
    ),
]


def _fail(exc: LedgerError) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(exc.message)}")
    return typer.Exit(2 if isinstance(exc, InvalidInput) else 1)


def _show(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _listed(value: str) -> list[str]:
    return [a.strip() for a in value.split(",") if a.strip()]


@devnet_app.command()
def up(
    directory: DirOpt = DEFAULT_DIR,
    port: Annotated[
        int | None,
        typer.Option(help=f"Port on 127.0.0.1 (default {DEFAULT_PORT}, or the one used last)."),
    ] = None,
    chain_id: Annotated[
        int | None,
        typer.Option(
            "--chain-id",
            min=1,
            help=f"Chain id of a new devnet (default {DEFAULT_CHAIN_ID}); fixed once created.",
        ),
    ] = None,
    block_time: Annotated[
        float | None,
        typer.Option(
            "--block-time",
            min=0.0,
            help="Mine a block every N seconds (0: on every transaction, the default).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="The store the env file names (default: SQLite in the devnet's directory).",
        ),
    ] = None,
    oracles: Annotated[
        str,
        typer.Option(envvar="FOURFLOW_ORACLE_ADDRESS", help="More oracle addresses (a,b,…)."),
    ] = "",
    submitters: Annotated[
        str, typer.Option(envvar="FOURFLOW_SUBMITTERS", help="More submitter addresses.")
    ] = "",
    custodians: Annotated[
        str, typer.Option(envvar="FOURFLOW_CUSTODIANS", help="More custodian addresses.")
    ] = "",
    lenders: Annotated[
        str, typer.Option(envvar="FOURFLOW_LENDERS", help="More lender addresses.")
    ] = "",
    auditors: Annotated[
        str, typer.Option(envvar="FOURFLOW_AUDITORS", help="More auditor addresses.")
    ] = "",
) -> None:
    """Start the devnet: anvil, every contract, roles granted, manifest and env written.

    anvil runs detached with its state in DIR/state.json; the first `up` deploys every
    contract, later ones restart the chain from its saved state and deploy nothing.
    Missing roles are granted, and DIR/deployment.json and DIR/env written. Each role's key (admin, oracle, gateway, custodian, lender, auditor) is the keystore
    in $FOURFLOW_<ROLE>_KEY_FILE (password in $FOURFLOW_<ROLE>_KEY_PASSWORD), else one
    generated into DIR/keys (password: $FOURFLOW_DEVNET_PASSWORD, else DIR/keys/password).
    Exit 1 if it is already running or cannot start."""
    holders = {
        "oracle": _listed(oracles),
        "gateway": _listed(submitters),
        "custodian": _listed(custodians),
        "lender": _listed(lenders),
        "auditor": _listed(auditors),
    }
    devnet = Devnet(directory)
    try:
        result = devnet.up(
            chain_id=chain_id,
            port=port,
            block_time=block_time,
            db_url=db,
            holders={role: addrs for role, addrs in holders.items() if addrs},
        )
    except LedgerError as exc:
        raise _fail(exc) from exc
    for role in ("ADMIN", "ORACLE", "GATEWAY", "CUSTODIAN", "LENDER", "AUDITOR"):
        if os.environ.get(f"FOURFLOW_{role}_KEY"):
            err.print(
                f"[yellow]note:[/yellow] $FOURFLOW_{role}_KEY (hex) is not used by the devnet; "
                f"name a keystore in $FOURFLOW_{role}_KEY_FILE instead"
            )
    dep = result.deployment
    out.print(
        f"[bold]devnet up[/bold]: anvil pid {result.pid} at {result.rpc_url}, chain "
        f"{result.chain_id}, state {_show(str(devnet.state_path))} (saved every "
        f"{STATE_INTERVAL_S} s and on `down`)"
    )
    for note in result.notes:
        out.print(f"  [yellow]![/yellow] {escape(note)}")
    verb = "deployed" if result.deployed else "from the saved state"
    out.print(
        f"  contracts ({verb}, block {dep.block_number}): AnchorRegistry {dep.anchor_registry}, "
        f"ReceiptRegistry {dep.receipt_registry}, PriceFeed {dep.price_feed}, "
        f"PledgeRegistry {dep.pledge_registry}"
    )
    for key in result.keys:
        where = "generated" if key.generated else f"from ${key.source}"
        out.print(f"  {key.role:<9} {key.address}  {_show(key.keyfile)} ({where})")
    for role, address, contract in result.granted:
        out.print(f"  granted {role} to {address} on {contract}")
    out.print(
        f"  manifest {_show(str(devnet.manifest_path))}; point other commands at the devnet: "
        f"[bold]. {_show(str(devnet.env_path))}[/bold]"
    )


@devnet_app.command()
def down(
    directory: DirOpt = DEFAULT_DIR,
    timeout: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds to wait for anvil to write its state and exit."),
    ] = 30.0,
) -> None:
    """Stop the devnet; anvil writes its state on the way out.

    SIGTERM, then SIGKILL after --timeout. Exit 1 if it is not running."""
    devnet = Devnet(directory)
    try:
        result = devnet.down(timeout=timeout)
    except NotRunning as exc:
        err.print(escape(exc.message))
        raise typer.Exit(1) from exc
    except LedgerError as exc:
        raise _fail(exc) from exc
    if result.killed:
        out.print(
            f"[yellow]killed[/yellow] anvil pid {result.pid} after {timeout:g} s without exiting: "
            f"the chain is as of its last periodic save; if `up` finds "
            f"{_show(str(devnet.state_path))} cut short, it says how to restore the copy "
            "taken at the last `up`"
        )
    else:
        out.print(
            f"[bold]devnet down[/bold]: stopped anvil pid {result.pid}; state saved in "
            f"{_show(str(devnet.state_path))}"
        )


@devnet_app.command()
def status(
    directory: DirOpt = DEFAULT_DIR,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="FOURFLOW_DB_URL",
            help="The store whose anchoring backlog to show (default: the devnet's, if any).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show the node, the contracts, the keys' roles and the anchoring backlog.

    The node: up or down, chain id, head block. The manifest's contracts: code on the
    node (the anchor registry's against its build). Each key and extra holder, and the
    roles it holds. The backlog per stream, from --db or the devnet's own store. Exit 0
    if the devnet is up and sound, 1 otherwise."""
    try:
        report = Devnet(directory).status(db_url=db)
    except LedgerError as exc:
        raise _fail(exc) from exc
    if as_json:
        out.print_json(data=report.to_json())
    else:
        _print_status(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_status(s: DevnetStatus) -> None:
    state = f"[green]up[/green] (anvil pid {s.pid})" if s.running else "[red]down[/red]"
    chain = f"chain {s.chain_id}" if s.chain_id is not None else "chain ?"
    head = f" · head block {s.head}" if s.head is not None else ""
    out.print(f"devnet {_show(s.directory)}: {state} at {s.rpc_url} · {chain}{head}")
    if s.manifest:
        out.print(f"contracts ({_show(s.manifest)})")
    for c in s.contracts:
        if c.code is None:
            out.print(f"  ? {c.name:<16} {c.address}  not checked (the node is down)")
            continue
        ok = c.code and c.matches_manifest is not False
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        if not c.code:
            what = "no code"
        else:
            what = f"code sha256 {(c.code_sha256 or '')[:16]}…"
            if c.detail:
                what += f", {c.detail}"
        out.print(f"  {mark} {c.name:<16} {c.address}  {escape(what)}")
    if s.holders:
        out.print("keys and role holders")
    for h in s.holders:
        where = _show(h.keyfile) if h.keyfile else "address"
        if h.holds is None:
            roles = "roles not read"
        elif not h.holds:
            roles = "no role"
        else:
            roles = "; ".join(f"{role} on {', '.join(names)}" for role, names in h.holds.items())
        mark = "[red]✗[/red]" if h.missing else " "
        out.print(f"  {mark} {h.role:<9} {h.address}  {where}  {roles}")
    b = s.backlog
    if b is not None:
        states = ", ".join(f"{n} {state}" for state, n in b.batches.items())
        out.print(
            f"anchoring backlog ({escape(b.store)}): {b.events} events, {b.pending} pending · "
            f"batches: {states}"
        )
        for st in b.streams:
            age = f", oldest {st.oldest_age_s:.0f} s old" if st.oldest_age_s is not None else ""
            store_seq = (
                f"anchored through seq {st.store_anchored_seq}"
                if st.store_anchored_seq is not None
                else "nothing anchored"
            )
            chain_seq = (
                f"next seq on chain {st.chain_next_seq}" if st.chain_next_seq is not None else ""
            )
            out.print(
                f"  {escape(st.stream)}: {st.pending} pending{age} · {store_seq} (store)"
                + (f" · {chain_seq}" if chain_seq else "")
            )
    elif s.running:
        out.print("anchoring backlog: no store (give --db or $FOURFLOW_DB_URL)")
    for problem in s.problems:
        out.print(f"[red]✗[/red] {escape(problem)}")
