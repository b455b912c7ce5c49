"""The docker orchestrator: one host-network container per step (runner/docker_launcher.py).

A step's resources become the container's CPU quota (nano_cpus), memory limit and GPU
device requests; the driver does its retries and timeouts (runner/attempts.py). Before any
step, one short container imports the pipeline's module in the image (runner/import_check.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runner.orchestrators import Orchestrator, Prepared
from stacks.common.progress import Progress

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from runner.sdk import CompiledPipeline, Pipeline


class DockerOrchestrator(Orchestrator):
    def prepare(
        self,
        pipeline: Pipeline,
        compiled: CompiledPipeline,
        store: ArtifactStore,
        scratch: Path,
        progress: Progress,
    ) -> Prepared:
        from runner.code import package_code
        from runner.docker_launcher import DockerLauncher, docker_client
        from runner.import_check import check_imports
        from runner.packaging import ensure_image

        docker_client()  # one clear line when no engine is reachable, before any work
        steps = [inv.step for inv in compiled.invocations.values()]
        build = ensure_image(pipeline, self.outputs, progress=progress, steps=steps)
        verb = "built" if build.built else "reused"
        progress.update("image", verb, f"{build.image} ({build.reason})")
        launcher = DockerLauncher(self.outputs, build.image, scratch, run_label="")
        progress.update("imports", "running", f"importing {compiled.source.module} in the image")
        labels = {"mlstack.stack": self.outputs.stack, "mlstack.stack-id": self.outputs.stack_id}
        checked = check_imports(
            launcher.client, build.image, compiled.source, build.runtime_modules, labels
        )
        progress.update("imports", "completed", "checked" if checked else "checked before")
        code = package_code(compiled.source, store)
        if code.kind == "git" and code.url.startswith("file://"):
            # A remote on this machine's disk cannot be cloned from inside a container.
            code = package_code(compiled.source, store, use_git=False)
        progress.update("code", "ready", code.describe())
        gpus = max(inv.step.resources.gpus for inv in compiled.invocations.values())
        if gpus:
            from runner.docker_launcher import check_gpus

            check_gpus(launcher.client, build.image, gpus)
        return Prepared(launcher, {"code": code.as_dict(), "image": build.image}, code.describe())
