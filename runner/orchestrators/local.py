"""The local orchestrator: a warm worker forked once, one fork per step (runner/worker.py)."""

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

        _warm_up()
        # The worker forks before the driver starts any thread.
        return Prepared(ForkWorker(self.outputs), {}, compiled.source.path)
