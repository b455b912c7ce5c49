"""Running a pipeline: the driver that walks the DAG on the stack's orchestrator.

``run(pipeline, outputs)`` compiles the DAG (every definition error surfaces before anything
runs), records the run, resolves cache hits itself, hands the rest to the orchestrator's
launcher in DAG order with bounded parallelism, and records the outcome. A failing step fails
the run and skips what depends on it; Ctrl-C or SIGTERM (``mlstack down --force``) cancels
the run: its steps are stopped and recorded cancelled before the driver exits. While the
run is unfinished the driver beats a heartbeat on the metadata server (runner/heartbeat.py);
a cancel request found there (``down --force`` from another machine) takes the SIGTERM path.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.attempts import Attempts, start_retry_log
from runner.cache import cache_key
from runner.deployers import deployer_for
from runner.entrypoint import artifact_store_for
from runner.errors import RunnerError, StepFailed
from runner.fingerprint import Fingerprinter
from runner.logs import LogPump
from runner.orchestrators import orchestrator_for
from runner.sdk import CompiledPipeline, Pipeline
from stacks.common.process import log_tail
from stacks.common.progress import NullProgress, Progress
from stacks.outputs import StackOutputs

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import ArtifactOut


class RunCancelled(RunnerError):
    exit_code = 130


@dataclass
class StepResult:
    name: str
    status: str
    step_id: str | None = None
    seconds: float | None = None
    outputs: dict[str, ArtifactOut] = field(default_factory=dict)
    error: str | None = None
    log_tail: str = ""
    crashed: bool = False  # the process died before it could record what went wrong
    attempts: int = 1  # how many times it was launched (retries: runner/attempts.py)

    @property
    def cached(self) -> bool:
        return self.status == "cached"


@dataclass
class RunResult:
    """The outcome of one pipeline run (holds no secret)."""

    run_id: str
    pipeline: str
    status: str
    seconds: float
    steps: dict[str, StepResult]
    tracker_run_id: str | None = None

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps.values() if s.status == "failed"), None)

    def raise_for_status(self) -> None:
        failed = self.failed_step
        if failed is not None:
            tail = f"\n{failed.log_tail}" if failed.log_tail else ""
            verb = "failed:" if failed.crashed else "raised"
            raise StepFailed(
                f"run {self.run_id} failed: step {failed.name!r} {verb} {failed.error}{tail}",
                f"full log: mlstack logs {self.run_id} {failed.name}",
            )


def run(
    pipeline: Pipeline,
    outputs: StackOutputs,
    *,
    params: dict[str, Any] | None = None,
    no_cache: bool = False,
    progress: Progress | None = None,
    fail_fast: bool | None = None,
) -> RunResult:
    """Run ``pipeline`` on the stack described by ``outputs`` (token resolved).

    ``fail_fast`` (default: the pipeline's own setting) stops running siblings at the first
    failed step instead of letting them finish.
    """
    compiled = pipeline.compile(params)
    if outputs.metadata.token is None:
        raise RunnerError("the stack outputs carry no metadata token", "resolve secrets first")
    progress = progress or NullProgress()
    from runner.reaping import make_scratch

    scratch = make_scratch()  # marked with this driver, so a later command removes it if killed
    launcher: Any = None
    previous = _cancel_on_sigterm()
    try:
        # Built once here: the local worker forks with fsspec already imported, and the
        # driver, packaging and every step share the one store.
        store = artifact_store_for(outputs)
        ready = orchestrator_for(outputs).prepare(pipeline, compiled, store, scratch, progress)
        launcher = ready.launcher
        deployer_for(outputs).prepare_image(ready.extra_spec.get("image"), progress)
        driver = _Driver(compiled, outputs, launcher, store, no_cache, progress, scratch)
        if previous is not None:  # a cancel request takes the SIGTERM path (it wakes waits)
            driver.on_cancel = lambda: os.kill(os.getpid(), signal.SIGTERM)
        driver.fail_fast = pipeline.fail_fast if fail_fast is None else fail_fast
        driver.remote_logs = ready.remote_logs
        driver.attempts = Attempts(
            launcher, native_retries=ready.native_retries, native_timeouts=ready.native_timeouts
        )
        return driver.run(extra_spec=ready.extra_spec, code_ref=ready.code_ref)
    finally:
        if launcher is not None:
            launcher.close(kill=True)
        shutil.rmtree(scratch, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _cancel_on_sigterm() -> Any:
    """SIGTERM cancels the run as Ctrl-C does (the previous handler, to restore; None when
    not on the main thread, where no handler can be set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def cancel(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, cancel)


class _Driver:
    def __init__(
        self,
        compiled: CompiledPipeline,
        outputs: StackOutputs,
        launcher: Any,
        store: ArtifactStore,
        no_cache: bool,
        progress: Progress,
        scratch: Path,
    ) -> None:
        from runner.metadata.client import MetadataClient
        from runner.tracking import TrackerClient

        token = outputs.metadata.token
        assert token is not None
        self.compiled = compiled
        self.outputs = outputs
        self.launcher = launcher
        self.no_cache = no_cache
        self.progress = progress
        self.client: MetadataClient = MetadataClient(
            outputs.metadata.url, token.get_secret_value(), ca_pem=outputs.metadata.ca_pem
        )
        self.tracker = TrackerClient.for_outputs(outputs)
        self.store = store
        self.state = {name: "pending" for name in compiled.order}
        self.results: dict[str, StepResult] = {}
        self.running: dict[str, tuple[str, float]] = {}  # step_id -> (name, started)
        self.tmp = scratch
        self.extra_spec: dict[str, Any] = {}
        self.max_parallel = max(1, outputs.orchestrator.max_parallel)
        self.fingerprinter = Fingerprinter()
        self.fail_fast = False
        self._warned: set[str] = set()
        self.attempts = Attempts(launcher, native_retries=False, native_timeouts=False)
        on_lines = getattr(progress, "lines", None) if getattr(progress, "wants_lines", 0) else None
        self.logs = LogPump(store, on_lines=on_lines)
        self.log_paths: dict[str, Path] = {}  # invocation -> the file its attempt writes to
        self.remote_logs = False  # the orchestrator's jobs keep their logs (Prepared)
        self.on_cancel: Any = _cannot_cancel  # what a cancel request (heartbeat) does

    def run(self, *, extra_spec: dict[str, Any], code_ref: str | None) -> RunResult:
        """Record the run, walk the DAG; ``extra_spec`` goes into every step's spec."""
        started = time.monotonic()
        c = self.compiled
        self.extra_spec = extra_spec
        from runner import heartbeat
        from runner.reaping import reap

        reap(self.outputs, self.client)  # runs of killed drivers: failed before this one starts
        every = heartbeat.interval()
        record = self.client.create_run(
            pipeline=c.name,
            stack=self.outputs.stack,
            params=c.params,
            code_ref=code_ref,
            driver_pid=os.getpid(),
            host=heartbeat.this_host(),
            heartbeat_seconds=every,
        )
        self.run_id = record.id
        if hasattr(self.launcher, "run_label"):
            self.launcher.run_label = record.id
        self.client.update_run(self.run_id, status="running")
        self.tracker_run_id = self.tracker.start_run(c.name, self.run_id, c.params)
        if self.tracker_run_id:
            self.client.update_run(self.run_id, tracker_run_id=self.tracker_run_id)
        status = "failed"
        beat = heartbeat.Heartbeat(self.client, self.run_id, every, self.on_cancel).start()
        try:
            self._loop()
            status = "failed" if any(s == "failed" for s in self.state.values()) else "completed"
        except KeyboardInterrupt:
            status = "cancelled"
            beat.stop()
            self.launcher.close(kill=True)
            self.logs.close()  # what the stopped steps printed, kept in the store
            cancelled = [
                {"id": step_id, "status": "cancelled", "error": "run cancelled"}
                for step_id in self.running
            ]
            if cancelled:
                self.client.update_steps(cancelled)  # one round trip for every running step
            for name, _ in self.running.values():
                self.state[name] = "cancelled"
                self.progress.update(name, "cancelled")
            self.running.clear()
        finally:
            beat.stop()
            self.logs.close()
            self._skip_rest(
                "the run was cancelled" if status == "cancelled" else "an upstream step failed"
            )
            error = None
            failed = next((r for r in self.results.values() if r.status == "failed"), None)
            if failed:
                error = f"step {failed.name!r} failed: {failed.error}"
            elif status == "failed":
                error = "the run's driver stopped on an error"
            self.client.update_run(self.run_id, status=status, error=error)
            self.tracker.end_run(self.tracker_run_id, status)
            self.client.close()
        result = RunResult(
            run_id=self.run_id,
            pipeline=c.name,
            status=status,
            seconds=time.monotonic() - started,
            steps={n: self.results[n] for n in c.order if n in self.results},
            tracker_run_id=self.tracker_run_id,
        )
        if status == "cancelled":
            raise RunCancelled(f"run {self.run_id} cancelled", "its running steps were stopped")
        return result

    # -- scheduling ---------------------------------------------------------------------

    def _ready(self) -> list[str]:
        done = ("completed", "cached")
        return [
            n
            for n in self.compiled.order
            if self.state[n] == "pending"
            and all(self.state[u] in done for u in self.compiled.upstream(n))
        ]

    def _loop(self) -> None:
        while True:
            progressed = True
            while progressed and not self._has_failure():
                progressed = False
                for name in self._ready():
                    if len(self.running) >= self.max_parallel:
                        break
                    self._start(name)
                    progressed = True
            if not self.running:
                return
            finished = self.attempts.wait(self.running)
            self._finish(finished.step_id, finished.code)
            if self.fail_fast and self._has_failure() and self.running:
                self._cancel_running("cancelled: a sibling step failed (fail-fast)")

    def _cancel_running(self, reason: str) -> None:
        """Stop every running step now (fail-fast): they are recorded as cancelled."""
        self.launcher.close(kill=True)
        for step_id, (name, started) in self.running.items():
            self.logs.done(step_id)
            self.client.update_step(step_id, status="cancelled", error=reason)
            self.state[name] = "cancelled"
            self.results[name] = StepResult(
                name, "cancelled", step_id, time.monotonic() - started, error=reason
            )
            self.progress.update(name, "cancelled", "a sibling failed (fail-fast)")
        self.running.clear()

    def _has_failure(self) -> bool:
        return any(s == "failed" for s in self.state.values())

    def _inputs(self, name: str) -> dict[str, ArtifactOut]:
        inv = self.compiled.invocations[name]
        return {arg: self.results[ref.step].outputs[ref.output] for arg, ref in inv.inputs.items()}

    def _warn(self, name: str, warnings: list[str]) -> None:
        import sys

        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                print(f"warning: step {name!r}: {warning}", file=sys.stderr)

    def _start(self, name: str) -> None:
        inv = self.compiled.invocations[name]
        inputs = self._inputs(name)
        hashes = {arg: art.content_hash for arg, art in inputs.items()}
        cache_info = cache_key(inv, hashes, self.fingerprinter)
        key = cache_info.key
        self._warn(name, cache_info.warnings)
        mode = "on"
        if self.no_cache:
            mode = "off (--no-cache)"
        elif not inv.step.cache:
            mode = "off (the step sets cache=False)"
        spec = {
            "pipeline": self.compiled.name,
            "function": inv.step.name,
            "source": dataclasses.asdict(self.compiled.source),
            "params": inv.params,
            "inputs": {
                arg: {
                    "id": art.id,
                    "uri": art.uri,
                    "materializer": art.materializer,
                    "type_name": art.type_name,
                    "content_hash": art.content_hash,
                }
                for arg, art in inputs.items()
            },
            "outputs": list(inv.step.outputs),
            "collections": inv.collections,
            "tracker_run_id": self.tracker_run_id,
            "cache": {**cache_info.as_dict(), "mode": mode},
            "settings": _settings(inv.step),
            **self.extra_spec,
        }
        if mode == "on" and self._try_cache(name, key, spec, inputs):
            return
        uri = self.store.log_uri(self.run_id, name, 1)
        step = self.client.create_step(self.run_id, name, spec=spec, cache_key=key, log_uri=uri)
        self.state[name] = "running"
        self.running[step.id] = (name, time.monotonic())
        self.progress.update(name, "running")
        log = self._watch_log(step.id, name, uri, 1)
        self.attempts.launch(name, step.id, inv.step, log, self.tmp / f"{name}.json")

    def _watch_log(self, step_id: str, name: str, uri: str, attempt: int) -> Path:
        """The file attempt ``attempt`` writes its output to, kept at ``uri`` (runner/logs.py)."""
        scratch = self.tmp / (f"{name}.log" if attempt == 1 else f"{name}.attempt-{attempt}.log")
        log = scratch if self.remote_logs else self.logs.path_for(uri, scratch)
        self.log_paths[name] = log
        if not self.remote_logs:
            self.logs.watch(step_id, name, log, uri)
        return log

    def _try_cache(
        self, name: str, key: str, spec: dict[str, Any], inputs: dict[str, ArtifactOut]
    ) -> bool:
        hit = self.client.lookup_cache(key)
        if hit is None or not all(self.store.exists(a.uri) for a in hit.outputs.values()):
            return False
        spec["cache"]["source_run"] = hit.step.run_id
        spec["cache"]["source_step"] = hit.step.id
        step = self.client.create_step(self.run_id, name, spec=spec, cache_key=key, status="cached")
        outputs = {}
        for out_name, art in hit.outputs.items():
            outputs[out_name] = self.client.create_artifact(
                uri=art.uri,
                content_hash=art.content_hash,
                size=art.size,
                name=out_name,
                type_name=art.type_name,
                materializer=art.materializer,
                producer_step_id=step.id,
            )
        for arg, art in inputs.items():
            self.client.add_input(step.id, art.id, arg)
        self.state[name] = "cached"
        self.results[name] = StepResult(name, "cached", step.id, 0.0, outputs)
        self.progress.update(name, "cached", f"from run {hit.step.run_id[:8]}")
        source_tracker = hit.step.spec.get("tracker_run_id")
        if source_tracker and self.tracker_run_id:
            try:
                self.tracker.copy_step_metrics(
                    source_tracker, self.tracker_run_id, name, hit.step.run_id
                )
            except RunnerError as exc:  # the outputs are reused all the same
                self._warn(name, [f"its metrics were not copied from the source run: {exc}"])
        return True

    def _finish(self, step_id: str, code: int) -> None:
        import json

        from runner.metadata.schemas import ArtifactOut

        name, started = self.running.pop(step_id)
        seconds = time.monotonic() - started
        self.logs.done(step_id)
        result_file = self.tmp / f"{name}.json"
        data: dict[str, Any] = {}
        if result_file.exists():
            data = json.loads(result_file.read_text())
        if code == 0 and data.get("status") == "completed":
            outputs = {k: ArtifactOut.model_validate(v) for k, v in data["outputs"].items()}
            self.results[name] = StepResult(
                name, "completed", step_id, seconds, outputs,
                attempts=self.attempts.attempts_of(name) or 1,
            )  # fmt: skip
            self.state[name] = "completed"
            self.progress.update(name, "completed")
            return
        error = data.get("error") or _describe_exit(code)
        timed_out = self.attempts.timeout_error(step_id)
        if timed_out:
            error = timed_out
            self._record_timeout(name, step_id, error)
        elif self._retry(name, step_id, started, error):
            return
        if not data and not timed_out:  # the child died before it could record anything
            self.client.update_step(step_id, status="failed", error=error)
        tail = log_tail(self.log_paths[name])
        self.results[name] = StepResult(
            name, "failed", step_id, seconds, error=error, log_tail=tail,
            crashed=not data or bool(data.get("crashed")),
            attempts=self.attempts.attempts_of(name) or 1,
        )  # fmt: skip
        self.state[name] = "failed"
        self.progress.update(name, "failed", error.splitlines()[0][:120])

    # -- retries and timeouts (runner/attempts.py) -----------------------------------------

    def _retry(self, name: str, step_id: str, started: float, error: str) -> bool:
        """Launch a failed step again under the same record if its ``retries`` allow."""
        step = self.compiled.invocations[name].step
        if not self.attempts.retry_due(name, step, timed_out=False):
            return False
        attempt, of = self.attempts.attempts_of(name) + 1, step.retries + 1
        uri = self.store.log_uri(self.run_id, name, attempt)
        self.client.update_step(step_id, log_uri=uri)
        log, result = self._watch_log(step_id, name, uri, attempt), self.tmp / f"{name}.json"
        if not self.remote_logs:
            start_retry_log(log, attempt, of, error.splitlines()[0] if error else "")
        result.unlink(missing_ok=True)
        self.running[step_id] = (name, started)
        self.progress.update(name, "running", f"attempt {attempt} of {of} (after: {error[:80]})")
        self.attempts.launch(name, step_id, step, log, result)
        return True

    def _record_timeout(self, name: str, step_id: str, error: str) -> None:
        """The killed attempt could not record itself: its status, error and log, from here."""
        log = self.log_paths[name]
        banner = f"\n===== mlstack: {error}: the step was killed =====\n"
        with log.open("a", encoding="utf-8") as out:
            out.write(banner)
        uri = self.store.log_uri(self.run_id, name, self.attempts.attempts_of(name) or 1)
        try:
            kept = self.store.read_log(uri) if self.remote_logs else b""
            if kept:  # the job kept its log in the store itself: the banner goes after it
                log = self.tmp / f"{name}.kept.log"
                log.write_bytes(kept + banner.encode())
            self.store.write_log(uri, log)
        except RunnerError as exc:
            self._warn(name, [f"its log was not uploaded: {exc}"])
        self.client.update_step(step_id, status="failed", error=error)

    def _skip_rest(self, reason: str) -> None:
        for name in self.compiled.order:
            if self.state[name] == "pending":
                spec = {"pipeline": self.compiled.name, "function": name, "skipped": True}
                step = self.client.create_step(self.run_id, name, spec=spec, status="skipped")
                self.state[name] = "skipped"
                self.results[name] = StepResult(name, "skipped", step.id)
                self.progress.update(name, "skipped", reason)


def _cannot_cancel() -> None:
    import sys

    print(
        "warning: this run's cancellation was requested (mlstack down --force), but its "
        "driver does not run on the main thread, where it could be interrupted",
        file=sys.stderr,
    )


def _settings(step: Any) -> dict[str, Any]:
    """The step's run settings, recorded in its spec (not part of its cache key)."""
    return {"resources": step.resources.as_dict(), "retries": step.retries, "timeout": step.timeout}


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal

        return f"its process was killed by signal {signal.Signals(-code).name}"
    return f"step process exited with code {code} before recording a result"
