"""Kill -9 the anchoring worker at many points of its state machine, restart it, and end
with every event anchored exactly once and a full audit that finds nothing.

Two schedules: a deterministic one (every crash point of ledger/faults.py, at the first
and at a later batch, the kill coming from the worker's own crash point: the only way to
stop it at an exact step), and a randomized one (SIGKILL from outside at seeded random
moments while submissions keep coming). The real `fourflow oracle run` and `fourflow
serve` processes run against anvil and a SQLite file.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import httpx
import pytest

from ledger.faults import CRASH_POINTS
from ledger.store import Store
from tests.worker_rig import Rig

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def test_a_worker_killed_at_each_step_of_each_batch_converges(rig: Rig) -> None:
    """(point, k): die at ``point`` the k-th time it is reached; every burst of events
    leaves the store and the chain in a different half-done state for the next run."""
    schedule = [(point, 1) for point in CRASH_POINTS]
    schedule += [(point, 3) for point in CRASH_POINTS if point != "after_claim"]  # once a pass
    events = 0
    for point, nth in schedule:
        rig.submit(11)  # three batches of at most 4
        events += 11
        died = rig.worker_once("--max-batch", "4", crash_at=f"{point}#{nth}")
        assert died.returncode == -signal.SIGKILL, (point, nth, died.stdout, died.stderr)
    finished = rig.worker_once("--max-batch", "4")
    assert finished.returncode == 0, finished.stderr
    rig.assert_exactly_once(events)


def test_states_left_by_a_kill_are_the_ones_expected(rig: Rig) -> None:
    store = Store.open(rig.db_url)
    rig.submit(10)
    assert rig.worker_once("--max-batch", "4", crash_at="after_seal").returncode == -9
    assert store.counts()["batches_sealed"] == 1
    assert rig.runtime.registry.head_of("acme.custody").next_seq == 0
    assert rig.worker_once("--max-batch", "4", crash_at="after_send").returncode == -9
    # the transaction went out, its hash was never recorded: the chain is ahead
    assert store.counts()["batches_anchored"] == 0
    assert rig.runtime.registry.head_of("acme.custody").next_seq == 1
    assert rig.worker_once("--max-batch", "4", crash_at="after_record_send").returncode == -9
    # batch 0 adopted from the chain, batch 1 sent and recorded, not yet confirmed
    assert store.counts()["batches_anchored"] == 1 and store.counts()["batches_sent"] == 1
    store.close()
    assert rig.worker_once("--max-batch", "4").returncode == 0
    rig.assert_exactly_once(10)


def test_a_worker_killed_at_random_moments_under_load_loses_nothing(rig: Rig) -> None:
    _, api = rig.api()
    rng = random.Random(20261127)  # seeded: the same schedule on every run
    accepted = 0
    stop = threading.Event()
    failures: list[str] = []

    sizes = random.Random(7)  # the submitter's own generator: the kill schedule stays fixed

    def submit() -> None:
        nonlocal accepted
        with httpx.Client(base_url=api, timeout=30) as client:
            while not stop.is_set():
                answer = client.post("/v1/events", json=rig.signed(sizes.randint(1, 7)))
                if answer.status_code != 202:
                    failures.append(answer.text)
                    return
                accepted += len(answer.json()["receipts"])
                time.sleep(0.02)

    submitter = threading.Thread(target=submit)
    submitter.start()
    try:
        for round_ in range(5):
            worker = rig.worker(f"worker-{round_}")
            time.sleep(rng.uniform(0.3, 2.0))  # startup is ~1 s: some die before anchoring
            assert worker.kill() == -signal.SIGKILL
    finally:
        stop.set()
        submitter.join(timeout=60)
    assert not failures, failures
    final = rig.worker("worker-final")
    rig.wait_anchored(accepted).close()
    assert final.stop() == 0  # SIGTERM: it finishes its step and exits cleanly
    rig.assert_exactly_once(accepted)
