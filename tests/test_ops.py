"""Operations: /metrics and /v1/health follow events through sealing and anchoring,
count failures and show the worker processes' heartbeats; JSON logs; a real `fourflow
serve` and `fourflow oracle run` stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from api.siwe_client import sign_in
from ledger import ops
from ledger.chain import Chain
from ledger.errors import InvalidInput
from ledger.indexer import Indexer
from ledger.logs import configure_logging, log_context
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import Store
from tests.conftest import AnvilNode, ServeProcess, fourflow_bin, make_events

STREAM = "acme.custody"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def client(dev: tuple[Runtime, DevKeys]) -> Iterator[TestClient]:
    runtime, keys = dev
    with TestClient(create_app(runtime, settings=Settings())) as c:
        c.headers["Authorization"] = f"Bearer {sign_in(c, keys.submitters[0])}"
        yield c


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def submit(dev: tuple[Runtime, DevKeys], client: TestClient, n: int) -> None:
    runtime, keys = dev
    firm = keys.submitters[0]
    body = sign_submission(
        make_events(firm.address, n), private_key=firm.key, domain=runtime.intake.domain
    )
    assert client.post("/v1/events", json=body.model_dump(mode="json")).status_code == 202


def scrape(client: httpx.Client) -> Samples:  # a TestClient is one
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# --- /metrics and /v1/health --------------------------------------------------------------


def test_metrics_follow_events_through_sealing_and_anchoring(
    client: TestClient, dev: tuple[Runtime, DevKeys]
) -> None:
    runtime, keys = dev
    before = scrape(client)
    assert value(before, "fourflow_store_up") == 1 and value(before, "fourflow_chain_up") == 1
    assert value(before, "fourflow_backlog_events", stream=STREAM) is None

    submit(dev, client, 3)
    pending = scrape(client)
    assert value(pending, "fourflow_backlog_events", stream=STREAM) == 3
    oldest = value(pending, "fourflow_backlog_oldest_seconds", stream=STREAM)
    assert oldest is not None and 0 <= oldest < 60
    accepted = {"method": "POST", "route": "/v1/events", "status": "2xx"}
    assert value(pending, "fourflow_http_requests_total", **accepted) == 1
    timed = {"method": "POST", "route": "/v1/events"}
    assert value(pending, "fourflow_http_request_duration_seconds_count", **timed) == 1

    assert runtime.store.seal(STREAM, max_events=100) is not None
    sealed = scrape(client)
    assert value(sealed, "fourflow_backlog_events", stream=STREAM) == 0
    assert value(sealed, "fourflow_last_sealed_seq", stream=STREAM) == 0
    assert value(sealed, "fourflow_last_anchored_seq", stream=STREAM) is None
    assert value(sealed, "fourflow_batches", stream=STREAM, state="sealed") == 1
    assert value(sealed, "fourflow_chain_next_seq", stream=STREAM) == 0

    runtime.anchorer(keys.oracle).run_once()  # nothing else due: anchors the sealed batch
    anchored = scrape(client)
    assert value(anchored, "fourflow_batches", stream=STREAM, state="sealed") == 0
    assert value(anchored, "fourflow_batches", stream=STREAM, state="anchored") == 1
    assert value(anchored, "fourflow_last_anchored_seq", stream=STREAM) == 0
    assert value(anchored, "fourflow_chain_next_seq", stream=STREAM) == 1
    assert value(anchored, "fourflow_chain_head") == runtime.chain.head
    assert value(anchored, "fourflow_anchoring_latency_window_batches") == 1
    for span in ("received_to_anchored", "sealed_to_anchored"):
        p99 = value(anchored, "fourflow_anchoring_latency_seconds", span=span, quantile="0.99")
        assert p99 is not None and 0 <= p99 < 60
    waited = value(
        anchored, "fourflow_anchoring_latency_seconds", span="received_to_anchored", quantile="0.5"
    )
    took = value(
        anchored, "fourflow_anchoring_latency_seconds", span="sealed_to_anchored", quantile="0.5"
    )
    assert waited is not None and took is not None and waited >= took
    scrapes = {"method": "GET", "route": "/metrics", "status": "2xx"}
    assert value(anchored, "fourflow_http_requests_total", **scrapes) == 3  # the ones before
    assert value(anchored, "fourflow_http_requests_in_flight") == 1  # this scrape


def test_5xx_and_store_failures_are_counted(
    client: TestClient, dev: tuple[Runtime, DevKeys]
) -> None:
    """A real fault: the batches table disappears under the running app."""
    runtime, keys = dev
    submit(dev, client, 2)
    runtime.anchorer(keys.oracle).run_once(force=True)
    with runtime.store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE batches RENAME TO batches_away"))
    try:
        answer = client.get(f"/v1/batches/{STREAM}/0")
        assert answer.status_code == 503 and answer.json()["error"]["code"].startswith("store_")
        health = client.get("/v1/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["store"]["ok"] is False and health.json()["chain"]["ok"] is True
        assert health.json()["anchoring"] is None and health.json()["workers"] == []
        broken = scrape(client)
    finally:
        with runtime.store.engine.begin() as connection:
            connection.execute(text("ALTER TABLE batches_away RENAME TO batches"))
    route = "/v1/batches/{stream}/{seq}"
    assert value(broken, "fourflow_http_errors_total", method="GET", route=route) == 1
    assert (
        value(broken, "fourflow_http_requests_total", method="GET", route=route, status="5xx") == 1
    )
    assert value(broken, "fourflow_http_errors_total", method="GET", route="/v1/health") == 1
    assert value(broken, "fourflow_store_errors_total", during="request") == 1
    assert value(broken, "fourflow_store_errors_total", during="health") == 1
    assert value(broken, "fourflow_store_errors_total", during="scrape") == 1
    assert value(broken, "fourflow_chain_errors_total", during="request") == 0
    assert value(broken, "fourflow_store_up") == 0 and value(broken, "fourflow_chain_up") == 1
    assert value(broken, "fourflow_backlog_events", stream=STREAM) is None
    assert value(scrape(client), "fourflow_store_up") == 1  # back


def test_health_reports_anchoring_the_indexer_and_the_workers(
    client: TestClient, dev: tuple[Runtime, DevKeys]
) -> None:
    runtime, keys = dev
    submit(dev, client, 4)
    runtime.anchorer(keys.oracle).run_once(force=True)
    submit(dev, client, 1)
    started = int(time.time() * 1000) - 5_000
    ops.heartbeat(runtime.store, "anchor@test", kind="anchor", started_at_ms=started)
    ops.heartbeat(
        runtime.store, "anchor@test", kind="anchor", started_at_ms=started, error="node down"
    )
    health = client.get("/v1/health").json()
    assert health["status"] == "ok"
    assert health["backlog"][STREAM]["pending"] == 1
    assert health["streams"][STREAM] == {
        "last_sealed_seq": 0,
        "last_anchored_seq": 0,
        "batches": {"sealed": 0, "sent": 0, "anchored": 1},
    }
    anchoring = health["anchoring"]
    assert anchoring["window_batches"] == 1
    assert (
        0 <= anchoring["sealed_to_anchored"]["p50_s"] <= anchoring["received_to_anchored"]["p99_s"]
    )
    assert health["indexer"] == {"indexed_to": None, "head": runtime.chain.head, "lag_blocks": None}
    [worker] = health["workers"]
    assert worker["worker_id"] == "anchor@test" and worker["kind"] == "anchor"
    assert worker["pid"] == os.getpid() and worker["started_at_ms"] == started
    assert (worker["passes"], worker["errors"], worker["last_error"]) == (2, 1, "node down")
    assert 0 <= worker["heartbeat_age_s"] < 60 and 0 <= worker["last_error_age_s"] < 60

    Indexer(runtime.store, runtime.chain, runtime.deployment).catch_up()
    health = client.get("/v1/health").json()
    head = runtime.chain.head
    assert health["indexer"] == {"indexed_to": head, "head": head, "lag_blocks": 0}
    samples = scrape(client)
    assert value(samples, "fourflow_indexer_lag_blocks") == 0
    assert value(samples, "fourflow_indexer_block") == head
    who = {"worker": "anchor@test", "kind": "anchor"}
    assert value(samples, "fourflow_worker_passes_total", **who) == 2
    assert value(samples, "fourflow_worker_errors_total", **who) == 1
    assert value(samples, "fourflow_worker_start_time_seconds", **who) == started / 1000
    age = value(samples, "fourflow_worker_heartbeat_age_seconds", **who)
    assert age is not None and 0 <= age < 60
    assert value(samples, "fourflow_worker_last_error_time_seconds", **who) is not None
    info = {**who, "host": worker["host"], "pid": str(os.getpid())}
    assert value(samples, "fourflow_worker_info", **info) == 1


def test_metrics_token_when_set(dev: tuple[Runtime, DevKeys]) -> None:
    runtime, _ = dev
    app = create_app(runtime, settings=Settings(metrics_token="a-long-metrics-token"))
    with TestClient(app) as c:
        refused = c.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = c.get("/metrics", headers={"Authorization": "Bearer another-token"})
        assert wrong.status_code == 401
        fine = c.get("/metrics", headers={"Authorization": "Bearer a-long-metrics-token"})
        assert fine.status_code == 200 and "fourflow_store_up 1.0" in fine.text


# --- worker heartbeats ---------------------------------------------------------------------


def test_heartbeats_upsert_one_row_per_worker(any_db_url: str) -> None:
    store = Store.open(any_db_url)
    try:
        run = 1_000
        for error in (None, "rpc timeout", None):
            ops.heartbeat(store, "anchor@a", kind="anchor", started_at_ms=run, error=error)
        ops.heartbeat(store, "rules@a", kind="rules", started_at_ms=run)
        anchor, rules = ops.workers(store)
        assert (anchor.worker_id, anchor.passes, anchor.errors) == ("anchor@a", 3, 1)
        assert anchor.last_error == "rpc timeout" and anchor.last_error_at_ms is not None
        assert (rules.worker_id, rules.passes, rules.errors) == ("rules@a", 1, 0)
        assert rules.last_error is None

        # a restart (a new start time) counts again from 1; the last error stays
        ops.heartbeat(store, "anchor@a", kind="anchor", started_at_ms=run + 1, now_ms=5_000)
        anchor = ops.workers(store)[0]
        assert (anchor.passes, anchor.errors, anchor.started_at_ms) == (1, 0, run + 1)
        assert anchor.heartbeat_at_ms == 5_000 and anchor.last_error == "rpc timeout"
        ops.heartbeat(store, "anchor@a", kind="anchor", started_at_ms=run + 1, error="x" * 5000)
        anchor = ops.workers(store)[0]
        assert anchor.errors == 1 and anchor.last_error == "x" * ops.MAX_ERROR_CHARS

        # concurrent heartbeats of one worker: every one counted, no duplicate-key error
        def beat() -> None:
            for _ in range(15):
                ops.heartbeat(store, "facts@a", kind="facts", started_at_ms=run)

        threads = [threading.Thread(target=beat) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        facts = {w.worker_id: w for w in ops.workers(store)}["facts@a"]
        assert facts.passes == 45

        # a worker silent for longer than a day is forgotten at anyone's next heartbeat
        old = int(time.time() * 1000) - ops.FORGET_AFTER_MS - 1
        ops.heartbeat(store, "anchor@gone:1", kind="anchor", started_at_ms=run, now_ms=old)
        assert "anchor@gone:1" in {w.worker_id for w in ops.workers(store)}
        ops.heartbeat(store, "rules@a", kind="rules", started_at_ms=run)
        assert "anchor@gone:1" not in {w.worker_id for w in ops.workers(store)}
    finally:
        store.close()


def test_anchoring_latency_quantiles_are_nearest_rank() -> None:
    samples = tuple(
        ops.LatencySample(
            STREAM, seq, 0, received_to_anchored_s=float(seq), sealed_to_anchored_s=1.0
        )
        for seq in range(1, 101)
    )
    latency = ops.AnchoringLatency(samples)
    assert latency.quantile(0.5, "received_to_anchored") == 50.0
    assert latency.quantile(0.99, "received_to_anchored") == 99.0
    assert latency.quantile(1.0, "received_to_anchored") == 100.0
    assert latency.values("sealed_to_anchored") == [1.0] * 100
    assert ops.AnchoringLatency(()).quantile(0.5, "sealed_to_anchored") is None


# --- logs ----------------------------------------------------------------------------------


def test_json_log_lines_carry_extra_and_context_fields(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "DEBUG")
    log = logging.getLogger("fourflow.anchoring")
    with log_context(request_id="req-1"):
        log.info("anchored %s/%d", STREAM, 7, extra={"stream": STREAM, "seq": 7, "tx": b"\xab"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("anchoring loop failed")
    log.debug("quiet")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    first, failed, quiet = lines
    assert first["msg"] == "anchored acme.custody/7" and first["level"] == "INFO"
    assert first["logger"] == "fourflow.anchoring"
    fields = {key: first[key] for key in ("stream", "seq", "tx", "request_id")}
    assert fields == {"stream": STREAM, "seq": 7, "tx": "0xab", "request_id": "req-1"}
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert time.time() - _epoch(first["ts"]) < 60
    assert failed["level"] == "ERROR" and "request_id" not in failed
    assert "ValueError: boom" in failed["exc"] and "Traceback" in failed["exc"]
    assert quiet["msg"] == "quiet"


def test_text_logs_and_bad_settings(
    restore_logging: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOURFLOW_LOG_FORMAT", "text")
    monkeypatch.setenv("FOURFLOW_LOG_LEVEL", "warning")
    configure_logging()
    log = logging.getLogger("fourflow.oracle")
    log.info("hidden")
    log.warning("stream %s behind", STREAM, extra={"stream": STREAM, "why": "node down"})
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(
        ' WARNING fourflow.oracle stream acme.custody behind stream=acme.custody why="node down"'
    )
    with pytest.raises(InvalidInput, match="FOURFLOW_LOG_FORMAT: 'xml'"):
        configure_logging("xml")
    with pytest.raises(InvalidInput, match="FOURFLOW_LOG_LEVEL: 'LOUD'"):
        configure_logging("json", "LOUD")


def test_access_log_has_the_request_id_which_the_answer_echoes(
    client: TestClient, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "DEBUG")
    given = client.get("/v1/health", headers={"X-Request-ID": "probe-42"})
    assert given.headers["x-request-id"] == "probe-42"
    made = client.get("/v1/events/no-such-event", headers={"X-Request-ID": "bad id\x7f"})
    assert made.status_code == 403 and len(made.headers["x-request-id"]) == 32
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    access = [line for line in lines if line["logger"] == "fourflow.access"]
    health, hidden = access
    assert health["level"] == "DEBUG"  # health checks and scrapes are quiet
    assert health["method"] == "GET" and health["path"] == health["route"] == "/v1/health"
    assert health["status"] == 200 and health["request_id"] == "probe-42"
    assert health["duration_ms"] > 0
    assert hidden["level"] == "INFO" and hidden["status"] == 403
    assert hidden["route"] == "/v1/events/{event_id:path}"
    assert hidden["request_id"] == made.headers["x-request-id"]


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# --- shutdown --------------------------------------------------------------------------------


def _deployment(anvil: AnvilNode, tmp_path: Path) -> tuple[Runtime, DevKeys, dict[str, str]]:
    db_url = f"sqlite:///{tmp_path}/store.sqlite"
    runtime, keys = Runtime.dev(db_url=db_url, chain=Chain.connect(anvil.url))
    manifest = tmp_path / "deployment.json"
    runtime.deployment.write(manifest)
    env = os.environ | {
        "FOURFLOW_DB_URL": db_url,
        "FOURFLOW_RPC_URL": anvil.url,
        "FOURFLOW_MANIFEST": str(manifest),
        "FOURFLOW_ORACLE_KEY": keys.oracle.key.hex(),
        "FOURFLOW_LOG_FORMAT": "json",
    }
    return runtime, keys, env


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.anvil
def test_serve_drains_on_sigterm(anvil: AnvilNode, tmp_path: Path) -> None:
    """SIGTERM with an alarm stream open and an upload half sent: the stream ends with
    `event: end`, the upload is answered and stored, the anchorer and indexer threads
    stop, and the process exits 0 within seconds; every log line is JSON."""
    runtime, keys, env = _deployment(anvil, tmp_path)
    stderr = tmp_path / "serve.log"
    server = ServeProcess.start(env, log=stderr, stderr_only=True)
    base = server.url
    try:
        firm = keys.submitters[0]
        with httpx.Client(base_url=base, timeout=10) as http:
            token = sign_in(http, firm)

        stream_lines: list[str] = []
        stream_open = threading.Event()

        def listen() -> None:
            with (
                httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=None)) as http,
                http.stream(
                    "GET",
                    "/v1/alarms/stream",
                    params={"timeout": "600"},
                    headers={"Authorization": f"Bearer {token}"},
                ) as answer,
            ):
                for line in answer.iter_lines():
                    stream_lines.append(line)
                    stream_open.set()

        events = make_events(firm.address, 20, prefix="drain")
        body = json.dumps(
            sign_submission(events, private_key=firm.key, domain=runtime.intake.domain).model_dump(
                mode="json"
            )
        ).encode()
        upload_started = threading.Event()
        answers: list[httpx.Response] = []

        def slow_body() -> Iterator[bytes]:
            pieces = [
                body[i : i + len(body) // 6 + 1] for i in range(0, len(body), len(body) // 6 + 1)
            ]
            for n, piece in enumerate(pieces):
                yield piece
                if n == 0:
                    upload_started.set()
                time.sleep(0.25)

        def upload() -> None:
            answers.append(
                httpx.post(
                    f"{base}/v1/events",
                    content=slow_body(),
                    headers={"Content-Type": "application/json", "X-Request-ID": "slow-upload"},
                    timeout=30,
                )
            )

        listener = threading.Thread(target=listen)
        uploader = threading.Thread(target=upload)
        listener.start()
        assert stream_open.wait(10), "the alarm stream did not open"
        uploader.start()
        assert upload_started.wait(10)
        time.sleep(0.1)
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=15)  # under the 20 s the requests' grace allows
        listener.join(5)
        uploader.join(5)
    finally:
        server.stop(timeout=0)  # it had its SIGTERM: whatever is left is killed
    log = _json_lines(stderr)  # every line is JSON
    assert code == 0, stderr.read_text()
    # the stream ended itself ("event: end"), rather than being cut off when the
    # requests' grace ran out, and the process did not wait for that grace
    assert not listener.is_alive() and "event: end" in stream_lines
    [answer] = answers
    assert answer.status_code == 202 and answer.json()["accepted"] == 20
    reopened = Store.open(str(runtime.store.engine.url))
    assert reopened.stored_ids([e.event_id for e in events]) == {e.event_id for e in events}
    reopened.close()
    messages = [line["msg"] for line in log]
    assert "fourflow-anchorer stopped" in messages and "fourflow-indexer stopped" in messages
    assert any(line["logger"].startswith("uvicorn") for line in log)
    [access] = [line for line in log if line.get("path") == "/v1/events"]
    assert access["logger"] == "fourflow.access" and access["method"] == "POST"
    assert access["status"] == 202 and access["request_id"] == "slow-upload"
    runtime.close()


@pytest.mark.anvil
def test_serve_freezes_its_start_up_heap(anvil: AnvilNode, tmp_path: Path) -> None:
    """`fourflow serve` moves the objects it made at start-up out of the cycle
    collector's reach before it takes requests, and /metrics shows that count beside
    the collector's own by generation."""
    runtime, _, env = _deployment(anvil, tmp_path)
    with (
        ServeProcess.start(env, log=tmp_path / "serve.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        served = scrape(http)
    frozen = value(served, "fourflow_gc_frozen_objects")
    assert frozen is not None and frozen > 50_000  # modules, ABIs, the app: ~250,000
    for generation in "012":
        assert value(served, "python_gc_collections_total", generation=generation) is not None
    runtime.close()


@pytest.mark.anvil
def test_oracle_run_stops_on_sigterm_after_its_step(anvil: AnvilNode, tmp_path: Path) -> None:
    runtime, _, env = _deployment(anvil, tmp_path)
    stderr = tmp_path / "oracle.log"
    with stderr.open("wb") as sink:
        worker = subprocess.Popen(
            [fourflow_bin(), "oracle", "run", "--poll", "0.2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 60
        while not any("anchoring to" in line["msg"] for line in _json_lines(stderr)):
            assert time.monotonic() < deadline and worker.poll() is None, stderr.read_text()
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert code == 0, stderr.read_text()
    stopping = [line for line in _json_lines(stderr) if line["msg"].startswith("signal 15")]
    assert stopping and stopping[0]["logger"] == "fourflow.oracle"
    runtime.close()
