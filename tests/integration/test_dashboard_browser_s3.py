"""The dashboard's log panel in headless Chromium on a local stack whose artifact store is an
S3 bucket (a real moto server over HTTP): a finished step's log and a growing one, read by the
stack's metadata server from the bucket."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import aws_test_env, run_cli, stack_up
from tests.integration.test_dashboard_browser import TOY, wait_text
from tests.integration.test_dashboard_browser import browser as browser  # the fixture

pytestmark = pytest.mark.services


class Gate:
    """A TCP forwarder to ``target`` (host, port) on a port of its own that can be shut
    (connections refused, as from a store that is down) and opened again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def s3_stack(
    moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A local stack on a bucket it creates (and removes at ``down``), with one finished run;
    the stack reaches the bucket through a :class:`Gate` the tests can shut."""
    name = f"dash-s3-{uuid.uuid4().hex[:6]}"
    bucket = f"mlstack-dash-{uuid.uuid4().hex[:10]}"
    host, port = moto_server.removeprefix("http://").split(":")
    gate = Gate((host, int(port)))
    spec = (
        f"name: {name}\nprovider: local\ncomponents:\n"
        f"  artifact_store:\n    flavor: s3\n    bucket: {bucket}\n    prefix: runs\n"
        f"    endpoint_url: {gate.url}\n    create: true\n"
        "  tracker: none\n  deployer: none\n"
    )
    with pytest.MonkeyPatch.context() as env:
        for key, value in aws_test_env(moto_server).items():
            env.setenv(key, value)
        env.delenv("AWS_ENDPOINT_URL")  # the spec's endpoint_url is what the stack uses
        for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            env.delenv(key, raising=False)
        home = tmp_path_factory.mktemp("dash-s3-home")
        with stack_up(home, name, spec) as up:
            proc = run_cli("run", f"{TOY}:fan", "--stack", name, "--json", timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
            yield {
                **up, "name": name, "moto": moto_server, "gate": gate,
                "run": json.loads(proc.stdout),
            }  # fmt: skip
        gate.shut()


def test_the_log_panel_reads_and_follows_step_logs_in_the_bucket(
    s3_stack: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    from runner.artifacts import ArtifactStore
    from runner.metadata.client import MetadataClient

    out = run_cli("ui", s3_stack["name"], "--no-browser", check=True).stdout
    browser.get(next(line for line in out.splitlines() if line.startswith("http")))
    meta = s3_stack["outputs"]["metadata"]
    run_id = s3_stack["run"]["run_id"]
    browser.get(f"{meta['url']}/ui/#/run/{run_id}/numbers")
    wait_text(browser, "#step-log", "making 5 numbers")

    store_out = s3_stack["outputs"]["artifact_store"]
    store = ArtifactStore(store_out["uri"], {"client_kwargs": {"endpoint_url": s3_stack["moto"]}})
    with MetadataClient(meta["url"], meta["token"]) as client:
        run = client.create_run("live", s3_stack["name"])
        step = client.create_step(run.id, "grow", status="running")
        local = tmp_path / "grow.log"
        local.write_text("first line ✓\n")
        uri = store.write_log(store.log_uri(run.id, "grow"), local)  # as the LogPump mirrors
        client.update_step(step.id, log_uri=uri)
        browser.get(f"{meta['url']}/ui/#/run/{run.id}/grow")
        wait_text(browser, "#step-log", "first line ✓")
        local.write_text("first line ✓\nsecond line\n")
        store.write_log(uri, local)
        panel = wait_text(browser, "#step-log", "second line")
        assert panel.text.count("first line") == 1
        client.update_step(step.id, status="completed")
        client.update_run(run.id, status="completed")


def test_the_log_panel_says_why_while_the_store_is_down_and_shows_the_log_once_it_is_back(
    s3_stack: dict[str, Any], browser: Any
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    out = run_cli("ui", s3_stack["name"], "--no-browser", check=True).stdout
    browser.get(next(line for line in out.splitlines() if line.startswith("http")))
    meta = s3_stack["outputs"]["metadata"]
    gate: Gate = s3_stack["gate"]
    gate.shut()
    try:
        browser.get(f"{meta['url']}/ui/#/run/{s3_stack['run']['run_id']}/numbers")
        note = wait_text(browser, "#step-log", "cannot be read now")
        assert "retrying" in note.text
    finally:
        gate.open()
    wait_text(browser, "#step-log", "making 5 numbers")
    WebDriverWait(browser, 10).until(
        lambda d: "retrying" not in d.find_element("css selector", "#step-log").text
    )
