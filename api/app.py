"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.access import Access
from api.auth import ChainRoles, Nonces, RoleResolver, TokenSigner
from api.limits import BodySizeLimit, JsonNestingLimit
from api.routes import alarms, auth, batches, dashboard, epcis, events, health, history, readings
from api.settings import Settings, get_settings
from ledger.anchoring import Anchorer
from ledger.collateral import Contracts, contracts_from
from ledger.flows import Flows
from ledger.history import Histories
from ledger.indexer import ChainIndex, Indexer
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
    roles: RoleResolver | None = None,
    indexer: Indexer | None = None,
) -> FastAPI:
    """An app serving ``runtime``; with ``anchorer``, it also anchors in a background
    thread; with ``capture``, it takes EPCIS 2.0 documents in at /v1/epcis, and with
    ``ingest``, signed device readings at /v1/readings. Callers sign in at /v1/auth;
    their roles come from ``roles`` (default: read from the deployment's contracts).
    With ``indexer``, it follows the contracts' logs in a background thread; histories,
    pledges and alarms read what the index holds."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        workers = []
        if anchorer is not None:
            workers.append(
                threading.Thread(
                    target=anchorer.run_forever, args=(stop,), name="fourflow-anchorer", daemon=True
                )
            )
        if indexer is not None:
            workers.append(
                threading.Thread(
                    target=indexer.run_forever, args=(stop,), name="fourflow-indexer", daemon=True
                )
            )
        for worker in workers:
            worker.start()
        yield
        stop.set()
        for worker in workers:
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
    app.state.roles = roles if roles is not None else ChainRoles.for_runtime(runtime)
    app.state.tokens = TokenSigner.for_settings(settings, chain_id=runtime.chain.chain_id)
    app.state.nonces = Nonces(runtime.store)  # creates its table once, here
    index = ChainIndex(runtime.store, runtime.deployment)
    histories = Histories(runtime.store, index, runtime.bundles, runtime.deployment)
    app.state.indexer = indexer
    app.state.index = index
    app.state.histories = histories
    app.state.access = Access(runtime.store, index, histories)
    app.state.alarms = histories.alarm_book
    app.state.contracts = _contracts(runtime)
    errors.install(app)
    app.include_router(events.router)
    app.include_router(batches.router)
    app.include_router(epcis.router)
    app.include_router(readings.router)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(history.router)
    app.include_router(alarms.router)
    app.include_router(dashboard.router)
    app.add_middleware(JsonNestingLimit)  # inside the size limit: it reads bounded bodies
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def _contracts(runtime: Runtime) -> Contracts | None:
    """The collateral contracts, when the deployment has them (valuations read live)."""
    if not runtime.deployment.pledge_registry:
        return None
    return contracts_from(runtime.chain, runtime.deployment)
