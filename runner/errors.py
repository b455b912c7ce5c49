"""The runner's exception tree: every error carries a one-line headline and a hint."""

from __future__ import annotations

from stacks.common.errors import MlstackError


class RunnerError(MlstackError):
    """Base of every error the runner raises on purpose (headline + hint, one line)."""


class PipelineDefinitionError(RunnerError):
    """The pipeline or a step is wrong before anything runs (cycle, missing input, ...)."""

    exit_code = 2


class MetadataError(RunnerError):
    """The metadata server refused a request or could not be reached."""


class ArtifactError(RunnerError):
    """An artifact could not be written, read or verified."""


class StepFailed(RunnerError):
    """A step raised; carries the step name and the tail of its log."""


class SecretNotFound(RunnerError):
    """A secret named by a step is not in the stack's secrets backend."""
