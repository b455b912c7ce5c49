"""Issue 9, problem 4 on `orchestrator: docker`: a step container killed by SIGKILL keeps the
lines the step printed before (the log is a host file the container appends to)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MLSTACK, run_cli, stack_up
from tests.integration.test_docker_orchestrator import engine_ready
from tests.integration.test_step_settings_local import LIGHT

pytestmark = pytest.mark.docker

BASE = os.environ.get("MLSTACK_TEST_BASE_IMAGE", "mlstack/base:bookworm")
STACK = "it-logs-docker"

FLOW = """
import time
from pathlib import Path

from runner import pipeline, step
from runner.context import current


@step
def doomed() -> int:
    print("printed before the container was killed")
    store = Path(current().outputs.artifact_store.uri.removeprefix("file://"))
    (store / "doomed-started").write_text("")
    time.sleep(300)
    return 1


@pipeline
def flow() -> None:
    doomed()
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    reason = engine_ready()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("logs-docker-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLSTACK_HOME", str(home))
        built = run_cli("base-image", "build", "--tag", BASE, timeout=1800)
        assert built.returncode == 0, built.stderr
    spec = (
        f"name: {STACK}\ncomponents:\n  container_registry: local\n"
        f"  orchestrator:\n    flavor: docker\n    base_image: {BASE}\n{LIGHT}"
    )
    with stack_up(home, STACK, spec) as stack:
        yield stack


def test_a_step_container_killed_by_sigkill_keeps_what_it_printed(
    stack: dict, tmp_path: Path
) -> None:
    import docker

    (tmp_path / "flow.py").write_text(FLOW)
    marker = Path(stack["outputs"]["artifact_store"]["uri"].removeprefix("file://"))
    marker = marker / "doomed-started"
    driver = subprocess.Popen(
        [MLSTACK, "run", f"{tmp_path / 'flow.py'}:flow", "--stack", STACK, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 900  # the first run builds the image
        while not marker.exists():
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.2)
        client = docker.from_env()
        running = client.containers.list(filters={"label": f"mlstack.stack={STACK}"})
        assert len(running) == 1
        running[0].kill()  # SIGKILL from outside: nothing in the container can flush
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 1, err[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    result = json.loads(out)
    assert result["steps"]["doomed"]["status"] == "failed"
    assert "printed before the container was killed" in err  # the failure's log tail
    log = run_cli("logs", result["run_id"], "doomed", check=True).stdout
    assert "printed before the container was killed" in log
