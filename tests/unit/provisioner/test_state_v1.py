"""A state file written by mlstack before per-flavor specs (outputs version 1) still loads.

``fixtures/state_v1.json`` is the real state file of a local stack brought up by the commit
before the flavors refactor (c59d871^): its spec carries every flavor's settings on every
component and its outputs are version 1 optional bags.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.state import StateRegistry
from stacks.outputs import OUTPUTS_VERSION, LocalArtifactStoreOutputs
from stacks.spec import LocalStackSpec, TrackerFlavor

FIXTURE = Path(__file__).parent / "fixtures" / "state_v1.json"
MLSTACK = str(Path(sys.executable).parent / "mlstack")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(FIXTURE, home / "state.json")
    return home


def test_a_v1_record_loads_as_todays_typed_spec_and_outputs(home: Path) -> None:
    record = StateRegistry(home).get("oldstack")

    assert record is not None
    assert isinstance(record.spec, LocalStackSpec)
    assert record.spec.components.tracker.flavor is TrackerFlavor.none
    assert record.spec.components.orchestrator.model_dump() == {
        "flavor": "local",
        "max_parallel": 4,
    }
    assert record.outputs is not None and record.outputs.version == OUTPUTS_VERSION
    assert isinstance(record.outputs.artifact_store, LocalArtifactStoreOutputs)
    assert record.outputs.metadata.token_secret == "mlstack-metadata-token"
    assert record.stack_id == "oldstack-80d05c"


def test_a_v1_record_saved_again_is_written_in_todays_shape(home: Path) -> None:
    registry = StateRegistry(home)
    record = registry.get("oldstack")
    assert record is not None

    registry.save(record)

    raw = json.loads((home / "state.json").read_text())
    (stored,) = raw["stacks"].values()
    assert stored["outputs"]["version"] == OUTPUTS_VERSION
    assert "cpu" not in stored["spec"]["components"]["tracker"]
    assert registry.get("oldstack") == record


def test_mlstack_status_reads_a_v1_state_file(home: Path) -> None:
    proc = subprocess.run(
        [MLSTACK, "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, MLSTACK_HOME=str(home)),
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    (stack,) = json.loads(proc.stdout)
    assert (stack["name"], stack["provider"], stack["status"]) == ("oldstack", "local", "up")
