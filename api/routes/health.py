"""Liveness, backlog, anchoring, the indexer and the worker processes."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.errors import RETRY_AFTER_S, public_message
from api.monitoring import LedgerFigures, Monitoring
from api.schemas import (
    AnchoringHealth,
    HealthPublic,
    IndexerHealth,
    LatencyHealth,
    StreamBacklog,
    StreamHealth,
    WorkerHealth,
)
from ledger.errors import ChainError, StoreError
from ledger.ops import AnchoringLatency, Span

router = APIRouter(prefix="/v1", tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic}},
    summary="Store, chain, anchoring backlog and latency, indexer lag, workers",
)
def health(runtime: RuntimeDep, request: Request) -> JSONResponse:
    """`200 ok`, or `503 degraded` when the store or the chain node does not answer.
    Slow anchoring, a lagging indexer or a silent worker are reported, not judged: alert
    on them from `/metrics`."""
    monitoring: Monitoring = request.app.state.monitoring
    chain: dict[str, object] = {
        "chain_id": runtime.deployment.chain_id,
        "registry": runtime.deployment.anchor_registry,
    }
    store: dict[str, object] = {}
    backlog: dict[str, StreamBacklog] = {}
    figures: LedgerFigures | None = None
    head: int | None = None
    ok = True
    try:
        head = runtime.chain.head
        chain["head"] = head
        chain["ok"] = True
    except ChainError as exc:
        monitoring.failed(exc, during="health")
        chain.update(ok=False, error=public_message(exc, path="/v1/health"))
        ok = False
    try:
        store.update(runtime.store.counts(), ok=True)
        now_ms = time.time() * 1000
        backlog = {
            stream: StreamBacklog(pending=n, oldest_age_s=round((now_ms - oldest) / 1000, 3))
            for stream, (n, oldest) in runtime.store.backlog().items()
        }
        figures = LedgerFigures.read(runtime, head=head)
    except StoreError as exc:
        monitoring.failed(exc, during="health")
        store.update(ok=False, error=public_message(exc, path="/v1/health"))
        ok = False
    body = HealthPublic(
        status="ok" if ok else "degraded", chain=chain, store=store, backlog=backlog
    )
    if figures is not None:
        _add_figures(body, figures)
    headers = None if ok else {"Retry-After": RETRY_AFTER_S}
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503, headers=headers)


def _add_figures(body: HealthPublic, figures: LedgerFigures) -> None:
    body.streams = {
        s.stream: StreamHealth(
            last_sealed_seq=s.last_sealed_seq,
            last_anchored_seq=s.last_anchored_seq,
            batches=dict(s.batches),
        )
        for s in figures.streams
    }
    latency = figures.latency
    body.anchoring = AnchoringHealth(
        window_batches=len(latency.samples),
        received_to_anchored=_latency(latency, "received_to_anchored"),
        sealed_to_anchored=_latency(latency, "sealed_to_anchored"),
    )
    position = figures.indexer
    body.indexer = IndexerHealth(
        indexed_to=position.indexed_to, head=position.head, lag_blocks=position.lag_blocks
    )
    now = figures.now_ms
    body.workers = [
        WorkerHealth(
            worker_id=w.worker_id,
            kind=w.kind,
            host=w.host,
            pid=w.pid,
            started_at_ms=w.started_at_ms,
            heartbeat_age_s=_age_s(now, w.heartbeat_at_ms),
            passes=w.passes,
            errors=w.errors,
            last_error=w.last_error,
            last_error_age_s=None
            if w.last_error_at_ms is None
            else _age_s(now, w.last_error_at_ms),
        )
        for w in figures.workers
    ]


def _latency(latency: AnchoringLatency, span: Span) -> LatencyHealth:
    return LatencyHealth(p50_s=latency.quantile(0.5, span), p99_s=latency.quantile(0.99, span))


def _age_s(now_ms: int, then_ms: int) -> float:
    return round(max(0, now_ms - then_ms) / 1000, 3)
