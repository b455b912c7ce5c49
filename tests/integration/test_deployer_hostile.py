"""The local deployer under races and hostile requests, on a real local stack with MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.metadata import TOKEN_ENV
from tests.conftest import run_cli, stack_up

pytestmark = pytest.mark.services

STACK = "it-deployer"
MODEL = "it-deployer-ridge"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local stack with MLflow and the deployer, and one registered model version."""
    home = tmp_path_factory.mktemp("deployer-home")
    with stack_up(home, STACK, f"name: {STACK}\nprovider: local\n") as stack:
        _register(stack["outputs"]["tracker"]["uri"])
        yield stack["outputs"]


def _register(tracker_uri: str) -> None:
    code = (
        "import mlflow, numpy as np\n"
        "from sklearn.linear_model import Ridge\n"
        f"mlflow.set_tracking_uri({tracker_uri!r})\n"
        "with mlflow.start_run():\n"
        "    m = Ridge().fit(np.arange(6).reshape(3, 2), [1, 2, 3])\n"
        f"    mlflow.sklearn.log_model(m, name='model', registered_model_name={MODEL!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=180)


def _post(outputs: dict[str, Any], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        outputs["deployer"]["url"] + "/deployments",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {outputs['metadata']['token']}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _body(outputs: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "model_name": MODEL,
        "version": "1",
        "name": name,
        "tracker_uri": outputs["tracker"]["uri"],
        "metadata_url": outputs["metadata"]["url"],
    }


def _meta(outputs: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        outputs["metadata"]["url"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {outputs['metadata']['token']}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _deployer_process(outputs: dict[str, Any]) -> psutil.Process:
    port = int(outputs["deployer"]["url"].rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError("no process listens on the deployer's port")


def _live(outputs: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = _meta(outputs, "GET", f"/deployments?stack={STACK}")
    return [d for d in found if d["name"] == name and d["status"] in ("starting", "running")]


def test_a_path_traversal_name_is_refused_before_it_touches_a_path(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    name = "../../../../.." + str(target)
    status, body = _post(stack, _body(stack, name))
    assert status == 422, body
    assert not list(tmp_path.iterdir())
    assert not any("pwned" in p.name for p in Path(stack["deployer"]["workdir"]).rglob("*"))
    for bad in ("UPPER", "-x", "a" * 64, "a_b", "a.b", ""):
        assert _post(stack, _body(stack, bad))[0] == 422, bad


def test_concurrent_deploys_of_one_name_leave_only_the_recorded_endpoint(
    stack: dict[str, Any],
) -> None:
    """Four deploys of one name at once: they serialize, each replacing the last; afterwards
    only the recorded endpoint (and its front) runs, at the one stable URL, without the token."""
    results: list[tuple[int, dict[str, Any]]] = []

    def deploy() -> None:
        results.append(_post(stack, _body(stack, "race")))

    threads = [threading.Thread(target=deploy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert len(results) == 4
    assert all(status in (200, 409) for status, _ in results), results
    ok = [body for status, body in results if status == 200]
    assert ok, results
    assert len({body["endpoint_url"] for body in ok}) == 1  # the URL never moved

    live = _live(stack, "race")
    assert len(live) == 1 and live[0]["status"] == "running", live
    recorded = live[0]
    workdir = Path(stack["deployer"]["workdir"])
    backend = json.loads((workdir / f"{recorded['id']}.json").read_text())
    front = json.loads((workdir / "front-race.json").read_text())
    deployer = _deployer_process(stack)
    time.sleep(1.0)  # replaced endpoints are stopped before their deploy answered; settle
    tops = {c.pid for c in deployer.children() if c.status() != psutil.STATUS_ZOMBIE}
    assert tops == {backend["pid"], front["pid"]}, (tops, backend, front)

    for pid in tops:  # the endpoint, its uvicorn workers and the front: no token
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            assert TOKEN_ENV not in proc.environ(), proc.cmdline()
    with urllib.request.urlopen(ok[0]["endpoint_url"] + "/ping", timeout=10) as resp:
        assert resp.status == 200

    run_cli("undeploy", "race", "--stack", STACK, check=True)
    assert not _live(stack, "race")
    deadline = time.monotonic() + 15
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in tops):
        assert time.monotonic() < deadline, "endpoint processes outlived undeploy"
        time.sleep(0.1)


def test_undeploy_never_signals_a_pid_from_a_forged_record(stack: dict[str, Any]) -> None:
    victim = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        created = psutil.Process(victim.pid).create_time()
        for name, details in (
            ("forged-a", {"pid": victim.pid, "create_time": created}),
            ("forged-b", {"pid": victim.pid}),
        ):
            _meta(
                stack,
                "POST",
                "/deployments",
                {
                    "name": name,
                    "stack": STACK,
                    "model_name": MODEL,
                    "model_version": "1",
                    "status": "running",
                    "details": details,
                },
            )
            run_cli("undeploy", name, "--stack", STACK, check=True)
            assert victim.poll() is None, f"undeploy of {name} killed an unrelated process"
            assert not _live(stack, name)
    finally:
        victim.kill()
        victim.wait()
