"""``mlstack secret`` on a damaged local store: one line naming the stack and a fix, never raw.

Each case damages the real Fernet store of a recorded stack the way a user's disk can be
damaged (a lost or replaced key, a garbled key or store) and runs the real CLI.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.state import StackRecord, StateRegistry
from runner.secrets import secrets_backend
from stacks.common.errors import SecretsError, UsageError
from stacks.common.fernet import FernetStore
from stacks.outputs import load_outputs
from tests.conftest import local_outputs_data

MLSTACK = str(Path(sys.executable).parent / "mlstack")
STACK = "vault"


@pytest.fixture
def store(tmp_path: Path) -> FernetStore:
    """A recorded stack whose local secrets backend holds one secret."""
    home = tmp_path / "home"
    secrets = tmp_path / "secrets"
    store = FernetStore.create(secrets / "store.enc", secrets / "key")
    store.set("api-key", "s3cr3t-value")
    data = local_outputs_data(
        STACK, secrets={"kind": "local", "path": str(store.path), "key_file": str(store.key_file)}
    )
    StateRegistry(home).save(
        StackRecord(
            name=STACK,
            stack_id=f"{STACK}-0001",
            provider="local",
            status="up",
            spec={"name": STACK, "provider": "local"},
            spec_hash="0123456789abcdef",
            outputs=load_outputs(data),
        )
    )
    return store


def mlstack(store: FernetStore, *args: str) -> subprocess.CompletedProcess[str]:
    home = store.path.parent.parent / "home"
    return subprocess.run(
        [MLSTACK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, MLSTACK_HOME=str(home)),
        check=False,
    )


def other_key(store: FernetStore) -> None:
    store.key_file.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))


def garbled_key(store: FernetStore) -> None:
    store.key_file.write_bytes(b"not a key\n")


def garbled_store(store: FernetStore) -> None:
    store.path.write_bytes(b"junk")


def missing_key(store: FernetStore) -> None:
    store.key_file.unlink()


DAMAGE: list[tuple[Callable[[FernetStore], None], str, str]] = [
    (other_key, "cannot be decrypted with", "restore the stack's key file"),
    (garbled_key, "is not a Fernet key", "restore the stack's key file"),
    (garbled_store, "cannot be decrypted with", "restore the stack's key file"),
    (missing_key, "is missing", "mlstack up"),
]
COMMANDS = [("get", "api-key"), ("list",), ("rm", "api-key"), ("set", "other", "value")]


@pytest.mark.parametrize(
    ("damage", "problem", "hint"), DAMAGE, ids=lambda d: getattr(d, "__name__", "")
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_damaged_store_is_one_line_naming_the_stack_and_a_fix(
    store: FernetStore,
    damage: Callable[[FernetStore], None],
    problem: str,
    hint: str,
    command: tuple[str, ...],
) -> None:
    damage(store)

    proc = mlstack(store, "secret", command[0], STACK, *command[1:])

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ")
    assert STACK in line and problem in line and hint in line
    assert "Error:" not in line and "--debug" not in line  # no raw class name
    assert "s3cr3t" not in proc.stderr


def test_an_invalid_secret_name_is_bad_input(store: FernetStore) -> None:
    proc = mlstack(store, "secret", "set", STACK, "bad name", "value")

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: secret name 'bad name' is invalid (use 1-128 of A-Z a-z 0-9 _ . -)"
    )
    assert FernetStore(store.path, store.key_file).names() == ["api-key"]


def test_get_secret_in_a_step_raises_the_same_translated_errors(store: FernetStore) -> None:
    outputs = StateRegistry(store.path.parent.parent / "home").get(STACK)
    assert outputs is not None and outputs.outputs is not None
    backend = secrets_backend(outputs.outputs)
    garbled_key(store)

    with pytest.raises(SecretsError, match=f"stack '{STACK}': secrets key file .* not a Fernet"):
        backend.get("api-key")
    with pytest.raises(UsageError, match="is invalid"):
        backend.set("bad/name", "x")
