"""What a running step can reach: its stack's secrets, tracker, model registry and deployer.

The step entrypoint sets the context before calling the step's function; the helpers here
(``get_secret``, ``log_params``, ...) fail with a clear error when called outside a step.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError, SecretNotFound
from stacks.common.constants import OUTPUTS_ENV
from stacks.outputs import StackOutputs, load_outputs

if TYPE_CHECKING:
    from runner.deploy import Deployment
    from runner.metadata.client import MetadataClient
    from runner.tracking import ModelVersion, TrackerClient


def outputs_from_env() -> StackOutputs:
    """The stack outputs (with the metadata token) handed to a step process at run time."""
    raw = os.environ.get(OUTPUTS_ENV)
    if not raw:
        raise RunnerError(
            f"{OUTPUTS_ENV} is not set: this process was not started by an mlstack orchestrator"
        )
    return load_outputs(json.loads(raw))


@dataclass
class StepContext:
    """The run and step being executed, plus lazily built clients for the stack."""

    outputs: StackOutputs
    run_id: str
    step_id: str
    step_name: str
    pipeline: str
    tracker_run_id: str | None = None
    image: str | None = None  # the image the step runs in, on container orchestrators

    @cached_property
    def metadata(self) -> MetadataClient:
        from runner.metadata.client import MetadataClient

        token = self.outputs.metadata.token
        return MetadataClient(
            self.outputs.metadata.url,
            token.get_secret_value() if token else "",
            ca_pem=self.outputs.metadata.ca_pem,
        )

    @cached_property
    def tracker(self) -> TrackerClient:
        from runner.tracking import TrackerClient

        return TrackerClient.for_outputs(self.outputs)


_CURRENT: list[StepContext] = []


def current() -> StepContext:
    """The context of the step running in this process."""
    if not _CURRENT:
        raise RunnerError(
            "no step is running in this process",
            "call this from inside a @step function executed by `mlstack run`",
        )
    return _CURRENT[-1]


def get_secret(name: str) -> str:
    """Read secret ``name`` from the stack's secrets backend (never from the image or code)."""
    ctx = current()
    from runner.secrets import secrets_backend

    value = secrets_backend(ctx.outputs).get(name)
    if value is None:
        raise SecretNotFound(
            f"secret {name!r} is not in the secrets backend of stack {ctx.outputs.stack!r}",
            f"set it with `mlstack secret set {ctx.outputs.stack} {name}`",
        )
    return value


def log_params(**params: Any) -> None:
    """Log parameters to the pipeline run's experiment tracker run."""
    ctx = current()
    ctx.tracker.log(ctx.tracker_run_id, params=params, step=ctx.step_name)


def log_metrics(**metrics: float) -> None:
    """Log metrics to the pipeline run's experiment tracker run."""
    ctx = current()
    ctx.tracker.log(ctx.tracker_run_id, metrics=metrics, step=ctx.step_name)


def register_model(model: Any, name: str) -> ModelVersion:
    """Log ``model`` (scikit-learn) to the tracker and register a new version of ``name``."""
    ctx = current()
    return ctx.tracker.register_sklearn_model(model, name, ctx)


def deploy_model(model_name: str, version: str, name: str | None = None) -> Deployment:
    """Serve a registered model version as an HTTP endpoint on the stack's deployer."""
    from runner.deployers import deployer_for
    from runner.endpoints import default_name

    ctx = current()
    return deployer_for(ctx.outputs).deploy(
        model_name=model_name,
        version=version,
        name=name or default_name(model_name),
        run_id=ctx.run_id,
        image=ctx.image,
    )
