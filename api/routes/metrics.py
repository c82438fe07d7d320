"""Prometheus metrics (api.monitoring): open by default, or behind a bearer token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from api.deps import SettingsDep
from api.monitoring import CONTENT_TYPE, Monitoring
from api.schemas import ErrorBody
from ledger.errors import Unauthenticated

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "the Prometheus text format"},
        401: {"model": ErrorBody, "description": "FOURFLOW_METRICS_TOKEN is set and not given"},
    },
    summary="Prometheus metrics",
)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Backlog, batches, anchoring latency, chain head and indexer lag, worker heartbeats
    (read from the store and the chain at each scrape), and this process's HTTP counters.
    With `FOURFLOW_METRICS_TOKEN` set, send it as `Authorization: Bearer <token>`."""
    if settings.metrics_token is not None:
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.metrics_token.encode()
        ):
            raise Unauthenticated("/metrics needs the metrics token as a bearer token")
    monitoring: Monitoring = request.app.state.monitoring
    return Response(monitoring.exposition(), media_type=CONTENT_TYPE)
