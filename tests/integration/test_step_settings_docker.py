"""@step resources, retries and timeout on `orchestrator: docker` (real containers)."""

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
from tests.integration.test_step_settings_local import LIGHT, load
from tests.integration.test_step_settings_local import write as write_flow

pytestmark = pytest.mark.docker

BASE = os.environ.get("MLSTACK_TEST_BASE_IMAGE", "mlstack/base:bookworm")
STACK = "it-step-settings-docker"

HEADER = """
import os
import time
from pathlib import Path

from runner import pipeline, step
from runner.context import current


def attempt() -> int:
    ctx = current()
    return int(ctx.metadata.get_step(ctx.step_id).spec["attempt"])


def cgroup(v1: str, v2: str) -> str:
    for path in (Path("/sys/fs/cgroup") / v2, Path("/sys/fs/cgroup") / v1):
        if path.exists():
            return path.read_text().strip()
    return "missing"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    reason = engine_ready()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("settings-docker-home")
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


def write(folder: Path, body: str) -> str:
    return write_flow(folder, body, HEADER)


def stack_containers() -> list:
    import docker

    return docker.from_env().containers.list(
        all=True, filters={"label": f"mlstack.stack={STACK}"}, ignore_removed=True
    )


def test_cpu_and_memory_are_the_containers_limits(stack: dict, tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        """
        @step(resources={"cpu": 0.5, "memory_gib": 0.25})
        def limited() -> dict:
            time.sleep(8)  # long enough for the test to inspect the running container
            return {
                "cpu": cgroup("cpu/cpu.cfs_quota_us", "cpu.max"),
                "memory": cgroup("memory/memory.limit_in_bytes", "memory.max"),
            }

        @step
        def unlimited() -> str:
            return cgroup("cpu/cpu.cfs_quota_us", "cpu.max")

        @pipeline
        def flow() -> None:
            limited()
            unlimited()
        """,
    )
    proc = subprocess.Popen(
        [str(MLSTACK), "run", ref, "--stack", STACK, "--json", "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    host_configs: dict[str, dict] = {}
    try:
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline and "limited" not in host_configs:
            for container in stack_containers():
                try:
                    container.reload()
                    log_cmd = " ".join(container.attrs["Config"]["Cmd"])
                except Exception:
                    continue
                if "limited.json" in log_cmd:
                    host_configs["limited"] = container.attrs["HostConfig"]
            time.sleep(0.2)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "limited" in host_configs, "the step's container was never seen running"
    assert host_configs["limited"]["NanoCpus"] == 500_000_000
    assert host_configs["limited"]["Memory"] == 256 * 1024**2
    steps = json.loads(out)["steps"]
    inside = load(stack, steps["limited"]["outputs"]["output"])
    assert isinstance(inside, dict)
    assert inside["memory"] == str(256 * 1024**2)
    assert inside["cpu"] in ("50000", "50000 100000")  # cgroup v1 quota / v2 "quota period"
    assert load(stack, steps["unlimited"]["outputs"]["output"]) in ("-1", "max 100000")


def test_retries_and_timeouts_in_containers(stack: dict, tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        """
        @step(retries=1)
        def flaky() -> int:
            n = attempt()
            print(f"container attempt {n}")
            if n == 1:
                raise RuntimeError("first container attempt fails")
            return n

        @step(timeout="3s")
        def slow() -> int:
            print("slow container waiting", flush=True)
            time.sleep(300)
            return 1

        @step
        def after(x: int) -> int:
            return x

        @pipeline
        def flow() -> None:
            flaky()
            after(slow())
        """,
    )
    proc = run_cli("run", ref, "--stack", STACK, "--json", "--no-cache", timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    steps = result["steps"]
    assert (steps["flaky"]["status"], steps["flaky"]["attempts"]) == ("completed", 2)
    assert load(stack, steps["flaky"]["outputs"]["output"]) == 2
    assert (steps["slow"]["status"], steps["slow"]["error"]) == ("failed", "timed out after 3s")
    assert steps["after"]["status"] == "skipped"
    assert result["seconds"] < 200  # the 300 s sleep was cut short
    log = run_cli("logs", result["run_id"], "flaky", "--stack", STACK, check=True).stdout
    assert "container attempt 1" in log
    assert "container attempt 2" in log
    shown = json.loads(run_cli("run-show", result["run_id"], "--stack", STACK, "--json").stdout)
    assert {s["name"]: s["attempts"] for s in shown["steps"]}["flaky"] == 2
    assert not [c for c in stack_containers() if c.labels.get("mlstack.run") == result["run_id"]]


def test_a_gpu_request_on_a_machine_without_gpus_is_one_clear_line(
    stack: dict, tmp_path: Path
) -> None:
    import docker

    if "nvidia" in (docker.from_env().info().get("Runtimes") or {}):
        pytest.skip("this Docker Engine has the NVIDIA runtime")  # pragma: no cover
    ref = write(
        tmp_path,
        """
        @step(resources={"gpus": 1})
        def train() -> int:
            return 1

        @pipeline
        def flow() -> None:
            train()
        """,
    )
    # This stack's containers only (the probe and the import check carry its label from the
    # image): other people's containers come and go on a shared engine.
    before = {c.id for c in stack_containers()}
    proc = run_cli("run", ref, "--stack", STACK, timeout=900)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "asks for 1 GPU(s) but the Docker Engine cannot provide them" in lines[0]
    assert "Traceback" not in proc.stderr
    after = {c.id for c in stack_containers()}
    assert not (after - before), "the GPU probe left a container behind"
