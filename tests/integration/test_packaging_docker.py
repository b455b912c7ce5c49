"""Packaging against a real Docker Engine and a real registry (Debian's docker-registry).

The base image comes from `mlstack base-image build` (debootstrap, a few minutes once; the tag
is reused afterwards). Builds use tiny requirements (six, idna) so the whole module stays
around a minute once the base image and Docker's layer cache exist.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, start_server
from runner.packaging import (
    BaseImageError,
    BuildFailed,
    DockerUnavailable,
    ImageError,
    RegistryUnavailable,
    ensure_image,
)
from runner.sdk import Pipeline
from stacks.outputs import StackOutputs

pytestmark = pytest.mark.docker

MLSTACK = str(Path(sys.executable).parent / "mlstack")
BASE = "mlstack/base:bookworm"
TOKEN = f"mlstack-test-token-{uuid.uuid4().hex}"
SECRET = f"mlstack-test-secret-{uuid.uuid4().hex}"
SESSION = uuid.uuid4().hex[:8]


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
    """One $MLSTACK_HOME for the module, so the wheel cache is shared between tests."""
    path = tmp_path_factory.mktemp("packaging-home")
    before = os.environ.get("MLSTACK_HOME")
    os.environ["MLSTACK_HOME"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("MLSTACK_HOME", None)
        else:
            os.environ["MLSTACK_HOME"] = before


@pytest.fixture(scope="module")
def base_image(engine: Any, home: Path) -> str:
    """`mlstack base-image build`, which reuses the tag when it exists already."""
    from docker.errors import ImageNotFound

    try:
        engine.images.get(BASE)
    except ImageNotFound:
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            pytest.skip(f"{BASE} is missing and building it needs root and debootstrap")
    started = time.monotonic()
    proc = subprocess.run(
        [MLSTACK, "base-image", "build", "--tag", BASE],
        capture_output=True, text=True, timeout=1800, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\nbase image: {proc.stdout.strip()} ({time.monotonic() - started:.1f}s)")
    return BASE


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OCI registry on a free 127.0.0.1 port, storage in a temp folder."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    folder = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = folder / "config.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            version: 0.1
            log: {{level: warn}}
            storage:
              filesystem: {{rootdirectory: {folder / "data"}}}
              delete: {{enabled: true}}
            http: {{addr: "127.0.0.1:{port}", secret: "{uuid.uuid4().hex}"}}
            """
        )
    )
    with open(folder / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        url = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{url}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((folder / "registry.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("metadata")
    server = start_server(f"sqlite:///{folder / 'm.db'}", TOKEN, log_path=folder / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(engine: Any) -> Iterator[str]:
    """A unique stack name; its images (label mlstack.stack) are removed at the end."""
    name = f"pkgtest-{SESSION}"
    yield name
    for image in engine.images.list(filters={"label": f"mlstack.stack={name}"}):
        for tag in image.tags:
            engine.images.remove(tag, force=True)


@pytest.fixture
def outputs(
    registry: str, metadata: ServerProcess, base_image: str, stack: str
) -> Callable[..., StackOutputs]:
    def make(base: str = base_image, registry_url: str = registry) -> StackOutputs:
        return StackOutputs.model_validate(
            {
                "stack": stack, "stack_id": f"id-{SESSION}", "provider": "local",
                "artifact_store": {"kind": "local", "uri": "file:///tmp/unused"},
                "container_registry": {"kind": "local", "url": registry_url},
                "orchestrator": {"kind": "docker", "base_image": base},
                "secrets": {
                    "kind": "local",
                    "path": "/nonexistent/store.enc",
                    "key_file": "/nonexistent/key",
                },
                "tracker": {"kind": "none"},
                "deployer": {"kind": "none"},
                "metadata": {"url": metadata.url, "token": TOKEN},
            }
        )  # fmt: skip

    return make


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """A one-step pipeline named ``name`` in its own folder (with a file holding SECRET)."""
    roots: list[str] = []

    def make(name: str, requirements: list[str] | None) -> Pipeline:
        from runner.loader import load_pipeline

        module = f"pkg_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        folder = tmp_path / module
        folder.mkdir()
        (folder / f"{module}.py").write_text(
            textwrap.dedent(
                f"""
                from runner import pipeline, step

                @step
                def one() -> int:
                    return 1

                @pipeline(name={name!r}, requirements={requirements!r})
                def flow():
                    one()
                """
            )
        )
        (folder / "settings.txt").write_text(f"api_key={SECRET}\n")  # code never enters images
        roots.append(str(folder))
        return load_pipeline(f"{folder / module}.py:flow")

    yield make
    for root in roots:
        if root in sys.path:
            sys.path.remove(root)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _client(metadata: ServerProcess) -> MetadataClient:
    return MetadataClient(metadata.url, TOKEN)


# --- the main path --------------------------------------------------------------------------


def test_first_build_pushes_and_the_second_reuses(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    registry: str,
    metadata: ServerProcess,
    engine: Any,
) -> None:
    flow = make_pipeline(f"first-{SESSION}", ["six"])
    first = ensure_image(flow, outputs())
    print(f"\nfirst build: {first.seconds:.1f}s ({first.reason})")
    assert first.built is True
    repository = f"mlstack/first-{SESSION}"
    assert first.image == f"{registry}/{repository}:{first.tag}"
    assert repository in _get_json(f"http://{registry}/v2/_catalog")["repositories"]
    assert _get_json(f"http://{registry}/v2/{repository}/tags/list")["tags"] == [first.tag]

    second = ensure_image(flow, outputs())
    print(f"reuse: {second.seconds:.2f}s")
    assert second.built is False and second.tag == first.tag
    assert second.reason == (
        f"tag {first.tag} already in registry: same base image, requirements and runtime"
    )
    with _client(metadata) as client:
        found = client.list_images(outputs().stack, f"first-{SESSION}")
    assert [i.action.value for i in found] == ["reused", "built"]
    assert found[1].reason.endswith("first image of pipeline " + repr(f"first-{SESSION}") +
                                    " on this stack")  # fmt: skip

    # The image runs the step runtime with the requirements, offline.
    script = (
        "import runner.entrypoint, runner.metadata.client, runner.artifacts, runner.context,"
        " runner.materializers, stacks.common.fernet, cloudpickle, six, sys; print(sys.prefix)"
    )
    out = engine.containers.run(
        first.image, ["python", "-c", script], remove=True, network_mode="none"
    )
    assert out.decode().strip() == "/opt/mlstack/venv"
    labels = engine.images.get(first.image).labels
    assert labels["mlstack.stack"] == outputs().stack
    assert labels["mlstack.pipeline"] == f"first-{SESSION}"


def test_changing_requirements_builds_exactly_one_image(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    registry: str,
    metadata: ServerProcess,
) -> None:
    name = f"reqs-{SESSION}"
    before = ensure_image(make_pipeline(name, ["six"]), outputs())
    changed = make_pipeline(name, ["six", "idna"])
    after = ensure_image(changed, outputs())
    again = ensure_image(changed, outputs())
    assert after.built is True and after.tag != before.tag
    assert "requirements changed (+idna)" in after.reason
    assert again.built is False and again.tag == after.tag
    tags = _get_json(f"http://{registry}/v2/mlstack/{name}/tags/list")["tags"]
    assert sorted(tags) == sorted([before.tag, after.tag])
    with _client(metadata) as client:
        actions = [i.action.value for i in client.list_images(outputs().stack, name)]
    assert actions == ["reused", "built", "built"]


class _Steps:
    def __init__(self) -> None:
        self.details: list[str] = []

    def update(self, item: str, state: str, detail: str = "") -> None:
        self.details.append(detail)


def test_same_requirements_reuse_wheels_and_docker_layers(
    outputs: Callable[..., StackOutputs], make_pipeline: Callable[..., Pipeline], engine: Any
) -> None:
    """Two pipelines with the same requirements: one wheel download, identical layers."""
    first = ensure_image(make_pipeline(f"layers-a-{SESSION}", ["six"]), outputs())
    steps = _Steps()
    second = ensure_image(make_pipeline(f"layers-b-{SESSION}", ["six"]), outputs(), progress=steps)
    print(f"\nrebuild with the same requirements: {second.seconds:.1f}s")
    assert second.built is True and second.tag == first.tag  # same inputs, other repository
    assert any(d.startswith("wheels cached") for d in steps.details)
    layers = [engine.images.get(r.image).attrs["RootFS"]["Layers"] for r in (first, second)]
    assert layers[0] == layers[1]  # every layer came from Docker's cache


def test_the_image_holds_no_secret_and_no_token(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    engine: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("MLSTACK_METADATA_TOKEN", TOKEN)
    flow = make_pipeline(f"secrets-{SESSION}", ["six"])
    result = ensure_image(flow, outputs())
    saved = tmp_path / "image.tar"
    with open(saved, "wb") as out:
        for chunk in engine.images.get(result.image).save(named=True):
            out.write(chunk)
    scanned = _scan_saved_image(saved, [TOKEN.encode(), SECRET.encode()])
    assert scanned["layers"] >= 2 and scanned["config"] == 1
    assert scanned["files"] > 1000  # the scan looked inside every layer
    assert scanned["hits"] == [], scanned["hits"]
    assert scanned["pipeline_files"] == []  # the pipeline's code is not in the image


def _scan_saved_image(path: Path, needles: list[bytes]) -> dict[str, Any]:
    """Look for ``needles`` in the config, the manifest and every file of every layer."""
    found: dict[str, Any] = {"layers": 0, "config": 0, "files": 0, "hits": [],
                             "pipeline_files": []}  # fmt: skip
    with tarfile.open(path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        config_name, layer_names = manifest[0]["Config"], manifest[0]["Layers"]
        for member in outer.getmembers():
            stream = outer.extractfile(member) if member.isfile() else None
            if stream is None:
                continue
            if member.name not in layer_names:
                found["config"] += member.name == config_name
                data = stream.read()
                found["hits"] += [(member.name, "") for n in needles if n in data]
                continue
            found["layers"] += 1
            with tarfile.open(fileobj=stream) as layer:
                for entry in layer:
                    if "pkg_secrets_" in entry.name or entry.name.endswith("/settings.txt"):
                        found["pipeline_files"].append(entry.name)
                    content = layer.extractfile(entry) if entry.isfile() else None
                    if content is None:
                        continue
                    found["files"] += 1
                    data = content.read()
                    found["hits"] += [(member.name, entry.name) for n in needles if n in data]
    return found


# --- one clear line for each bad input ------------------------------------------------------


def _one_line(err: BaseException) -> str:
    from provisioner.cli import _describe

    _, text = _describe(err)  # what the CLI prints
    return text.splitlines()[0]


def test_unresolvable_requirement(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    metadata: ServerProcess,
) -> None:
    name = f"bad-req-{SESSION}"
    with pytest.raises(ImageError) as caught:
        ensure_image(make_pipeline(name, ["mlstack-no-such-package-xyz==9.9"]), outputs())
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("cannot resolve the image's requirements on this host:")
    assert "mlstack-no-such-package-xyz" in text
    with _client(metadata) as client:
        [record] = client.list_images(outputs().stack, name)
    assert record.action.value == "failed" and record.reason.startswith("cannot resolve")


@pytest.fixture(scope="module")
def broken_bases(engine: Any, base_image: str) -> Iterator[dict[str, str]]:
    """Bases derived from the real one: one without ensurepip, one without python3."""
    bases = {
        "no-ensurepip": "RUN rm -rf /usr/lib/python3.11/ensurepip",
        "no-python": "RUN rm -f /usr/bin/python3 /usr/bin/python3.11",
    }
    tags = {}
    for name, run in bases.items():
        tag = f"mlstack-test/{name}:{SESSION}"
        engine.images.build(
            fileobj=io.BytesIO(f"FROM {base_image}\n{run}\n".encode()),
            tag=tag, rm=True, network_mode="none",
        )  # fmt: skip
        tags[name] = tag
    yield tags
    for tag in tags.values():
        engine.images.remove(tag, force=True)


def test_failing_build_names_the_instruction(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    broken_bases: dict[str, str],
) -> None:
    flow = make_pipeline(f"fails-{SESSION}", [])
    with pytest.raises(BuildFailed) as caught:
        ensure_image(flow, outputs(base=broken_bases["no-ensurepip"]))
    line = _one_line(caught.value)
    assert line.startswith("image build failed at Step 4/10 : RUN python3 -m venv /opt/mlstack")
    assert "ensurepip" in "\n".join(caught.value.log_tail)
    assert 2 <= len(caught.value.log_tail) <= 15


def test_base_image_without_python3(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    broken_bases: dict[str, str],
    engine: Any,
) -> None:
    base = broken_bases["no-python"]
    with pytest.raises(BaseImageError) as caught:
        ensure_image(make_pipeline(f"nopy-{SESSION}", []), outputs(base=base))
    assert str(caught.value).startswith(f"base image {base!r} has no python3 on its PATH")
    assert "\n" not in str(caught.value)
    assert engine.containers.list(all=True, filters={"ancestor": base}) == []  # probe removed


def test_base_image_missing_and_not_pullable(
    outputs: Callable[..., StackOutputs], make_pipeline: Callable[..., Pipeline]
) -> None:
    base = f"mlstack-test/absent:{SESSION}"
    with pytest.raises(BaseImageError) as caught:
        ensure_image(make_pipeline(f"absent-{SESSION}", []), outputs(base=base))
    text = str(caught.value)
    assert text.startswith(f"base image {base!r} is not on this Docker Engine")
    assert "mlstack base-image build" in text and "components.orchestrator.base_image" in text
    assert "\n" not in text


def test_no_engine(
    outputs: Callable[..., StackOutputs],
    make_pipeline: Callable[..., Pipeline],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flow = make_pipeline(f"noengine-{SESSION}", [])
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(DockerUnavailable) as caught:
        ensure_image(flow, outputs())
    assert _one_line(caught.value).startswith(
        "Docker Engine is not reachable at tcp://127.0.0.1:1: start dockerd"
    )
    assert "\n" not in str(caught.value)


def test_registry_unreachable(
    outputs: Callable[..., StackOutputs], make_pipeline: Callable[..., Pipeline]
) -> None:
    url = f"127.0.0.1:{_free_port()}"
    with pytest.raises(RegistryUnavailable) as caught:
        ensure_image(make_pipeline(f"noreg-{SESSION}", []), outputs(registry_url=url))
    text = str(caught.value)
    assert text.startswith(f"container registry at {url} is not reachable")
    assert "mlstack up" in text and "\n" not in text


def test_base_image_build_is_idempotent(base_image: str) -> None:
    proc = subprocess.run(
        [MLSTACK, "base-image", "build", "--tag", base_image],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"{base_image} already exists; --rebuild builds it again")


def test_a_second_base_image_build_waits_for_the_first(base_image: str) -> None:
    """Two builds of one tag on a machine: the second waits for the first's lock, then finds
    the image made instead of debootstrapping it a second time."""
    from filelock import FileLock

    from runner.base_image import _slug, cache_dir

    lock = FileLock(str(cache_dir("locks") / f"base-{_slug(base_image)}.lock"))
    with lock:  # stands for a first build in progress
        second = subprocess.Popen(
            [MLSTACK, "base-image", "build", "--tag", base_image],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            second.wait(timeout=3)
        assert second.poll() is None, "the second build did not wait for the lock"
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.startswith(f"{base_image} already exists")
