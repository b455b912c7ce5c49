"""The local orchestrator: a warm worker forked once, one fork per step (runner/worker.py).

Timeouts kill a step's process group and retries relaunch it (runner/attempts.py); a GPU
request becomes ``CUDA_VISIBLE_DEVICES=0..n-1``; cpu and memory are not enforced (a warning
says so once per run).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runner.orchestrators import Orchestrator, Prepared
from stacks.common.progress import Progress

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from runner.sdk import CompiledPipeline, Pipeline


def _warm_up() -> None:
    """Import what every step needs once, before the worker forks, so no step pays for it."""
    import runner.entrypoint
    import runner.materializers
    import runner.metadata.client  # noqa: F401


def _warn_unenforced(compiled: CompiledPipeline) -> None:
    """Once per run: local steps share the machine, so cpu and memory requests are not limits."""
    import sys

    asking = sorted(
        name
        for name, inv in compiled.invocations.items()
        if inv.step.resources.cpu is not None or inv.step.resources.memory_gib is not None
    )
    if asking:
        print(
            f"warning: the local orchestrator does not enforce cpu or memory requests"
            f" (steps {', '.join(asking)}); they apply on the docker and aws_batch orchestrators",
            file=sys.stderr,
        )


class LocalOrchestrator(Orchestrator):
    def prepare(
        self,
        pipeline: Pipeline,
        compiled: CompiledPipeline,
        store: ArtifactStore,
        scratch: Path,
        progress: Progress,
    ) -> Prepared:
        from runner.worker import ForkWorker

        _warn_unenforced(compiled)
        _warm_up()
        # The worker forks before the driver starts any thread.
        return Prepared(ForkWorker(self.outputs), {}, compiled.source.path)
