"""bench.gas at its tiny size: the figures' shape, never their speed or their goal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.core import Context, new_context
from bench.gas import CHEAPER, EAS_PACKAGE, run


@pytest.fixture
def ctx() -> Iterator[Context]:
    if not (EAS_PACKAGE / "contracts" / "EAS.sol").is_file():  # make test installs it
        pytest.fail("the EAS peer is not installed: run `make bench-deps`")
    context = new_context("tiny", print)
    yield context
    context.close()


def test_gas_figures_compare_each_batch_size_with_every_peer(ctx: Context) -> None:
    figures = run(ctx)

    compared = [f for f in figures if f.peer is not None]
    sizes = {f.details["batch_size"] for f in compared}
    assert sizes == {1, 100}
    peers = {f.peer.split(" (")[0] for f in compared if f.peer}
    assert peers == {"EAS attest", "EAS multiAttest", "naive storage"}
    for f in figures:
        assert f.benchmark == "gas"
        assert f.unit in {"gas/event", "gas/tx"}
        assert f.value > 0
    for f in compared:
        assert f.peer_value is not None and f.peer_value > 0
        assert f.ratio == pytest.approx(f.peer_value / f.value)
        assert f.ratio_of == CHEAPER
        assert f.value == pytest.approx(f.details["anchor_tx_gas"] / f.details["batch_size"])
    # the goal is stated at 10,000 per batch, which the tiny size does not anchor
    assert all(f.goal is None for f in figures)
