"""The chain indexer on a real (eth-tester) chain with the four contracts: it follows
every log, replays to the contracts' own state, resumes from its cursor, waits for
confirmations, and recovers when blocks it indexed disappear."""

from __future__ import annotations

# ruff: noqa: F811 - the `world` fixture, imported from tests.collateral_world, is each test's parameter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.chainlog import LogReader
from ledger.indexer import ChainIndex, Indexer
from ledger.store import Store
from tests.chain_story import Story, play_story
from tests.collateral_world import World, ref, world, world_base  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path}/index.sqlite")
    yield store
    store.close()


def indexer(world: World, store: Store, **options: int) -> Indexer:
    assert world.deployment is not None
    return Indexer(store, world.chain, world.deployment, **options)


def chain_logs(world: World) -> list[tuple[int, int, str]]:
    """Every fourflow log on the chain now, straight from the node."""
    assert world.deployment is not None
    reader = LogReader.for_deployment(world.chain, world.deployment)
    start = world.deployment.block_number
    return [(g.block_number, g.log_index, g.event) for g in reader.read(start, world.chain.head)]


def indexed(store: Store, world: World) -> list[tuple[int, int, str]]:
    assert world.deployment is not None
    logs = ChainIndex(store, world.deployment).all_logs()
    return [(g.block_number, g.log_index, g.event) for g in logs]


def assert_replay_matches_contracts(world: World, store: Store, story: Story) -> None:
    assert world.deployment is not None
    state = ChainIndex(store, world.deployment).state()
    for pledge_id in (story.steel_pledge, story.herd_pledge):
        assert state.pledge(pledge_id) == world.pledges.pledge_of(pledge_id)
    for receipt_id in (story.steel, story.herd, story.spare):
        assert state.receipts[receipt_id].contract_view() == world.receipts.receipt_of(receipt_id)


def test_every_log_is_indexed_and_replays_to_the_contracts_state(
    world: World, store: Store
) -> None:
    story = play_story(world)
    passes = indexer(world, store).catch_up()

    assert indexed(store, world) == chain_logs(world)
    events = {event for _, _, event in indexed(store, world)}
    assert {
        "BatchAnchored", "ReceiptIssued", "Transfer", "ReceiptKeysBound", "ReceiptKeysFreed",
        "ReceiptQuantityChanged", "ReceiptRetired", "ReceiptLocked", "ReceiptUnlocked",
        "PledgeOpened", "Disbursed", "Repaid", "MarginToppedUp", "FactReported",
        "PledgeFrozen", "PledgeUnfrozen", "GoodsAdded", "ReleaseInstructed", "GoodsReleased",
        "PledgeReleased", "PledgeLiquidated", "RoleGranted", "PriceReported",
    } <= events  # fmt: skip
    assert sum(p.logs for p in passes) == len(chain_logs(world))
    assert_replay_matches_contracts(world, store, story)

    assert world.deployment is not None
    state = ChainIndex(store, world.deployment).state()
    assert state.receipts[story.spare].owner is None  # delivered in full: burnt
    assert state.receipts[story.herd].owner == world.buyer.address  # seized by the buyer
    assert state.receipts[story.steel].owner == world.borrower.address
    assert "lender" in state.roles_of(world.lender.address)
    assert "auditor" in state.roles_of(world.auditor.address)
    assert "custodian" in state.roles_of(world.custodian.address)
    assert state.roles_of(world.outsider.address) == frozenset()


def test_a_restarted_indexer_resumes_from_its_cursor_without_doubles(
    world: World, store: Store
) -> None:
    first = world.issue_steel(lot="A")
    indexer(world, store).catch_up()
    before = len(indexed(store, world))

    second = world.issue_steel(lot="B")  # while the indexer is down
    again = indexer(world, store)  # a new process: only the store remembers
    passes = again.catch_up()

    assert passes[0].from_block > world.deployment.block_number  # type: ignore[union-attr]
    assert indexed(store, world) == chain_logs(world)
    assert len(indexed(store, world)) > before
    assert world.deployment is not None
    receipts = ChainIndex(store, world.deployment).state().receipts
    assert {first, second} <= set(receipts)
    assert again.run_once().logs == 0  # nothing new: nothing written


def test_only_blocks_past_the_confirmation_depth_are_indexed(world: World, store: Store) -> None:
    follower = indexer(world, store, confirmations=3)
    follower.catch_up()
    receipt = world.issue_steel(lot="C")  # one block
    follower.catch_up()
    assert world.deployment is not None
    assert receipt not in ChainIndex(store, world.deployment).state().receipts
    assert ChainIndex(store, world.deployment).indexed_to() == world.chain.head - 3

    for i in range(3):  # three more blocks bury it deep enough
        world.pledges.set_pledge_rate("steel.hrc", 6000 - i, lender=world.lender)
    follower.catch_up()
    assert receipt in ChainIndex(store, world.deployment).state().receipts


def test_blocks_that_disappear_are_unindexed_and_the_new_chain_followed(
    world: World, store: Store
) -> None:
    follower = indexer(world, store)
    kept = world.issue_steel(lot="K")
    follower.catch_up()
    fork_point = world.tester.take_snapshot()

    lost = world.issue_steel(lot="LOST")
    world.receipts.transfer(lost, world.borrower2.address, owner=world.borrower)
    follower.catch_up()
    assert world.deployment is not None
    assert lost in ChainIndex(store, world.deployment).state().receipts

    # a reorganization: the blocks after the fork point are replaced by other blocks
    world.tester.revert_to_snapshot(fork_point)
    replacement = world.issue_steel(lot="NEW", quantity=7_000)
    world.pledges.set_pledge_rate("steel.hrc", 5900, lender=world.lender)
    world.pledges.set_pledge_rate("steel.hrc", 5800, lender=world.lender)

    done = follower.run_once()
    assert done.rewound_to is not None and done.rewound_to < world.chain.head
    follower.catch_up()
    assert indexed(store, world) == chain_logs(world)
    receipts = ChainIndex(store, world.deployment).state().receipts
    assert receipts[kept].quantity == 100_000
    assert receipts[replacement].quantity == 7_000  # the same id as `lost` had
    assert receipts[replacement].owner == world.borrower.address  # the lost transfer is gone


def test_a_node_restored_from_an_older_backup_is_followed_back(world: World, store: Store) -> None:
    follower = indexer(world, store)
    backup = world.tester.take_snapshot()
    gone = world.issue_steel(lot="GONE")
    follower.catch_up()
    world.tester.revert_to_snapshot(backup)  # the node is behind our cursor now

    follower.catch_up()
    assert world.deployment is not None
    assert gone not in ChainIndex(store, world.deployment).state().receipts
    assert indexed(store, world) == chain_logs(world)


def test_the_index_rebuilds_from_the_chain_alone(
    world: World, store: Store, tmp_path: Path
) -> None:
    story = play_story(world)
    indexer(world, store, max_blocks_per_pass=7).catch_up()  # many small passes
    incremental = indexed(store, world)

    other = Store.open(f"sqlite:///{tmp_path}/rebuilt.sqlite")
    try:
        rebuilt = indexer(world, other)
        rebuilt.catch_up()
        rebuilt.rebuild()  # drop and read again
        assert indexed(other, world) == incremental
        assert_replay_matches_contracts(world, other, story)
    finally:
        other.close()
    assert ref  # the world's helpers are importable with the fixtures


def test_a_reorganization_during_a_read_is_not_indexed(world: World, store: Store) -> None:
    """The chain changes while a pass reads its logs (the reorg is real, on eth-tester;
    only its timing is arranged, by reading through a wrapper): the pass is dropped, and
    the next one indexes the new chain."""
    follower = indexer(world, store)
    follower.catch_up()
    fork_point = world.tester.take_snapshot()
    old = world.issue_steel(lot="OLD")
    world.pledges.set_pledge_rate("steel.hrc", 5900, lender=world.lender)
    read = follower.reader.read

    def read_then_reorganize(start: int, end: int) -> Any:
        logs = list(read(start, end))
        world.tester.revert_to_snapshot(fork_point)  # the node switches branch meanwhile
        world.issue_steel(lot="NEW", quantity=3_000)
        world.pledges.set_pledge_rate("steel.hrc", 5800, lender=world.lender)
        follower.reader.read = read  # type: ignore[method-assign]
        return iter(logs)

    follower.reader.read = read_then_reorganize  # type: ignore[method-assign]
    dropped = follower.run_once()
    assert dropped.to_block < dropped.from_block and dropped.logs == 0
    follower.catch_up()
    assert indexed(store, world) == chain_logs(world)
    assert world.deployment is not None
    receipts = ChainIndex(store, world.deployment).state().receipts
    assert receipts[old].quantity == 3_000  # the id went to the new branch's receipt
