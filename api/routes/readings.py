"""Device readings over HTTP: the same signed JSON the MQTT topics carry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, JsonValue

from api.limits import ParsedJsonRoute
from api.schemas import ErrorBody
from ledger.errors import NotFound
from oracles.ingest import ReadingIngest

router = APIRouter(prefix="/v1/readings", tags=["readings"], route_class=ParsedJsonRoute)


class QuarantinedPublic(BaseModel):
    index: int
    reason: str


class ReadingsAccepted(BaseModel):
    accepted: list[str]
    duplicates: list[str]
    quarantined: list[QuarantinedPublic]


def _ingest(request: Request) -> ReadingIngest:
    ingest: ReadingIngest | None = request.app.state.readings
    if ingest is None:
        raise NotFound(
            "reading intake is not enabled on this server (start it with an oracle config)"
        )
    return ingest


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReadingsAccepted,
    responses={
        404: {"model": ErrorBody, "description": "reading intake not enabled"},
        413: {"model": ErrorBody, "description": "more readings than one batch may hold"},
        503: {"model": ErrorBody, "description": "store or chain unavailable; retry later"},
    },
    summary="Submit device-signed readings",
)
async def submit_readings(
    request: Request, readings: Annotated[JsonValue, Body()]
) -> ReadingsAccepted:
    """One reading or a JSON array of them, each signed by its device (docs/transport.md).
    Good readings are stored durably before the answer; a bad one is quarantined with
    its reason and listed under `quarantined`, without stopping the rest."""
    ingest = _ingest(request)
    payload: Any = readings
    result = await run_in_threadpool(ingest.ingest, payload, source="http")
    return ReadingsAccepted(
        accepted=result.accepted,
        duplicates=result.duplicates,
        quarantined=[QuarantinedPublic(index=i, reason=r) for i, r in result.quarantined],
    )
