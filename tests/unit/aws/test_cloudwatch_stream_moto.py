"""Reading a whole CloudWatch Logs stream (the `mlstack logs` fallback) on a real moto server."""

from __future__ import annotations

import time
import uuid

import pytest

from runner.cloudwatch_logs import read_stream

pytestmark = pytest.mark.services

REGION = "us-east-1"


def test_a_stream_is_read_whole_in_order_and_a_missing_one_is_none(aws_env: str) -> None:
    import boto3

    logs = boto3.client("logs", region_name=REGION)
    group, stream = f"/mlstack/test-{uuid.uuid4().hex[:8]}/jobs", "mlstack/default/task-1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    lines = [f"line {n}" for n in range(30)]
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + n, "message": m} for n, m in enumerate(lines)],
    )
    try:
        assert read_stream(logs, group, stream) == lines
        assert read_stream(logs, group, "mlstack/default/no-such-task") is None
    finally:
        logs.delete_log_group(logGroupName=group)
