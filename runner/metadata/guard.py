"""What the metadata server puts around its endpoints: a body cap, documented errors, guarded docs.

Every status code the server can answer is listed in the OpenAPI document (``RESPONSES``
for the codes every guarded route can give, ``NOT_FOUND``/``CONFLICT`` per route), so a
client, or a fuzzer, can tell an error it should handle from a server bug.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

MAX_BODY_BYTES = 10 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ErrorOut(BaseModel):
    """The body of every error the server answers itself (not a validation error)."""

    detail: str


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("The body is not valid JSON."),
    401: _doc("Missing or wrong bearer token."),
    413: _doc(f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB."),
    507: _doc("The database's disk is full; the detail names the file."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _doc("No such record.")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _doc("Clashes with an existing record.")}


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes HTTPExceptions from body reading through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body over {limit} bytes")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413, unread.

    Checked against Content-Length up front and counted while streaming (chunked bodies).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await self._refuse(send)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def disk_full_handler(database: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """Answer 507 naming ``database`` when SQLite or PostgreSQL reports a full disk."""

    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        text = str(getattr(exc, "orig", exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            where = exc.filename or database
        elif "disk is full" in text or "No space left" in text or "could not extend" in text:
            where = database
        else:
            raise exc
        return JSONResponse(
            {"detail": f"no space left on the device holding {where}; free some and retry"},
            status_code=507,
        )

    return handler


async def validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, without echoing the input: a NaN in it would not even be JSON."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{k: v for k, v in error.items() if k in ("loc", "msg", "type")} for error in errors]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


_DOCS_PAGE = """<!doctype html>
<html><head><title>{title}</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{spec: {spec}, dom_id: "#swagger-ui"}});</script>
</body></html>"""


def add_guarded_docs(app: FastAPI, guard: Any) -> None:
    """``/openapi.json`` and ``/docs`` behind the token; the page carries the schema inline,
    since the browser's own fetch of the schema would have no token."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(guard)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(guard)])
    def docs() -> HTMLResponse:
        spec = json.dumps(app.openapi()).replace("</", "<\\/")
        return HTMLResponse(_DOCS_PAGE.format(title=app.title, spec=spec))
