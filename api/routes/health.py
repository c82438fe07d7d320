"""Liveness and backlog."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.schemas import HealthPublic, StreamBacklog
from ledger.errors import ChainError, StoreError

router = APIRouter(prefix="/v1", tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic}},
    summary="Store, chain and anchoring backlog",
)
def health(runtime: RuntimeDep) -> JSONResponse:
    chain: dict[str, object] = {
        "chain_id": runtime.deployment.chain_id,
        "registry": runtime.deployment.anchor_registry,
    }
    store: dict[str, object] = {}
    backlog: dict[str, StreamBacklog] = {}
    ok = True
    try:
        chain["head"] = runtime.chain.head
        chain["ok"] = True
    except ChainError as exc:
        chain.update(ok=False, error=exc.message)
        ok = False
    try:
        store.update(runtime.store.counts(), ok=True)
        now_ms = time.time() * 1000
        backlog = {
            stream: StreamBacklog(pending=n, oldest_age_s=round((now_ms - oldest) / 1000, 3))
            for stream, (n, oldest) in runtime.store.backlog().items()
        }
    except StoreError as exc:
        store.update(ok=False, error=exc.message)
        ok = False
    body = HealthPublic(
        status="ok" if ok else "degraded", chain=chain, store=store, backlog=backlog
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
