"""The local secrets backend's file format: one Fernet-encrypted file plus a 0600 key file.

This module is the store's format and its only reader/writer; both the provisioner (which
stores the metadata token at up) and the runner's secrets client use it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from stacks.common.errors import SecretsError, writing

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


RECREATE_HINT = "`mlstack up` the stack again to recreate it (its secrets are lost)"
LOST_KEY_HINT = (
    "restore the stack's key file from a backup, or remove the store and key and `mlstack up`"
    " again (its secrets are lost)"
)


class SecretStoreError(SecretsError):
    """The store is missing, unreadable or its key does not match, or a name is invalid."""


class SecretNameError(SecretStoreError):
    """A secret name the store does not accept (bad input: exit 2)."""

    exit_code = 2


class FernetStore:
    """Secrets encrypted at rest with cryptography's Fernet; values never leave as text logs."""

    def __init__(self, path: str | Path, key_file: str | Path) -> None:
        self.path = Path(path)
        self.key_file = Path(key_file)
        self._lock = FileLock(str(self.path) + ".lock", timeout=30)

    def __repr__(self) -> str:
        return f"FernetStore(path={str(self.path)!r})"

    @classmethod
    def create(cls, path: str | Path, key_file: str | Path) -> FernetStore:
        """Create the key (0600) and an empty store if they do not exist yet."""
        from cryptography.fernet import Fernet

        store = cls(path, key_file)
        with writing(store.path.parent):
            store.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not store.key_file.exists():
            with writing(store.key_file):
                fd = os.open(store.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(Fernet.generate_key())
        if not store.path.exists():
            with store._lock:
                store._write({})
        return store

    def exists(self) -> bool:
        return self.path.is_file() and self.key_file.is_file()

    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet

        try:
            return Fernet(self.key_file.read_bytes().strip())
        except FileNotFoundError:
            raise SecretStoreError(
                f"secrets key file {self.key_file} is missing", RECREATE_HINT
            ) from None
        except (ValueError, TypeError):  # not 32 url-safe base64 bytes
            raise SecretStoreError(
                f"secrets key file {self.key_file} is not a Fernet key", LOST_KEY_HINT
            ) from None
        except OSError as exc:
            raise SecretStoreError(
                f"secrets key file {self.key_file} cannot be read: {exc.strerror}"
            ) from None

    def _read(self) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            raise SecretStoreError(f"secrets store {self.path} is missing", RECREATE_HINT) from None
        except OSError as exc:
            raise SecretStoreError(
                f"secrets store {self.path} cannot be read: {exc.strerror}"
            ) from None
        try:
            data: dict[str, str] = json.loads(self._fernet().decrypt(blob))
        except InvalidToken:
            raise SecretStoreError(
                f"secrets store {self.path} cannot be decrypted with {self.key_file}",
                LOST_KEY_HINT,
            ) from None
        return data

    def _write(self, data: dict[str, str]) -> None:
        blob = self._fernet().encrypt(json.dumps(data, sort_keys=True).encode())
        with writing(self.path):
            self._write_blob(blob)

    def _write_blob(self, blob: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".secrets-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def check_name(name: str) -> None:
        if not SECRET_NAME_RE.match(name):
            raise SecretNameError(
                f"secret name {name!r} is invalid", "use 1-128 of A-Z a-z 0-9 _ . -"
            )

    def set(self, name: str, value: str) -> None:
        self.check_name(name)
        with self._lock:
            data = self._read()
            data[name] = value
            self._write(data)

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def names(self) -> list[str]:
        return sorted(self._read())

    def delete(self, name: str) -> bool:
        with self._lock:
            data = self._read()
            if name not in data:
                return False
            del data[name]
            self._write(data)
            return True
