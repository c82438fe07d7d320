"""The custody chain of a history's summary, read from the entries' place column and the
custody index (migration 0004), must be the chain their JSON summaries give."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from sqlalchemy import text

from ledger.canonical import canonical_json
from ledger.flows import Flow, FlowEntryRow, place_of
from ledger.history import Histories, Subject
from ledger.indexer import ChainIndex
from ledger.models import utc_text
from ledger.runtime import DevKeys, Runtime
from tests.conftest import fresh_pg_database

PLACES = ["urn:epc:id:sgln:0614141.00001.0", "urn:epc:id:sgln:0614141.00002.0", "", None]
KINDS = ["shipping", "receiving", "storing"]


def _walk(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chain by hand: entries in (time, event id, writing) order, a step wherever the place
    (business location, else read point) or the kind changes; the newest 100."""
    chain: list[dict[str, Any]] = []
    last: tuple[Any, str] | None = None
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["time_ms"], rows[i]["event_id"], i))
    for row in (rows[i] for i in order):
        if row["flow"] != Flow.LOGISTICS.value:
            continue
        summary = json.loads(row["summary"])
        where = summary.get("biz_location") or summary.get("read_point")
        if last != (where, row["kind"]):
            chain.append(
                {
                    "time": utc_text(row["time_ms"]),
                    "event_id": row["event_id"],
                    "kind": row["kind"],
                    "location": where,
                }
            )
            last = (where, row["kind"])
    return chain[-100:]


def _entries(rng: random.Random, n: int, assets: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        summary: dict[str, Any] = {"seq": i}
        for name in ("biz_location", "read_point"):
            place = rng.choice(PLACES)
            if place is not None:
                summary[name] = place
        flow = Flow.LOGISTICS if rng.random() < 0.8 else Flow.INFORMATION
        time_ms = 1_790_000_000_000 + rng.randrange(n // 3 + 1) * 1000  # ties in time
        for asset in rng.sample(assets, rng.choice([1, 1, 2])):  # one event, two assets
            rows.append(
                {
                    "event_id": f"ev-{i:05d}",  # the same id for each asset of the event
                    "asset_id": asset,
                    "flow": flow.value,
                    "kind": rng.choice(KINDS[:2] if i % 7 else KINDS),  # may differ by asset
                    "time_ms": time_ms,
                    "summary": canonical_json(summary).decode(),
                    "place": place_of(flow, summary),  # as Flows.add_entries writes it
                }
            )
    return rows


def test_the_chain_from_the_index_is_the_chain_the_summaries_give(
    dev: tuple[Runtime, DevKeys],
) -> None:
    runtime, _ = dev
    histories = Histories(
        runtime.store,
        ChainIndex(runtime.store, runtime.deployment),
        runtime.bundles,
        runtime.deployment,
    )
    rng = random.Random(7)
    assets = ["urn:epc:id:sgtin:0614141.107346.1", "urn:epc:id:sgtin:0614141.107346.2"]
    rows = _entries(rng, 1_500, assets)
    rows.append({**rows[0], "asset_id": "urn:epc:id:sgtin:0614141.107346.other"})
    with runtime.store.session() as session:
        session.add_all(FlowEntryRow(**row) for row in rows)
        session.commit()
    for subject_assets in ((assets[0],), tuple(assets)):
        subject = Subject("pledge", "1", subject_assets, (), ())
        mine = [r for r in rows if r["asset_id"] in subject_assets]
        expected = _walk(mine)
        assert len(expected) == 100  # more steps than the summary keeps
        assert histories.summary(subject)["custody"]["chain"] == expected
    # few steps: one place and one kind make one step; nothing logistic makes none
    quiet = Subject("asset", "q", ("urn:epc:id:sgtin:0614141.107346.other",), (), ())
    assert histories.summary(quiet)["custody"]["chain"] == _walk([rows[-1]])
    assert len(_walk([rows[-1]])) == (1 if rows[-1]["flow"] == Flow.LOGISTICS.value else 0)
    nobody = Subject("asset", "n", ("urn:epc:id:sgtin:0614141.107346.none",), (), ())
    assert histories.summary(nobody)["custody"]["chain"] == []
    # one long run: a single step, its first entry (the oldest, ties by event id then id)
    still = "urn:epc:id:sgtin:0614141.107346.still"
    run = [
        {**rows[0], "asset_id": still, "event_id": f"run-{i:04d}", "time_ms": 1_790_000_000_000
         + (i // 2) * 1000, "flow": Flow.LOGISTICS.value, "kind": "storing",
         "summary": '{"biz_location":"urn:epc:id:sgln:0614141.00001.0"}',
         "place": "urn:epc:id:sgln:0614141.00001.0"}
        for i in range(300)
    ]  # fmt: skip
    with runtime.store.session() as session:
        session.add_all(FlowEntryRow(**row) for row in reversed(run))  # ids against time
        session.commit()
    chain = histories.summary(Subject("asset", still, (still,), (), ()))["custody"]["chain"]
    assert chain == _walk(run) and [step["event_id"] for step in chain] == ["run-0000"]


def test_pages_list_each_event_and_flow_once_however_many_rows_share_it(
    dev: tuple[Runtime, DevKeys],
) -> None:
    """A pledge's events may each cover hundreds of its assets, and one event may give two
    entries in one flow: a page's keys are read in rounds, duplicates dropped, so the
    rounds' edges must neither lose nor repeat an entry."""
    runtime, _ = dev
    histories = Histories(
        runtime.store,
        ChainIndex(runtime.store, runtime.deployment),
        runtime.bundles,
        runtime.deployment,
    )
    rng = random.Random(11)
    assets = [f"urn:epc:id:sgtin:0614141.107346.{i}" for i in range(300)]
    rows = []
    for i in range(60):
        time_ms = 1_790_000_000_000 + (i // 3) * 1000  # three events a second
        event_id = f"ev-{(i * 7919) % 97:02d}-{i:02d}"  # in a second, ids out of arrival order
        kinds = [
            (Flow.LOGISTICS, "shipping"),
            (Flow.COMMERCIAL, "ownership_transfer"),  # two entries of one flow
            (Flow.COMMERCIAL, "business_transaction"),
        ][: rng.choice([1, 3])]
        for flow, kind in kinds:
            for asset in rng.sample(assets, rng.choice([1, 2, 250])):
                rows.append(
                    FlowEntryRow(
                        event_id=event_id,
                        asset_id=asset,
                        flow=flow.value,
                        kind=kind,
                        time_ms=time_ms,
                        summary="{}",
                    )
                )
    with runtime.store.session() as session:
        session.add_all(rows)
        session.commit()
    expected = sorted({(r.time_ms, r.event_id, r.flow) for r in rows})
    subject = Subject("pledge", "1", tuple(assets), (), ())
    for limit in (1, 7, 50):
        seen, cursor = [], None
        while True:
            page = histories.page(subject, cursor=cursor, limit=limit, with_proofs=False)
            assert len(page.entries) <= limit
            seen += [(e.time_ms, e.event_id, e.flow) for e in page.entries]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected
    one = Subject("asset", assets[0], (assets[0],), (), ())
    mine = sorted({(r.time_ms, r.event_id, r.flow) for r in rows if r.asset_id == assets[0]})
    page = histories.page(one, limit=500, with_proofs=False)
    assert [(e.time_ms, e.event_id, e.flow) for e in page.entries] == mine
    assert all(e.assets == [assets[0]] for e in page.entries)


@pytest.mark.postgres
def test_an_instant_orders_by_bytes_on_a_server_whose_locale_does_not() -> None:
    """Under a locale collation "EV-…" sorts between "ev-…" ids, not before them; the
    timeline and the custody chain must still order an instant's entries byte by byte,
    as Python merges them and SQLite stores them (migration 0005)."""
    with fresh_pg_database(icu_locale="en-US") as url:
        runtime, _ = Runtime.dev(db_url=url)
        try:
            with runtime.store.session() as session:
                assert session.exec(text("SELECT 'a' < 'B'")).one()[0]  # the locale's order
            histories = Histories(
                runtime.store,
                ChainIndex(runtime.store, runtime.deployment),
                runtime.bundles,
                runtime.deployment,
            )
            asset = "urn:epc:id:sgtin:0614141.107346.9"
            rng = random.Random(5)
            rows = []
            for i in range(80):
                summary = {"biz_location": PLACES[i % 2]}
                rows.append(
                    {
                        "event_id": f"{rng.choice(['ev', 'EV', 'Ev', 'ev_'])}-{i:03d}",
                        "asset_id": asset,
                        "flow": Flow.LOGISTICS.value,
                        "kind": "shipping",
                        "time_ms": 1_790_000_000_000 + (i // 10) * 1000,  # ten to an instant
                        "summary": canonical_json(summary).decode(),
                        "place": place_of(Flow.LOGISTICS, summary),
                    }
                )
            with runtime.store.session() as session:
                session.add_all(FlowEntryRow(**row) for row in rows)
                session.commit()
            subject = Subject("asset", asset, (asset,), (), ())
            assert histories.summary(subject)["custody"]["chain"] == _walk(rows)
            page = histories.page(subject, limit=500, with_proofs=False)
            expected = sorted((r["time_ms"], r["event_id"]) for r in rows)
            assert [(e.time_ms, e.event_id) for e in page.entries] == expected
            assert expected != sorted(expected, key=lambda k: (k[0], k[1].lower()))
        finally:
            runtime.close()
