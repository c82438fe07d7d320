"""What the API measures of itself, and what it reads of the ledger, for ``/metrics``
(Prometheus) and ``/v1/health``; and the access log.

Each app has its own registry (no process-global state). Two kinds of figures:

- counted in this process as requests pass through ``RequestMetrics``: requests by route
  template and status class, their durations, 5xx answers, requests in flight, and the
  store and chain failures seen while answering;
- read from the store and the chain at scrape time by ``LedgerCollector``: backlog per
  stream, last sealed and anchored batch, batches by state, anchoring latency, the chain
  head, the indexer's lag, and the heartbeats of the worker processes
  (``ledger.ops``), so a worker's errors show up here though it runs elsewhere.
"""

from __future__ import annotations

import gc
import inspect
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from fastapi import FastAPI, Request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger import ops
from ledger.errors import ChainError, LedgerError, StoreError
from ledger.logs import log_context
from ledger.runtime import Runtime

__all__ = ["CONTENT_TYPE", "LedgerCollector", "LedgerFigures", "Monitoring", "RequestMetrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_WINDOW: Final = 100  # anchored batches the latency figures cover
QUANTILES: Final = (0.5, 0.99)
SPANS: Final[tuple[ops.Span, ...]] = ("received_to_anchored", "sealed_to_anchored")
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# health checks and scrapes come every few seconds: their successes log at DEBUG
_QUIET_PATHS: Final = frozenset({"/metrics", "/v1/health"})

access_log = logging.getLogger("fourflow.access")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class LedgerFigures:
    """One consistent read of ``ledger.ops`` for a health answer or a scrape."""

    streams: list[ops.StreamFigures]
    latency: ops.AnchoringLatency
    indexer: ops.IndexerPosition
    workers: list[ops.WorkerStatusRow]
    now_ms: int

    @classmethod
    def read(cls, runtime: Runtime, *, head: int | None) -> LedgerFigures:
        """Raises StoreError when the database fails."""
        store = runtime.store
        return cls(
            streams=ops.streams(store),
            latency=ops.anchoring_latency(store, last=LATENCY_WINDOW),
            indexer=ops.indexer_position(store, head=head),
            workers=ops.workers(store),
            now_ms=_now_ms(),
        )


class Monitoring:
    """One app's Prometheus registry and its in-process counters."""

    def __init__(self, runtime: Runtime) -> None:
        disable_created_metrics()  # no *_created series: Prometheus needs none of them
        self.registry = CollectorRegistry()
        registry = self.registry
        # first: a scrape reads the ledger before it writes out the failure counters,
        # so a failure to read shows in the same scrape
        registry.register(LedgerCollector(runtime, self))
        self.requests = Counter(
            "fourflow_http_requests",
            "HTTP requests answered, by method, route template and status class (2xx …).",
            ["method", "route", "status"],
            registry=registry,
        )
        self.durations = Histogram(
            "fourflow_http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.http_errors = Counter(
            "fourflow_http_errors",
            "Requests answered with a 5xx status, by method and route template.",
            ["method", "route"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "fourflow_http_requests_in_flight",
            "Requests being answered now (alarm streams included).",
            registry=registry,
        )
        self.store_errors = Counter(
            "fourflow_store_errors",
            "Database failures this process saw, by what it was doing (request, health, scrape).",
            ["during"],
            registry=registry,
        )
        self.chain_errors = Counter(
            "fourflow_chain_errors",
            "Chain node failures this process saw, by what it was doing (request, health, scrape).",
            ["during"],
            registry=registry,
        )
        for counter in (self.store_errors, self.chain_errors):
            for during in ("request", "health", "scrape"):
                counter.labels(during)  # present at 0 before the first failure
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)  # collections and objects collected, by generation
        Gauge(
            "fourflow_gc_frozen_objects",
            "Objects the cycle collector no longer walks: the process's start-up heap, "
            "frozen by `fourflow serve` before it takes requests (0 when not frozen).",
            registry=registry,
        ).set_function(gc.get_freeze_count)

    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of everything registered."""
        return generate_latest(self.registry)

    def failed(self, exc: LedgerError, *, during: str) -> None:
        """Count a store or chain failure (other errors are the caller's, not ours)."""
        if isinstance(exc, StoreError):
            self.store_errors.labels(during).inc()
        elif isinstance(exc, ChainError):
            self.chain_errors.labels(during).inc()

    def count_ledger_errors(self, app: FastAPI) -> None:
        """Wrap the app's LedgerError handler (api.errors) so store and chain failures
        that become 503s are counted; call after ``errors.install``."""
        answer = app.exception_handlers[LedgerError]

        async def counted(request: Request, exc: Exception) -> Response:
            if isinstance(exc, LedgerError):
                self.failed(exc, during="request")
            response = answer(request, exc)
            if inspect.isawaitable(response):
                response = await response
            return response

        app.add_exception_handler(LedgerError, counted)


class LedgerCollector(Collector):
    """Reads the ledger's figures at each scrape. A store or chain that fails leaves its
    figures out, sets ``fourflow_store_up`` or ``fourflow_chain_up`` to 0 and counts the
    failure; the scrape itself still succeeds."""

    def __init__(self, runtime: Runtime, monitoring: Monitoring) -> None:
        self.runtime = runtime
        self.monitoring = monitoring

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        head: int | None = None
        try:
            head = runtime.chain.head
        except ChainError as exc:
            self.monitoring.failed(exc, during="scrape")
        figures: LedgerFigures | None = None
        try:
            figures = LedgerFigures.read(runtime, head=head)
        except StoreError as exc:
            self.monitoring.failed(exc, during="scrape")
        next_seqs: dict[str, int] = {}
        if head is not None and figures is not None:
            try:
                for s in figures.streams:
                    if s.last_sealed_seq is not None:
                        next_seqs[s.stream] = runtime.registry.head_of(s.stream).next_seq
            except ChainError as exc:
                self.monitoring.failed(exc, during="scrape")
                head, next_seqs = None, {}
        yield _gauge(
            "fourflow_store_up",
            "1 if the store answered this scrape, else 0.",
            int(figures is not None),
        )
        yield _gauge(
            "fourflow_chain_up",
            "1 if the chain node answered this scrape, else 0.",
            int(head is not None),
        )
        if head is not None:
            yield _gauge("fourflow_chain_head", "The chain's head block number.", head)
        if figures is not None:
            yield from _stream_metrics(figures, next_seqs)
            yield from _latency_metrics(figures.latency)
            yield from _indexer_metrics(figures.indexer)
            yield from _worker_metrics(figures.workers, figures.now_ms)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _stream_metrics(figures: LedgerFigures, next_seqs: dict[str, int]) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "fourflow_backlog_events",
        "Events accepted but not yet sealed into a batch.",
        labels=["stream"],
    )
    oldest = GaugeMetricFamily(
        "fourflow_backlog_oldest_seconds",
        "Age of the oldest event not yet sealed (0 with no backlog).",
        labels=["stream"],
    )
    sealed = GaugeMetricFamily(
        "fourflow_last_sealed_seq",
        "Sequence number of the stream's last sealed batch.",
        labels=["stream"],
    )
    anchored = GaugeMetricFamily(
        "fourflow_last_anchored_seq",
        "Sequence number of the stream's last anchored batch.",
        labels=["stream"],
    )
    chain_next = GaugeMetricFamily(
        "fourflow_chain_next_seq",
        "The anchor registry's next expected sequence number for the stream (read from the "
        "chain): last anchored seq + 1 once the store has caught up with the chain.",
        labels=["stream"],
    )
    batches = GaugeMetricFamily(
        "fourflow_batches",
        "The stream's batches by state (sealed, sent, anchored).",
        labels=["stream", "state"],
    )
    for s in figures.streams:
        backlog.add_metric([s.stream], s.pending)
        oldest.add_metric([s.stream], s.oldest_pending_age_s(figures.now_ms) or 0.0)
        if s.last_sealed_seq is not None:
            sealed.add_metric([s.stream], s.last_sealed_seq)
        if s.last_anchored_seq is not None:
            anchored.add_metric([s.stream], s.last_anchored_seq)
        if s.stream in next_seqs:
            chain_next.add_metric([s.stream], next_seqs[s.stream])
        for state, count in s.batches.items():
            batches.add_metric([s.stream, state], count)
    yield from (backlog, oldest, sealed, anchored, chain_next, batches)


def _latency_metrics(latency: ops.AnchoringLatency) -> Iterator[Metric]:
    quantiles = GaugeMetricFamily(
        "fourflow_anchoring_latency_seconds",
        f"Anchoring latency over the last {LATENCY_WINDOW} anchored batches (all streams): "
        "span received_to_anchored from the batch's oldest event's arrival, "
        "sealed_to_anchored from sealing; nearest-rank quantiles.",
        labels=["span", "quantile"],
    )
    for span in SPANS:
        for q in QUANTILES:
            value = latency.quantile(q, span)
            if value is not None:
                quantiles.add_metric([span, str(q)], value)
    yield quantiles
    yield _gauge(
        "fourflow_anchoring_latency_window_batches",
        "How many anchored batches the latency quantiles cover.",
        len(latency.samples),
    )


def _indexer_metrics(position: ops.IndexerPosition) -> Iterator[Metric]:
    if position.indexed_to is not None:
        yield _gauge(
            "fourflow_indexer_block", "The last block the indexer has indexed.", position.indexed_to
        )
    if position.lag_blocks is not None:
        yield _gauge(
            "fourflow_indexer_lag_blocks",
            "Blocks between the chain head and the indexer's cursor (at least the "
            "confirmation depth when caught up).",
            position.lag_blocks,
        )


def _worker_metrics(workers: list[ops.WorkerStatusRow], now_ms: int) -> Iterator[Metric]:
    labels = ["worker", "kind"]
    info = GaugeMetricFamily(
        "fourflow_worker_info",
        "A worker process: 1, with its host and pid.",
        labels=[*labels, "host", "pid"],
    )
    age = GaugeMetricFamily(
        "fourflow_worker_heartbeat_age_seconds",
        "Seconds since the worker's last heartbeat.",
        labels=labels,
    )
    started = GaugeMetricFamily(
        "fourflow_worker_start_time_seconds",
        "Unix time the worker's current run started.",
        labels=labels,
    )
    passes = CounterMetricFamily(
        "fourflow_worker_passes", "The worker's passes in its current run.", labels=labels
    )
    errors = CounterMetricFamily(
        "fourflow_worker_errors", "The worker's failed passes in its current run.", labels=labels
    )
    last_error = GaugeMetricFamily(
        "fourflow_worker_last_error_time_seconds",
        "Unix time of the worker's last failure.",
        labels=labels,
    )
    for w in workers:
        key = [w.worker_id, w.kind]
        info.add_metric([*key, w.host, str(w.pid)], 1)
        age.add_metric(key, max(0, now_ms - w.heartbeat_at_ms) / 1000)
        started.add_metric(key, w.started_at_ms / 1000)
        passes.add_metric(key, w.passes)
        errors.add_metric(key, w.errors)
        if w.last_error_at_ms is not None:
            last_error.add_metric(key, w.last_error_at_ms / 1000)
    yield from (info, age, started, passes, errors, last_error)


# --- the middleware ----------------------------------------------------------------------


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if isinstance(path, str) and path else "unmatched"


class RequestMetrics:
    """Counts and times every HTTP request by route template, gives it a request id
    (``X-Request-ID`` echoed when it is sane, otherwise a new one) that every log line of
    the request carries and the answer echoes, and writes one access-log line for it."""

    def __init__(self, app: ASGIApp, *, monitoring: Monitoring) -> None:
        self.app = app
        self.monitoring = monitoring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets if the app fails before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        monitoring = self.monitoring
        monitoring.in_flight.inc()
        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                monitoring.in_flight.dec()
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = _route_of(scope)
        m = self.monitoring
        m.requests.labels(method, route, f"{status // 100}xx").inc()
        m.durations.labels(method, route).observe(seconds)
        if status >= 500:
            m.http_errors.labels(method, route).inc()
        path = scope["path"]
        level = logging.INFO
        if status >= 500:
            level = logging.WARNING
        elif path in _QUIET_PATHS and status < 400:
            level = logging.DEBUG
        client = scope.get("client")
        access_log.log(
            level,
            "%s %s %d %.1fms",
            scope["method"],
            path,
            status,
            seconds * 1000,
            extra={
                "method": scope["method"],
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None,
            },
        )
