"""Several oracle workers and several API processes against one database.

Three `fourflow oracle run` processes sharing one oracle key and two `fourflow serve`
processes share a store (PostgreSQL, and SQLite on one host) while four threads submit
to both APIs across four streams. Workers claim streams with row locks (SKIP LOCKED; a
file lock on SQLite) and take nonces under the signer's lock, so: no batch anchored
twice, no event skipped or doubled, no transaction refused for its nonce, and a full
audit that finds nothing.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_pg_database
from tests.worker_rig import Rig

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

STREAMS = ("acme.custody", "acme.cold", "zeta.custody", "zeta.yard")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with fresh_pg_database() if request.param == "postgres" else _no_database() as db_url:
        rig = Rig.start(tmp_path, db_url=db_url, submitters=2)
        try:
            yield rig
        finally:
            rig.close()


class _no_database:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def test_workers_and_apis_share_one_store_without_doubles(rig: Rig) -> None:
    workers = [rig.worker(f"worker-{i}", "--recheck", "1") for i in range(3)]
    apis = [rig.api(f"api-{i}")[1] for i in range(2)]
    accepted: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def submit(thread: int) -> None:
        with httpx.Client(timeout=60) as client:
            for round_ in range(12):
                stream = STREAMS[(thread + round_) % len(STREAMS)]
                body = rig.signed(4 + round_ % 5, stream=stream, submitter=thread % 2)
                answer = client.post(f"{apis[round_ % 2]}/v1/events", json=body)
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code} {answer.text}")
                    return
                with lock:
                    accepted[stream] += len(answer.json()["receipts"])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "submissions still running"
    assert not failures, failures
    total = sum(accepted.values())
    rig.wait_anchored(total, timeout=120).close()
    for worker in workers:
        assert worker.stop() == 0, worker.output()[-3000:]

    logs = "\n".join(w.output() for w in workers)
    m = re.search(r"nonce|already known|replacement|reverted", logs, re.I)
    assert not m, logs[max(0, m.start() - 1500) : m.end() + 800] if m else ""
    # each batch was sent by exactly one worker (adoptions are logged differently)
    sent = re.findall(r"anchored (\S+/\d+) \(\d+ gas\)", logs)
    assert len(sent) == len(set(sent))
    rig.assert_exactly_once(total)
    store_streams = {s: n for s, n in accepted.items()}
    for stream, count in store_streams.items():
        assert rig.runtime.registry.head_of(stream).total_leaves == count
