"""The FastAPI application factory, and the server that runs it (``run_server``)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Final

import anyio
from fastapi import FastAPI

from api import errors
from api.access import Access
from api.auth import ChainRoles, Nonces, RoleResolver, TokenSigner
from api.limits import BodySizeLimit, JsonNestingLimit
from api.monitoring import Monitoring, RequestMetrics
from api.routes import alarms, auth, batches, dashboard, epcis, events, health, history, readings
from api.routes import metrics as metrics_route
from api.settings import Settings, get_settings
from ledger.anchoring import Anchorer
from ledger.collateral import Contracts, contracts_from
from ledger.flows import Flows
from ledger.history import Histories
from ledger.indexer import ChainIndex, Indexer
from ledger.runtime import Runtime
from oracles.epcis.capture import EpcisCapture
from oracles.ingest import ReadingIngest

log = logging.getLogger("fourflow.api")

# on SIGTERM: requests in flight get this long to finish, then are cancelled; then the
# background threads get WORKERS_GRACE_S to stop before they are abandoned
REQUESTS_GRACE_S: Final = 20.0
WORKERS_GRACE_S: Final = 10.0


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

    draining = threading.Event()  # set when the server starts shutting down

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
        draining.set()
        stop.set()
        await _stop_workers(workers)

    app = FastAPI(
        title="fourflow",
        version="0.1.0",
        summary="Signed supply-chain events, anchored on-chain, with proofs anyone can check.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.draining = draining
    app.state.settings = settings
    app.state.capture = capture
    app.state.readings = ingest
    app.state.flows = Flows(runtime.store)
    app.state.roles = roles if roles is not None else ChainRoles.for_runtime(runtime)
    app.state.tokens = TokenSigner.for_settings(settings, chain_id=runtime.chain.chain_id)
    app.state.nonces = Nonces(runtime.store)
    index = ChainIndex(runtime.store, runtime.deployment)
    histories = Histories(runtime.store, index, runtime.bundles, runtime.deployment)
    app.state.indexer = indexer
    app.state.index = index
    app.state.histories = histories
    app.state.access = Access(runtime.store, index, histories)
    app.state.alarms = histories.alarm_book
    app.state.contracts = _contracts(runtime)
    monitoring = Monitoring(runtime)
    app.state.monitoring = monitoring
    errors.install(app)
    monitoring.count_ledger_errors(app)
    app.include_router(events.router)
    app.include_router(batches.router)
    app.include_router(epcis.router)
    app.include_router(readings.router)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(history.router)
    app.include_router(alarms.router)
    app.include_router(dashboard.router)
    app.include_router(metrics_route.router)
    app.add_middleware(JsonNestingLimit)  # inside the size limit: it reads bounded bodies
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, monitoring=monitoring)  # outermost: sees every answer
    return app


async def _stop_workers(workers: list[threading.Thread]) -> None:
    """Join the background threads (the stop event is set), for WORKERS_GRACE_S in all.
    One still busy then (an anchorer waiting for a receipt) is abandoned: it is a daemon
    thread, and whatever it had not committed is picked up from the store at the next
    start, as after a crash."""
    deadline = time.monotonic() + WORKERS_GRACE_S
    for worker in workers:
        await anyio.to_thread.run_sync(worker.join, max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning(
                "%s still busy after %.0f s; abandoning it (the next start resumes its work)",
                worker.name,
                WORKERS_GRACE_S,
                extra={"worker": worker.name},
            )
        else:
            log.info("%s stopped", worker.name, extra={"worker": worker.name})


def run_server(app: FastAPI, *, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully: stop accepting
    connections, end the alarm streams (``event: end``), let requests in flight finish
    (up to REQUESTS_GRACE_S), stop the background threads, and return (exit status 0).
    uvicorn's own logs go through the root logger (``ledger.logs.configure_logging``);
    the access log is ``fourflow.access`` (api.monitoring). Exits 3 if the server cannot
    start (the port is taken …)."""
    import uvicorn

    draining: threading.Event = app.state.draining

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            draining.set()  # alarm streams end at their next tick
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(REQUESTS_GRACE_S),
    )
    server = Server(config)
    # uvicorn raises a signal it handled again once it is done, for the handler it found
    # installed: make that this server's own, so a signal ends the process with status 0
    # (and one that arrives before uvicorn listens still stops it)
    previous = {
        sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise SystemExit(3)


def _contracts(runtime: Runtime) -> Contracts | None:
    """The collateral contracts, when the deployment has them (valuations read live)."""
    if not runtime.deployment.pledge_registry:
        return None
    return contracts_from(runtime.chain, runtime.deployment)
