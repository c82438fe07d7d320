"""bench/ingest.py's four benchmarks run at size tiny and report well-formed figures.
Only the figures' shape is asserted, never a speed: this machine is shared."""

from __future__ import annotations

import pytest

from bench.core import REGISTRY, Figure, new_context
from bench.ingest import anchoring_latency, ingest, memory_api, verify
from tests.bench_figures import assert_well_formed


def _run(name: str) -> list[Figure]:
    _, run = REGISTRY[name]
    ctx = new_context("tiny", print)
    try:
        return run(ctx)
    finally:
        ctx.close()


def test_the_four_benchmarks_are_registered() -> None:
    names = ("ingest", "anchoring-latency", "verify", "memory-api")
    assert {n: REGISTRY[n][1] for n in names} == {
        "ingest": ingest,
        "anchoring-latency": anchoring_latency,
        "verify": verify,
        "memory-api": memory_api,
    }


@pytest.mark.anvil
def test_ingest_reports_throughput_against_the_floor_and_batch_latencies() -> None:
    figures = _run("ingest")
    assert_well_formed(figures, "ingest", ["events/s", "ms", "ms", "events/s"])
    throughput, p50, p99, pair = figures
    assert throughput.ratio == pytest.approx(throughput.value / throughput.peer_value)
    assert throughput.details["batches"] * throughput.details["batch_size"] == 200
    assert p50.value <= p99.value
    assert pair.details["api_processes"] == 2 and pair.peer_value == throughput.peer_value
    assert pair.ratio == pytest.approx(pair.value / pair.peer_value)
    assert pair.details["p50_ms"] <= pair.details["p99_ms"]
    # each figure is the best of its rounds (one at this size), the floor's too
    rounds = throughput.details["rounds"]
    assert (
        len(throughput.details["rates_by_round"]) == len(pair.details["rates_by_round"]) == rounds
    )
    assert round(throughput.value) == max(throughput.details["rates_by_round"])
    assert round(pair.value) == max(pair.details["rates_by_round"])
    assert round(throughput.peer_value) == max(throughput.details["floor_by_round"])


@pytest.mark.anvil
def test_anchoring_latency_reports_p50_and_p99_against_the_bound() -> None:
    figures = _run("anchoring-latency")
    assert_well_formed(figures, "anchoring-latency", ["s", "s"])
    _p50, p99 = figures
    assert p99.peer_value == pytest.approx(3.0)  # max-age 1 s + 2 blocks of 1 s


@pytest.mark.anvil
def test_verify_reports_bundles_per_second_and_the_audit_rate() -> None:
    figures = _run("verify")
    assert_well_formed(figures, "verify", ["bundles/s", "events/s", "s"])
    replay = figures[1]
    assert replay.ratio == pytest.approx(replay.value / replay.peer_value)
    projected = figures[2]
    assert projected.details["extrapolated"] is True
    assert projected.value == pytest.approx(1_000_000 / figures[1].value)


@pytest.mark.anvil
def test_memory_api_reports_the_servers_peak_against_its_start() -> None:
    (figure,) = _run("memory-api")
    assert_well_formed([figure], "memory-api", ["MiB"])
    assert figure.value >= figure.peer_value  # a peak is never below an earlier reading
    assert figure.details["events_accepted"] > 0 and figure.details["requests"]["submit"] > 0
