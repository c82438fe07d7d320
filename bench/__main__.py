"""`python -m bench [--full | --tiny] [--only a,b] [--out bench/results.json]`"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.core import (
    REGISTRY,
    ROOT,
    Figure,
    machine,
    new_context,
    reference_rate,
    write_results,
)

MODULES = (
    "bench.merkle",
    "bench.gas",
    "bench.ingest",
    "bench.history",
)  # each registers its benchmarks on import


def _load() -> None:
    for module in MODULES:
        importlib.import_module(module)


def _table(figures: list[Figure]) -> Table:
    table = Table(title="fourflow benchmarks", show_lines=False)
    for column in ("benchmark", "figure", "fourflow", "peer / floor", "ratio", "goal"):
        table.add_column(column, overflow="fold")
    for f in figures:
        verdict = {True: "met", False: "NOT met", None: "not judged at this size"}[f.goal_met]
        goal = "" if f.goal is None else f"{verdict}: {f.goal}"
        peer = "" if f.peer is None else f"{f.peer}: {_num(f.peer_value)} {f.unit}"
        ratio = "" if f.ratio is None else f"{_num(f.ratio)}×"
        table.add_row(f.benchmark, f.name, f"{_num(f.value)} {f.unit}", peer, ratio, goal)
    return table


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--full", action="store_true", help="the large sizes (minutes)")
    sizes.add_argument(
        "--tiny", action="store_true", help="the smallest sizes (what make test runs)"
    )
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    _load()
    size = "full" if args.full else "tiny" if args.tiny else "quick"
    wanted = [n for n in args.only.split(",") if n] or list(REGISTRY)
    unknown = sorted(set(wanted) - set(REGISTRY))
    if unknown:
        print(
            f"unknown benchmark {unknown[0]!r}; choose from {', '.join(REGISTRY)}", file=sys.stderr
        )
        return 2
    console = Console(highlight=False)
    at_start = machine()  # the load average before the benchmarks load the machine
    console.print(
        f"this machine: {at_start['cores']} cores, load {at_start['load_average_at_start']}, "
        f"{at_start['reference_rounds_s']:,} reference rounds/s (bench.core.reference_rate)"
    )
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    reference: dict[str, int] = {}
    for name in wanted:
        title, run = REGISTRY[name]
        console.print(f"[bold]{name}[/bold]: {title} ({size})")
        ctx = new_context(size, lambda text: console.print(f"  {text}"))
        reference[name] = round(reference_rate())  # the machine's speed as this one starts
        started = time.monotonic()
        try:
            figures += run(ctx)
        except Exception as exc:  # one benchmark's failure is reported, the rest still run
            errors[name] = f"{exc.__class__.__name__}: {exc}"
            console.print(f"  [red]failed[/red]: {errors[name]}")
            traceback.print_exc()
        finally:
            ctx.close()
            seconds[name] = time.monotonic() - started
            console.print(f"  done in {seconds[name]:.0f} s")
    write_results(
        args.out,
        size,
        figures,
        errors,
        machine_at_start=at_start | {"reference_rounds_s_by_benchmark": reference},
        seconds=seconds,
    )
    console.print(_table(figures))
    console.print(f"results: {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
