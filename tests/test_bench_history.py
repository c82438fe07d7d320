"""bench/history.py's two benchmarks run at size tiny and report well-formed figures.
Only the figures' shape is asserted, never a speed: this machine is shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core import REGISTRY, Figure, new_context
from bench.history import _history_on, _Shape, run_history, run_memory
from tests.bench_figures import assert_well_formed
from tests.conftest import fresh_pg_database

TINY = _Shape(2_000, 200, 50)


def _history(database: str, db_url: str) -> list[Figure]:
    ctx = new_context("tiny", print)
    try:
        return _history_on(ctx, database, db_url, TINY)
    finally:
        ctx.close()


def _check_history(figures: list[Figure]) -> None:
    assert_well_formed(figures, "history", ["ms", "ms", "ms"])
    later, first, p99 = figures
    assert later.peer_value is not None  # the floor reads the same later pages
    assert later.ratio == pytest.approx(later.value / later.peer_value)
    for p50 in (later, first):
        assert p50.goal is not None and p50.goal_met is None  # the goal is for 10^6 events
        assert p50.value <= p99.value
    assert later.details["store_events"] == 2_000 and later.details["asset_events"] == 200
    # 200 entries in pages of 50: three later pages a walk, three walks, ten first pages
    assert later.details["later_page_reads"] == 9 and first.details["reads"] == 13
    assert p99.details["reads"] == 22


def test_the_two_benchmarks_are_registered() -> None:
    assert REGISTRY["history"][1] is run_history
    assert REGISTRY["memory"][1] is run_memory


def test_history_on_sqlite_reports_p50_and_p99_against_the_floor(tmp_path: Path) -> None:
    _check_history(_history("SQLite", f"sqlite:///{tmp_path}/store.sqlite"))


@pytest.mark.postgres
def test_history_on_postgresql_reports_p50_and_p99_against_the_floor() -> None:
    with fresh_pg_database() as url:
        _check_history(_history("PostgreSQL", url))


@pytest.mark.anvil
def test_memory_reports_peak_rss_against_the_process_after_imports() -> None:
    ctx = new_context("tiny", print)
    try:
        figures = run_memory(ctx)
    finally:
        ctx.close()
    assert_well_formed(figures, "memory", ["MiB"])
    (peak,) = figures
    assert peak.ratio is not None
    assert peak.details["events"] == 2_000
