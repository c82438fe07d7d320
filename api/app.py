"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.limits import BodySizeLimit, JsonNestingLimit
from api.routes import batches, epcis, events, health, readings
from api.settings import Settings, get_settings
from ledger.anchoring import Anchorer
from ledger.flows import Flows
from ledger.runtime import Runtime
from oracles.epcis.capture import EpcisCapture
from oracles.ingest import ReadingIngest


def create_app(
    runtime: Runtime,
    *,
    settings: Settings | None = None,
    anchorer: Anchorer | None = None,
    capture: EpcisCapture | None = None,
    ingest: ReadingIngest | None = None,
) -> FastAPI:
    """An app serving ``runtime``; with ``anchorer``, it also anchors in a background
    thread; with ``capture``, it takes EPCIS 2.0 documents in at /v1/epcis, and with
    ``ingest``, signed device readings at /v1/readings."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = None
        if anchorer is not None:
            worker = threading.Thread(
                target=anchorer.run_forever, args=(stop,), name="fourflow-anchorer", daemon=True
            )
            worker.start()
        yield
        stop.set()
        if worker is not None:
            worker.join(timeout=30)

    app = FastAPI(
        title="fourflow",
        version="0.1.0",
        summary="Signed supply-chain events, anchored on-chain, with proofs anyone can check.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.capture = capture
    app.state.readings = ingest
    app.state.flows = Flows(runtime.store)  # creates its tables once, here
    errors.install(app)
    app.include_router(events.router)
    app.include_router(batches.router)
    app.include_router(epcis.router)
    app.include_router(readings.router)
    app.include_router(health.router)
    app.add_middleware(JsonNestingLimit)  # inside the size limit: it reads bounded bodies
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
