"""Every way packaging fails gives one clear line: build and push streams, engine, registry."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.base_image import (
    ImageError,
    RegistryUnavailable,
    docker_client,
    follow_push,
    registry_has_tag,
    registry_url,
)
from runner.packaging import BuildFailed, follow_build, resolve_wheels
from stacks.common.docker_engine import DockerUnavailable
from stacks.outputs import StackOutputs


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str, str]] = []

    def update(self, item: str, state: str, detail: str = "") -> None:
        self.updates.append((item, state, detail))


def _stream(*lines: str) -> list[dict[str, Any]]:
    return [{"stream": line + "\n"} for line in lines]


# A build stream as the classic builder sends it, decoded (recorded from Docker 20.10).
OK_STREAM = [
    *_stream("Step 1/10 : FROM mlstack/base:bookworm AS deps", " ---> f59e86b2ab13"),
    *_stream("Step 2/10 : COPY wheels /tmp/wheels", " ---> Using cache", " ---> 1b2c3d4e5f60"),
    {"aux": {"ID": "sha256:99143d8daf8b0000"}},
    *_stream("Successfully built 99143d8daf8b", "Successfully tagged 127.0.0.1:5000/x:y"),
]

RUN_LINE = (
    "Step 4/10 : RUN python3 -m venv /opt/mlstack/venv && /opt/mlstack/venv/bin/pip install"
    " --no-index --no-cache-dir --disable-pip-version-check --find-links /tmp/wheels"
    " -r /opt/mlstack/requirements.txt"
)
FAILED_STREAM = [
    *_stream("Step 1/10 : FROM mlstack/base:bookworm AS deps", " ---> f59e86b2ab13"),
    *_stream("Step 2/10 : COPY wheels /tmp/wheels", " ---> 0a1b2c3d4e5f"),
    *_stream("Step 3/10 : COPY requirements.txt /opt/mlstack/requirements.txt", " ---> 1a2b"),
    *_stream(RUN_LINE, " ---> Running in 5f6e7d8c9b0a"),
    *_stream(*[f"pip noise {i}" for i in range(30)]),
    {"stream": "The virtual environment was not created successfully because ensurepip is not\n"},
    {"stream": "available.\n"},
    {
        "errorDetail": {
            "code": 1,
            "message": "The command '/bin/sh -c python3 -m venv /opt/mlstack/venv' returned a"
            " non-zero code: 1",
        },
        "error": "The command '/bin/sh -c python3 -m venv /opt/mlstack/venv' returned a non-zero"
        " code: 1",
    },
]


def test_build_stream_success_reports_steps_and_returns_the_id() -> None:
    progress = Recorder()
    assert follow_build(iter(OK_STREAM), progress) == "99143d8daf8b"
    steps = [detail for _, _, detail in progress.updates]
    assert steps == ["Step 1/10 : FROM mlstack/base:bookworm AS deps",
                     "Step 2/10 : COPY wheels /tmp/wheels"]  # fmt: skip


def test_failed_build_names_the_instruction_and_keeps_the_log_end() -> None:
    with pytest.raises(BuildFailed) as caught:
        follow_build(iter(FAILED_STREAM), Recorder())
    err = caught.value
    lines = str(err).splitlines()
    assert lines[0].startswith(f"image build failed at {RUN_LINE} (")
    assert err.step == RUN_LINE
    assert len(err.log_tail) == 15
    assert err.log_tail[-1].endswith("returned a non-zero code: 1")
    assert "ensurepip is not" in "\n".join(err.log_tail)
    assert "pip noise 0" not in str(err)  # only the end of the log
    assert not [ln for ln in err.log_tail if ln.startswith(" ---> ")]


def test_build_error_before_any_step() -> None:
    with pytest.raises(BuildFailed, match="failed at the start of the build"):
        follow_build(iter([{"error": "dockerfile parse error", "errorDetail": {}}]), Recorder())


def test_cli_prints_the_headline_then_the_indented_tail() -> None:
    from provisioner.cli import _describe

    with pytest.raises(BuildFailed) as caught:
        follow_build(iter(FAILED_STREAM), Recorder())
    code, text = _describe(caught.value)
    assert code == 1
    first, *rest = text.splitlines()
    assert first.startswith("image build failed at Step 4/10 : RUN python3 -m venv")
    assert rest and all(line.startswith("  ") for line in rest)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
            RegistryUnavailable,
        ),
        ("denied: requested access to the resource is denied", ImageError),
    ],
)
def test_push_stream_errors(message: str, expected: type[Exception]) -> None:
    chunks = [
        {"status": "The push refers to repository [127.0.0.1:5999/mlstack/x]"},
        {"status": "Preparing", "id": "abc"},
        {"errorDetail": {"message": message}, "error": message},
    ]
    with pytest.raises(expected) as caught:
        follow_push(iter(chunks), "127.0.0.1:5999", "127.0.0.1:5999/mlstack/x:t")
    assert "\n" not in str(caught.value)
    if expected is RegistryUnavailable:
        assert "container registry at 127.0.0.1:5999 is not reachable" in str(caught.value)
        assert "mlstack up" in str(caught.value)


def test_push_stream_success_returns_the_digest() -> None:
    chunks = [
        {"status": "Pushed", "id": "abc"},
        {"status": "t: digest: sha256:1234 size: 1"},
        {"aux": {"Tag": "t", "Digest": "sha256:1234", "Size": 1}},
    ]
    assert follow_push(iter(chunks), "r", "r/x:t") == "sha256:1234"


def test_no_engine_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(DockerUnavailable) as caught:
        docker_client()
    text = str(caught.value)
    assert text.startswith("Docker Engine is not reachable at tcp://127.0.0.1:1: start dockerd")
    assert "\n" not in text


def test_stack_without_registry(make_outputs: Callable[..., StackOutputs]) -> None:
    data = make_outputs().model_dump()
    data["container_registry"] = {"kind": "none"}
    with pytest.raises(ImageError, match="has no container registry"):
        registry_url(StackOutputs.model_validate(data))
    assert registry_url(make_outputs(registry="http://127.0.0.1:5000/")) == "127.0.0.1:5000"


# --- the registry's tag check, against a tiny HTTP server -----------------------------------


class _Registry(http.server.BaseHTTPRequestHandler):
    tags: dict[str, int] = {}
    seen: list[tuple[str, str, str]] = []

    def do_HEAD(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Accept", "")))
        self.send_response(self.tags.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def fake_registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_registry_tag_check(fake_registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # must not be used for 127.0.0.1
    _Registry.tags = {"/v2/mlstack/x/manifests/have": 200, "/v2/mlstack/x/manifests/locked": 401}
    assert registry_has_tag(fake_registry, "mlstack/x", "have") is True
    assert registry_has_tag(fake_registry, "mlstack/x", "missing") is False
    method, path, accept = _Registry.seen[0]
    assert (method, path) == ("HEAD", "/v2/mlstack/x/manifests/have")
    assert "application/vnd.docker.distribution.manifest.v2+json" in accept
    assert "application/vnd.oci.image.index.v1+json" in accept
    with pytest.raises(ImageError, match="asks for credentials"):
        registry_has_tag(fake_registry, "mlstack/x", "locked")


def test_unreachable_registry_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryUnavailable) as caught:
        registry_has_tag(f"127.0.0.1:{port}", "mlstack/x", "t", timeout=2)
    text = str(caught.value)
    assert text.startswith(f"container registry at 127.0.0.1:{port} is not reachable")
    assert "`mlstack up" in text and "\n" not in text


# --- wheels on the host ---------------------------------------------------------------------


def test_wheels_use_the_ca_bundle_on_the_host_and_are_cached(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        folder = Path(cmd[cmd.index("-w") + 1])
        (folder / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"w")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr("runner.requirements.subprocess.run", fake_run)
    first = resolve_wheels(["six"], [], str(bundle), Recorder())
    assert calls and calls[0][calls[0].index("--cert") + 1] == str(bundle)
    assert first.parent == home / "cache" / "wheels"
    assert (first / "requirements.txt").read_text() == "six\n"
    assert resolve_wheels(["six"], [], str(bundle), Recorder()) == first
    assert len(calls) == 1  # the second call reused the folder
    assert resolve_wheels(["six", "idna"], [], None, Recorder()) != first
    assert "--cert" not in calls[1]


def test_missing_ca_bundle_is_a_clear_error(home: Path) -> None:
    with pytest.raises(ImageError, match=r"CA bundle /nonexistent\.pem does not exist"):
        resolve_wheels(["six"], [], "/nonexistent.pem", Recorder())


def test_unresolvable_requirement_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(cmd: list[str], stdout: Any = None, **kwargs: Any) -> Any:
        stdout.write(
            "Looking in indexes: https://pypi.org/simple\n"
            "ERROR: Could not find a version that satisfies the requirement nope==9 (from"
            " versions: none)\nERROR: No matching distribution found for nope==9\n"
        )
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr("runner.requirements.subprocess.run", fake_run)
    with pytest.raises(ImageError) as caught:
        resolve_wheels(["nope==9"], [], None, Recorder())
    text = str(caught.value)
    assert text.startswith(
        "cannot resolve the image's requirements on this host: ERROR: No matching distribution"
        " found for nope==9"
    )
    assert "\n" not in text
    assert not [p for p in (home / "cache" / "wheels").iterdir() if p.is_dir()]
