"""The local secrets backend: the stack's Fernet-encrypted file (stacks.common.fernet)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.secrets import SecretsBackend
from stacks.common.errors import SecretsError, UsageError
from stacks.common.fernet import FernetStore, SecretNameError, SecretStoreError
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

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The store's errors as one line naming the stack (a bad name is bad input)."""
        stack = self.outputs.stack
        try:
            yield
        except SecretNameError as exc:
            raise UsageError(exc.headline, exc.hint) from None
        except SecretStoreError as exc:
            raise SecretsError(f"stack {stack!r}: {exc.headline}", exc.hint) from None

    def get(self, name: str) -> str | None:
        with self._translated():
            return self.store.get(name)

    def set(self, name: str, value: str) -> None:
        with self._translated():
            self.store.set(name, value)

    def delete(self, name: str) -> bool:
        with self._translated():
            return self.store.delete(name)

    def names(self) -> list[str]:
        with self._translated():
            return self.store.names()

    def container_files(self) -> list[Path]:
        return [self.store.path, self.store.key_file]
