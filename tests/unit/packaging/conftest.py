"""Fixtures for the packaging tests: stack outputs and small pipelines in temp folders."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.sdk import Pipeline
from stacks.outputs import StackOutputs

_COUNTER = itertools.count()


def _outputs(
    registry: str = "127.0.0.1:5000",
    base_image: str | None = "mlstack/base:bookworm",
    metadata_url: str = "http://127.0.0.1:1",
    token: str | None = None,
    stack: str = "pkg-test",
) -> StackOutputs:
    """Outputs of a local docker stack; only the fields packaging reads matter."""
    return StackOutputs.model_validate(
        {
            "stack": stack,
            "stack_id": "s-1",
            "provider": "local",
            "artifact_store": {"kind": "local", "uri": "file:///tmp/none"},
            "container_registry": {"kind": "local", "url": registry},
            "orchestrator": {"kind": "docker", "base_image": base_image},
            "secrets": {
                "kind": "local",
                "path": "/nonexistent/store.enc",
                "key_file": "/nonexistent/key",
            },
            "tracker": {"kind": "none"},
            "deployer": {"kind": "none"},
            "metadata": {"url": metadata_url, "token": token},
        }
    )


@pytest.fixture
def make_outputs() -> Callable[..., StackOutputs]:
    """Build StackOutputs of a local docker stack (registry, base image, metadata)."""
    return _outputs


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """Write a one-step pipeline module in a fresh folder and import it by file path."""
    loaded: list[tuple[str, str]] = []

    def write(
        requirements: list[str] | None = None, files: dict[str, str] | None = None
    ) -> Pipeline:
        from runner.loader import load_pipeline

        folder = tmp_path / f"src{next(_COUNTER)}"
        folder.mkdir()
        module = f"pkgflow_{next(_COUNTER)}"
        decorator = (
            "@pipeline" if requirements is None else f"@pipeline(requirements={requirements!r})"
        )
        (folder / f"{module}.py").write_text(
            textwrap.dedent(
                f"""
                from runner import pipeline, step

                @step
                def one() -> int:
                    return 1

                {decorator}
                def flow():
                    one()
                """
            )
        )
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        loaded.append((module, str(folder)))
        return load_pipeline(f"{folder / module}.py:flow")

    yield write
    for module, folder in loaded:
        sys.modules.pop(module, None)
        if folder in sys.path:
            sys.path.remove(folder)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests look inside $MLSTACK_HOME/cache: no shared cache folder from CI here."""
    monkeypatch.delenv("MLSTACK_CACHE_DIR", raising=False)
