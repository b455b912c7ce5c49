"""Typed client of the metadata server, for the runner's hot paths.

``MetadataClient(url, token)`` mirrors the server's endpoints and returns the pydantic models
of :mod:`runner.metadata.schemas`. It talks over ONE keep-alive stdlib ``http.client``
connection (see :mod:`runner.metadata.transport`): no httpx, whose construction alone costs
~90 ms here. It is thread-safe and fork-safe; use one client per thread for parallel requests.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from runner.errors import MetadataError
from runner.metadata.schemas import (
    ArtifactCreate,
    ArtifactOut,
    CacheHit,
    DeploymentCreate,
    DeploymentOut,
    DeploymentStatus,
    DeploymentUpdate,
    ImageAction,
    ImageCreate,
    ImageOut,
    InputCreate,
    LineageEdge,
    LoginCode,
    PipelineCreate,
    PipelineOut,
    ReapRequest,
    ReapResult,
    ResourceCreate,
    ResourceOut,
    ResourceUpdate,
    RunCreate,
    RunDetail,
    RunOut,
    RunStatus,
    RunUpdate,
    StackReportIn,
    StackReportOut,
    StepBatch,
    StepCreate,
    StepOut,
    StepStatus,
    StepUpdate,
)
from runner.metadata.transport import Transport, encode_body

_PIPELINE = TypeAdapter(PipelineOut)
_PIPELINES = TypeAdapter(list[PipelineOut])
_RUN = TypeAdapter(RunOut)
_RUN_DETAIL = TypeAdapter(RunDetail)
_RUNS = TypeAdapter(list[RunOut])
_STEP = TypeAdapter(StepOut)
_STEPS = TypeAdapter(list[StepOut])
_ARTIFACT = TypeAdapter(ArtifactOut)
_ARTIFACTS = TypeAdapter(list[ArtifactOut])
_EDGE = TypeAdapter(LineageEdge)
_EDGES = TypeAdapter(list[LineageEdge])
_CACHE_HIT = TypeAdapter(CacheHit)
_DEPLOYMENT = TypeAdapter(DeploymentOut)
_DEPLOYMENTS = TypeAdapter(list[DeploymentOut])
_REAP = TypeAdapter(ReapResult)
_IMAGE = TypeAdapter(ImageOut)
_IMAGES = TypeAdapter(list[ImageOut])
_RESOURCE = TypeAdapter(ResourceOut)
_RESOURCES = TypeAdapter(list[ResourceOut])
_LOGIN = TypeAdapter(LoginCode)
_STACK = TypeAdapter(StackReportOut)


def _quote(segment: str) -> str:
    return quote(segment, safe="")


class MetadataClient:
    """Client of one metadata server: ``MetadataClient(url, token)``.

    Every method raises :class:`~runner.errors.MetadataError` on failure. The token never
    appears in a message, a repr or a log line.
    """

    def __init__(
        self, url: str, token: str, timeout: float = 10.0, ca_pem: str | None = None
    ) -> None:
        self._http = Transport(url, token, timeout, ca_pem)
        self.url = self._http.url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"MetadataClient(url={self.url!r})"

    def close(self) -> None:
        """Close the connection; a later call reconnects."""
        self._http.close()

    def __enter__(self) -> MetadataClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def health(self) -> bool:
        """Whether the server answers ``GET /health`` with ok (needs no token)."""
        try:
            status, data = self._http.send("GET", "/health", None, auth=False)
            return status == 200 and json.loads(data).get("status") == "ok"
        except (MetadataError, ValueError, AttributeError):
            return False

    def login_code(self) -> LoginCode:
        """A one-time code for the dashboard (``GET url + path`` opens a session, once)."""
        return self._http.call(_LOGIN, "POST", "/ui/login-codes")

    # --- pipelines and runs -----------------------------------------------------------------

    def get_or_create_pipeline(self, name: str) -> PipelineOut:
        """The pipeline called ``name``, created on first use."""
        body = encode_body(PipelineCreate, "pipeline", name=name)
        return self._http.call(_PIPELINE, "POST", "/pipelines", body)

    def list_pipelines(self) -> list[PipelineOut]:
        """All pipelines, by name."""
        return self._http.call(_PIPELINES, "GET", "/pipelines")

    def create_run(
        self,
        pipeline: str,
        stack: str,
        params: dict[str, Any] | None = None,
        code_ref: str | None = None,
        driver_pid: int | None = None,
        host: str | None = None,
        heartbeat_seconds: float | None = None,
    ) -> RunOut:
        """Record a new ``pending`` run of ``pipeline`` on ``stack``."""
        body = encode_body(
            RunCreate,
            "run",
            pipeline=pipeline,
            stack=stack,
            params=params or {},
            code_ref=code_ref,
            driver_pid=driver_pid,
            host=host,
            heartbeat_seconds=heartbeat_seconds,
        )
        return self._http.call(_RUN, "POST", "/runs", body)

    def get_run(self, run_id: str) -> RunDetail:
        """A run with its steps."""
        return self._http.call(_RUN_DETAIL, "GET", f"/runs/{_quote(run_id)}", what=f"run {run_id}")

    def list_runs(
        self,
        stack: str | None = None,
        pipeline: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 50,
    ) -> list[RunOut]:
        """Runs, newest first, optionally filtered."""
        query = {"stack": stack, "pipeline": pipeline, "status": status, "limit": limit}
        return self._http.call(_RUNS, "GET", "/runs", query=query)

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        error: str | None = None,
        tracker_run_id: str | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        driver_pid: int | None = None,
        cancel_requested: bool = False,
    ) -> RunOut:
        """Change a run; ``None`` leaves a field as it is. ``cancel_requested`` asks its
        driver to cancel the run (it sees the request with its next heartbeat)."""
        body = encode_body(
            RunUpdate,
            "run update",
            status=status,
            error=error,
            tracker_run_id=tracker_run_id,
            started_at=started_at,
            ended_at=ended_at,
            driver_pid=driver_pid,
            cancel_requested=cancel_requested or None,
        )
        return self._http.call(_RUN, "PATCH", f"/runs/{_quote(run_id)}", body, what=f"run {run_id}")

    def heartbeat(self, run_id: str) -> RunOut:
        """The run's driver is alive; the answer carries ``cancel_requested_at``."""
        path = f"/runs/{_quote(run_id)}/heartbeat"
        return self._http.call(_RUN, "POST", path, None, what=f"run {run_id}")

    def reap_runs(self, stack: str | None = None) -> list[str]:
        """Fail the unfinished runs whose driver process is gone; returns their ids."""
        body = encode_body(ReapRequest, "reap request", stack=stack)
        return self._http.call(_REAP, "POST", "/runs/reap", body).run_ids

    # --- steps ------------------------------------------------------------------------------

    def create_step(
        self,
        run_id: str,
        name: str,
        spec: dict[str, Any] | None = None,
        cache_key: str | None = None,
        status: StepStatus | str | None = None,
        log_uri: str | None = None,
    ) -> StepOut:
        """Record step ``name`` of a run (``pending`` unless ``status`` says otherwise)."""
        body = encode_body(
            StepCreate, "step", name=name, spec=spec or {}, cache_key=cache_key, status=status,
            log_uri=log_uri,
        )  # fmt: skip
        path = f"/runs/{_quote(run_id)}/steps"
        return self._http.call(_STEP, "POST", path, body, what=f"run {run_id}")

    def list_steps(self, run_id: str) -> list[StepOut]:
        """The steps of a run, in creation order."""
        path = f"/runs/{_quote(run_id)}/steps"
        return self._http.call(_STEPS, "GET", path, what=f"run {run_id}")

    def get_step(self, step_id: str) -> StepOut:
        """One step."""
        return self._http.call(_STEP, "GET", f"/steps/{_quote(step_id)}", what=f"step {step_id}")

    def update_step(
        self,
        step_id: str,
        *,
        status: StepStatus | str | None = None,
        error: str | None = None,
        cache_key: str | None = None,
        log_uri: str | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> StepOut:
        """Change a step; ``None`` leaves a field as it is."""
        body = encode_body(
            StepUpdate,
            "step update",
            status=status,
            error=error,
            cache_key=cache_key,
            log_uri=log_uri,
            started_at=started_at,
            ended_at=ended_at,
        )
        path = f"/steps/{_quote(step_id)}"
        return self._http.call(_STEP, "PATCH", path, body, what=f"step {step_id}")

    def update_steps(self, updates: list[dict[str, Any]]) -> list[StepOut]:
        """Several step changes in one request, all or none: ``[{"id": ..., "status": ...}]``."""
        body = encode_body(StepBatch, "step updates", updates=updates)
        return self._http.call(_STEPS, "POST", "/steps/batch", body, what="steps")

    # --- artifacts, lineage, cache ----------------------------------------------------------

    def create_artifact(
        self,
        uri: str,
        content_hash: str,
        size: int,
        name: str,
        type_name: str,
        materializer: str,
        producer_step_id: str | None = None,
    ) -> ArtifactOut:
        """Record an artifact (and its output edge when ``producer_step_id`` is given)."""
        body = encode_body(
            ArtifactCreate,
            "artifact",
            uri=uri,
            content_hash=content_hash,
            size=size,
            name=name,
            type_name=type_name,
            materializer=materializer,
            producer_step_id=producer_step_id,
        )
        what = f"step {producer_step_id}" if producer_step_id else "artifact"
        return self._http.call(_ARTIFACT, "POST", "/artifacts", body, what=what)

    def get_artifact(self, artifact_id: str) -> ArtifactOut:
        """One artifact."""
        path = f"/artifacts/{_quote(artifact_id)}"
        return self._http.call(_ARTIFACT, "GET", path, what=f"artifact {artifact_id}")

    def list_artifacts(
        self, content_hash: str | None = None, limit: int = 100
    ) -> list[ArtifactOut]:
        """Artifacts, newest first, optionally only those with ``content_hash``."""
        query = {"content_hash": content_hash, "limit": limit}
        return self._http.call(_ARTIFACTS, "GET", "/artifacts", query=query)

    def add_input(self, step_id: str, artifact_id: str, name: str) -> LineageEdge:
        """Record that a step read ``artifact_id`` as its input ``name``."""
        body = encode_body(InputCreate, "input", artifact_id=artifact_id, name=name)
        path = f"/steps/{_quote(step_id)}/inputs"
        what = f"step {step_id} or artifact {artifact_id}"
        return self._http.call(_EDGE, "POST", path, body, what=what)

    def lineage(self, run_id: str) -> list[LineageEdge]:
        """Every input and output edge of a run's steps."""
        path = f"/runs/{_quote(run_id)}/lineage"
        return self._http.call(_EDGES, "GET", path, what=f"run {run_id}")

    def lookup_cache(self, cache_key: str) -> CacheHit | None:
        """The newest completed step with ``cache_key`` and its outputs, or None."""
        path = f"/cache/{_quote(cache_key)}"
        status, data = self._http.send("GET", path, None)
        if status == 404:
            return None
        return self._http.parse(_CACHE_HIT, status, data, "GET", path, None)

    # --- deployments ------------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        stack: str,
        model_name: str,
        model_version: str,
        endpoint_url: str | None = None,
        status: DeploymentStatus | str | None = None,
        run_id: str | None = None,
        details: dict[str, Any] | None = None,
        replaces: list[str] | None = None,
    ) -> DeploymentOut:
        """Record a deployment (``starting`` unless ``status`` says otherwise).

        409 while the stack has another live deployment of ``name`` than those in
        ``replaces`` (the ones this deployment is about to take over from).
        """
        body = encode_body(
            DeploymentCreate,
            "deployment",
            name=name,
            stack=stack,
            model_name=model_name,
            model_version=model_version,
            endpoint_url=endpoint_url,
            status=status,
            run_id=run_id,
            details=details or {},
            replaces=replaces or None,
        )
        what = f"run {run_id}" if run_id else "deployment"
        return self._http.call(_DEPLOYMENT, "POST", "/deployments", body, what=what)

    def list_deployments(
        self, stack: str | None = None, status: DeploymentStatus | str | None = None
    ) -> list[DeploymentOut]:
        """Deployments, newest first, optionally filtered."""
        query = {"stack": stack, "status": status}
        return self._http.call(_DEPLOYMENTS, "GET", "/deployments", query=query)

    def get_deployment(self, deployment_id: str) -> DeploymentOut:
        """One deployment."""
        path = f"/deployments/{_quote(deployment_id)}"
        return self._http.call(_DEPLOYMENT, "GET", path, what=f"deployment {deployment_id}")

    def update_deployment(
        self,
        deployment_id: str,
        *,
        status: DeploymentStatus | str | None = None,
        endpoint_url: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> DeploymentOut:
        """Change a deployment; ``details`` are merged key by key (a None value drops a key)."""
        body = encode_body(
            DeploymentUpdate,
            "deployment update",
            status=status,
            endpoint_url=endpoint_url,
            details=details,
        )
        path = f"/deployments/{_quote(deployment_id)}"
        return self._http.call(_DEPLOYMENT, "PATCH", path, body, what=f"deployment {deployment_id}")

    # --- images -----------------------------------------------------------------------------

    def record_image(
        self,
        stack: str,
        pipeline: str,
        image: str,
        tag: str,
        action: ImageAction | str,
        reason: str,
        seconds: float,
        details: dict[str, Any] | None = None,
    ) -> ImageOut:
        """Record a packaging outcome: ``action`` is built, reused or failed, and why."""
        body = encode_body(
            ImageCreate,
            "image",
            stack=stack,
            pipeline=pipeline,
            image=image,
            tag=tag,
            action=action,
            reason=reason,
            seconds=max(0.0, seconds),
            details=details or {},
        )
        return self._http.call(_IMAGE, "POST", "/images", body)

    def list_images(
        self, stack: str | None = None, pipeline: str | None = None, limit: int = 50
    ) -> list[ImageOut]:
        """Packaging outcomes, newest first, optionally of one stack and pipeline."""
        query = {"stack": stack, "pipeline": pipeline, "limit": limit}
        return self._http.call(_IMAGES, "GET", "/images", query=query)

    # --- runtime resources -----------------------------------------------------------------

    def record_resource(
        self,
        stack: str,
        kind: str,
        name: str,
        *,
        arn: str | None = None,
        region: str | None = None,
        tags: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> ResourceOut:
        """Record a runtime resource of ``stack`` (again: update it, and make it live)."""
        body = encode_body(
            ResourceCreate,
            "resource",
            stack=stack,
            kind=kind,
            name=name,
            arn=arn,
            region=region,
            tags=tags or {},
            details=details or {},
        )
        return self._http.call(_RESOURCE, "POST", "/resources", body, what=f"{kind} {name}")

    def list_resources(
        self,
        stack: str | None = None,
        kind: str | None = None,
        live: bool | None = None,
        limit: int = 1000,
    ) -> list[ResourceOut]:
        """Recorded resources, oldest first; ``live=True`` only those not marked deleted."""
        query: dict[str, Any] = {"stack": stack, "kind": kind, "limit": limit}
        if live is not None:
            query["live"] = "true" if live else "false"
        return self._http.call(_RESOURCES, "GET", "/resources", query=query)

    def mark_resource_deleted(
        self, resource_id: str, deleted_at: datetime | None = None
    ) -> ResourceOut:
        """Mark a recorded resource deleted (at ``deleted_at``, default: now)."""
        body = encode_body(ResourceUpdate, "resource update", deleted_at=deleted_at)
        path = f"/resources/{_quote(resource_id)}"
        return self._http.call(_RESOURCE, "PATCH", path, body, what=f"resource {resource_id}")

    # --- the stack ----------------------------------------------------------------------

    def report_stack(self, stack: str, **fields: Any) -> StackReportOut:
        """Replace the stack's report (provider, status, lifetime, health, spend)."""
        body = encode_body(StackReportIn, "stack report", **fields)
        return self._http.call(_STACK, "PUT", f"/stacks/{_quote(stack)}", body)

    def get_stack(self, stack: str) -> StackReportOut:
        """The stack's latest report (a MetadataError when none was sent yet)."""
        return self._http.call(_STACK, "GET", f"/stacks/{_quote(stack)}")
