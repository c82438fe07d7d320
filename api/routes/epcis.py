"""The EPCIS 2.0 REST binding, so any EPCIS 2.0 client can point at fourflow.

    POST /v1/epcis/capture              an EPCISDocument (or one event) → 202 + capture job
    GET  /v1/epcis/capture/{captureID}  the capture job
    POST /v1/epcis/events               one event → 201, Location: /v1/epcis/events/{eventID}
    GET  /v1/epcis/events               SimpleEventQuery: EQ_bizStep, EQ_bizLocation,
                                        MATCH_epc, MATCH_anyEPC, GE_eventTime, … ; paged
    GET  /v1/epcis/events/{eventID}     one event by its GS1 event hash ID

Errors here are RFC 7807 problem details with EPCIS exception types (api/errors.py).
Only ``GS1-Capture-Error-Behaviour: rollback`` is offered: a document with any invalid
event stores nothing. EPCIS 1.2 XML is not accepted (415).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic_core import from_json

from api.auth import CallerDep
from api.deps import AccessDep, RuntimeDep
from api.limits import ParsedJsonRoute, forget_parsed_json
from ledger.canonical import loads_canonical
from ledger.errors import InvalidDocument, InvalidInput, NotFound, TooLarge, Unauthenticated
from ledger.flows import CaptureJobRow, EpcisQuery, Flows, job_errors
from ledger.models import utc_text
from oracles.epcis import cbv
from oracles.epcis.capture import EpcisCapture
from oracles.epcis.document import EPCIS_CONTEXT, EVENT_TYPES, utc_millis
from oracles.epcis.gs1 import normalise_identifier

router = APIRouter(prefix="/v1/epcis", tags=["epcis"], route_class=ParsedJsonRoute)

PER_PAGE_DEFAULT: Final = 30
PER_PAGE_MAX: Final = 1_000
_JSON_TYPES: Final = ("application/json", "application/ld+json")
_EPCIS_HEADERS: Final = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}


def _capture_service(request: Request) -> EpcisCapture:
    capture: EpcisCapture | None = request.app.state.capture
    if capture is None:
        raise NotFound(
            "EPCIS capture is not enabled on this server (set FOURFLOW_GATEWAY_KEY)",
        )
    return capture


def _client(request: Request) -> str:
    """The capture client's name, from its bearer token (settings.capture_tokens)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "EPCIS capture needs a client token: send 'Authorization: Bearer <token>' "
            "(`fourflow capture-token NAME` makes one)",
            field="Authorization",
        )
    tokens = request.app.state.settings.capture_tokens
    name: str | None = tokens.get(hashlib.sha256(token.strip().encode()).hexdigest())
    if name is None:
        raise Unauthenticated("unknown capture token", field="Authorization")
    return name


def _iso(ms: int | None) -> str | None:
    return None if ms is None else utc_text(ms)


def _job_json(job: CaptureJobRow, statuses: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "captureID": job.capture_id,
        "createdAt": _iso(job.created_at_ms),
        "finishedAt": _iso(job.finished_at_ms),
        "running": job.running,
        "success": job.success,
        "captureErrorBehaviour": job.error_behaviour,
        "errors": job_errors(job),
        "fourflow": {
            "capturedBy": job.captured_by,
            "documentSha256": job.document_sha256,
            "events": job.events,
            "duplicates": job.duplicates,
            "eventIDs": json.loads(job.event_ids),
        },
    }
    if statuses is not None:
        body["fourflow"]["statuses"] = [{"eventID": i, "status": s} for i, s in statuses]
    return body


async def _read_json(request: Request, *, max_bytes: int) -> tuple[Any, str]:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media not in _JSON_TYPES:
        raise InvalidInput(
            f"content type {media!r} is not accepted; send EPCIS 2.0 JSON or JSON-LD "
            "(EPCIS 1.2 XML is not supported yet)",
            code="unsupported_media_type",
        )
    raw = await request.body()
    forget_parsed_json(request.scope)  # parsed again below, without NaN
    if len(raw) > max_bytes:
        raise TooLarge(
            f"document of {len(raw)} bytes; the limit is {max_bytes}", code="capture_limit"
        )
    try:
        body = from_json(raw, allow_inf_nan=False)  # bounded nesting: no stack to exhaust
    except ValueError as exc:
        raise InvalidDocument(
            f"not JSON: {exc}", errors=[{"pointer": "/", "message": f"not valid JSON: {exc}"}]
        ) from exc
    return body, hashlib.sha256(raw).hexdigest()


def _check_behaviour(request: Request) -> None:
    behaviour = request.headers.get("GS1-Capture-Error-Behaviour", "rollback").lower()
    if behaviour != "rollback":
        raise InvalidInput(
            f"GS1-Capture-Error-Behaviour {behaviour!r} is not offered; only 'rollback' "
            "(a document with an invalid event stores nothing)",
            field="GS1-Capture-Error-Behaviour",
            code="not_implemented",
        )


@router.post(
    "/capture",
    status_code=202,
    summary="Capture an EPCIS 2.0 document (or one event)",
    responses={400: {"description": "invalid document; nothing stored (problem details)"}},
)
async def capture(request: Request) -> JSONResponse:
    """Validates every event, signs the new ones with the gateway key and stores them
    durably before answering 202 with the (finished) capture job. Events already
    captured under the same GS1 event hash ID are duplicates, not new events."""
    service = _capture_service(request)
    client = _client(request)
    _check_behaviour(request)
    settings = request.app.state.settings
    body, digest = await _read_json(request, max_bytes=settings.max_body_bytes)
    now_ms = int(time.time() * 1000)
    outcome = await run_in_threadpool(
        service.capture, body, document_sha256=digest, now_ms=now_ms, captured_by=client
    )
    location = f"/v1/epcis/capture/{outcome.job.capture_id}"
    return JSONResponse(
        _job_json(outcome.job, outcome.events),
        status_code=202,
        headers={"Location": location, **_EPCIS_HEADERS},
    )


@router.get("/capture/{capture_id}", summary="A capture job")
def capture_job(request: Request, capture_id: str) -> JSONResponse:
    """For the capture client that made it (the same bearer token as the capture);
    another client's job is as unknown as one that does not exist."""
    client = _client(request)
    job = _capture_service(request).flows.capture_job(capture_id)
    if job.captured_by != client:
        raise NotFound(f"no capture job {capture_id!r}")
    return JSONResponse(_job_json(job), headers=_EPCIS_HEADERS)


@router.post("/events", status_code=201, summary="Capture one EPCIS 2.0 event")
async def capture_event(request: Request) -> JSONResponse:
    service = _capture_service(request)
    client = _client(request)
    _check_behaviour(request)
    settings = request.app.state.settings
    body, digest = await _read_json(request, max_bytes=settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("type") not in EVENT_TYPES:
        raise InvalidDocument(
            "expected one EPCIS event",
            errors=[{"pointer": "/type", "message": f"expected one of {', '.join(EVENT_TYPES)}"}],
        )
    now_ms = int(time.time() * 1000)
    outcome = await run_in_threadpool(
        service.capture, body, document_sha256=digest, now_ms=now_ms, captured_by=client
    )
    event_id, status = outcome.events[0]
    return JSONResponse(
        {"eventID": event_id, "status": status, "captureID": outcome.job.capture_id},
        status_code=201 if status == "accepted" else 200,
        headers={"Location": f"/v1/epcis/events/{_quote(event_id)}", **_EPCIS_HEADERS},
    )


def _quote(event_id: str) -> str:
    return quote(event_id, safe="")


_LIST_PARAMS: Final = {
    "eventType": "event_types",
    "EQ_bizStep": "biz_steps",
    "EQ_bizLocation": "biz_locations",
    "EQ_readPoint": "read_points",
    "EQ_disposition": "dispositions",
    "EQ_action": "actions",
    "MATCH_epc": "match_epc",
    "MATCH_anyEPC": "match_any_epc",
    "MATCH_parentID": "match_parent",
    "MATCH_epcClass": "match_epc_class",
}
_TIME_PARAMS: Final = {
    "GE_eventTime": "ge_event_time_ms",
    "LT_eventTime": "lt_event_time_ms",
    "GE_recordTime": "ge_record_time_ms",
    "LT_recordTime": "lt_record_time_ms",
}


def _query_from(request: Request) -> tuple[EpcisQuery, int, tuple[int, str] | None]:
    params = request.query_params
    unknown = sorted(
        set(params) - set(_LIST_PARAMS) - set(_TIME_PARAMS) - {"perPage", "nextPageToken"}
    )
    if unknown:
        raise InvalidInput(
            f"unknown query parameter {unknown[0]!r}", field=unknown[0], code="query_parameter"
        )
    values: dict[str, Any] = {}
    for name, attr in _LIST_PARAMS.items():
        items = [v for raw in params.getlist(name) for v in raw.split("|") if v]
        try:
            if name == "EQ_bizStep":
                items = [cbv.compact("bizstep", v) for v in items]
            elif name == "EQ_disposition":
                items = [cbv.compact("disp", v) for v in items]
            elif name.startswith("MATCH_") or name in ("EQ_bizLocation", "EQ_readPoint"):
                items = [normalise_identifier(v) for v in items]
            elif name == "eventType" and set(items) - set(EVENT_TYPES):
                raise ValueError(f"unknown event type {sorted(set(items) - set(EVENT_TYPES))[0]!r}")
            elif name == "EQ_action" and set(items) - {"ADD", "OBSERVE", "DELETE"}:
                raise ValueError("actions are ADD, OBSERVE and DELETE")
        except (ValueError, InvalidInput) as exc:
            message = exc.message if isinstance(exc, InvalidInput) else str(exc)
            raise InvalidInput(f"{name}: {message}", field=name, code="query_parameter") from exc
        values[attr] = tuple(items)
    for name, attr in _TIME_PARAMS.items():
        if name in params:
            try:
                values[attr] = utc_millis(params[name].replace(" ", "+"))[1]
            except ValueError as exc:
                raise InvalidInput(f"{name}: {exc}", field=name, code="query_parameter") from exc
    try:
        per_page = int(params.get("perPage", PER_PAGE_DEFAULT))
        if not 1 <= per_page <= PER_PAGE_MAX:
            raise ValueError
    except ValueError as exc:
        raise InvalidInput(
            f"perPage must be an integer from 1 to {PER_PAGE_MAX}",
            field="perPage",
            code="query_parameter",
        ) from exc
    after = _decode_token(params["nextPageToken"]) if "nextPageToken" in params else None
    return EpcisQuery(**values), per_page, after


def _encode_token(time_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([time_ms, event_id]).encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str]:
    try:
        time_ms, event_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(time_ms, int) or not isinstance(event_id, str):
            raise ValueError
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "nextPageToken is not one this server issued",
            field="nextPageToken",
            code="query_parameter",
        ) from exc
    return time_ms, event_id


def _query_document(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": _iso(int(time.time() * 1000)),
        "epcisBody": {
            "queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": events}}
        },
    }


@router.get("/events", summary="Query captured events (EPCIS 2.0 SimpleEventQuery)")
def query_events(
    request: Request, runtime: RuntimeDep, caller: CallerDep, access: AccessDep
) -> JSONResponse:
    """Filters: eventType, EQ_bizStep, EQ_bizLocation, EQ_readPoint, EQ_disposition,
    EQ_action, MATCH_epc, MATCH_anyEPC, MATCH_parentID, MATCH_epcClass, GE_/LT_eventTime,
    GE_/LT_recordTime; several values with `|` or a repeated parameter. Identifiers may
    be URNs or Digital Links. Ordered by eventTime, then event hash ID; `perPage` and
    `nextPageToken` page through, with a `Link: rel="next"` header. Needs a sign-in
    token; answers only events the caller may see, and pages count only those."""
    query, per_page, after = _query_from(request)
    flows: Flows = request.app.state.flows
    # filter before paging: a page, its next-page token and its Link header are made of
    # events the caller may see only, so hidden matches leave no trace (not even a count)
    visible: list[tuple[int, str]] = []
    while len(visible) <= per_page:
        hits = flows.epcis_event_ids(query, after=after, limit=max(per_page + 1, 500))
        visible += [hit for hit in hits if access.may_see_event(caller, hit[1])]
        if len(hits) < max(per_page + 1, 500):
            break
        after = hits[-1]
    page = visible[:per_page]
    events = [
        loads_canonical(runtime.store.event(event_id).envelope)["event"]["payload"]
        for _, event_id in page
    ]
    headers = dict(_EPCIS_HEADERS)
    if len(visible) > per_page:
        token = _encode_token(*page[-1])
        next_url = request.url.include_query_params(nextPageToken=token)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return JSONResponse(_query_document(events), headers=headers)


@router.get("/events/{event_id:path}", summary="One captured event by its GS1 event hash ID")
def get_event(
    runtime: RuntimeDep, caller: CallerDep, access: AccessDep, event_id: str, request: Request
) -> JSONResponse:
    if request.url.query and event_id.startswith("ni:"):
        event_id = f"{event_id}?{request.url.query}"  # an unescaped '?ver=CBV2.0'
    access.event(caller, event_id)
    try:
        row = runtime.store.event(event_id)
    except NotFound:
        raise NotFound(f"no EPCIS event {event_id!r}") from None
    if not row.kind.startswith("epcis."):
        raise NotFound(f"no EPCIS event {event_id!r}")
    payload = loads_canonical(row.envelope)["event"]["payload"]
    return JSONResponse(payload, headers=_EPCIS_HEADERS)
