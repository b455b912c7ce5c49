"""The dashboard: static files under ``/ui/``, a one-time login, and the read-only routes it needs.

Login: ``POST /ui/login-codes`` (bearer token) mints a code valid once for ``CODE_TTL``
seconds; ``GET /ui/login?code=...`` trades it for a random session id in an HttpOnly,
SameSite=Strict cookie and redirects to ``/ui/`` (the code leaves the address bar). The
session cookie authenticates GET requests only, so no cookie can change anything. The
bearer token itself never travels in a URL. The static files hold no data of the stack.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi import status as http
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy import select

from runner.metadata.db import SessionDep, fetch_or_404
from runner.metadata.guard import NOT_FOUND, ErrorOut
from runner.metadata.log_reader import ROOT_ENV
from runner.metadata.models import Artifact, Lineage, Step
from runner.metadata.schemas import LoginCode

STATIC = Path(__file__).parent / "ui"
COOKIE = "mlstack_session"
CODE_TTL = 60.0
SESSION_TTL = 12 * 3600.0
LOG_ROOT_ENV = ROOT_ENV  # the artifact store's root URI or folder: /steps/{id}/log reads under it
MAX_LOG_CHUNK = 1024 * 1024
_SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


class StepRef(BaseModel):
    """A step as lineage names it."""

    step_id: str
    step_name: str
    run_id: str
    direction: str
    name: str


class ArtifactLineage(BaseModel):
    """An artifact with the steps, in any run, that wrote and read it."""

    artifact_id: str
    producer: StepRef | None
    consumers: list[StepRef]


class LogChunk(BaseModel):
    """Bytes ``offset``..``next_offset`` of a step's log (``size`` is its current length)."""

    text: str
    offset: int
    next_offset: int
    size: int


class Sessions:
    """One-time codes and the sessions they opened (in memory: a restart logs everyone out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, float] = {}

    def new_code(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._prune()
            self._codes[code] = time.monotonic() + CODE_TTL
        return code

    def redeem(self, code: str) -> str | None:
        """A new session id for a valid unused ``code``; None otherwise (the code is spent)."""
        with self._lock:
            self._prune()
            if self._codes.pop(code, None) is None:
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[session] = time.monotonic() + SESSION_TTL
            return session

    def valid(self, session: str) -> bool:
        with self._lock:
            expiry = self._sessions.get(session)
            return expiry is not None and expiry > time.monotonic()

    def _prune(self) -> None:
        now = time.monotonic()
        for table in (self._codes, self._sessions):
            for key in [k for k, expiry in table.items() if expiry <= now]:
                del table[key]


def session_ok(request: Request) -> bool:
    """Whether a GET/HEAD request carries a live dashboard session cookie."""
    if request.method not in ("GET", "HEAD"):
        return False
    cookie = request.cookies.get(COOKIE)
    sessions: Sessions = request.app.state.ui_sessions
    return bool(cookie) and sessions.valid(cookie or "")


# --- guarded routes (bearer token or, for GET, the session cookie) ---------------------------

router = APIRouter()


@router.post("/ui/login-codes", tags=["dashboard"], status_code=http.HTTP_201_CREATED)
def new_login_code(request: Request) -> LoginCode:
    """A one-time code that opens a dashboard session (bearer token only: it is a POST)."""
    code = request.app.state.ui_sessions.new_code()
    return LoginCode(code=code, path=f"/ui/login?code={code}", expires_in=CODE_TTL)


def _ref(step: Step, direction: str, name: str) -> StepRef:
    return StepRef(
        step_id=step.id, step_name=step.name, run_id=step.run_id, direction=direction, name=name
    )


@router.get("/artifacts/{artifact_id}/lineage", tags=["lineage"], responses=NOT_FOUND)
def artifact_lineage(artifact_id: str, session: SessionDep) -> ArtifactLineage:
    """The step that wrote the artifact and every step, in any run, that read it."""
    artifact = fetch_or_404(session, Artifact, artifact_id, "artifact")
    producer = None
    if artifact.producer_step_id is not None:
        step = session.get(Step, artifact.producer_step_id)
        producer = _ref(step, "output", artifact.name) if step is not None else None
    rows = session.execute(
        select(Lineage.name, Step)
        .join(Step, Step.id == Lineage.step_id)
        .where(Lineage.artifact_id == artifact_id, Lineage.direction == "input")
        .order_by(Step.created_at, Step.id)
    )
    consumers = [_ref(step, "input", name) for name, step in rows]
    return ArtifactLineage(artifact_id=artifact_id, producer=producer, consumers=consumers)


_LOG_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "No such step, it has no log yet, its log is not in the artifact store"
        " (yet), or its log URI is outside the store's logs.",
    },
    503: {
        "model": ErrorOut,
        "description": "The artifact store refused the read (access denied) or did not answer"
        " (unreachable, timed out), or the server's artifact root is misconfigured; the detail"
        " says which. Retry later.",
    },
}


@router.get("/steps/{step_id}/log", tags=["steps"], responses=_LOG_ERRORS)
def step_log(
    step_id: str,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_CHUNK)] = 256 * 1024,
) -> LogChunk:
    """Up to ``limit`` bytes of the step's log from byte ``offset`` (poll with ``next_offset``).

    Logs are read from the stack's artifact store (``$MLSTACK_METADATA_ARTIFACT_ROOT``, a
    folder or an s3:// root), only under its ``logs/``; any other URI is 404.
    """
    from runner.logs import whole_chars
    from runner.metadata.log_reader import LogNotFound, StoreUnavailable, read_log

    step = fetch_or_404(session, Step, step_id, "step")
    try:
        chunk = read_log(step.log_uri, offset, limit)
    except LogNotFound as err:
        raise HTTPException(http.HTTP_404_NOT_FOUND, detail=str(err)) from None
    except StoreUnavailable as err:
        raise HTTPException(http.HTTP_503_SERVICE_UNAVAILABLE, detail=str(err)) from None
    cut = whole_chars(chunk.data)
    text = chunk.data[:cut].decode("utf-8", errors="replace")
    return LogChunk(text=text, offset=chunk.offset, next_offset=chunk.offset + cut, size=chunk.size)


# --- open routes: the static files and the login redeemer -----------------------------------


def mount(app: FastAPI) -> None:
    """Serve the dashboard's static files and the login redeemer on ``app``."""
    app.state.ui_sessions = Sessions()

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=http.HTTP_308_PERMANENT_REDIRECT)

    @app.get("/ui/", include_in_schema=False)
    def ui_index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_SECURITY_HEADERS)

    @app.get("/ui/login", include_in_schema=False, response_model=None)
    def ui_login(request: Request, code: str = "") -> Response:
        session = request.app.state.ui_sessions.redeem(code) if code else None
        if session is None:
            return HTMLResponse(
                "<!doctype html><title>mlstack</title><p>This login link is invalid, expired"
                " or already used. Run <code>mlstack ui</code> again.</p>",
                status_code=http.HTTP_401_UNAUTHORIZED,
                headers=_SECURITY_HEADERS,
            )
        response = RedirectResponse("/ui/", status_code=http.HTTP_303_SEE_OTHER)
        response.headers.update(_SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            session,
            max_age=int(SESSION_TTL),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    app.mount("/ui/assets", StaticFiles(directory=STATIC, html=False), name="ui-assets")
