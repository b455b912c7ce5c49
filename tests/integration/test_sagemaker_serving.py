"""The SageMaker serving image as a real container: GET /ping and POST /invocations on 8080.

moto's SageMaker is API-only, so the container contract is tested here, the way SageMaker
runs it: ``docker run IMAGE serve`` with the model under /opt/ml/model. The image is built
FROM a real pipeline image (Debian base from `mlstack base-image build`, scikit-learn from the
host's wheels) pushed to a real local registry; its tag is derived from the pipeline image's,
and a second ensure reuses it from the registry.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from runner.deployers import deployer_for
from runner.packaging import ensure_image
from runner.serving_image import ensure_serving_image, serving_ref, split_ref
from stacks.common.progress import NullProgress
from stacks.outputs import StackOutputs

pytestmark = pytest.mark.docker

MLSTACK = str(Path(sys.executable).parent / "mlstack")
BASE = "mlstack/base:bookworm"
SESSION = uuid.uuid4().hex[:8]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def engine() -> Any:
    """The Docker Engine at DOCKER_HOST; the module skips (fails under CI) without one."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no SDK, no socket, refused: all mean "no engine"
        pytest.skip(f"no Docker Engine reachable: {str(exc).splitlines()[0][:200]}")
    return client


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("serving-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLSTACK_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def base_image(engine: Any, home: Path) -> str:
    """`mlstack base-image build`, which reuses the tag when it exists already."""
    proc = subprocess.run(
        [MLSTACK, "base-image", "build", "--tag", BASE],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return BASE


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OCI registry (Debian's docker-registry) on a free 127.0.0.1 port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    folder = tmp_path_factory.mktemp("serving-registry")
    port = _free_port()
    config = folder / "config.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            version: 0.1
            log: {{level: warn}}
            storage: {{filesystem: {{rootdirectory: {folder / "data"}}}}}
            http: {{addr: "127.0.0.1:{port}", secret: "{uuid.uuid4().hex}"}}
            """
        )
    )
    with open(folder / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                OPENER.open(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((folder / "registry.log").read_text()) from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def stack(engine: Any) -> Iterator[str]:
    """A unique stack name; its images (label mlstack.stack, inherited) are removed after."""
    name = f"servetest-{SESSION}"
    yield name
    for image in engine.images.list(filters={"label": f"mlstack.stack={name}"}):
        for tag in image.tags:
            engine.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def pipeline_image(
    base_image: str, registry: str, stack: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A training pipeline's image: scikit-learn pinned to this host's version."""
    from runner.loader import load_pipeline

    module = f"serve_{SESSION}"
    sklearn = f"scikit-learn=={version('scikit-learn')}"
    folder = tmp_path_factory.mktemp(module)
    (folder / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from runner import pipeline, step

            @step
            def train() -> int:
                return 1

            @pipeline(name="serve-{SESSION}", requirements=[{sklearn!r}])
            def flow():
                train()
            """
        )
    )
    outputs = StackOutputs.model_validate(
        {
            "stack": stack, "stack_id": f"id-{SESSION}", "provider": "local",
            "artifact_store": {"kind": "local", "uri": "file:///tmp/unused"},
            "container_registry": {"kind": "local", "url": registry},
            "orchestrator": {"kind": "docker", "base_image": base_image},
            "secrets": {"kind": "local", "path": "/nonexistent/s.enc", "key_file": "/none/k"},
            "tracker": {"kind": "none"},
            "deployer": {"kind": "none"},
            "metadata": {"url": "http://127.0.0.1:9"},
        }
    )  # fmt: skip
    try:
        build = ensure_image(load_pipeline(f"{folder / module}.py:flow"), outputs)
    finally:
        sys.path[:] = [p for p in sys.path if p != str(folder)]
    print(f"\npipeline image: {build.seconds:.1f}s ({build.reason})")
    return build.image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """A real scikit-learn model saved by MLflow (what SageMaker extracts into /opt/ml/model)."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 4))
    y = x @ [1.0, -2.0, 0.5, 3.0] + rng.normal(scale=0.1, size=200)
    model = make_pipeline(StandardScaler(), Ridge(alpha=0.5)).fit(x, y)
    folder = tmp_path_factory.mktemp("sm-model") / "model"
    mlflow.sklearn.save_model(model, str(folder))
    folder.chmod(0o755)
    return folder, model, rng.normal(size=(7, 4))


def test_serving_image_answers_ping_and_invocations_like_model_predict(
    engine: Any, pipeline_image: str, model_dir: tuple[Path, Any, Any], registry: str
) -> None:
    started = time.monotonic()
    ref = ensure_serving_image(pipeline_image)
    built_in = time.monotonic() - started
    assert ref == serving_ref(pipeline_image)
    _, repository, tag = split_ref(ref)
    assert tag == f"{split_ref(pipeline_image)[2]}-sagemaker1"
    tags = json.load(OPENER.open(f"http://{registry}/v2/{repository}/tags/list", timeout=5))
    assert tag in tags["tags"]  # pushed beside the pipeline image
    started = time.monotonic()
    # What the driver calls before a run's steps start on a stack whose deployer is SageMaker:
    # the same pipeline image, so the serving image is reused from the registry.
    sagemaker = deployer_for(_sagemaker_outputs(registry))
    sagemaker.prepare_image(pipeline_image, NullProgress())
    reused_in = time.monotonic() - started
    print(f"\nserving image: built/pushed {built_in:.1f}s, reused {reused_in:.2f}s")
    assert reused_in < 5

    folder, model, x = model_dir
    port = _free_port()
    container = engine.containers.run(
        ref,
        ["serve"],  # SageMaker's argument
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", port)},
        volumes={str(folder): {"bind": "/opt/ml/model", "mode": "ro"}},
        environment={"MLFLOW_MODELS_WORKERS": "1"},
        name=f"mlstack-serve-test-{SESSION}",
    )
    try:
        started = time.monotonic()
        status = _wait_ping(f"http://127.0.0.1:{port}/ping", container)
        print(f"container ready in {time.monotonic() - started:.1f}s")
        assert status == 200
        body = json.dumps({"inputs": x.tolist()}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with OPENER.open(request, timeout=30) as answer:
            assert answer.status == 200
            predictions = json.load(answer)["predictions"]
        assert predictions == model.predict(x).tolist()
        # A CSV body (a header row, then the rows) gives the same answer, to pandas' CSV float
        # parsing (its fast parser may differ from repr() in the last bit).
        rows = ["a,b,c,d"] + [",".join(repr(v) for v in row) for row in x.tolist()]
        csv = "\n".join(rows).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=csv,
            headers={"Content-Type": "text/csv"},
            method="POST",
        )
        with OPENER.open(request, timeout=30) as answer:
            expected = model.predict(x).tolist()
            assert json.load(answer)["predictions"] == pytest.approx(expected, rel=1e-12)
    finally:
        container.remove(force=True)


def test_serve_without_a_model_says_where_it_looked(engine: Any, pipeline_image: str) -> None:
    ref = serving_ref(pipeline_image)
    ensure_serving_image(pipeline_image)
    container = engine.containers.run(ref, ["serve"], detach=True)
    try:
        result = container.wait(timeout=60)
        logs = container.logs()
    finally:
        container.remove(force=True)
    assert result["StatusCode"] == 2
    assert b"no MLflow model under /opt/ml/model" in logs


def _sagemaker_outputs(registry: str) -> StackOutputs:
    return StackOutputs.model_validate(
        {
            "stack": f"servetest-{SESSION}", "stack_id": f"id-{SESSION}", "provider": "aws",
            "region": "us-east-1",
            "artifact_store": {"kind": "s3", "uri": "s3://unused/mlstack"},
            "container_registry": {"kind": "local", "url": registry},
            "orchestrator": {"kind": "docker"},
            "secrets": {"kind": "local", "path": "/nonexistent/s.enc", "key_file": "/none/k"},
            "tracker": {"kind": "none"},
            "deployer": {"kind": "sagemaker", "role_arn": "arn:aws:iam::1:role/r",
                         "instance_type": "ml.m5.large"},
            "metadata": {"url": "http://127.0.0.1:9"},
        }
    )  # fmt: skip


def _wait_ping(url: str, container: Any, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status == "exited":
            raise AssertionError(container.logs().decode(errors="replace")[-3000:])
        try:
            with OPENER.open(url, timeout=2) as answer:
                return int(answer.status)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(container.logs().decode(errors="replace")[-3000:]) from None
            time.sleep(0.5)
