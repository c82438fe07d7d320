"""Submitting signed events, reading them back, and fetching their proof bundles."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Path, Response, status

from api.auth import CallerDep
from api.deps import AccessDep, RuntimeDep, SettingsDep
from api.limits import ParsedJsonRoute
from api.schemas import BatchLink, ErrorBody, EventPublic, SubmissionAccepted
from ledger.canonical import loads_canonical
from ledger.errors import TooLarge
from ledger.models import SubmissionIn

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=ParsedJsonRoute)

_EXAMPLE_SUBMISSION: dict[str, Any] = {
    "submitter": "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
    "signature": "0x" + "ab" * 65,
    "events": [
        {
            "kind": "epcis.ObjectEvent",
            "schema_version": 1,
            "stream": "acme-logistics.custody",
            "event_id": "6f1c7a2e-8a51-4f4e-9d8c-0f5b2c7e9a10",
            "asset_ids": ["urn:epc:id:sgtin:0614141.107346.2018"],
            "event_time": "2026-11-26T08:15:00.000+08:00",
            "payload": {
                "action": "OBSERVE",
                "bizStep": "urn:epcglobal:cbv:bizstep:shipping",
                "readPoint": "urn:epc:id:sgln:0614141.00777.0",
            },
            "submitter": "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
        }
    ],
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "signature does not recover the submitter"},
    403: {"model": ErrorBody, "description": "signer lacks SUBMITTER_ROLE on-chain"},
    409: {"model": ErrorBody, "description": "an event id is stored with other content"},
    413: {"model": ErrorBody, "description": "body or event count over the limit"},
    422: {"model": ErrorBody, "description": "malformed submission; nothing stored"},
    503: {"model": ErrorBody, "description": "store or chain unavailable; retry later"},
}

EventId = Annotated[
    str, Path(description="the event's id", examples=["6f1c7a2e-8a51-4f4e-9d8c-0f5b2c7e9a10"])
]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmissionAccepted,
    responses=_ERRORS,
    summary="Submit a signed batch of events",
)
def submit_events(
    runtime: RuntimeDep,
    settings: SettingsDep,
    submission: Annotated[
        SubmissionIn,
        Body(
            openapi_examples={
                "custody": {"summary": "one RFID custody event", "value": _EXAMPLE_SUBMISSION}
            }
        ),
    ],
) -> Response:
    """Verify the EIP-712 signature and the signer's on-chain role, then store every
    event durably before answering. All or nothing: a bad batch stores nothing.
    Idempotent on event id: the same event again is answered as a duplicate."""
    if len(submission.events) > settings.max_events_per_submission:
        raise TooLarge(
            f"{len(submission.events)} events in one submission; the limit is "
            f"{settings.max_events_per_submission}",
            field="events",
            code="too_many_events",
        )
    receipts = runtime.intake.submit(submission)
    duplicates = sum(r.duplicate for r in receipts)
    # SubmissionAccepted, written directly: every field is a str or int the store gave,
    # and validating a thousand receipts, then letting FastAPI validate them again to
    # serialize them, cost a twentieth of the request (tests/test_api.py holds the
    # answer to the schema)
    answer = {
        "accepted": len(receipts) - duplicates,
        "duplicates": duplicates,
        "receipts": [
            {
                "event_id": r.event_id,
                "stream": r.stream,
                "digest": r.digest,
                "leaf": r.leaf,
                "status": "duplicate" if r.duplicate else "accepted",
            }
            for r in receipts
        ],
    }
    return Response(orjson.dumps(answer), status.HTTP_202_ACCEPTED, media_type="application/json")


@router.get(
    "/{event_id:path}/proof",
    responses={
        401: {"model": ErrorBody, "description": "no or bad sign-in token"},
        403: {"model": ErrorBody, "description": "unknown, or not the caller's to see"},
        404: {"model": ErrorBody, "description": "not anchored yet (code not_anchored)"},
    },
    summary="The proof bundle of an anchored event",
)
def event_proof(
    runtime: RuntimeDep, caller: CallerDep, access: AccessDep, event_id: EventId
) -> dict[str, Any]:
    """A self-contained proof bundle (docs/proof-format.md); 404 `not_anchored` until
    the event's batch is anchored. For the event's submitter and whoever may see one of
    its assets (api.access)."""
    access.event(caller, event_id)
    return runtime.bundles.bundle(event_id).to_json_dict()


@router.get(
    "/{event_id:path}",
    response_model=EventPublic,
    responses={
        401: {"model": ErrorBody, "description": "no or bad sign-in token"},
        403: {"model": ErrorBody, "description": "unknown, or not the caller's to see"},
    },
    summary="One stored event and where it stands",
)
def get_event(
    runtime: RuntimeDep, caller: CallerDep, access: AccessDep, event_id: EventId
) -> EventPublic:
    access.event(caller, event_id)
    row = runtime.store.event(event_id)
    batch_link = None
    state = "pending"
    if row.batch_seq is not None and row.leaf_index is not None:
        batch = runtime.store.batch(row.stream, row.batch_seq)
        state = batch.state
        batch_link = BatchLink(
            stream=row.stream,
            seq=row.batch_seq,
            leaf_index=row.leaf_index,
            state=batch.state,
            href=f"/v1/batches/{row.stream}/{row.batch_seq}",
        )
    return EventPublic(
        event_id=row.event_id,
        stream=row.stream,
        kind=row.kind,
        submitter=row.submitter,
        digest=row.digest,
        leaf=row.leaf,
        received_at_ms=row.received_at_ms,
        status=state,  # type: ignore[arg-type]
        batch=batch_link,
        envelope=loads_canonical(row.envelope),
    )
