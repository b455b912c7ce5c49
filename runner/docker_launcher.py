"""The Docker orchestrator: every step runs as a container of the pipeline's image.

Containers use host networking, so the stack's services on 127.0.0.1 are reachable. The
stack outputs (with the metadata token) reach a container only through its environment at
run time — never an image layer or the image config. The run's scratch folder, a file://
artifact store and the local secrets files are mounted at their host paths. Containers are
labelled with the stack and run and removed when their step ends. Every container runs
under Docker's init (``init=True``): the step is not PID 1, so a signal it sends itself (or
``docker stop``) kills it as it would on the host, and its exit code reads as that signal.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.context import OUTPUTS_ENV
from runner.errors import RunnerError
from runner.worker import Finished
from stacks.common.docker_engine import docker_client
from stacks.outputs import StackOutputs

if TYPE_CHECKING:
    from runner.sdk import Step
    from runner.step_options import StepResources

STOP_GRACE_SECONDS = 5  # a killed (timed-out) step's container: SIGTERM, then SIGKILL


def mounts_for(outputs: StackOutputs, scratch: Path) -> list[Any]:
    """Host paths a step container needs, bind-mounted at the same paths.

    Bind mounts (not ``volumes``): a missing host path fails the container's start instead
    of being created, so a run cannot re-create a stack's folders after ``mlstack down``.
    """
    from docker.types import Mount

    from runner.artifact_stores import host_paths
    from runner.secrets import secrets_backend

    paths = {str(scratch): False}
    paths.update({root: False for root in map(str, host_paths(outputs))})
    paths.update({f: True for f in map(str, secrets_backend(outputs).container_files())})
    return [Mount(p, p, type="bind", read_only=ro) for p, ro in paths.items()]


class DockerLauncher:
    """Runs steps as containers; same interface as the local fork worker."""

    def __init__(self, outputs: StackOutputs, image: str, scratch: Path, run_label: str) -> None:
        self.client = docker_client()
        self.outputs = outputs
        self.image = image
        self.scratch = scratch
        self.run_label = run_label
        self._done: queue.Queue[Finished] = queue.Queue()
        self._containers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pull()

    def _pull(self) -> None:
        from docker.errors import APIError, ImageNotFound

        repo, _, tag = self.image.rpartition(":")
        try:
            self.client.images.pull(repo, tag=tag)
        except (APIError, ImageNotFound) as exc:
            raise RunnerError(
                f"cannot pull {self.image} from the stack's registry: {exc.explanation or exc}",
                "check the registry with `mlstack status`",
            ) from None

    def launch(self, step_id: str, log: Path, result: Path, step: Step | None = None) -> None:
        # ``log`` is on a mounted path (the store's own file on file://): what the step
        # printed stays there however its container ends (runner/logs.py).
        command = (
            f"exec python3 -u -m runner.entrypoint run-step --step-id {shlex.quote(step_id)}"
            f" --result {shlex.quote(str(result))} >> {shlex.quote(str(log))} 2>&1"
        )
        from runner.artifact_stores import container_env

        env = {**container_env(self.outputs), OUTPUTS_ENV: json.dumps(self.outputs.revealed())}
        container = self.client.containers.run(
            self.image,
            command=["sh", "-c", command],
            environment=env,
            network_mode="host",
            mounts=mounts_for(self.outputs, self.scratch),
            labels={
                "mlstack.stack": self.outputs.stack,
                "mlstack.stack-id": self.outputs.stack_id,  # what `mlstack sweep` goes by
                "mlstack.run": self.run_label,
                "mlstack.step": step_id,
            },
            detach=True,
            init=True,  # PID 1 ignores signals it has no handler for: the step must not be it
            **container_resources(step.resources if step is not None else None),
        )
        with self._lock:
            self._containers[step_id] = container
        threading.Thread(target=self._watch, args=(step_id, container), daemon=True).start()

    def _watch(self, step_id: str, container: Any) -> None:
        code = 1
        try:
            code = exit_code(int(container.wait().get("StatusCode", 1)))
        except Exception:
            code = 1
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            with self._lock:
                self._containers.pop(step_id, None)
            self._done.put(Finished(step_id=step_id, code=code))

    def wait(self, timeout: float | None = None) -> Finished | None:
        """The next step to exit; None when ``timeout`` seconds pass first."""
        while True:
            try:
                return self._done.get(timeout=0.5 if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    return None

    def kill(self, step_id: str) -> None:
        """Stop one step's container (SIGTERM, SIGKILL after a grace period); its watcher
        reports the exit."""
        with self._lock:
            container = self._containers.get(step_id)
        if container is not None:
            threading.Thread(target=_stop, args=(container,), daemon=True).start()

    def close(self, kill: bool = False) -> None:
        with self._lock:
            running = list(self._containers.values())
        for container in running:
            with contextlib.suppress(Exception):
                container.remove(force=True)


def exit_code(status: int) -> int:
    """A container's exit status as a process exit code: 128+N (the init reporting that the
    step died of signal N) becomes -N, as :func:`os.waitstatus_to_exitcode` gives locally."""
    import signal

    if status > 128 and status - 128 in signal.valid_signals():
        return -(status - 128)
    return status


def _stop(container: Any) -> None:
    with contextlib.suppress(Exception):
        container.stop(timeout=STOP_GRACE_SECONDS)


def container_resources(resources: StepResources | None) -> dict[str, Any]:
    """Docker SDK ``containers.run`` arguments for a step's CPU, memory and GPU request."""
    if resources is None:
        return {}
    kwargs: dict[str, Any] = {}
    if resources.cpu is not None:
        kwargs["nano_cpus"] = int(resources.cpu * 1e9)
    if resources.memory_gib is not None:
        kwargs["mem_limit"] = int(resources.memory_gib * 1024**3)
    if resources.gpus:
        from docker.types import DeviceRequest

        kwargs["device_requests"] = [DeviceRequest(count=resources.gpus, capabilities=[["gpu"]])]
    return kwargs


def check_gpus(client: Any, image: str, count: int) -> None:
    """Start a throwaway container asking for ``count`` GPUs: one clear line if the engine
    cannot give them (no NVIDIA runtime, or fewer GPUs), before any step runs."""
    from docker.errors import APIError
    from docker.types import DeviceRequest

    container = None
    try:
        container = client.containers.create(
            image, command=["true"], network_mode="host",
            device_requests=[DeviceRequest(count=count, capabilities=[["gpu"]])],
        )  # fmt: skip
        container.start()
        container.wait()
    except APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0]
        raise RunnerError(
            f"the pipeline asks for {count} GPU(s) but the Docker Engine cannot provide them:"
            f" {reason}",
            "install the NVIDIA Container Toolkit on the Docker host, or drop gpus from the"
            " steps' resources",
        ) from None
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
