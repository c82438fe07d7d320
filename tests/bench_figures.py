"""What every benchmark's figures must look like, whatever their values."""

from __future__ import annotations

import math

from bench.core import Figure


def assert_well_formed(figures: list[Figure], benchmark: str, units: list[str]) -> None:
    assert [f.unit for f in figures] == units
    for f in figures:
        assert f.benchmark == benchmark
        assert math.isfinite(f.value) and f.value > 0, f
        if f.peer is not None:
            assert f.peer_value is not None and f.peer_value > 0, f
        if f.ratio is not None:
            assert f.ratio > 0 and f.ratio_of, f
        if f.goal_met is not None:
            assert f.goal, f
        assert f.to_json()["name"] == f.name
