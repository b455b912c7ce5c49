"""`mlstack logs RUN STEP` on the Batch harness when the artifact store holds no log of a step
(its container died before writing it): the job's CloudWatch Logs stream, labelled as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.state import StateRegistry
from runner.artifact_stores import open_store
from tests.aws_stack import BatchStack
from tests.conftest import run_cli
from tests.integration.test_aws_batch import run_pipeline, stack  # noqa: F401 - the harness
from tests.integration.test_aws_batch_cost import _record

pytestmark = [pytest.mark.docker, pytest.mark.services]

SIZED = Path(__file__).resolve().parents[1] / "pipelines" / "batch_cost_toy.py"


def test_a_step_log_missing_from_the_store_comes_from_cloudwatch(
    stack: BatchStack,  # noqa: F811
) -> None:
    result = run_pipeline(stack, f"{SIZED}:sized", seconds=1)
    assert result.status == "completed", {n: s.error for n, s in result.steps.items()}
    store = open_store(stack.outputs)
    large = store.log_uri(result.run_id, "large", 1)
    assert store.exists(large)
    store.fs.rm(large.removeprefix("s3://"))  # as if the container died before writing it
    assert not store.exists(large)
    registry = StateRegistry()
    record = _record(stack)
    registry.save(record)
    try:
        gone = run_cli("logs", result.run_id, "large", "--stack", record.name, timeout=120)
        kept = run_cli("logs", result.run_id, "small", "--stack", record.name, timeout=120)
    finally:
        registry.save(record.model_copy(update={"status": "destroyed"}))
    assert gone.returncode == 0, gone.stderr
    assert "from CloudWatch Logs" in gone.stdout and "holds no log of it" in gone.stdout
    assert "large: sleeping 1.0 s after 1.0" in gone.stdout
    assert kept.returncode == 0, kept.stderr
    assert "small: sleeping 1.0 s" in kept.stdout and "CloudWatch" not in kept.stdout
