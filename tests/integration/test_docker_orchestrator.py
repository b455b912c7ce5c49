"""Pipelines on `orchestrator: docker`: real Docker Engine, real registry, real containers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MLSTACK, run_cli

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "pipelines" / "train.py"
BASE = os.environ.get("MLSTACK_TEST_BASE_IMAGE", "mlstack/base:bookworm")
STACK = "it-docker"

FLOW = """
import os
import sys

from runner import pipeline, step


@step
def where() -> dict:
    return {"in_container": os.path.exists("/.dockerenv"), "python": sys.executable}


@step
def answer() -> int:
    return {answer}


@pipeline(requirements={requirements})
def flow() -> None:
    where()
    answer()
"""


def engine_ready() -> str | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:
        return f"no Docker Engine reachable ({type(exc).__name__})"
    if shutil.which("docker-registry") is None:
        return "Debian's docker-registry is not installed"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    reason = engine_ready()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("docker-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLSTACK_HOME", str(home))
        try:
            built = run_cli("base-image", "build", "--tag", BASE, timeout=1800)
            assert built.returncode == 0, built.stderr
            spec = home / "stack.yaml"
            spec.write_text(
                f"name: {STACK}\ncomponents:\n  container_registry: local\n"
                f"  orchestrator:\n    flavor: docker\n    base_image: {BASE}\n"
            )
            run_cli("up", str(spec), check=True)
            outputs = json.loads(run_cli("outputs", STACK, "--json", "--show-secrets").stdout)
            yield {"home": home, "outputs": outputs}
        finally:
            run_cli("down", STACK, "--yes")


def write_flow(folder: Path, answer: int, requirements: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.py").write_text(
        FLOW.replace("{answer}", str(answer)).replace("{requirements}", repr(requirements))
    )
    return f"{folder / 'flow.py'}:flow"


def run_json(ref: str, *args: str) -> dict:
    proc = run_cli("run", ref, "--stack", STACK, "--json", *args, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def load_output(stack: dict, art: dict) -> object:
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(stack["outputs"]["artifact_store"]["uri"])
    return store.load(art["uri"], art["materializer"], art["type_name"])


def images(stack: dict) -> list[dict]:
    return json.loads(run_cli("images", "--stack", STACK, "--json", check=True).stdout)


def catalog(stack: dict) -> list[str]:
    url = stack["outputs"]["container_registry"]["url"]
    with urllib.request.urlopen(f"http://{url}/v2/_catalog", timeout=10) as resp:
        return list(json.loads(resp.read())["repositories"])


def test_steps_run_in_containers_and_code_changes_build_nothing(
    stack: dict, tmp_path: Path
) -> None:
    ref = write_flow(tmp_path / "proj", 41, [])
    first = run_json(ref, "--no-cache")
    where = load_output(stack, first["steps"]["where"]["outputs"]["output"])
    assert where == {"in_container": True, "python": "/opt/mlstack/venv/bin/python3"}
    assert load_output(stack, first["steps"]["answer"]["outputs"]["output"]) == 41
    assert "mlstack/flow" in catalog(stack)
    builds_before = [i for i in images(stack) if i["action"] == "built"]

    # Change only the code: no image build, and the new code runs.
    write_flow(tmp_path / "proj", 42, [])
    second = run_json(ref, "--no-cache")
    assert load_output(stack, second["steps"]["answer"]["outputs"]["output"]) == 42
    after = images(stack)
    assert [i for i in after if i["action"] == "built"] == builds_before
    assert after[0]["action"] == "reused" and "already in registry" in after[0]["reason"]
    shown = run_cli("images", "--stack", STACK, check=True).stdout
    assert "reused" in shown

    # Change the requirements: exactly one new build.
    write_flow(tmp_path / "proj", 42, ["six"])
    run_json(ref, "--no-cache")
    assert len([i for i in images(stack) if i["action"] == "built"]) == len(builds_before) + 1
    # No step container is left behind.
    import docker

    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": f"mlstack.stack={STACK}"}) == []


@pytest.mark.timeout(1800)  # its first image installs pandas, scikit-learn and MLflow
def test_example_pipeline_on_docker_matches_the_local_result(stack: dict) -> None:
    result = run_json(f"{TRAIN}:training", "--param", "alpha=0.2", "--param", "min_r2=0.2")
    assert {s["status"] for s in result["steps"].values()} == {"completed"}
    metrics = load_output(stack, result["steps"]["evaluate"]["outputs"]["output"])
    # The same steps as plain Python in this process give the same numbers.
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_local_copy", TRAIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    df = module.load.func()
    train_df, test_df = module.split.func(df)
    model = module.Ridge(alpha=0.2).fit(train_df.drop(columns="target"), train_df["target"])
    from sklearn.metrics import r2_score

    local_r2 = r2_score(test_df["target"], model.predict(test_df.drop(columns="target")))
    assert metrics["r2"] == pytest.approx(local_r2)
    assert "mlstack/training" in catalog(stack)
    endpoint = load_output(stack, result["steps"]["deploy"]["outputs"]["output"])
    body = json.dumps({"dataframe_split": test_df.drop(columns="target").head(2).to_dict(
        orient="split")}).encode()  # fmt: skip
    req = urllib.request.Request(
        f"{endpoint}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert len(json.loads(resp.read())["predictions"]) == 2


def test_no_engine_reachable_is_one_clear_line(stack: dict, tmp_path: Path) -> None:
    ref = write_flow(tmp_path / "proj2", 1, [])
    env = dict(os.environ, DOCKER_HOST="tcp://127.0.0.1:1")
    proc = subprocess.run(
        [MLSTACK, "run", ref, "--stack", STACK], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Docker Engine is not reachable" in lines[0], proc.stderr
