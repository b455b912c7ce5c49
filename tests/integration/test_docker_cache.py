"""Issue 9, problem 1 on `orchestrator: docker`: code changes the step can see rerun it.

The cache key is computed by the driver on the host, but the code that runs is the copy
that travelled to the container: a stale hit here would run old results with new code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_docker_orchestrator import run_json, stack
from tests.integration.test_runner_trust import check_stale_cache

pytestmark = pytest.mark.docker

__all__ = ["stack"]  # the module-scoped docker stack fixture, shared with its module


def test_stale_cache_helper_constant_and_local_module_docker(stack: dict, tmp_path: Path) -> None:
    check_stale_cache(stack, tmp_path / "proj", run_json)
