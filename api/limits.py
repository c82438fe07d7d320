"""Limits on request bodies, enforced before anything parses them: size (413 past it),
and for JSON bodies nesting depth and well-formed Unicode (422, or 400 under /v1/epcis)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import body_too_large, too_deep, unreadable_body


class BodySizeLimit:
    """Refuses bodies over ``max_bytes``: by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(scope, send)
                    return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer 413 now and tell the app the client left, so it stops reading.
                    refused = True
                    await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a 413, whatever the app still says is dropped
                await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = body_too_large(scope["path"], self.max_bytes)
        await response(scope, _nothing_more, send)


async def _nothing_more() -> Message:
    return {"type": "http.disconnect"}


_PARSED = "fourflow.parsed_json"  # the scope key of JsonNestingLimit's parse


class JsonNestingLimit:
    """Refuses, with 400/422 before any handler parses it, a JSON body

    - nested deeper than its parser allows (about 200 levels): Python's json module
      recurses in C, and a 200 KB body of brackets would otherwise exhaust the stack and
      kill the process (code ``too_deep``);
    - that is not Unicode text: not UTF-8, or with a lone surrogate, encoded or escaped
      (``"\\ud800"``). Python's json module lets those through as strings no database
      or UTF-8 encoder takes, so they would fail deep inside a handler (``invalid_unicode``);
    - with a number too long to convert (over 4,300 digits, ``invalid_json``).

    The body (already bounded by BodySizeLimit, which wraps this) is read whole, checked
    with pydantic-core's bounded, strict parser, and handed on unchanged. Bodies it
    refuses for other reasons (not JSON at all, no body) go on to the handler, which
    answers them as it always has. What it parsed is kept in the scope, so that a
    route of ``ParsedJsonRoute`` does not parse the body a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(b"", message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            scope[_PARSED] = from_json(body, allow_inf_nan=True)
        except ValueError as exc:
            refusal: Response | None = None
            if "recursion limit" in str(exc):
                refusal = too_deep(scope["path"], str(exc))
            elif _is_json(scope):
                refusal = _unreadable(scope["path"], body, str(exc))
            if refusal is not None:
                await refusal(scope, _replay(b"", None, receive), send)
                return
        await self.app(scope, _replay(body, None, receive), send)


def forget_parsed_json(scope: Scope) -> None:
    """For a route that parses its body itself (EPCIS capture, with its own rules):
    let JsonNestingLimit's parse go first, so the two are never held at once."""
    scope.pop(_PARSED, None)


class _ParsedJsonRequest(Request):
    async def json(self) -> Any:
        if _PARSED in self.scope:
            self._json = self.scope.pop(_PARSED)  # Request.json's own cache from here
            return self._json
        return await super().json()


class ParsedJsonRoute(APIRoute):
    """A route whose JSON body is the value JsonNestingLimit already parsed, not
    parsed again by ``json.loads``: a submission of 1,000 events is half a megabyte.
    FastAPI asks for ``request.json()`` only for a JSON body, and for any JSON text
    both parsers give the same values (tests/test_api.py holds them to it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def parsed_once(request: Request) -> Response:
            return await handle(_ParsedJsonRequest(request.scope, request.receive))

        return parsed_once


# pydantic-core's words for text that is not Unicode, and for a number it cannot hold
_NOT_UNICODE = ("surrogate", "hex escape", "invalid unicode code point")
_OUT_OF_RANGE = "number out of range"


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI would parse the body as JSON: no content type, or a JSON one."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


def _unreadable(path: str, body: bytes, error: str) -> Response | None:
    try:
        body.decode("utf-8")  # strict: refuses encoded surrogates and other encodings
    except UnicodeDecodeError as exc:
        return unreadable_body(
            path,
            code="invalid_unicode",
            message=f"the body is not UTF-8 text: byte {exc.start} "
            f"(0x{body[exc.start]:02x}): {exc.reason}",
        )
    if any(words in error for words in _NOT_UNICODE):
        return unreadable_body(
            path,
            code="invalid_unicode",
            message=f"the body's JSON strings are not Unicode text (a lone UTF-16 "
            f"surrogate escape?): {error}",
        )
    if _OUT_OF_RANGE in error:
        return unreadable_body(
            path, code="invalid_json", message=f"a JSON number is too long to read: {error}"
        )
    return None


def _replay(body: bytes, first: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first or {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
