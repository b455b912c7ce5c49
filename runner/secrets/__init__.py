"""Secrets backends: where a stack keeps credentials, read at run time, never baked in.

``secrets_backend(outputs)`` returns the client for the stack's backend kind. The same
clients serve ``get_secret`` in steps, the metadata token at ``mlstack run``, and
``mlstack secret set/get/list/rm``, so a new backend makes all of them work at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runner.roles import Role

if TYPE_CHECKING:
    from stacks.outputs import StackOutputs


class SecretsBackend:
    """The interface every secrets backend implements (values are plain strings)."""

    runtime_packages: tuple[str, ...] = ()  # what a step's image needs to reach the backend

    def __init__(self, outputs: StackOutputs) -> None:
        self.outputs = outputs

    def get(self, name: str) -> str | None:
        raise NotImplementedError

    def set(self, name: str, value: str) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> bool:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def container_files(self) -> list[Path]:
        """Host files a step container must see to reach this backend (read-only)."""
        return []


SECRETS_BACKENDS: Role[SecretsBackend] = Role(
    "secrets backend",
    {
        "local": "runner.secrets.local:LocalSecrets",
        "aws_secrets_manager": "runner.secrets.aws:SecretsManagerSecrets",
    },
)


def secrets_backend(outputs: StackOutputs) -> SecretsBackend:
    """The client for the secrets backend the stack's outputs describe."""
    return SECRETS_BACKENDS.get(outputs.secrets.kind)(outputs)


def resolve_token(outputs: StackOutputs) -> StackOutputs:
    """The outputs with the metadata token (and a tracker password) from the secrets backend."""
    from stacks.common.errors import SecretsError

    token = secrets_backend(outputs).get(outputs.metadata.token_secret)
    if token is None:
        raise SecretsError(
            f"the metadata token of stack {outputs.stack!r} is missing from its secrets backend",
            f"run `mlstack up` for {outputs.stack!r} to restore it",
        )
    outputs = outputs.with_token(token)
    secret = getattr(outputs.tracker, "password_secret", None)
    if secret:  # cloud trackers behind MLflow's basic-auth app
        password = secrets_backend(outputs).get(secret)
        if password is None:
            raise SecretsError(
                f"the tracker password of stack {outputs.stack!r} is missing from its secrets"
                " backend",
                f"run `mlstack up` for {outputs.stack!r} to restore it",
            )
        outputs = outputs.with_tracker_password(password)
    return outputs
