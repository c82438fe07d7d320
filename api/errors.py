"""The one place where errors become HTTP answers: {"error": {code, message, field}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    ChainError,
    Conflict,
    InvalidInput,
    InvalidSignature,
    LedgerError,
    NotFound,
    StoreError,
    TooLarge,
    UnregisteredSigner,
)

RETRY_AFTER_S = "5"

_STATUS: list[tuple[type[LedgerError], int]] = [
    (InvalidSignature, 401),
    (UnregisteredSigner, 403),
    (Conflict, 409),
    (TooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (StoreError, 503),
    (ChainError, 503),
]


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


def install(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    async def ledger_error(_request: Request, exc: LedgerError) -> JSONResponse:
        status = status_of(exc)
        headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
        return error_response(status, exc.code, exc.message, field=exc.field, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [
            {"field": _field_path(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in errors[:50]
        ]
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        return error_response(
            422,
            "validation_failed",
            f"{first['field']}: {first['message']}",
            field=str(first["field"]),
            details=details,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )
