"""The local stack's model deployer: a small authenticated HTTP service on the host.

Steps hand it a registered model version (``POST /deployments``) from wherever they run — a
forked local process or a container with host networking — and it starts the endpoint as a
host daemon (``runner.deploy.serve_model``), so the endpoint outlives the step.

    MLSTACK_METADATA_TOKEN=<token> python -m runner.deployer_server \\
        --stack NAME --workdir DIR --host 127.0.0.1 --port 8124
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
import urllib.parse
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from runner.endpoints import NAME_PATTERN
from runner.errors import RunnerError
from runner.metadata import TOKEN_ENV


def _loopback(url: str) -> str:
    """The metadata server is the stack's own: the token is never sent anywhere else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("must be the stack's metadata server, http://127.0.0.1:PORT")
    return url


class DeployRequest(BaseModel):
    """``POST /deployments``; ``name`` becomes part of file names, so it is DNS-like."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1, max_length=255, pattern=r"^[^/\x00-\x1f]+$")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(pattern=NAME_PATTERN)
    tracker_uri: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    metadata_url: Annotated[str, AfterValidator(_loopback)]
    run_id: str | None = Field(None, max_length=64)


class DeployResponse(BaseModel):
    id: str
    name: str
    model_name: str
    version: str
    endpoint_url: str


def create_app(stack: str, workdir: str, token: str) -> FastAPI:
    """The deployer API; every endpoint but /health needs the stack's bearer token."""
    app = FastAPI(title="mlstack local model deployer")

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not authorization or not hmac.compare_digest(given, token.encode()):
            raise HTTPException(401, detail="missing or invalid bearer token")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/deployments", dependencies=[Depends(require_token)])
    def create(req: DeployRequest) -> DeployResponse:
        from runner.deploy import DeployConflict, serve_model
        from runner.metadata.client import MetadataClient

        with MetadataClient(req.metadata_url, token) as client:
            try:
                dep = serve_model(
                    stack=stack,
                    workdir=workdir,
                    tracker_uri=req.tracker_uri,
                    client=client,
                    model_name=req.model_name,
                    version=req.version,
                    name=req.name,
                    run_id=req.run_id,
                )
            except DeployConflict as exc:
                raise HTTPException(409, detail=exc.headline) from None
            except RunnerError as exc:
                raise HTTPException(502, detail=exc.headline) from None
        return DeployResponse(
            id=dep.id,
            name=dep.name,
            model_name=dep.model_name,
            version=dep.version,
            endpoint_url=dep.endpoint_url,
        )

    return app


def request_deployment(url: str, token: str, body: dict[str, Any], timeout: float = 300) -> Any:
    """Client side (used by steps): ask the deployer service to serve a model version."""
    import http.client
    import json
    import urllib.parse

    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/deployments",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"{}")
    except OSError as exc:
        raise RunnerError(
            f"model deployer at {url} is not reachable ({exc})", "check `mlstack status`"
        ) from None
    finally:
        conn.close()
    if resp.status != 200:
        detail = data.get("detail", data)
        raise RunnerError(f"model deployer refused the deployment ({resp.status}): {detail}")
    # 2xx only above: a 409 (name taken by a deployment still starting) and a 422 (bad name)
    # are the caller's to fix, a 502 the endpoint's (its log is named in the detail).
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.deployer_server")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8124)
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        print(
            f"error: {TOKEN_ENV} is not set; the deployer needs the stack's token", file=sys.stderr
        )
        return 2
    import uvicorn

    os.umask(0o077)  # endpoint logs and records are the user's alone
    app = create_app(args.stack, args.workdir, token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
