"""The store on SQLite and on the PostgreSQL server: the same tests on both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlmodel import Session, delete, select

from api.app import create_app
from api.siwe_client import sign_in
from ledger.collateral import identifier_key
from ledger.errors import Conflict, NotFound, StoreError
from ledger.flows import FlowEntryRow
from ledger.merkle import build_tree
from ledger.runtime import Runtime
from ledger.signing import domain_for, envelopes_for, sign_submission
from ledger.store import BatchNodeRow, EventAssetRow, Store
from ledger.verify import verify_bundle
from tests.conftest import make_events

FIRM = Account.from_key("0x" + "11" * 32)
DOMAIN = domain_for(chain_id=31337, contract="0x" + "22" * 20)


def envelopes(n: int, *, stream: str = "acme.custody", prefix: str | None = None) -> list[Any]:
    sub = sign_submission(
        make_events(FIRM.address, n, stream=stream, prefix=prefix),
        private_key=FIRM.key,
        domain=DOMAIN,
    )
    return envelopes_for(sub, domain=DOMAIN).envelopes


@pytest.fixture
def store(any_db_url: str) -> Iterator[Store]:
    s = Store.open(any_db_url)
    yield s
    s.close()


def test_accept_is_all_or_nothing_and_idempotent(store: Store) -> None:
    first = envelopes(3, prefix="a")
    receipts = store.accept(first)
    assert [r.duplicate for r in receipts] == [False] * 3
    assert [r.duplicate for r in store.accept(first)] == [True] * 3
    assert store.counts()["events"] == 3

    changed = first[1].model_copy(
        update={"event": first[1].event.model_copy(update={"payload": {"bizStep": "changed"}})}
    )
    with pytest.raises(Conflict) as conflict:
        store.accept([*envelopes(2, prefix="b"), changed])
    assert conflict.value.field == "events[2].event_id"
    assert store.counts()["events"] == 3  # the two new events of that batch were not stored


def test_given_digests_and_canonical_forms_are_the_ones_stored(store: Store) -> None:
    from ledger.canonical import event_digest

    sub = sign_submission(
        make_events(FIRM.address, 3, prefix="d"), private_key=FIRM.key, domain=DOMAIN
    )
    sealed = envelopes_for(sub, domain=DOMAIN)
    assert sealed.digests == [event_digest(e.model_dump(mode="json")) for e in sub.events]
    with pytest.raises(ValueError, match="2 digests for 3 envelopes"):
        store.accept(sealed.envelopes, digests=sealed.digests[:2])
    with pytest.raises(ValueError, match="1 canonical forms for 3 envelopes"):
        store.accept(sealed.envelopes, canonical=sealed.canonical[:1])
    assert store.counts()["events"] == 0
    receipts = store.accept(sealed.envelopes, digests=sealed.digests, canonical=sealed.canonical)
    assert [store.event(r.event_id).envelope.encode() for r in receipts] == sealed.canonical
    assert [r.digest for r in receipts] == [d.hex() for d in sealed.digests]
    assert [store.event(r.event_id).digest for r in receipts] == [d.hex() for d in sealed.digests]
    assert [r.duplicate for r in store.accept(sealed.envelopes)] == [True] * 3


def test_a_sealed_submission_is_stored_as_its_envelope_models_say(store: Store) -> None:
    """accept_events (what the intake calls: no envelope models) writes each row as the
    envelope model, hashed and written out again, says it should be."""
    from ledger.canonical import canonical_json, event_digest, leaf_hash

    sub = sign_submission(
        make_events(FIRM.address, 4, prefix="s"), private_key=FIRM.key, domain=DOMAIN
    )
    sealed = envelopes_for(sub, domain=DOMAIN)
    with pytest.raises(ValueError, match="3 digests and 4 canonical forms for 4 events"):
        store.accept_events(sealed.events, digests=sealed.digests[:3], canonical=sealed.canonical)
    assert store.counts()["events"] == 0
    store.accept_events(sealed.events, digests=sealed.digests, canonical=sealed.canonical)
    stored = store.events([e.event_id for e in sub.events])
    for env in sealed.envelopes:
        row, dumped = stored[env.event.event_id], env.model_dump(mode="json")
        assert (row.stream, row.kind, row.submitter, row.event_time_ms) == (
            env.event.stream, env.event.kind, FIRM.address, env.event.event_time_ms,
        )  # fmt: skip
        assert row.envelope.encode() == canonical_json(dumped)
        assert row.digest == event_digest(dumped["event"]).hex()
        assert row.leaf == leaf_hash(dumped).hex()
    with Session(store.engine) as session:
        assets = session.exec(select(EventAssetRow.asset_id, EventAssetRow.event_id)).all()
    assert sorted(assets) == sorted((e.asset_ids[0], e.event_id) for e in sub.events)


def test_seal_numbers_batches_gap_free_and_stamps_leaves(store: Store) -> None:
    env = envelopes(10)
    store.accept(env)
    store.accept(envelopes(2, stream="other.stream"))
    first = store.seal("acme.custody", max_events=4)
    second = store.seal("acme.custody", max_events=4)
    third = store.seal("acme.custody", max_events=4)
    assert first and second and third
    assert [b.seq for b in (first, second, third)] == [0, 1, 2]
    assert [b.leaf_count for b in (first, second, third)] == [4, 4, 2]
    assert store.seal("acme.custody", max_events=4) is None
    leaves = store.batch_leaves("acme.custody", 1)
    assert build_tree(leaves).root.hex() == second.root
    assert store.batch_event_ids("acme.custody", 1) == [e.event.event_id for e in env[4:8]]
    assert store.backlog() == {"other.stream": (2, store.backlog()["other.stream"][1])}
    assert store.event(env[5].event.event_id).leaf_index == 1


def test_batch_state_moves_forward(store: Store) -> None:
    store.accept(envelopes(3))
    batch = store.seal("acme.custody", max_events=100)
    assert batch is not None
    assert [b.seq for b in store.unfinished_batches()] == [0]
    store.mark_sent("acme.custody", 0, tx_hash=b"\x01" * 32)
    assert store.batch("acme.custody", 0).state == "sent"
    store.mark_anchored("acme.custody", 0, tx_hash=b"\x01" * 32, block_number=7, gas_used=90_000)
    row = store.batch("acme.custody", 0)
    assert (row.state, row.block_number, row.tx_hash) == ("anchored", 7, "01" * 32)
    assert store.unfinished_batches() == []
    assert store.counts()["batches_anchored"] == 1


def test_missing_things_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.event("nope")
    with pytest.raises(NotFound):
        store.batch("acme.custody", 0)
    with pytest.raises(NotFound):
        store.mark_sent("acme.custody", 0, tx_hash=b"\x00" * 32)


def test_envelopes_round_trip_through_the_store_byte_for_byte(store: Store) -> None:
    from ledger.canonical import canonical_json, leaf_hash

    env = envelopes(2)
    store.accept(env)
    row = store.event(env[0].event.event_id)
    assert row.envelope.encode() == canonical_json(env[0].model_dump(mode="json"))
    assert row.leaf == leaf_hash(env[0].model_dump(mode="json")).hex()


def test_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        Store.open("postgresql+psycopg2://nobody@127.0.0.1:9/none")


def test_the_whole_api_flow_on_each_database(any_db_url: str) -> None:
    runtime, keys = Runtime.dev(db_url=any_db_url)
    firm = keys.submitters[0]
    events = make_events(firm.address, 6)
    body = sign_submission(events, private_key=firm.key, domain=runtime.intake.domain)
    with TestClient(create_app(runtime)) as client:
        assert client.post("/v1/events", json=body.model_dump(mode="json")).status_code == 202
        runtime.anchorer(keys.oracle, max_batch=4).run_once(force=True)
        client.headers["Authorization"] = f"Bearer {sign_in(client, firm)}"
        for event in events:
            verify_bundle(
                client.get(f"/v1/events/{event.event_id}/proof").json(), chain=runtime.chain
            )
    runtime.close()


def test_events_commit_in_position_order_so_cursors_miss_none(store: Store) -> None:
    """A submission that took a position first but commits last must not be skipped by
    a cursor that read past the later ones (the catalog, the rules worker)."""
    import threading

    from ledger.history import Catalog

    catalog = Catalog(store)
    first_flushed, release_first = threading.Event(), threading.Event()
    slow = envelopes(1, prefix="slow")
    fast = envelopes(1, prefix="fast")

    def hold(_session: Any, _receipts: Any) -> None:  # inside the first transaction
        first_flushed.set()
        assert release_first.wait(30)

    first = threading.Thread(target=store.accept, args=(slow,), kwargs={"related": hold})
    first.start()
    assert first_flushed.wait(30)  # its row holds a position, uncommitted
    second = threading.Thread(target=store.accept, args=(fast,))
    second.start()
    second.join(timeout=1)  # it waits for the first to commit (SQLite: the write lock)
    catalog.catch_up()  # a reader passing by meanwhile
    release_first.set()
    first.join(timeout=30)
    second.join(timeout=30)
    catalog.catch_up()
    keyed = catalog.assets_with_keys(
        [identifier_key(e.event.asset_ids[0]).hex() for e in (*slow, *fast)]
    )
    assert keyed == [slow[0].event.asset_ids[0]]  # make_events: one asset for both
    with store.session() as session:
        cataloged = set(session.exec(select(FlowEntryRow.event_id)).all())
    assert {slow[0].event.event_id, fast[0].event.event_id} <= cataloged


def test_batch_proofs_from_stored_nodes_equal_the_full_trees(store: Store) -> None:
    store.accept(envelopes(150, prefix="n"))
    batch = store.seal("acme.custody", max_events=1_000)
    assert batch is not None and batch.leaf_count == 150
    tree = build_tree(store.batch_leaves("acme.custody", batch.seq))
    with store._session() as session:
        stored = session.exec(select(BatchNodeRow.height, BatchNodeRow.idx)).all()
    assert sorted(stored) == [(6, 0), (6, 1), (6, 2), (7, 0), (7, 1)]  # 150 = 64 + 64 + 22
    for index in range(150):
        assert store.batch_proof("acme.custody", batch.seq, index, 150) == tree.proof(index)


def test_a_batch_without_stored_nodes_is_proved_from_all_its_leaves(store: Store) -> None:
    # batches sealed before schema 0003 have no nodes
    store.accept(envelopes(100, prefix="old"))
    batch = store.seal("acme.custody", max_events=1_000)
    assert batch is not None
    with store._session() as session:
        session.exec(delete(BatchNodeRow))  # type: ignore[call-overload]
        session.commit()
    tree = build_tree(store.batch_leaves("acme.custody", batch.seq))
    assert store.batch_proofs("acme.custody", batch.seq, [99], 100) is None  # no nodes
    assert store.batch_proof("acme.custody", batch.seq, 99, 100) == tree.proof(99)
    with pytest.raises(NotFound, match=r"no leaves 128\.\.191"):
        store.batch_proof("acme.custody", batch.seq, 130, 200)


def test_batch_proofs_of_several_chunks_at_once(store: Store) -> None:
    store.accept(envelopes(300, prefix="m"))
    batch = store.seal("acme.custody", max_events=1_000)
    assert batch is not None
    tree = build_tree(store.batch_leaves("acme.custody", batch.seq))
    indexes = [0, 1, 63, 64, 200, 299]  # four chunks, two leaves sharing one
    assert store.batch_proofs("acme.custody", batch.seq, indexes, 300) == {
        i: tree.proof(i) for i in indexes
    }


def test_proofs_of_a_whole_page_in_a_large_batch(store: Store) -> None:
    # 500 leaves spread over a batch of 100,000 ask for about 1,500 stored nodes and 500
    # chunks: more terms than SQLite takes in one expression (it refused at ~1,000)
    import os
    import random

    from tests.conftest import store_bare_leaves

    n = 100_000
    leaves = [os.urandom(32) for _ in range(n)]
    store_bare_leaves(store, "big.stream", leaves)
    batch = store.seal("big.stream", max_events=n)
    assert batch is not None
    indexes = random.Random(7).sample(range(n), 500)
    proofs = store.batch_proofs("big.stream", batch.seq, indexes, n)
    assert proofs is not None and set(proofs) == set(indexes)
    tree = build_tree(leaves)
    assert all(proofs[i] == tree.proof(i) for i in indexes)
