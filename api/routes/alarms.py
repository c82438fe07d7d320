"""Alarms for lenders: listed, acknowledged, and pushed as server-sent events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.access import Access
from api.auth import CallerDep, ClaimsDep, Identity, RoleResolver
from api.deps import AccessDep
from api.limits import ParsedJsonRoute
from api.schemas import ErrorBody
from ledger.alarms import STATES, Alarm, AlarmBook
from ledger.errors import Hidden, NotFound, UnregisteredSigner

router = APIRouter(prefix="/v1/alarms", tags=["alarms"], route_class=ParsedJsonRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no or bad sign-in token"},
    403: {"model": ErrorBody, "description": "no such alarm, or not the caller's to see"},
    422: {"model": ErrorBody, "description": "a bad filter or state change"},
}
CATEGORIES = ("covenant_breach", "unauthorized_movement", "stale_data", "margin_call",
              "tag_removal", "audit_finding", "sensor")  # fmt: skip


def get_book(request: Request) -> AlarmBook:
    book: AlarmBook = request.app.state.alarms
    return book


BookDep = Annotated[AlarmBook, Depends(get_book)]
StateQuery = Annotated[
    list[Literal["open", "acknowledged", "cleared"]] | None,
    Query(description="open, acknowledged, cleared (repeat for several); default: all"),
]
CategoryQuery = Annotated[
    list[str] | None, Query(description=f"one of {', '.join(CATEGORIES)}; repeatable")
]


def visible_alarms(access: Access, book: AlarmBook, who: Identity) -> list[Alarm]:
    pledges = set(access.pledge_ids(who))
    out = []
    for alarm in book.all():
        if access.alarm_visible(
            who, pledge_id=alarm.pledge_id, subject=alarm.subject, pledges=pledges
        ):
            out.append(alarm)
    return out


def _visible(access: Access, book: AlarmBook, who: Identity, alarm_id: str) -> Alarm:
    for alarm in visible_alarms(access, book, who):
        if alarm.id == alarm_id:
            return alarm
    if access.sees_everything(who):
        raise NotFound(f"no alarm {alarm_id!r}")
    raise Hidden(f"alarm {alarm_id!r}: no such alarm, or not yours to see")


@router.get("", responses=_ERRORS, summary="Alarms on what the caller is party to")
def list_alarms(
    caller: CallerDep,
    access: AccessDep,
    book: BookDep,
    state: StateQuery = None,
    category: CategoryQuery = None,
    pledge_id: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Covenant breaches, unauthorized movements, stale data, tag removals and margin
    calls, oldest first, each with its state (open, acknowledged, cleared) and links
    into the history and to its proof."""
    for name in category or []:
        if name not in CATEGORIES:
            from ledger.errors import InvalidInput

            raise InvalidInput(
                f"unknown category {name!r}: expected one of {', '.join(CATEGORIES)}",
                field="category",
                code="invalid_filter",
            )
    alarms = [
        a
        for a in visible_alarms(access, book, caller)
        if (not state or a.state in state)
        and (not category or a.category in category)
        and (pledge_id is None or a.pledge_id == pledge_id)
    ]
    return {"alarms": [a.to_json() for a in alarms], "states": list(STATES)}


async def _stream(
    request: Request,
    access: Access,
    book: AlarmBook,
    caller: Callable[[], Identity],
    *,
    poll_s: float,
    timeout_s: float,
    draining: threading.Event,
) -> AsyncIterator[bytes]:
    seen: dict[str, tuple[str, int]] = {}
    started = time.monotonic()
    quiet = 0.0
    yield b"retry: 3000\n\n"
    while time.monotonic() - started < timeout_s and not draining.is_set():
        who = await anyio.to_thread.run_sync(caller)  # roles as they stand now
        alarms = await anyio.to_thread.run_sync(visible_alarms, access, book, who)
        changed = [a for a in alarms if seen.get(a.id) != (a.state, a.changed_ms)]
        for alarm in changed:
            if alarm.id not in seen and alarm.state == "cleared":
                seen[alarm.id] = (alarm.state, alarm.changed_ms)
                continue  # history, not news: the list endpoint has it
            seen[alarm.id] = (alarm.state, alarm.changed_ms)
            data = json.dumps(alarm.to_json(), separators=(",", ":"))
            yield f"event: alarm\nid: {alarm.id}@{alarm.changed_ms}\ndata: {data}\n\n".encode()
            quiet = 0.0
        if await request.is_disconnected():
            return
        if await _pause(draining, poll_s):
            break  # the server is shutting down: end now, the client reconnects elsewhere
        quiet += poll_s
        if quiet >= 15:
            yield b": keep-alive\n\n"
            quiet = 0.0
    yield b"event: end\ndata: {}\n\n"


async def _pause(draining: threading.Event, seconds: float) -> bool:
    """Sleep ``seconds``, waking early (True) when the server starts shutting down."""
    deadline = time.monotonic() + seconds
    while not draining.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await anyio.sleep(min(left, 0.1))
    return True


@router.get(
    "/stream",
    responses=_ERRORS | {200: {"content": {"text/event-stream": {}}}},
    summary="Alarms pushed as server-sent events",
)
def stream_alarms(
    request: Request,
    caller: CallerDep,
    claims: ClaimsDep,
    access: AccessDep,
    book: BookDep,
    timeout: Annotated[
        float, Query(gt=0, le=3600, description="seconds before the server ends the stream")
    ] = 300,
) -> StreamingResponse:
    """`text/event-stream`: first every alarm that is open or acknowledged, then each
    new alarm and each change of state, as `event: alarm` with the alarm's JSON (the
    same shape as the list). The stream ends after `timeout` seconds, when the sign-in
    token expires, or when the server shuts down, with `event: end`; clients reconnect
    (with a fresh token). The caller's roles are read again at every poll, so a revoked
    role stops showing at once."""
    poll_s = float(getattr(request.app.state.settings, "alarm_poll_seconds", 1.0))
    timeout_s = max(0.0, min(timeout, claims.exp - time.time()))
    roles: RoleResolver = request.app.state.roles
    return StreamingResponse(
        _stream(
            request,
            access,
            book,
            lambda: Identity(caller.address, roles.roles_of(caller.address)),
            poll_s=poll_s,
            timeout_s=timeout_s,
            draining=request.app.state.draining,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/{alarm_id:path}", responses=_ERRORS, summary="One alarm")
def get_alarm(caller: CallerDep, access: AccessDep, book: BookDep, alarm_id: str) -> dict[str, Any]:
    return _visible(access, book, caller, alarm_id).to_json()


class AlarmChange(BaseModel):
    """The caller's signed statement of the change (EIP-191 personal_sign of
    `ledger.alarms.change_statement`:
    `fourflow: mark alarm <state>\\nalarm: <id>\\nat: <at>\\nchain: <chain id>`)."""

    model_config = ConfigDict(extra="forbid")

    at: str = Field(max_length=40, examples=["2026-11-27T05:00:00.000Z"])
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


def _change(
    access: Access,
    book: AlarmBook,
    who: Identity,
    alarm_id: str,
    state: str,
    change: AlarmChange,
) -> dict[str, Any]:
    _visible(access, book, who, alarm_id)
    if state == "cleared" and not {"lender", "auditor"} & who.roles:
        raise UnregisteredSigner(
            "only a lender or an auditor clears an alarm", field="state", code="role_required"
        )
    return book.set_state(
        alarm_id, state, by=who.address, at=change.at, signature=change.signature
    ).to_json()


@router.post("/{alarm_id:path}/acknowledge", responses=_ERRORS, summary="Acknowledge an alarm")
def acknowledge_alarm(
    caller: CallerDep, access: AccessDep, book: BookDep, alarm_id: str, change: AlarmChange
) -> dict[str, Any]:
    """Marks the alarm seen; it stays in the list as `acknowledged` until it clears. The
    body is the caller's signed statement of it (a write is signed, not only
    authenticated); who acknowledged, when, and the signature are kept."""
    return _change(access, book, caller, alarm_id, "acknowledged", change)


@router.post("/{alarm_id:path}/clear", responses=_ERRORS, summary="Clear an oracle alarm")
def clear_alarm(
    caller: CallerDep, access: AccessDep, book: BookDep, alarm_id: str, change: AlarmChange
) -> dict[str, Any]:
    """A lender or auditor closes an oracle alarm it has dealt with, with its signed
    statement. Chain alarms (margin calls, freezes) clear only when the contract says so."""
    return _change(access, book, caller, alarm_id, "cleared", change)
