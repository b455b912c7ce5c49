"""The metadata server: a FastAPI app over SQLAlchemy, run as a daemon by the stack engine.

    MLSTACK_METADATA_TOKEN=<token> python -m runner.metadata.server \\
        --database-url sqlite:////abs/path/metadata.db --host 127.0.0.1 --port 8123

The bearer token is read from the environment only, never from argv, and never logged.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError

from runner.metadata import (
    TOKEN_ENV,
    api_artifacts,
    api_deployments,
    api_images,
    api_resources,
    api_runs,
    api_stacks,
    dashboard,
)
from runner.metadata.db import make_engine, make_sessionmaker
from runner.metadata.guard import (
    RESPONSES,
    BodyLimit,
    add_guarded_docs,
    disk_full_handler,
    validation_handler,
)
from runner.metadata.schemas import HealthOut

_bearer = HTTPBearer(auto_error=False, description="The stack's metadata token.")


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Dependency of every endpoint but /health: the request must carry the bearer token.

    A GET may carry the dashboard's session cookie instead (see runner.metadata.dashboard).
    """
    if credentials is None and dashboard.session_ok(request):
        return
    expected: bytes = request.app.state.token
    given = credentials.credentials.encode() if credentials is not None else b""
    # compare_digest on the whole value even when absent: no timing hint about the token.
    if not hmac.compare_digest(given, expected) or credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(database_url: str, token: str) -> FastAPI:
    """Build the metadata API over ``database_url``; every endpoint but /health needs ``token``.

    Tables are created when missing. The engine is disposed when the app shuts down.
    """
    if not token:
        raise ValueError("the metadata server needs a non-empty token")
    engine = make_engine(database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="mlstack metadata server",
        summary="Pipelines, runs, steps, artifacts, lineage and deployments of an mlstack.",
        version="1",
        lifespan=lifespan,
        openapi_url=None,  # served below, behind the token
        docs_url=None,
        redoc_url=None,
    )
    app.state.token = token.encode()
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.engine = engine
    app.state.deployments_lock = threading.Lock()  # one server process per stack

    @app.get("/health", tags=["health"])
    def health() -> HealthOut:
        """Liveness probe; needs no token."""
        return HealthOut()

    guarded = [Depends(require_token)]
    for module in (
        api_runs,
        api_artifacts,
        api_deployments,
        api_images,
        api_resources,
        api_stacks,
        dashboard,
    ):
        app.include_router(module.router, dependencies=guarded, responses=RESPONSES)
    add_guarded_docs(app, require_token)
    dashboard.mount(app)
    app.add_middleware(BodyLimit)
    on_disk_full = disk_full_handler(engine.url.database or str(engine.url.host))
    app.add_exception_handler(OperationalError, on_disk_full)
    app.add_exception_handler(OSError, on_disk_full)
    app.add_exception_handler(RequestValidationError, validation_handler)
    return app


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runner.metadata.server",
        description=f"Serve the mlstack metadata API. The bearer token is read from ${TOKEN_ENV}.",
    )
    # The URL may carry a password: the local engine passes it in the environment, not argv.
    env_url = os.environ.get("MLSTACK_METADATA_DATABASE_URL")
    parser.add_argument(
        "--database-url",
        default=env_url,
        required=env_url is None,
        help="SQLAlchemy URL: sqlite:////abs/path/metadata.db or postgresql://user@host/db"
        " (default: $MLSTACK_METADATA_DATABASE_URL)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="port to listen on (8123)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m runner.metadata.server``; returns the exit code."""
    args = _parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        print(
            f"error: {TOKEN_ENV} is not set; the metadata server needs a bearer token",
            file=sys.stderr,
        )
        return 2
    from runner.metadata.log_reader import artifact_root

    try:
        artifact_root()
    except ValueError as exc:  # a typo here would only show as 503s in the dashboard
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(args.database_url, token)
    except Exception as exc:  # one clean line for the engine's log, not a traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: cannot open the metadata database: {reason}", file=sys.stderr)
        return 1

    import uvicorn  # imported here: create_app users (tests) never need it

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        log_level="warning",
        access_log=False,  # the access log must never see a request's headers
        server_header=False,
        timeout_keep_alive=60,  # clients keep one connection open between steps
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
