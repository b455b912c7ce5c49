"""The local secrets backend: the stack's Fernet-encrypted file (stacks.common.fernet)."""

from __future__ import annotations

from pathlib import Path

from runner.secrets import SecretsBackend
from stacks.common.errors import SecretsError
from stacks.common.fernet import FernetStore
from stacks.outputs import LocalSecretsOutputs, StackOutputs


class LocalSecrets(SecretsBackend):
    def __init__(self, outputs: StackOutputs) -> None:
        super().__init__(outputs)
        coords = outputs.secrets
        assert isinstance(coords, LocalSecretsOutputs)
        self.store = FernetStore(coords.path, coords.key_file)
        if not self.store.exists():
            raise SecretsError(
                f"the secrets backend of stack {outputs.stack!r} is missing ({self.store.path})",
                f"run `mlstack up` for {outputs.stack!r} to recreate it",
            )

    def get(self, name: str) -> str | None:
        return self.store.get(name)

    def set(self, name: str, value: str) -> None:
        self.store.set(name, value)

    def delete(self, name: str) -> bool:
        return self.store.delete(name)

    def names(self) -> list[str]:
        return self.store.names()

    def container_files(self) -> list[Path]:
        return [self.store.path, self.store.key_file]
