"""The local days and fences every rule monitor shares (oracles.rules): one definition of
a local date, its bounds, a checked ISO day and a (lat, lon) polygon."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.errors import InvalidInput
from oracles.rules import check_day, day_bounds, local_day, offset_ms, polygon

EIGHT = offset_ms("+08:00")


def test_a_moment_falls_in_the_bounds_of_its_local_day() -> None:
    start, end = day_bounds("2026-11-23", EIGHT)
    assert end - start == 86_400_000
    assert local_day(start, EIGHT) == local_day(end - 1, EIGHT) == "2026-11-23"
    assert local_day(start - 1, EIGHT) == "2026-11-22" and local_day(end, EIGHT) == "2026-11-24"
    assert start == 1_795_363_200_000  # 2026-11-23T00:00+08:00
    assert local_day(start, offset_ms("-05:00")) == "2026-11-22"


@pytest.mark.parametrize("day", ["2026-02-30", "2026-1-5", "20261123", "", None, 20261123, []])
def test_anything_but_an_iso_day_is_refused_naming_day(day: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_day(day)
    assert caught.value.field == "day"
    assert caught.value.message == f"expected an ISO date like 2026-11-23, got {day!r}"


def test_a_polygon_needs_three_lat_lon_points() -> None:
    assert polygon(None, "site") is None
    assert polygon([[31.3, 120.7], [31.4, 120.7], ["31.4", 120.8]], "site") == (
        (31.3, 120.7), (31.4, 120.7), (31.4, 120.8),
    )  # fmt: skip
    for bad, says in [
        ([[31.3, 120.7], [31.4, 120.7]], "site needs at least 3 (lat, lon) points"),
        ([[31.3], [31.4, 120.7], [31.4, 120.8]], "site must be (lat, lon) points"),
        ([["north", 120.7], [31.4, 120.7], [31.4, 120.8]], "site must be (lat, lon) points"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            polygon(bad, "site")
        assert caught.value.field == "site" and caught.value.message.startswith(says)
