"""Pipelines on the real local stack: runs, artifacts, caching, failures, tracking, deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import MLSTACK, gone, run_cli, stack_up

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "pipelines" / "toy.py"
TRAIN = ROOT / "examples" / "pipelines" / "train.py"
STACK = "it-runner"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One real local stack (MLflow + metadata server) for this module's tests."""
    home = tmp_path_factory.mktemp("runner-home")
    with stack_up(home, STACK, f"name: {STACK}\nprovider: local\n") as stack:
        yield stack


def run_json(ref: str, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = run_cli("run", ref, "--stack", STACK, "--json", *args, timeout=300)
    data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc, data


def statuses(result: dict) -> dict[str, str]:
    return {name: s["status"] for name, s in result["steps"].items()}


def metadata_get(stack: dict, path: str) -> object:
    meta = stack["outputs"]["metadata"]
    req = urllib.request.Request(meta["url"] + path)
    req.add_header("Authorization", f"Bearer {meta['token']}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def no_process_with(text: str, wait: float = 10.0) -> bool:
    """True once no live process has ``text`` in its command line (waits up to ``wait`` s)."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
            except psutil.Error:
                continue
            if text in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_fan_pipeline_runs_artifacts_and_lineage(stack: dict) -> None:
    proc, result = run_json(f"{TOY}:fan", "--param", "n=4", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(result).values()) == {"completed"}
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(stack["outputs"]["artifact_store"]["uri"])
    report = result["steps"]["report"]["outputs"]["output"]
    assert store.verify(report["uri"], report["content_hash"])
    value = store.load(report["uri"], report["materializer"], report["type_name"])
    assert value == {"total": 6, "doubled": [0, 2, 4, 6], "range": [0, 3]}
    for step in result["steps"].values():
        for art in step["outputs"].values():
            assert store.verify(art["uri"], art["content_hash"]), art
    edges = metadata_get(stack, f"/runs/{result['run_id']}/lineage")
    assert isinstance(edges, list)
    inputs = {(e["step_name"], e["name"]) for e in edges if e["direction"] == "input"}
    assert {("total", "values"), ("report", "smallest"), ("report", "doubled")} <= inputs
    logs = run_cli("logs", result["run_id"], "numbers", "--stack", STACK, check=True)
    assert "making 4 numbers" in logs.stdout
    shown = json.loads(run_cli("run-show", result["run_id"][:10], "--json", check=True).stdout)
    assert {s["name"] for s in shown["steps"]} == set(result["steps"])


def test_cache_hits_and_a_parameter_reruns_only_what_it_reaches(stack: dict) -> None:
    proc, first = run_json(f"{TOY}:fan", "--param", "n=7")
    assert proc.returncode == 0, proc.stderr
    proc, second = run_json(f"{TOY}:fan", "--param", "n=7")
    assert set(statuses(second).values()) == {"cached"}
    assert (
        second["steps"]["report"]["outputs"]["output"]["uri"]
        == (first["steps"]["report"]["outputs"]["output"]["uri"])
    )
    proc, third = run_json(f"{TOY}:fan", "--param", "n=8")
    assert set(statuses(third).values()) == {"completed"}  # n reaches every step
    proc, forced = run_json(f"{TOY}:fan", "--param", "n=7", "--no-cache")
    assert set(statuses(forced).values()) == {"completed"}
    listed = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
    row = next(r for r in listed if r["run_id"] == second["run_id"])
    assert row["cached"] == 5 and row["status"] == "completed"


def test_failing_step_fails_run_skips_downstream_and_leaves_no_process(stack: dict) -> None:
    proc = run_cli("run", f"{TOY}:failing", "--stack", STACK, timeout=120)
    assert proc.returncode == 1
    assert "step 'explode' raised ValueError: cannot handle 5 values" in proc.stderr
    assert "about to fail" in proc.stderr  # the log tail
    assert "Traceback" in proc.stderr  # the step's own traceback, from its log tail
    runs = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
    failed = next(r for r in runs if r["pipeline"] == "failing")
    assert failed["status"] == "failed"
    shown = json.loads(run_cli("run-show", failed["run_id"], "--json", check=True).stdout)
    by_name = {s["name"]: s["status"] for s in shown["steps"]}
    assert by_name["explode"] == "failed"
    assert by_name["report"] == "skipped"
    assert no_process_with(f"{TOY}:failing")


def test_killed_driver_marks_the_run_failed_and_stops_its_steps(
    stack: dict, tmp_path: Path
) -> None:
    marker = tmp_path / "slow.pid"
    env = dict(os.environ, MLSTACK_TEST_MARKER=str(marker))
    driver = subprocess.Popen(
        [MLSTACK, "run", f"{TOY}:sleepy", "--stack", STACK],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline, "the slow step never started"
            assert driver.poll() is None, "driver exited early"
            time.sleep(0.1)
        step_pid = int(marker.read_text())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not gone(step_pid):
            assert time.monotonic() < deadline, "the step kept running after its driver died"
            time.sleep(0.1)
        runs = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
        sleepy = next(r for r in runs if r["pipeline"] == "sleepy")
        assert sleepy["status"] == "failed"
        assert "driver" in (sleepy["error"] or "")
        assert no_process_with(f"{TOY}:sleepy")
    finally:
        if driver.poll() is None:
            driver.kill()


def test_ctrl_c_cancels_the_run(stack: dict, tmp_path: Path) -> None:
    marker = tmp_path / "slow.pid"
    env = dict(os.environ, MLSTACK_TEST_MARKER=str(marker))
    driver = subprocess.Popen(
        [MLSTACK, "run", f"{TOY}:sleepy", "--stack", STACK],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline, "the slow step never started"
            time.sleep(0.1)
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=30)
        assert driver.returncode == 130, err
        assert "cancelled" in err
        runs = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
        assert next(r for r in runs if r["pipeline"] == "sleepy")["status"] == "cancelled"
        assert no_process_with(f"{TOY}:sleepy")
    finally:
        if driver.poll() is None:
            driver.kill()


def test_step_reads_a_secret_from_the_backend_never_the_code(stack: dict) -> None:
    value = "pw-only-in-the-backend-9431"
    run_cli("secret", "set", STACK, "db", value, check=True)
    proc, result = run_json(f"{TOY}:secretive", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    out = result["steps"]["use_secret"]["outputs"]["output"]
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(stack["outputs"]["artifact_store"]["uri"])
    assert store.load(out["uri"], out["materializer"], out["type_name"]) == {
        "length": len(value),
        "starts": "pw",
    }
    assert value not in proc.stdout + proc.stderr
    run_cli("secret", "rm", STACK, "db", check=True)
    proc = run_cli("run", f"{TOY}:secretive", "--stack", STACK, "--no-cache")
    assert proc.returncode == 1
    assert "SecretNotFound: secret 'db' is not in the secrets backend" in proc.stderr


def test_example_training_pipeline_end_to_end(stack: dict) -> None:
    proc, result = run_json(f"{TRAIN}:training", "--param", "alpha=0.3")
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(result).values()) == {"completed"}
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(stack["outputs"]["artifact_store"]["uri"])
    for step in result["steps"].values():
        for art in step["outputs"].values():
            assert store.verify(art["uri"], art["content_hash"])
    endpoint = store.load(**_load_args(result["steps"]["deploy"]["outputs"]["output"]))
    model = store.load(**_load_args(result["steps"]["train"]["outputs"]["output"]))
    test_df = store.load(**_load_args(result["steps"]["split"]["outputs"]["test"]))
    features = test_df.drop(columns="target").head(3)
    body = json.dumps({"dataframe_split": features.to_dict(orient="split")}).encode()
    req = urllib.request.Request(
        f"{endpoint}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        served = json.loads(resp.read())["predictions"]
    assert served == pytest.approx(list(model.predict(features)))

    # MLflow has the run's params and metrics, and a registered version linked to the run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack["outputs"]["tracker"]["uri"])
    tracked = client.get_run(result["tracker_run_id"])
    assert tracked.data.params["alpha"] == "0.3"
    assert tracked.data.metrics["r2"] > 0.2
    assert tracked.data.tags["mlstack.run_id"] == result["run_id"]
    versions = client.search_model_versions("name='diabetes-ridge'")
    assert any(v.tags.get("mlstack.run_id") == result["run_id"] for v in versions)

    listed = json.loads(run_cli("deployments", "--stack", STACK, "--json", check=True).stdout)
    live = [d for d in listed if d["endpoint_url"] == endpoint]
    assert live and live[0]["status"] == "running"
    pid = live[0]["details"]["pid"]
    run_cli("undeploy", live[0]["id"][:10], "--stack", STACK, check=True)
    assert gone(pid)


def test_down_stops_deployments_first(tmp_path: Path, stack: dict) -> None:
    """Runs last in this module: deploys again, then the module's down must stop it."""
    proc, _result = run_json(f"{TRAIN}:training", "--param", "alpha=0.4")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(run_cli("deployments", "--stack", STACK, "--json", check=True).stdout)
    live = next(d for d in listed if d["status"] == "running")
    pid = live["details"]["pid"]
    proc = run_cli("down", STACK, "--yes", "--json", check=True)
    assert gone(pid), "the endpoint outlived mlstack down"
    report = json.loads(proc.stdout)
    assert [(i["kind"], i["name"]) for i in report["drained"]] == [("endpoint", live["name"])]
    assert report["ok"] and report["leftovers"] == [] and report["total_spend"] == 0
    # Drained before anything else: the endpoint's lines come before any service stops.
    lines = proc.stderr.splitlines()
    drained_at = max(i for i, ln in enumerate(lines) if ln.startswith(f"endpoint {live['name']}"))
    first_stop = min(i for i, ln in enumerate(lines) if ln.startswith(("tracker:", "metadata:")))
    assert drained_at < first_stop, proc.stderr
    run_cli("up", str(stack["spec"]), check=True)  # the fixture's down expects a live stack


def _load_args(art: dict) -> dict:
    return {"uri": art["uri"], "materializer": art["materializer"], "type_name": art["type_name"]}
