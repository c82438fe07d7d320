"""What every benchmark shares: figures, sizes, the registry, and the run's context.

A benchmark is a function ``run(ctx) -> list[Figure]`` registered with ``@benchmark``.
It reads its size from ``ctx.size`` ("tiny" inside `make test`, "quick" by default,
"full" with --full) and reports figures: a measured value with its unit and, where
there is one, the peer's or the floor's value measured in the same run and the ratio
between them. Absolute figures drift on a shared machine; ratios are what the goals
are stated in. Nothing here asserts on speed: goals are reported as met or not.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"  # npm peers (package.json, installed by `make bench-deps`)
Size = Literal["tiny", "quick", "full"]


@dataclass
class Figure:
    """One measured figure, and what it is compared with."""

    benchmark: str
    name: str  # e.g. "gas per event @ 10,000"
    value: float
    unit: str  # "gas/event", "events/s", "ms", "MiB", …
    peer: str | None = None  # what it is compared with ("floor: hashlib loop", "EAS attest")
    peer_value: float | None = None
    ratio: float | None = None  # value / peer_value, or as `ratio_of` says
    ratio_of: str | None = None  # how to read the ratio ("peer / fourflow: times cheaper")
    goal: str | None = None  # the goal, in words
    goal_met: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


@dataclass
class Context:
    size: Size
    tmp: Path
    say: Callable[[str], None]
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def pick(self, *, tiny: Any, quick: Any, full: Any) -> Any:
        return {"tiny": tiny, "quick": quick, "full": full}[self.size]

    def on_exit(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as exc:  # every other clean-up still runs
                self.say(f"clean-up failed: {exc!r}")
        shutil.rmtree(self.tmp, ignore_errors=True)


Runner = Callable[[Context], list[Figure]]
REGISTRY: dict[str, tuple[str, Runner]] = {}


def benchmark(name: str, title: str) -> Callable[[Runner], Runner]:
    def register(run: Runner) -> Runner:
        REGISTRY[name] = (title, run)
        return run

    return register


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed: …; elapsed()`` in seconds (perf_counter)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def status_kib(pid: int, field: str) -> int:
    """A VmRSS/VmHWM line of /proc/<pid>/status, in KiB (VmHWM: the process's own peak;
    ru_maxrss would keep the parent's across exec)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)

    def version(*cmd: str) -> str | None:
        if shutil.which(cmd[0]) is None:
            return None
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
        return out.stdout.strip() or None

    commit = version("git", "-C", str(ROOT), "rev-parse", "HEAD")
    dirty = version("git", "-C", str(ROOT), "status", "--porcelain")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "node": version("node", "--version"),
        "commit": commit,
        "dirty": bool(dirty),
        "reference_rounds_s": round(reference_rate()),  # see reference_rate
    }


REFERENCE_DOC = {"event_id": "ref-0", "payload": {"bizStep": "shipping", "seq": 1}, "n": 7}


def reference_rate(seconds: float = 0.5) -> float:
    """This machine's speed now, in rounds a second of a fixed single-core round (JSON
    written and read, a sha256, a dict built): the same code on every run, so two runs'
    absolute figures can be compared through it, run to run and machine to machine.
    The development machine's speed has changed more than twofold from one day to the
    next; this says by how much."""
    rounds = 0
    deadline = time.perf_counter() + seconds
    with timed() as elapsed:
        while time.perf_counter() < deadline:
            for i in range(200):
                text = json.dumps(REFERENCE_DOC | {"n": i}, sort_keys=True)
                digest = hashlib.sha256(text.encode()).hexdigest()
                json.loads(text)["digest"] = digest
            rounds += 200
    return rounds / elapsed()


def new_context(size: Size, say: Callable[[str], None]) -> Context:
    return Context(size=size, tmp=Path(tempfile.mkdtemp(prefix="fourflow-bench-")), say=say)


def versions() -> dict[str, str | None]:
    """fourflow's and the peers' versions, as installed."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("fourflow", "pymerkle", "web3", "eth-tester", "sqlalchemy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    lock = PEERS / "package-lock.json"
    if lock.is_file():
        packages = json.loads(lock.read_text(encoding="utf-8")).get("packages", {})
        for key, meta in packages.items():
            if key.count("node_modules/") == 1 and key != "":
                found[key.removeprefix("node_modules/")] = meta.get("version")
    return found


def _finite(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_results(
    path: Path,
    size: Size,
    figures: list[Figure],
    errors: dict[str, str],
    *,
    machine_at_start: dict[str, Any] | None = None,
    seconds: dict[str, float] | None = None,
) -> None:
    at_start = machine_at_start or machine()
    at_end = round(reference_rate())
    body = {
        "format": "fourflow/bench-results",
        "version": 1,
        "size": size,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": at_start | {"reference_rounds_s_at_end": at_end},
        "versions": versions(),
        "figures": [f.to_json() for f in figures],
        "errors": errors,
        "seconds": {name: round(took, 1) for name, took in (seconds or {}).items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(body), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
