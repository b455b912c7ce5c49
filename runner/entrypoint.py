"""The one step entrypoint every orchestrator uses.

``python -m runner.entrypoint run-step --step-id ID`` (containers) and the local worker's
forked children both call :func:`execute_step`: fetch the step's spec from the metadata
server, load inputs from the artifact store, run the function, write outputs, and record
status, timings, artifacts and lineage. The step's output goes to a log the caller opened
(runner/logs.py); where nothing outside the container reads it (a remote orchestrator's
job), ``run-step --capture`` runs the step as a child process and keeps its output in the
artifact store itself, while it runs and however it ends (``--echo``: and on its own stdout,
which a Batch job's log driver sends to CloudWatch Logs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.context import _CURRENT, StepContext, outputs_from_env
from runner.errors import RunnerError
from stacks.common.errors import MlstackError
from stacks.outputs import StackOutputs

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore

EXIT_OK, EXIT_FAILED = 0, 1
CODE_DIR = "/tmp/mlstack-code"


def artifact_store_for(outputs: StackOutputs) -> ArtifactStore:
    """The stack's artifact store (see :mod:`runner.artifact_stores`)."""
    from runner.artifact_stores import open_store

    return open_store(outputs)


def execute_step(
    step_id: str,
    outputs: StackOutputs,
    *,
    log_path: Path | None = None,
    result_path: Path | None = None,
) -> int:
    """Run one recorded step to completion; return the process exit code."""
    from runner.loader import import_source
    from runner.metadata.client import MetadataClient
    from runner.sdk import PipelineSource, find_step

    token = outputs.metadata.token
    client = MetadataClient(
        outputs.metadata.url,
        token.get_secret_value() if token else "",
        ca_pem=outputs.metadata.ca_pem,
    )
    record = client.get_step(step_id)
    spec = record.spec
    ctx = StepContext(
        outputs=outputs,
        run_id=record.run_id,
        step_id=step_id,
        step_name=record.name,
        pipeline=spec["pipeline"],
        tracker_run_id=spec.get("tracker_run_id"),
        image=spec.get("image"),
    )
    ctx.__dict__["metadata"] = client  # reuse this connection for the step's own calls
    attempt = int(client.update_step(step_id, status="running").spec.get("attempt") or 1)
    store = artifact_store_for(outputs)
    result: dict[str, Any] = {"step_id": step_id, "outputs": {}}
    code = EXIT_OK
    try:
        source = PipelineSource(**spec["source"])
        if spec.get("code"):  # the code travelled separately from the image
            from runner.code import materialize_code

            root = materialize_code(spec["code"], store, CODE_DIR)
            source = PipelineSource(module=source.module, path=None, root=root)
        if source.module not in sys.modules:
            import_source(source)
        step = find_step(source.module, spec["function"])
        kwargs = dict(spec["params"])
        loaded: dict[str, Any] = {}
        for arg, art in spec["inputs"].items():
            loaded[arg] = store.load(art["uri"], art["materializer"], art["type_name"])
            client.add_input(step_id, art["id"], arg)
        collections = spec.get("collections") or {}
        if collections:
            from runner.sdk import rebuild_collection

            for arg, shape in collections.items():
                kwargs[arg] = rebuild_collection(shape, loaded)
        kwargs.update({a: v for a, v in loaded.items() if a in step.signature.parameters})
        _CURRENT.append(ctx)
        try:
            value = step.func(**kwargs)
        finally:
            _CURRENT.pop()
        values = _split_outputs(step.outputs, value, record.name)
        for name, out in values.items():
            saved = store.save(out, name)
            art = client.create_artifact(
                uri=saved.uri,
                content_hash=saved.content_hash,
                size=saved.size,
                name=name,
                type_name=saved.type_name,
                materializer=saved.materializer,
                producer_step_id=step_id,
            )
            result["outputs"][name] = art.model_dump(mode="json")
        status, error = "completed", None
    except BaseException as exc:  # the step's own errors, reported, never re-raised
        traceback.print_exc()
        # One line for the record; the traceback and any long message are in the log.
        first = (str(exc).strip().splitlines() or [""])[0]
        status, error = "failed", f"{type(exc).__name__}: {first}"[:500]
        result["error"] = error
        code = EXIT_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    log_uri = None
    if log_path is not None and log_path.exists():
        try:
            # Each attempt its own log (an orchestrator's native retries too).
            log_uri = store.put_log(record.run_id, record.name, log_path, attempt)
        except Exception as exc:  # a lost log must not hide the step's result
            print(f"mlstack: could not upload the step log: {exc}", file=sys.stderr)
    client.update_step(step_id, status=status, error=error, log_uri=log_uri)
    result["status"] = status
    if result_path is not None:
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, result_path)
    client.close()
    return code


class StopSignals:
    """SIGTERM and SIGINT, passed on to a child process once there is one (one received before
    is sent to it at once). A container's PID 1 gets only the signals it handles: AWS Batch's
    TerminateJob and timeouts stop a job with SIGTERM to it, then SIGKILL."""

    def __init__(self) -> None:
        import signal

        self.received: list[int] = []
        self.child: Any = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)

    def attach(self, child: Any) -> None:
        self.child = child
        if self.received:  # stopped while the child was starting
            child.send_signal(self.received[-1])

    def _forward(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self.child is not None:
            self.child.send_signal(signum)


def capture_step(
    step_id: str,
    outputs: StackOutputs,
    result_path: Path | None = None,
    echo: bool = False,
    stops: StopSignals | None = None,
) -> int:
    """Run one step in a child process whose stdout/stderr this process keeps in the store.

    The attempt's log goes to ``ArtifactStore.log_uri(run, step, attempt)``, mirrored while
    it grows; a child killed by a signal keeps what it printed, and its step is recorded as
    failed with the signal named. SIGTERM and SIGINT are passed on to the child (``stops``,
    set up as early as the caller can: this process may be a container's PID 1).
    ``echo`` also copies every line to this process's stdout (a Batch job's CloudWatch Logs).
    Returns the child's exit code, or 128 + the signal that killed it.
    """
    import shutil
    import signal
    import subprocess
    import tempfile

    from runner.logs import LogPump
    from runner.metadata.client import MetadataClient

    stops = stops or StopSignals()
    token = outputs.metadata.token
    client = MetadataClient(
        outputs.metadata.url,
        token.get_secret_value() if token else "",
        ca_pem=outputs.metadata.ca_pem,
    )
    store = artifact_store_for(outputs)
    record = client.get_step(step_id)
    attempt = int(record.spec.get("attempt") or 0) + 1  # the one the child is about to start
    uri = store.log_uri(record.run_id, record.name, attempt)
    client.update_step(step_id, log_uri=uri)
    pump = LogPump(store, on_lines=_echo if echo else None)
    scratch = Path(tempfile.mkdtemp(prefix="mlstack-step-")) / "step.log"
    log = pump.path_for(uri, scratch)
    argv = [sys.executable, "-u", "-m", "runner.entrypoint", "run-step", "--step-id", step_id]
    if result_path is not None:
        argv += ["--result", str(result_path)]
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    stops.attach(child)
    pump.watch(step_id, record.name, log, uri)
    code = child.wait()
    if code < 0:  # killed: it could not record anything itself
        error = f"its process was killed by signal {signal.Signals(-code).name}"
        if stops.received:
            error += " (its job or container was stopped)"
        with open(log, "ab") as out:
            out.write(f"\n===== mlstack: {error} =====\n".encode())
    pump.done(step_id)
    pump.close()
    if code < 0:
        if client.get_step(step_id).status.value not in ("completed", "failed", "cancelled"):
            client.update_step(step_id, status="failed", error=error)
        code = 128 - code
    client.close()
    shutil.rmtree(scratch.parent, ignore_errors=True)
    return code


def _echo(_name: str, lines: list[str]) -> None:
    """A captured step's new lines, copied to this process's stdout as they come."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


def _split_outputs(names: tuple[str, ...], value: Any, step: str) -> dict[str, Any]:
    if len(names) == 1:
        return {names[0]: value}
    if not isinstance(value, tuple | list) or len(value) != len(names):
        raise RunnerError(
            f"step {step!r} declares {len(names)} outputs ({', '.join(names)}) but returned"
            f" {_describe_value(value)}",
            "return a tuple with one value per declared output",
        )
    return dict(zip(names, value, strict=True))


def _describe_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"one {type(value).__name__}"


def main(argv: list[str] | None = None) -> int:
    """``python -m runner.entrypoint run-step --step-id ID [--result F] [--capture [--echo]]``."""
    parser = argparse.ArgumentParser(prog="python -m runner.entrypoint")
    sub = parser.add_subparsers(dest="command", required=True)
    run_step = sub.add_parser("run-step", help="execute one recorded step")
    run_step.add_argument("--step-id", required=True)
    run_step.add_argument("--result", type=Path)
    run_step.add_argument("--log", type=Path, help="a file that already receives the output")
    run_step.add_argument(
        "--capture", action="store_true", help="keep the step's output in the artifact store"
    )
    run_step.add_argument(
        "--echo", action="store_true", help="with --capture: also copy the output to stdout"
    )
    args = parser.parse_args(argv)
    stops = StopSignals() if args.capture else None  # before anything slow: see StopSignals
    try:
        outputs = outputs_from_env()
        if outputs.metadata.token is None:
            # Handed no secret (an AWS Batch job): read it from the stack's secrets backend.
            from runner.secrets import resolve_token

            outputs = resolve_token(outputs)
    except MlstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.capture:
        return capture_step(args.step_id, outputs, args.result, echo=args.echo, stops=stops)
    return execute_step(args.step_id, outputs, log_path=args.log, result_path=args.result)


if __name__ == "__main__":
    sys.exit(main())
