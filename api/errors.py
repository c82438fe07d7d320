"""The one place where errors become HTTP answers.

Everywhere: ``{"error": {code, message, field, details?}}``. Under ``/v1/epcis``, where
EPCIS 2.0 clients expect them, RFC 7807 problem details with the EPCIS exception type
(``epcisException:ValidationException`` …), fourflow's ``code`` and, for a document,
``errors``: every problem with its JSON pointer.

A store failure is a 503 with ``Retry-After`` and a fixed message; what the driver said
(SQL, parameters, host and database names) is logged, never sent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    ChainError,
    Conflict,
    ContractReverted,
    Hidden,
    InvalidDocument,
    InvalidInput,
    InvalidSignature,
    LedgerError,
    NotFound,
    StoreError,
    TooLarge,
    Unauthenticated,
    UnregisteredSigner,
)

RETRY_AFTER_S = "5"
_log = logging.getLogger("fourflow.api")

_STATUS: list[tuple[type[LedgerError], int]] = [
    (InvalidSignature, 401),
    (Unauthenticated, 401),
    (UnregisteredSigner, 403),
    (Hidden, 403),
    (Conflict, 409),
    (TooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (StoreError, 503),
    (ChainError, 503),
]


EPCIS_PREFIX = "/v1/epcis"

# (EPCIS exception type, status) by fourflow error code, then by class
_EPCIS_BY_CODE: dict[str, tuple[str, int]] = {
    "query_parameter": ("QueryParameterException", 400),
    "unsupported_media_type": ("ValidationException", 415),
    "not_implemented": ("ImplementationException", 501),
    "capture_limit": ("CaptureLimitExceededException", 413),
    "unregistered_signer": ("ImplementationException", 500),  # the gateway key's role
}
_EPCIS_BY_CLASS: list[tuple[type[LedgerError], str, int]] = [
    (Unauthenticated, "SecurityException", 401),
    (Hidden, "SecurityException", 403),
    (TooLarge, "CaptureLimitExceededException", 413),
    (Conflict, "ValidationException", 409),
    (InvalidInput, "ValidationException", 400),
    (NotFound, "NoSuchResourceException", 404),
    (StoreError, "ImplementationException", 503),
    (ChainError, "ImplementationException", 503),
]


def epcis_problem_of(exc: LedgerError) -> tuple[str, int]:
    if exc.code in _EPCIS_BY_CODE:
        return _EPCIS_BY_CODE[exc.code]
    for kind, problem, status in _EPCIS_BY_CLASS:
        if isinstance(exc, kind):
            return problem, status
    return "ImplementationException", 500


def problem_response(
    status: int,
    problem: str,
    *,
    code: str,
    detail: str,
    instance: str,
    errors: list[dict[str, object]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {
        "type": f"epcisException:{problem}",
        "title": problem,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def too_deep(path: str, detail: str) -> JSONResponse:
    """A JSON body nested too deep to parse safely (api.limits.JsonNestingLimit)."""
    return unreadable_body(path, code="too_deep", message=f"JSON nested too deep: {detail}")


def unreadable_body(path: str, *, code: str, message: str) -> JSONResponse:
    """A body refused before any handler reads it (api.limits): 422, or under
    /v1/epcis a 400 ValidationException pointing at the whole document."""
    if path.startswith(EPCIS_PREFIX):
        return problem_response(
            400, "ValidationException", code=code, detail=message, instance=path,
            errors=[{"pointer": "/", "message": message}],
        )  # fmt: skip
    return error_response(422, code, message, field="body")


def body_too_large(path: str, max_bytes: int) -> JSONResponse:
    """A body over the size limit (api.limits.BodySizeLimit): 413, under /v1/epcis as
    a CaptureLimitExceededException."""
    message = f"request body exceeds {max_bytes} bytes"
    if path.startswith(EPCIS_PREFIX):
        return problem_response(
            413, "CaptureLimitExceededException", code="payload_too_large", detail=message,
            instance=path,
        )  # fmt: skip
    return error_response(413, "payload_too_large", message)


def status_of(exc: LedgerError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: list[dict[str, object]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _field_path(loc: tuple[object, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _detail_of(error: Any) -> dict[str, object]:
    loc = tuple(error["loc"])
    if error["type"] == "json_invalid":  # loc is ("body", character offset)
        where = loc[-1] if len(loc) > 1 else "?"
        reason = error.get("ctx", {}).get("error", error["msg"])
        message = f"the body is not valid JSON: {reason} at character {where}"
        return {"field": "body", "message": message, "type": error["type"]}
    return {"field": _field_path(loc), "message": error["msg"], "type": error["type"]}


STORE_UNAVAILABLE = (
    f"the store is unavailable (locked, busy or unreachable); retry in {RETRY_AFTER_S} s. "
    "Submissions are idempotent: one sent again is stored once."
)


CHAIN_UNAVAILABLE = (
    f"the chain node is unavailable; retry in {RETRY_AFTER_S} s. "
    "Submissions are idempotent: one sent again is stored once."
)


def public_message(exc: LedgerError, *, path: str) -> str:
    """What the client is told. A store failure's own message (the driver's words, the SQL
    and its parameters, the database's host and name) and a node failure's (the RPC URL,
    which for a hosted node holds its API key) go to the log, not the client. A
    contract's revert is the answer itself and is passed on."""
    if isinstance(exc, StoreError):
        _log.warning("store unavailable answering %s: %s", path, exc.message)
        return STORE_UNAVAILABLE
    if isinstance(exc, ChainError) and not isinstance(exc, ContractReverted):
        _log.warning("chain unavailable answering %s: %s", path, exc.message)
        return CHAIN_UNAVAILABLE
    return exc.message


def _headers_of(exc: LedgerError, status: int) -> dict[str, str] | None:
    if status == 503:
        return {"Retry-After": RETRY_AFTER_S}
    if isinstance(exc, Unauthenticated):  # RFC 6750: a 401 names the scheme to use
        return {"WWW-Authenticate": 'Bearer realm="fourflow"'}
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        message = public_message(exc, path=request.url.path)
        if request.url.path.startswith(EPCIS_PREFIX):
            problem, status = epcis_problem_of(exc)
            errors: list[dict[str, object]] | None = (
                [dict(e) for e in exc.errors] if isinstance(exc, InvalidDocument) else None
            )
            if errors is None and exc.field is not None:
                errors = [{"pointer": exc.field, "message": message}]
            return problem_response(
                status,
                problem,
                code=exc.code,
                detail=message,
                instance=request.url.path,
                errors=errors,
                headers=_headers_of(exc, status),
            )
        status = status_of(exc)
        headers = _headers_of(exc, status)
        details: list[dict[str, object]] | None = (
            [dict(e) for e in exc.errors] if isinstance(exc, InvalidDocument) else None
        )
        return error_response(
            status, exc.code, message, field=exc.field, details=details, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [_detail_of(e) for e in errors[:50]]
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        if request.url.path.startswith(EPCIS_PREFIX):
            return problem_response(
                400,
                "QueryParameterException",
                code="validation_failed",
                detail=f"{first['field']}: {first['message']}",
                instance=request.url.path,
                errors=[{"pointer": d["field"], "message": d["message"]} for d in details],
            )
        return error_response(
            422,
            "validation_failed",
            f"{first['field']}: {first['message']}",
            field=str(first["field"]),
            details=details,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            400: "malformed_body",  # FastAPI could not decode the body (it says no more)
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )
